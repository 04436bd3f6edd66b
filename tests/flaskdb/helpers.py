"""Views and counters shared by the FlaskDB tests (SQLite and MariaDB)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import peewee
from flask import Flask, Response, abort

from flask_peewee_pool.ext import PeeweePoolState


def state(app: Flask) -> PeeweePoolState:
    return app.extensions["peewee_pool"]  # type: ignore[no-any-return]


def in_use(app: Flask) -> int:
    return state(app).stats().in_use


def checkouts(app: Flask) -> int:
    return state(app).stats().counters.checkouts


def add_views(app: Flask, Note: type[peewee.Model]) -> None:
    """The request shapes users' FlaskDB apps have, each returning what it saw."""
    db = Note._meta.database

    @app.get("/count")
    def count() -> Any:
        return {"count": Note.select().count()}

    @app.post("/insert")
    def insert() -> Any:
        return {"id": Note.create(text="committed").id}

    @app.get("/noop")
    def noop() -> Any:
        return {"ok": True}

    @app.get("/logout")
    def logout() -> Any:
        return {"ok": True}

    @app.get("/excluded-query")
    def excluded_query() -> Any:
        return {"count": Note.select().count()}

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
        return {"ok": True}

    def body() -> Iterator[str]:
        yield "rows="
        yield str(Note.select().count())

    @app.get("/stream")
    def stream() -> Any:
        return Response(body())


def make_note_model(base: type[peewee.Model], table: str = "fpp_flaskdb_note"
                    ) -> type[peewee.Model]:
    class Note(base):  # type: ignore[misc, valid-type]
        text = peewee.TextField()

        class Meta:
            table_name = table

    return Note


def create_table(app: Flask, Note: type[peewee.Model]) -> None:
    """Create Note's table in ``app``'s database (inside its app context)."""
    with app.app_context():
        Note._meta.database.drop_tables([Note], safe=True)
        Note._meta.database.create_tables([Note])
