"""FlaskDB against MariaDB, as the dedicated pool account, so the server's own session
count can be checked against the pool's: every pattern returns its connections."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest
from flask import Flask

from flask_peewee_pool import PooledMySQLDatabase
from flask_peewee_pool.flask_utils import FlaskDB
from tests import dbutil
from tests.flaskdb.helpers import add_views, checkouts, create_table, in_use, make_note_model, state
from tests.flaskdb.test_flaskdb import exercise

pytestmark = pytest.mark.mysql


@pytest.fixture
def server(mysql_pool_user: dbutil.MySQLPoolUser,
           mysql_kill_pool_connections: Callable[[], int],
           apps: list[Flask]) -> Iterator[dbutil.MySQLPoolUser]:
    """The pool account, with no session at the start; the table dropped at the end."""
    yield mysql_pool_user
    conn = mysql_pool_user.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS fpp_flaskdb_note")
    finally:
        conn.close()


def pool_size(app: Flask) -> int:
    stats = state(app).stats()
    return stats.idle + stats.in_use  # type: ignore[no-any-return]


def hammer(app: Flask, threads: int, requests: int) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            client = app.test_client()
            for i in range(requests):
                if i % 2:
                    assert client.post("/insert").status_code == 200
                else:
                    assert client.get("/count").status_code == 200
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert errors == []


def test_module_level_url(server: dbutil.MySQLPoolUser,
                          new_app: Callable[..., Flask]) -> None:
    app = new_app(PEEWEE_POOL_MAX_CONNECTIONS=3, PEEWEE_POOL_TIMEOUT=10)
    db = FlaskDB(app, server.url)
    Note = make_note_model(db.Model)
    add_views(app, Note)
    create_table(app, Note)
    exercise(app)
    hammer(app, threads=8, requests=10)
    assert in_use(app) == 0
    assert 1 <= pool_size(app) <= 3
    server.wait_until(pool_size(app))
    state(app).database.close_pool()
    server.wait_until(0)


def test_app_factory_two_apps(server: dbutil.MySQLPoolUser,
                              new_app: Callable[..., Flask]) -> None:
    db = FlaskDB()
    Note = make_note_model(db.Model)

    def create_app(name: str) -> Flask:
        app = new_app(name, DATABASE=server.url, PEEWEE_POOL_MAX_CONNECTIONS=2)
        db.init_app(app)
        add_views(app, Note)
        return app

    one, two = create_app("one"), create_app("two")
    create_table(one, Note)
    hammer(one, threads=4, requests=6)
    hammer(two, threads=4, requests=6)
    assert in_use(one) == in_use(two) == 0
    assert state(one).stats().name == "one" and state(two).stats().name == "two"
    assert pool_size(one) <= 2 and pool_size(two) <= 2
    server.wait_until(pool_size(one) + pool_size(two))
    assert one.test_client().get("/count").json == {"count": 24}


def test_playhouse_dict_config(server: dbutil.MySQLPoolUser,
                               new_app: Callable[..., Flask]) -> None:
    app = new_app(DATABASE={
        "name": server.database,
        "engine": "playhouse.pool.PooledMySQLDatabase",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "max_connections": 2,
        "stale_timeout": 300,
    }, FLASKDB_EXCLUDED_ROUTES=["logout"])
    db = FlaskDB(app)
    assert type(state(app).database) is PooledMySQLDatabase
    Note = make_note_model(db.Model)
    add_views(app, Note)
    create_table(app, Note)
    exercise(app)
    hammer(app, threads=4, requests=6)
    assert in_use(app) == 0 and pool_size(app) <= 2
    server.wait_until(pool_size(app))


def test_excluded_and_static_never_connect(server: dbutil.MySQLPoolUser, tmp_path: Path,
                                           new_app: Callable[..., Flask]) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "app.js").write_text("1;")
    app = new_app(DATABASE=server.url, FLASKDB_EXCLUDED_ROUTES=["logout"])
    app.static_folder = str(static)
    db = FlaskDB(app)
    add_views(app, make_note_model(db.Model))
    client = app.test_client()
    for _ in range(5):
        client.get("/logout")
        client.get("/static/app.js").close()
    assert checkouts(app) == 0
    assert server.server_connections() == 0
    client.get("/noop")
    assert checkouts(app) == 1 and in_use(app) == 0
    server.wait_until(1)


def test_transaction_left_open_is_rolled_back(server: dbutil.MySQLPoolUser,
                                              new_app: Callable[..., Flask]) -> None:
    app = new_app(DATABASE=server.url, PEEWEE_POOL_MAX_CONNECTIONS=1)
    db = FlaskDB(app)
    Note = make_note_model(db.Model)
    add_views(app, Note)
    create_table(app, Note)

    @app.post("/begin-open")
    def begin_open() -> Any:
        db.database.begin()  # a bare BEGIN peewee does not track
        Note.create(text="uncommitted")
        return {"ok": True}

    client = app.test_client()
    assert client.post("/begin-open").status_code == 200
    assert in_use(app) == 0
    assert client.get("/count").json == {"count": 0}  # same single connection, rolled back
    with app.app_context():
        assert isinstance(db.database.obj, peewee.MySQLDatabase)
