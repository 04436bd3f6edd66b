"""Fixtures for the FlaskDB drop-in: ``new_app(**config)`` makes a Flask app whose pools
are closed at the end of the test, ``sqlite_url(name)`` a database file in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps whose pools are closed when the test ends (``new_app`` adds to it)."""
    made: list[Flask] = []
    yield made
    for app in made:
        state = app.extensions.get("peewee_pool")
        if state is not None:
            state.database.close_pool()


@pytest.fixture
def new_app(apps: list[Flask], tmp_path: Path) -> Callable[..., Flask]:
    def make(name: str = "flaskdb_app", **config: Any) -> Flask:
        app = Flask(name, instance_path=str(tmp_path / "instance"))
        app.config["PEEWEE_POOL_STATS_DIR"] = str(tmp_path / "stats")
        app.config.update(config)
        apps.append(app)
        return app

    return make


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Callable[[str], str]:
    return lambda name="app": f"sqlite:///{tmp_path / name}.db"
