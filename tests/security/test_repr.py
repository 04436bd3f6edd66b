"""No password in ``repr()`` / ``str()`` of any object the library hands out.

Databases, pools, drivers (and their ``describe()``), pooled connections, options, stats
snapshots, the maintainer, the Flask extension and its per-app state, snapshot writers:
built with the password given every way a user can give it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_peewee_pool import (
    ConnectFailed,
    PeeweePool,
    PooledMySQLDatabase,
    PooledPostgresqlDatabase,
    connect,
    snapshots,
)
from tests.security.conftest import SECRET, assert_clean, assert_exception_clean


def object_texts(db: Any) -> list[str]:
    pool = db.pool
    stats = pool.stats()
    return [repr(db), str(db), repr(pool), str(pool), repr(pool.driver), pool.driver.describe(),
            pool.name, repr(pool.options), str(pool.options), json.dumps(pool.options.describe()),
            repr(stats), json.dumps(stats.as_dict(), default=str), repr(pool.maintainer),
            repr(db.pool_options)]


def _databases() -> list[Any]:
    return [
        PooledMySQLDatabase("test", host="127.0.0.1", port=1, user="app", password=SECRET),
        PooledMySQLDatabase("test", host="127.0.0.1", port=1, user="app", passwd=SECRET),
        PooledPostgresqlDatabase("test", host="127.0.0.1", port=1, user="app", password=SECRET),
        connect(f"mysql://app:{SECRET}@127.0.0.1:1/test"),
        connect(f"mariadb://app@127.0.0.1:1/test?password={SECRET}"),
        connect(f"postgresql://app:{SECRET}@127.0.0.1:1/test"),
        connect(f"postgresql://app@127.0.0.1:1/test?password={SECRET}"),
    ]


@pytest.mark.filterwarnings("ignore:'passwd' is deprecated:DeprecationWarning")
def test_objects_built_with_a_password() -> None:
    for db in _databases():
        try:
            assert_clean(*object_texts(db), where=repr(type(db)))
        finally:
            db.close_pool()


@pytest.mark.mysql
def test_pooled_connection_and_live_stats(mysql_pool_user: Any) -> None:
    db = connect(mysql_pool_user.url + "?max_connections=2&leak_threshold=30")
    try:
        conn = db.pool.checkout()
        try:
            assert_clean(repr(conn), str(conn), *object_texts(db), repr(db.pool.holders()),
                         where="live pool")
        finally:
            db.pool.checkin(conn)
        with db.connection_context():
            assert_clean(*object_texts(db), where="live pool")
    finally:
        db.close_pool()


@pytest.mark.parametrize("placement", ["userinfo", "query", "connect_args"])
def test_flask_state_and_extension(tmp_path: Path, placement: str) -> None:
    app = Flask("secure_app")
    base = "mysql://app@127.0.0.1:1/test"
    if placement == "userinfo":
        url = f"mysql://app:{SECRET}@127.0.0.1:1/test"
    elif placement == "query":
        url = f"{base}?password={SECRET}"
    else:
        url = base
        app.config["PEEWEE_POOL_CONNECT_ARGS"] = {"password": SECRET, "connect_timeout": 1}
    app.config.update(PEEWEE_POOL_DATABASE=url, PEEWEE_POOL_STATS_DIR=str(tmp_path))
    ext = PeeweePool(app)
    state = app.extensions["peewee_pool"]
    try:
        writer = snapshots.start_snapshots(state)
        assert_clean(repr(ext), repr(state), str(state), repr(state.settings),
                     json.dumps(state.settings, default=str), repr(writer),
                     json.dumps(snapshots.build_snapshot(state), default=str),
                     *object_texts(state.database), where=f"flask state ({placement})")
    finally:
        snapshots.stop_snapshots(state)
        state.database.close_pool()


def test_postgres_database_given_as_a_connection_url() -> None:
    db = PooledPostgresqlDatabase(f"postgresql://app:{SECRET}@127.0.0.1:1/test")
    try:
        with pytest.raises(ConnectFailed) as info:
            db.connect()
        assert_exception_clean(info.value)
        assert_clean(*object_texts(db), where="pool named after a connection URL")
    finally:
        db.close_pool()


def test_postgres_database_given_as_a_conninfo_string() -> None:
    db = PooledPostgresqlDatabase(
        f"host=127.0.0.1 port=1 dbname=test user=app password={SECRET}")
    try:
        with pytest.raises(ConnectFailed) as info:
            db.connect()
        assert_exception_clean(info.value)
        assert_clean(*object_texts(db), where="pool named after a conninfo string")
    finally:
        db.close_pool()
