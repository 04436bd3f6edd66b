"""Fixtures: ``make_harness(**config)`` builds a lifecycle test app on SQLite in tmp_path;
``harness`` is one with default settings and ``app`` its Flask app (pytest-flask's fixture,
so ``client`` works and each test runs inside the app's test_request_context). Every pool
built here is closed at the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from tests.flask.helpers import Harness, build_harness, close_all, sqlite_config


@pytest.fixture
def make_harness(tmp_path: Any) -> Iterator[Callable[..., Harness]]:
    """``make_harness(**config)``: a harness on SQLite in tmp_path (config overrides)."""
    built: list[Harness] = []

    def make(*, register: Callable[[Flask], None] | None = None,
             static_folder: str | None = None, **config: Any) -> Harness:
        h = build_harness(sqlite_config(tmp_path, **config), register=register,
                          static_folder=static_folder)
        built.append(h)
        return h

    yield make
    close_all(built)


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


@pytest.fixture
def app(harness: Harness) -> Flask:
    """pytest-flask's app: each test runs inside its test_request_context."""
    return harness.app
