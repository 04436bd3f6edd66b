"""``PEEWEE_POOL_APPLICATION_NAME`` / ``PEEWEE_POOL_EXTERNAL_POOLER`` (Flask config)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_peewee_pool import PeeweePool, snapshots
from flask_peewee_pool.core.errors import ConfigError
from flask_peewee_pool.ext import ACCEPTED_KEYS

assert "EXTERNAL_POOLER" in ACCEPTED_KEYS and "APPLICATION_NAME" in ACCEPTED_KEYS


def _state(tmp_path: Path, **config: Any) -> Any:
    app = Flask("shop.web", instance_path=str(tmp_path))
    app.config.update(PEEWEE_POOL_STATS_INTERVAL=3600, **config)
    PeeweePool(app)
    state = app.extensions["peewee_pool"]
    snapshots.stop_snapshots(state)
    state.database.close_pool()
    return state


def test_keys_reach_the_database(tmp_path: Path) -> None:
    state = _state(tmp_path, PEEWEE_POOL_DATABASE="postgresql://u@127.0.0.1:1/shop",
                   PEEWEE_POOL_APPLICATION_NAME="shop-api",
                   PEEWEE_POOL_EXTERNAL_POOLER="pgbouncer")
    assert state.database.application_name == "shop-api"
    assert state.database.external_pooler == "pgbouncer"
    assert state.settings["application_name"] == "shop-api"
    assert state.settings["external_pooler"] == "pgbouncer"
    assert state.database.pool.driver.session_params()["application_name"] == \
        f"shop-api[{os.getpid()}]"


def test_defaults(tmp_path: Path) -> None:
    state = _state(tmp_path, PEEWEE_POOL_DATABASE="mysql://u@127.0.0.1:1/shop")
    assert state.database.application_name == "shop.web"
    assert state.database.external_pooler is None


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _state(tmp_path, PEEWEE_POOL_DATABASE="mysql://u@127.0.0.1:1/shop",
               PEEWEE_POOL_EXTERNAL_POOLER="pgbouncer")
    assert info.value.setting == "PEEWEE_POOL_EXTERNAL_POOLER"
    with pytest.raises(ConfigError) as info:
        _state(tmp_path, PEEWEE_POOL_DATABASE="mysql://u@127.0.0.1:1/shop",
               PEEWEE_POOL_APPLICATION_NAME=["x"])
    assert info.value.setting == "PEEWEE_POOL_APPLICATION_NAME"
