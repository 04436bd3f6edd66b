"""PoolMiddleware around a bare WSGI app: the connection goes back when the server closes
the response iterable (werkzeug's test Client closes it on ``response.close()``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from flask_peewee_pool import connect
from flask_peewee_pool.middleware import PoolMiddleware
from tests.flask.helpers import run_in_thread, sqlite_url


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Any]:
    database = connect(sqlite_url(tmp_path / "mw.db"), max_connections=2, timeout=5)
    with database.connection_context():
        database.execute_sql("CREATE TABLE item (name TEXT)")
    yield database
    database.close_pool()


def in_use(db: Any) -> int:
    return db.pool_stats().in_use  # type: ignore[no-any-return]


def count(db: Any) -> int:
    with db.connection_context():
        return db.execute_sql("SELECT COUNT(*) FROM item").fetchone()[0]  # type: ignore[no-any-return]


def bare_app(db: Any, events: dict[str, threading.Event]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/noop":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"noop"]
        db.execute_sql("SELECT COUNT(*) FROM item")
        if path == "/error":
            raise RuntimeError("app failed")
        if path == "/open-transaction":
            db.atomic().__enter__()
            db.execute_sql("INSERT INTO item VALUES ('uncommitted')")
        if path == "/hold":
            events["held"].set()
            events["release"].wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        if path == "/stream":
            def body() -> Iterator[bytes]:
                yield b"first;"
                db.execute_sql("SELECT 1")
                yield f"in_use={in_use(db)}".encode()
            return body()
        return [f"in_use={in_use(db)}".encode()]

    return app


@pytest.fixture
def events() -> dict[str, threading.Event]:
    return {"held": threading.Event(), "release": threading.Event()}


def make_client(db: Any, events: dict[str, threading.Event], checkout: str = "lazy") -> Client:
    return Client(PoolMiddleware(bare_app(db, events), db, checkout=checkout))


def test_returned_only_when_the_server_closes_the_response(db: Any, events: Any) -> None:
    client = make_client(db, events)
    response = client.get("/query")
    assert response.get_data() == b"in_use=1"
    assert in_use(db) == 1  # body fully read, but the server has not closed it yet
    response.close()
    assert in_use(db) == 0


def test_streamed_body(db: Any, events: Any) -> None:
    client = make_client(db, events)
    response = client.get("/stream")
    chunks = iter(response.response)
    assert next(chunks) == b"first;"
    assert in_use(db) == 1
    assert next(chunks) == b"in_use=1"
    assert in_use(db) == 1
    response.close()
    assert in_use(db) == 0


def test_exception_returns_at_once(db: Any, events: Any) -> None:
    client = make_client(db, events)
    with pytest.raises(RuntimeError, match="app failed"):
        client.get("/error")
    assert in_use(db) == 0


def test_open_transaction_rolled_back(db: Any, events: Any) -> None:
    client = make_client(db, events)
    client.get("/open-transaction").close()
    assert in_use(db) == 0
    assert count(db) == 0


@pytest.mark.parametrize(("checkout", "expected"), [("lazy", 0), ("eager", 1)])
def test_checkout_modes(db: Any, events: Any, checkout: str, expected: int) -> None:
    client = make_client(db, events, checkout)
    before = db.pool_stats().counters.checkouts
    response = client.get("/noop")
    assert in_use(db) == expected
    response.close()
    assert db.pool_stats().counters.checkouts - before == expected
    assert in_use(db) == 0


def test_callers_connection_is_left_alone(db: Any, events: Any) -> None:
    client = make_client(db, events)
    with db.atomic():
        db.execute_sql("INSERT INTO item VALUES ('mine')")
        client.get("/query").close()
        assert db.in_transaction() and in_use(db) == 1
        assert db.execute_sql("SELECT COUNT(*) FROM item").fetchone()[0] == 1
    db.close()
    assert in_use(db) == 0
    assert count(db) == 1


@pytest.mark.parametrize("checkout", ["lazy", "eager"])
def test_exhausted_pool_answers_503(tmp_path: Path, events: Any, checkout: str) -> None:
    db = connect(sqlite_url(tmp_path / "one.db"), max_connections=1, timeout=0.2)
    with db.connection_context():
        db.execute_sql("CREATE TABLE item (name TEXT)")
    client = make_client(db, events, checkout)
    thread, out = run_in_thread(lambda: client.get("/hold").close())
    try:
        assert events["held"].wait(10)
        response = make_client(db, events, checkout).get("/query")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        response.close()
    finally:
        events["release"].set()
        thread.join(10)
        assert out == [None]
        assert in_use(db) == 0
        db.close_pool()


def test_checkout_mode_is_validated(db: Any) -> None:
    with pytest.raises(ValueError, match="checkout"):
        PoolMiddleware(lambda e, s: [], db, checkout="later")
