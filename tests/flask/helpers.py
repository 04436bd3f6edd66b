"""A small Flask app with one view per lifecycle case, on SQLite or MariaDB.

:func:`build_harness` makes an app with its own PeeweePool, a ``Note`` model and the views
below (fixtures in conftest.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import click
import peewee
from flask import Flask, Response, abort, stream_with_context

from flask_peewee_pool import PeeweePool
from flask_peewee_pool.ext import PeeweePoolState

TABLE = "fpp_flask_note"


@dataclass
class Harness:
    app: Flask
    pool: PeeweePool
    Note: type[peewee.Model]
    #: /hold sets ``held`` once it holds a connection, then waits for ``release``.
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def state(self) -> PeeweePoolState:
        return self.app.extensions["peewee_pool"]  # type: ignore[no-any-return]

    @property
    def db(self) -> Any:
        return self.state.database

    def in_use(self) -> int:
        return self.pool.stats(self.app).in_use

    def checkouts(self) -> int:
        return self.pool.stats(self.app).counters.checkouts

    def count_rows(self) -> int:
        """Row count seen on a fresh checkout of this thread (returned afterwards)."""
        with self.db.connection_context():
            return self.Note.select().count()  # type: ignore[no-any-return]


def build_harness(config: dict[str, Any], *, register: Callable[[Flask], None] | None = None,
                  static_folder: str | None = None) -> Harness:
    app = Flask(__name__, static_folder=static_folder)
    app.config.update(config)
    if register is not None:
        register(app)  # e.g. error handlers that must exist before init_app
    pool = PeeweePool()

    class Note(pool.Model):
        text = peewee.TextField()

        class Meta:
            table_name = TABLE

    harness = Harness(app, pool, Note)
    pool.init_app(app)
    with pool.database.connection_context():
        pool.database.drop_tables([Note], safe=True)
        pool.database.create_tables([Note])
    _add_views(harness)
    return harness


def _add_views(h: Harness) -> None:
    app, db, Note = h.app, h.pool.database, h.Note

    @app.get("/count")
    def count() -> Any:
        return {"count": Note.select().count()}

    @app.get("/noop")
    def noop() -> Any:
        return {"ok": True}

    @app.get("/excluded")
    def excluded() -> Any:
        return {"ok": True}

    @app.post("/insert")
    def insert() -> Any:
        return {"id": Note.create(text="committed").id}

    @app.get("/error")
    def error() -> Any:
        Note.select().count()
        raise RuntimeError("view failed")

    @app.get("/abort")
    def aborted() -> Any:
        Note.select().count()
        abort(404)

    @app.post("/atomic-open")
    def atomic_open() -> Any:
        db.atomic().__enter__()  # never exited: the view leaves a transaction open
        Note.create(text="uncommitted")
        return {"in_transaction": db.in_transaction()}

    @app.post("/begin-open")
    def begin_open() -> Any:
        db.begin()  # a bare BEGIN: peewee does not even know a transaction is open
        Note.create(text="uncommitted")
        return {"ok": True}

    @app.post("/atomic-error")
    def atomic_error() -> Any:
        with db.atomic():
            Note.create(text="rolled back")
            raise RuntimeError("inside a transaction")

    def body() -> Iterator[str]:
        yield f"rows={Note.select().count()};"
        yield f"in_use={h.in_use()};"

    @app.get("/stream")
    def stream() -> Any:
        return Response(body())

    @app.get("/stream-context")
    def stream_context() -> Any:
        Note.select().count()  # the view itself checks out; the body reuses it
        return Response(stream_with_context(body()))

    @app.get("/hold")
    def hold() -> Any:
        Note.select().count()
        h.held.set()
        if not h.release.wait(30):
            raise RuntimeError("test never released /hold")
        return {"ok": True}

    @app.cli.command("touch-db")
    @click.option("--fail", is_flag=True)
    def touch_db(fail: bool) -> None:
        click.echo(f"rows={Note.select().count()} in_use={h.in_use()}")
        if fail:
            raise click.ClickException("command failed")


def sqlite_url(path: Any) -> str:
    # No check_same_thread=false needed: PooledSqliteDatabase defaults to it.
    return f"sqlite:///{path}"


def sqlite_config(tmp_path: Any, **config: Any) -> dict[str, Any]:
    return {
        "PEEWEE_POOL_DATABASE": sqlite_url(tmp_path / "flask.sqlite3"),
        "PEEWEE_POOL_STATS_DIR": str(tmp_path / "stats"),
        "PEEWEE_POOL_TIMEOUT": 10,
        **config,
    }


def close_all(harnesses: list[Harness]) -> None:
    for h in harnesses:
        h.release.set()
        h.db.close_pool()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until a condition the test cannot be notified of (pool internals) holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start ``fn`` in a thread; its result (or exception) lands in the returned list."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out
