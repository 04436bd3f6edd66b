"""What the real-worker tests run: one pooled MariaDB database and one job function.

Imported by the worker processes (Celery, RQ) and by the tests. Configured from the
environment so a worker started as a subprocess builds the same pool:
``FPP_JOBS_DB`` (database URL), ``FPP_JOBS_CAP`` (max_connections), ``FPP_JOBS_TIMEOUT``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import peewee

from flask_peewee_pool import connect

#: Initialised at import in a worker (``FPP_JOBS_DB`` set); left empty in pytest's process.
db = peewee.DatabaseProxy()
if os.environ.get("FPP_JOBS_DB"):
    db.initialize(connect(os.environ["FPP_JOBS_DB"],
                          max_connections=int(os.environ.get("FPP_JOBS_CAP", "4")),
                          timeout=float(os.environ.get("FPP_JOBS_TIMEOUT", "10")),
                          pool_name="fpp_jobs_worker"))


class Planned(Exception):
    """The failure every tenth job raises on purpose."""


def work(number: int) -> dict[str, Any]:
    """One job: a short query (lazy checkout), every tenth one raising after it."""
    t0 = time.monotonic()
    row = db.execute_sql("SELECT %s, SLEEP(0.005)", (number,)).fetchone()
    if number % 10 == 0:
        raise Planned(f"job {number} fails on purpose")
    return {"number": int(row[0]), "seconds": time.monotonic() - t0}


def pool_stats() -> dict[str, Any]:
    """The worker pool's stats, through the public stats API (uses no connection)."""
    return db.obj.pool.stats().as_dict()


def echo(number: int) -> int:
    """A quick query whose answer must be its own: proves the connection is in sync."""
    return int(db.execute_sql("SELECT %s", (number,)).fetchone()[0])


def slow(seconds: float) -> int:
    """A query the job's time limit interrupts while the server is still running it."""
    return int(db.execute_sql("SELECT SLEEP(%s)", (seconds,)).fetchone()[0])
