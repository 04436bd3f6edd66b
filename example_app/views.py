"""Routes: a JSON API for notes, a health check, and one HTML page."""

from __future__ import annotations

from typing import Any

import peewee
from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from flask_peewee_pool import PoolError

from .models import Note, pool

bp = Blueprint("notes", __name__)

MAX_TEXT = 1000


def _clean_text(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        return None
    return value.strip()


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    # A real round trip: a readiness probe must fail when the database does, and say so
    # in JSON with a 503 (not an HTML 500): load balancers and people read it.
    try:
        pool.database.execute_sql("SELECT 1")
    except (peewee.OperationalError, peewee.InterfaceError, PoolError) as exc:
        stats = pool.stats()
        return {
            "status": "unavailable",
            # Pool errors name the pool and the database, never a password.
            "error": f"{type(exc).__name__}: {exc}"[:500],
            "pool": {"size": stats.size, "in_use": stats.in_use, "waiting": stats.waiting,
                     "database_down": stats.database_down},
        }, 503, {"Retry-After": "5"}
    stats = pool.stats()
    return {
        "status": "ok",
        "pool": {"size": stats.size, "idle": stats.idle, "in_use": stats.in_use,
                 "waiting": stats.waiting, "max_connections": stats.max_connections},
    }


@bp.get("/api/notes")
def list_notes() -> ResponseReturnValue:
    return {"notes": [note.to_dict() for note in Note.select().order_by(Note.id.desc())]}


@bp.post("/api/notes")
def create_note() -> ResponseReturnValue:
    payload = request.get_json(silent=True) or {}
    text = _clean_text(payload.get("text"))
    if text is None:
        return {"error": f"'text' must be a non-empty string of at most {MAX_TEXT} "
                         "characters"}, 400
    note = Note.create(text=text)
    return note.to_dict(), 201, {"Location": url_for(".get_note", note_id=note.id)}


@bp.get("/api/notes/<int:note_id>")
def get_note(note_id: int) -> ResponseReturnValue:
    note = Note.get_or_none(Note.id == note_id)
    if note is None:
        return {"error": "not found"}, 404
    return note.to_dict()


@bp.delete("/api/notes/<int:note_id>")
def delete_note(note_id: int) -> ResponseReturnValue:
    if not Note.delete().where(Note.id == note_id).execute():
        return {"error": "not found"}, 404
    return "", 204


@bp.route("/", methods=["GET", "POST"])
def index() -> ResponseReturnValue:
    error = None
    if request.method == "POST":
        text = _clean_text(request.form.get("text"))
        if text is not None:
            Note.create(text=text)
            return redirect(url_for(".index"), 303)  # post/redirect/get
        error = f"Write something (at most {MAX_TEXT} characters)."
    notes = Note.select().order_by(Note.id.desc())
    return render_template("index.html", notes=notes, error=error), 400 if error else 200
