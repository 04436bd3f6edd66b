"""A database "restart" under load: every connection reset, new ones refused for 2 s.

The proxy first refuses new connections (each is reset right after accept, as a host
whose server process is down answers with RST), then resets every open connection, and
accepts again 2 s later. During the outage requests fail, and fast: with the pool's
error or the driver's, never a hang and never a wrong result. Within 2 s after the
database accepts again every request succeeds, the maintainer has refilled ``min_idle``,
and the server sees exactly the pool's connections.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import peewee
import pytest

from flask_peewee_pool import PoolError
from tests.faults.conftest import Load, Timeline, check_load, r3, settle, summary

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

MAX = 6
MIN_IDLE = 2
THREADS = 10
TIMEOUT = 2.0
DOWN = 2.0


#: What a request may see while the database is down: the pool's errors, or the driver's
#: (peewee wraps PyMySQL's into its own classes of the same names).
ALLOWED = (PoolError, peewee.OperationalError, peewee.InterfaceError, peewee.InternalError)


def test_restart_reset_and_refuse_for_2s(make_db: Any, proxy: Any, admin: Any, monitor: Any,
                                         figures: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="flask_peewee_pool")
    db = make_db(max_connections=MAX, min_idle=MIN_IDLE, timeout=TIMEOUT, connect_timeout=2,
                 max_backoff=1.0)
    t = Timeline()
    load = Load(db, THREADS).start()
    time.sleep(1.0)
    t.mark("down")
    proxy.refuse = True
    proxy.reset_all()
    time.sleep(DOWN)
    proxy.refuse = False
    t.mark("up")
    time.sleep(3.0)
    report = load.stop()
    check_load(report)

    # Errors are the pool's or the driver's (through peewee), never anything else.
    for r in report.errors():
        assert r.exc_type is not None and issubclass(r.exc_type, ALLOWED), (r.outcome, r.error)
    # Never a hang: no request longer than the checkout timeout (plus slack).
    assert report.longest() <= TIMEOUT + 0.5, report.longest()
    # Full recovery within 2 s of the database accepting again.
    last_error = report.last_error_end()
    recovery = 0.0 if last_error is None else max(0.0, last_error - t["up"])
    assert recovery < 2.0, (recovery, report.error_types(report.started_between(t["up"])))
    after = report.started_between(t["up"] + 2.0)
    assert after and all(r.outcome == "ok" for r in after)
    first_ok = min((r.end for r in report.ok() if r.start >= t["up"]), default=None)
    assert monitor.max_live <= MAX
    end = settle(db, admin)
    stats = db.pool.stats()
    assert stats.idle >= MIN_IDLE
    # The maintainer says once that the database went away and once that it is back.
    messages = [r.getMessage() for r in caplog.records if r.name == "flask_peewee_pool"]
    down = [m for m in messages if "database unreachable" in m]
    back = [m for m in messages if "reachable again" in m]
    assert len(down) <= 1 and len(back) == len(down), messages
    figures(
        outage_s=DOWN, errors_during_outage=report.error_types(
            report.started_between(t["down"], t["up"])),
        errors_after_up=report.error_types(report.started_between(t["up"])),
        first_success_after_up_s=r3(None if first_ok is None else first_ok - t["up"]),
        recovery_s=round(recovery, 3), connect_failures=stats.counters.connect_failures,
        retired_broken=stats.counters.retired_broken, server_max_live=monitor.max_live,
        refused_connects=proxy.refused, down_log_lines=len(down), back_log_lines=len(back),
        **summary(report), **end)

