"""Draining every process of an app: a request file in the stats directory, and its progress.

``pool.drain()`` replaces one process's connections. An app runs in many processes (gunicorn
workers) that share nothing but the stats directory their snapshot writers write to
(:mod:`.snapshots`), so that is where a drain is asked for:

* :func:`write_request` puts ``drain-<pool>.request`` there: JSON with a unique ``token``
  and the time, written atomically, owner-only (``0o600``). The name does not end in
  ``.json``, so snapshot readers never take it for a process.
* Each process's snapshot writer (a maintainer tick hook) holds a :class:`DrainWatcher`,
  which costs one ``os.stat`` per tick: only when the file's inode, mtime or size changed
  is it read. A new token makes the process call ``pool.drain()`` once and record
  ``{"token", "applied_at", "connections", "generation"}`` as ``drain`` in its snapshot,
  written at once.
* A request is ignored by a process (or pool) started after it: its connections are all
  newer anyway. One older than :data:`MAX_REQUEST_AGE` is ignored too, so a process whose
  pool sat unused for an hour does not drain for yesterday's fail-over.

**Done**, for one process (:func:`finished`): its snapshot (written after it applied the
token) shows the token applied, ``stats.generation`` at least the one the drain reached,
``stats.stale == 0`` (no open connection, idle or in use, of an older generation), and no
old connection still being closed: either as many ``retired_drained`` since the drain as
connections were open at it, or ``stats.closing == 0`` (some may have retired for another
reason, their lifetime say). A process started after the request is done by definition.
:func:`progress` decides it per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import time
from typing import Any

from ..core.pool import ConnectionPool
from ..core.redaction import redact_url

__all__ = ["MAX_REQUEST_AGE", "REQUEST_FORMAT", "DrainWatcher", "make_request", "progress",
           "read_request", "render_progress", "request_path", "write_request"]

logger = logging.getLogger("flask_peewee_pool")

#: Version of the request document; watchers ignore another one.
REQUEST_FORMAT = 1
#: A request older than this many seconds is ignored by the processes that see it.
MAX_REQUEST_AGE = 600.0
#: A request file bigger than this is not a request (nothing is read from it).
_MAX_REQUEST_BYTES = 4096


def request_path(stats_dir: str, pool_name: str) -> str:
    """``<stats_dir>/drain-<pool name reduced to [A-Za-z0-9._-]>.request``."""
    name = redact_url(pool_name) if "://" in pool_name else pool_name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:80] or "pool"
    return os.path.join(stats_dir, f"drain-{safe}.request")


def make_request(pool_name: str, app_name: str, *, now: float | None = None) -> dict[str, Any]:
    """A new request document: a unique token, the time, who asked."""
    return {
        "format": REQUEST_FORMAT,
        "token": secrets.token_hex(8),
        "requested_at": time.time() if now is None else now,
        "pool": pool_name,
        "app": app_name,
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
    }


def write_request(stats_dir: str, request: dict[str, Any]) -> str:
    """Write ``request`` atomically (``0o600``) into ``stats_dir``; returns the file's path."""
    from .snapshots import ensure_stats_dir, write_json_atomic  # snapshots imports us

    ensure_stats_dir(stats_dir)
    path = request_path(stats_dir, request["pool"])
    write_json_atomic(path, request)
    return path


def read_request(path: str) -> dict[str, Any] | None:
    """The request in ``path``, or None if there is none or it is not a valid one."""
    import json

    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_REQUEST_BYTES + 1)
        if len(raw) > _MAX_REQUEST_BYTES:
            return None
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != REQUEST_FORMAT
        or not isinstance(doc.get("token"), str)
        or not doc["token"]
        or not isinstance(doc.get("requested_at"), (int, float))
        or isinstance(doc.get("requested_at"), bool)
    ):
        return None
    return doc


