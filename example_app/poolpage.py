"""The live pool page: ``/pool`` (HTML) and ``/pool/data`` (JSON it polls).

Cheap enough to leave on: ``/pool/data`` takes no database connection (the extension checks
out lazily, at the first query, and this view makes none); it reads this process's pool
through the public stats API (``pool.stats()``) and every other worker process's through the
snapshot files they already write for ``flask pool-stats`` (a directory listing and a few
small JSON files). The page polls it every ``POOL_PAGE_POLL`` seconds (config key;
``FLASK_POOL_PAGE_POLL`` in the environment; never below 1 s) and keeps the history in the
browser, so the server stores nothing. The chart is an
inline SVG drawn by a few lines of the page's own script: no CDN, no library.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Blueprint, current_app, render_template
from flask.typing import ResponseReturnValue

from flask_peewee_pool.snapshots import read_snapshots, stats_dir_of

from .models import pool

bp = Blueprint("poolpage", __name__)

#: Seconds between two polls of the page (at least 1) and of history it keeps.
MIN_POLL = 1.0
DEFAULT_POLL = 2.0
HISTORY_SECONDS = 300


def _poll_seconds() -> float:
    value = current_app.config.get("POOL_PAGE_POLL", DEFAULT_POLL)
    try:
        return max(MIN_POLL, float(value))
    except (TypeError, ValueError):
        return DEFAULT_POLL


def _process(stats: dict[str, Any], *, pid: int, host: str | None, age: float,
             this: bool) -> dict[str, Any]:
    counters = stats.get("counters", {})
    wait = stats.get("checkout_wait", {})
    return {
        "pid": pid, "host": host, "this": this, "age": round(age, 1),
        "max_connections": stats.get("max_connections", 0),
        "size": stats.get("size", 0), "idle": stats.get("idle", 0),
        "in_use": stats.get("in_use", 0), "opening": stats.get("opening", 0),
        "waiting": stats.get("waiting", 0),
        "wait_p50_ms": round(1000 * wait.get("p50", 0.0), 3),
        "wait_p99_ms": round(1000 * wait.get("p99", 0.0), 3),
        "checkouts": counters.get("checkouts", 0),
        "connects": counters.get("connects", 0),
        "connect_failures": counters.get("connect_failures", 0),
        "retired": {reason: counters.get(f"retired_{reason}", 0)
                    for reason in ("lifetime", "idle", "broken")},
        "timeouts": counters.get("timeouts", 0),
        "database_down": bool(stats.get("database_down", False)),
    }


def _total(processes: list[dict[str, Any]]) -> dict[str, Any]:
    summed = ("max_connections", "size", "idle", "in_use", "opening", "waiting",
              "checkouts", "connects", "connect_failures", "timeouts")
    total: dict[str, Any] = {key: sum(p[key] for p in processes) for key in summed}
    total["retired"] = {reason: sum(p["retired"][reason] for p in processes)
                        for reason in ("lifetime", "idle", "broken")}
    # Percentiles do not add up: the worst process's is the honest summary.
    total["wait_p50_ms"] = max((p["wait_p50_ms"] for p in processes), default=0.0)
    total["wait_p99_ms"] = max((p["wait_p99_ms"] for p in processes), default=0.0)
    total["database_down"] = any(p["database_down"] for p in processes)
    return total


def collect() -> dict[str, Any]:
    """Every worker process's pool: this one live, the others from their snapshots."""
    state = pool.get_state()
    now = time.time()
    me = os.getpid()
    stats_dir = stats_dir_of(state)
    processes = [_process(pool.stats().as_dict(), pid=me, host=None, age=0.0, this=True)]
    for snap in read_snapshots(stats_dir):
        if snap.get("pid") == me or snap.get("pool") != state.database.pool.name:
            continue
        processes.append(_process(snap.get("stats", {}), pid=int(snap["pid"]),
                                  host=snap.get("hostname"),
                                  age=max(0.0, now - float(snap.get("written_at", now))),
                                  this=False))
    processes.sort(key=lambda p: p["pid"])
    return {"time": now, "poll_seconds": _poll_seconds(), "history_seconds": HISTORY_SECONDS,
            "stats_dir": stats_dir, "processes": processes, "total": _total(processes)}


@bp.get("/pool/data")
def data() -> ResponseReturnValue:
    return collect(), 200, {"Cache-Control": "no-store"}


@bp.get("/pool")
def page() -> ResponseReturnValue:
    state = pool.get_state()
    return render_template("pool.html", poll_seconds=_poll_seconds(),
                           history_seconds=HISTORY_SECONDS, stats_dir=stats_dir_of(state),
                           interval=state.stats_interval, pool_name=state.database.pool.name)
