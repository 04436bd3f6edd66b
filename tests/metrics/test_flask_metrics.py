"""PEEWEE_POOL_METRICS: the Flask extension publishes its pool to Prometheus."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

pytest.importorskip("prometheus_client")

from prometheus_client import REGISTRY, CollectorRegistry

import flask_peewee_pool
from flask_peewee_pool import ConfigError, PeeweePool
from flask_peewee_pool.ext import ACCEPTED_KEYS
from tests.flask.helpers import sqlite_url


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    made: list[Flask] = []

    def make(name: str = "metrics_app", **config: Any) -> Flask:
        app = Flask(name)
        app.config.update(PEEWEE_POOL_DATABASE=sqlite_url(tmp_path / "m.db"),
                          PEEWEE_POOL_STATS_DIR=str(tmp_path / "stats"), **config)
        made.append(app)
        return app

    yield make
    for app in made:
        state = app.extensions.get("peewee_pool")
        if state is not None:
            if state.metrics is not None:
                state.metrics.close()
            state.database.close_pool()


def test_metrics_is_an_accepted_key() -> None:
    assert "METRICS" in ACCEPTED_KEYS


def test_off_by_default(make_app: Any) -> None:
    app = make_app()
    PeeweePool(app)
    state = app.extensions["peewee_pool"]
    assert state.metrics is None
    assert state.settings["metrics"] is False
    assert not any(type(h).__name__ == "PoolMetrics" for h in state.database.pool.tick_hooks)


@pytest.mark.parametrize("value", [False, None, "false", "off", "0", "", 0, " No "])
def test_false_values_leave_it_off(make_app: Any, value: Any) -> None:
    app = make_app(PEEWEE_POOL_METRICS=value)
    PeeweePool(app)
    assert app.extensions["peewee_pool"].metrics is None


@pytest.mark.parametrize("value", ["maybe", 2, 1.5, ["true"], object()])
def test_bad_values_name_the_key(make_app: Any, value: Any) -> None:
    app = make_app(PEEWEE_POOL_METRICS=value)
    with pytest.raises(ConfigError) as info:
        PeeweePool(app)
    assert info.value.setting == "PEEWEE_POOL_METRICS"
    assert "true or false" in str(info.value)
    assert "peewee_pool" not in app.extensions


def test_without_prometheus_client_init_app_says_what_to_install(
        make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "flask_peewee_pool.metrics", raising=False)
    monkeypatch.delattr(flask_peewee_pool, "metrics", raising=False)
    app = make_app(PEEWEE_POOL_METRICS=True)
    with pytest.raises(ConfigError) as info:
        PeeweePool(app)
    assert info.value.setting == "PEEWEE_POOL_METRICS"
    assert "flask-peewee-pool[prometheus]" in str(info.value)


def _register_views(app: Flask, pool: PeeweePool) -> None:
    @app.get("/query")
    def query() -> str:
        pool.database.execute_sql("SELECT 1")
        return "ok"

    @app.get("/plain")
    def plain() -> str:
        return "no database"


def test_requests_are_counted_in_the_given_registry(make_app: Any) -> None:
    registry = CollectorRegistry()
    app = make_app(PEEWEE_POOL_METRICS=registry, PEEWEE_POOL_MAX_CONNECTIONS=3)
    pool = PeeweePool(app)
    _register_views(app, pool)
    state = app.extensions["peewee_pool"]
    assert state.settings["metrics"] is True
    assert state.metrics in state.database.pool.tick_hooks
    client = app.test_client()
    for _ in range(5):
        assert client.get("/query").status_code == 200
    assert client.get("/plain").status_code == 200  # lazy checkout: no connection
    state.metrics.update()  # not waiting for the maintainer's next tick

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"pool": "metrics_app", **labels})

    assert sample("peewee_pool_checkouts_total") == 5
    assert sample("peewee_pool_connects_total") == 1
    assert sample("peewee_pool_connections", state="idle") == 1
    assert sample("peewee_pool_connections", state="in_use") == 0
    assert sample("peewee_pool_max_connections") == 3
    assert sample("peewee_pool_usage_seconds_count") == 5


@pytest.mark.parametrize("value", [True, "true", "1", 1, "on"])
def test_true_values_use_the_default_registry(make_app: Any, value: Any) -> None:
    app = make_app(name=f"default_registry_{value!s}", PEEWEE_POOL_METRICS=value)
    pool = PeeweePool(app)
    _register_views(app, pool)
    state = app.extensions["peewee_pool"]
    app.test_client().get("/query")
    state.metrics.update()
    assert REGISTRY.get_sample_value("peewee_pool_checkouts_total",
                                     {"pool": app.import_name}) == 1


def test_a_new_app_of_the_same_name_takes_the_series_over(make_app: Any) -> None:
    """An app factory called twice (tests): the newest app's pool publishes."""
    registry = CollectorRegistry()
    first = make_app(PEEWEE_POOL_METRICS=registry)
    PeeweePool(first)
    second = make_app(PEEWEE_POOL_METRICS=registry)
    PeeweePool(second)
    old, new = first.extensions["peewee_pool"], second.extensions["peewee_pool"]
    assert old.metrics not in old.database.pool.tick_hooks
    assert new.metrics in new.database.pool.tick_hooks
