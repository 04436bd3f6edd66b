"""``PoolRuntime.drain()``, ``PeeweePool.drain()``, ``FlaskDB.drain()`` and
``flask_peewee_pool.django.drain()`` drain the app's pool in this process (SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from flask_peewee_pool import FlaskDB, PeeweePool


def _used(db) -> None:  # type: ignore[no-untyped-def]
    with db.connection_context():
        db.execute_sql("SELECT 1").fetchone()


@pytest.mark.parametrize("extension", [PeeweePool, FlaskDB])
def test_flask_extensions_drain_their_apps_pool(tmp_path: Path, extension: type) -> None:
    app = Flask("drain_api", instance_path=str(tmp_path))
    key = "DATABASE" if extension is FlaskDB else "PEEWEE_POOL_DATABASE"
    app.config[key] = f"sqlite:///{tmp_path / 'a.db'}"
    ext = extension(app)
    try:
        runtime = ext.get_state(app)
        _used(runtime.database)
        assert ext.drain(app) == 1
        assert ext.drain() == 1  # the last app initialised
        assert runtime.drain() == 1
        assert runtime.stats().generation == 3
        assert "pool-drain" in app.cli.commands
    finally:
        ext.close(app)


def test_django_drain(tmp_path: Path) -> None:
    pytest.importorskip("django")
    from django.test import override_settings

    from flask_peewee_pool import django as fpp_django
    from tests.django import _setup  # noqa: F401  (configures Django)

    with override_settings(PEEWEE_POOL={"DATABASE": f"sqlite:///{tmp_path / 'd.db'}"}):
        try:
            _used(fpp_django.get_state().database)
            assert fpp_django.drain() == 1
            assert fpp_django.get_state().stats().generation == 1
        finally:
            fpp_django.close()