class DrainWatcher:
    """One process's view of its pool's request file; :meth:`poll` is called every tick.

    ``started_at`` (wall clock) is when this process's pool began: a request older than
    that is not for it. Not thread-safe: one maintainer thread polls it.
    """

    def __init__(self, stats_dir: str, pool_name: str, app_name: str, *,
                 started_at: float) -> None:
        self.path = request_path(stats_dir, pool_name)
        self.app_name = app_name
        self.started_at = started_at
        #: The drain this process applied last: token, applied_at, connections, generation.
        self.applied: dict[str, Any] | None = None
        self._seen: tuple[int, int, int] | None = None

    def after_fork(self, started_at: float) -> None:
        """In a forked child: a new process whose connections are all new."""
        self.started_at = started_at
        self.applied = None
        self._seen = None

    def poll(self, pool: ConnectionPool, now: float | None = None) -> bool:
        """Apply a new request to ``pool``; True if this call drained it.

        One ``os.stat`` when nothing changed. Raises OSError only for an unreadable
        directory (the caller logs it); a missing file is no request.
        """
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            self._seen = None
            return False
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return False
        self._seen = key
        request = read_request(self.path)
        if request is None:
            return False
        token = request["token"]
        if self.applied is not None and self.applied["token"] == token:
            return False
        if request.get("app") not in (None, self.app_name):
            return False
        now = time.time() if now is None else now
        requested_at = float(request["requested_at"])
        if requested_at < self.started_at:
            logger.debug("drain request %s predates this pool; ignored", token)
            return False
        if now - requested_at > MAX_REQUEST_AGE:
            logger.info("drain request %s is %.0f s old (limit %.0f s); ignored", token,
                        now - requested_at, MAX_REQUEST_AGE)
            return False
        connections = pool.drain()
        stats = pool.stats()
        self.applied = {
            "token": token,
            "requested_at": requested_at,
            "applied_at": now,
            "connections": connections,
            "generation": stats.generation,
            "retired_drained": stats.counters.retired_drained,
        }
        logger.info("pool %r drained on request %s: %d connection(s) to replace",
                    pool.name, token, connections)
        return True


# ----------------------------------------------------------------------------- progress


def replaced(stats: dict[str, Any], applied: dict[str, Any]) -> int:
    """Connections retired by drains since ``applied`` (from a snapshot's ``stats``)."""
    counters = stats.get("counters") or {}
    return max(0, int(counters.get("retired_drained") or 0)
               - int(applied.get("retired_drained") or 0))


def finished(stats: dict[str, Any], applied: dict[str, Any]) -> bool:
    """True if the drain ``applied`` left no old connection, by ``stats`` (a snapshot's
    ``stats`` document, i.e. ``PoolStats.as_dict()``): see the module docstring."""
    if int(stats.get("generation") or 0) < int(applied.get("generation") or 0):
        return False
    if int(stats.get("stale") or 0):
        return False
    return (replaced(stats, applied) >= int(applied.get("connections") or 0)
            or not int(stats.get("closing") or 0))


def process_status(snap: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """One process's row: ``status`` is ``done``, ``new`` (started after the request),
    ``draining`` (token applied, old connections left) or ``pending`` (not yet seen)."""
    stats = snap.get("stats") or {}
    applied = snap.get("drain") or {}
    mine = applied.get("token") == request["token"]
    started_at = float(snap.get("started_at") or 0.0)
    if mine:
        status = "done" if finished(stats, applied) else "draining"
    elif started_at > float(request["requested_at"]):
        status = "new"
    else:
        status = "pending"
    return {
        "pid": snap["pid"],
        "hostname": snap.get("hostname"),
        "pool": snap.get("pool"),
        "status": status,
        "connections": int(applied.get("connections") or 0) if mine else None,
        "replaced": replaced(stats, applied) if mine else None,
        "stale": int(stats.get("stale") or 0) if mine else None,
        "in_use": int(stats.get("in_use") or 0),
        "idle": int(stats.get("idle") or 0),
        "closing": int(stats.get("closing") or 0),
        "generation": int(stats.get("generation") or 0),
    }


def progress(snaps: list[dict[str, Any]], request: dict[str, Any]) -> dict[str, Any]:
    """The drain's state across ``snaps`` (the live processes of the request's pool)."""
    rows = [process_status(s, request) for s in snaps
            if s.get("pool") == request["pool"]
            and request.get("app") in (None, s.get("app"))]
    done = all(r["status"] in ("done", "new") for r in rows)
    return {"token": request["token"], "requested_at": request["requested_at"],
            "pool": request["pool"], "app": request.get("app"), "processes": rows,
            "done": done}


_STATUS_TEXT = {"done": "drained", "new": "new (started after)", "draining": "draining",
                "pending": "not seen yet"}


def render_progress(doc: dict[str, Any]) -> list[str]:
    """The per-process table of a :func:`progress` document."""
    from .format import table

    rows = doc["processes"]
    hosts = len({r["hostname"] for r in rows}) > 1
    heads = ["PID"] + (["HOST"] if hosts else []) + [
        "STATUS", "OPEN AT DRAIN", "REPLACED", "OLD LEFT", "IN USE", "IDLE", "CLOSING",
        "DRAINS"]

    def cell(value: Any) -> str:
        return "-" if value is None else str(value)

    cells = []
    for r in rows:
        ident = [str(r["pid"])] + ([str(r["hostname"])] if hosts else [])
        cells.append([*ident, _STATUS_TEXT[r["status"]],
                      *(cell(r[k]) for k in ("connections", "replaced", "stale", "in_use",
                                             "idle", "closing", "generation"))])
    left = frozenset(range(len(heads) - 7))
    return table(heads, cells, left)


def remove_request(path: str) -> None:
    """Delete a request file (tests; a request also expires by itself)."""
    with contextlib.suppress(OSError):
        os.unlink(path)
