"""Every server session of the pool killed (``KILL CONNECTION``) under load.

A request that starts after the kill must not fail: the pool has to notice that the
connection it is about to hand out is dead. Two shapes of the same fault:

* *continuous*: the kill lands while every thread is busy. The requests running at that
  moment fail (their query was cut: the driver's error); each dead connection is found by
  exactly one of them, so the requests that start later find none.
* *lull*: the kill lands in a pause of the traffic shorter than ``ping_after`` (a
  database restart or failover between two bursts). Every idle connection is dead, and the
  next requests are the first to touch them.

With ``ping_after=0`` the pool pings every connection at checkout: no request that starts
after the kill fails, in either shape. With the default ``ping_after=1`` a connection used
less than a second ago is handed out without a round trip, but not unchecked: a
zero-timeout poll of its socket sees the EOF the server sent (finding F1 in
docs/reliability.md), so after a lull no request fails either.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.faults.conftest import Load, Timeline, check_load, settle, summary

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

MAX = 6
THREADS = 10
#: Errors a request already running at the kill may see: the driver's, through peewee.
DRIVER_ERRORS = {"OperationalError", "InterfaceError", "InternalError"}


def run_kill(db: Any, admin: Any, *, lull: bool) -> tuple[Any, Timeline, float, list[int]]:
    t = Timeline()
    load = Load(db, THREADS).start()
    time.sleep(1.0)
    if lull:
        load.pause()
        time.sleep(0.05)
    t.mark("kill")
    killed = admin.kill_all()
    gone_after = admin.wait_gone(killed)
    t.mark("gone")  # every killed session has left the server: "after the kill"
    if lull:
        load.resume()
    time.sleep(1.5)
    return load.stop(), t, gone_after, killed


@pytest.mark.parametrize("lull", [False, True], ids=["continuous", "lull"])
def test_kill_all_with_ping_at_every_checkout(
        make_db: Any, admin: Any, monitor: Any, figures: Any, lull: bool) -> None:
    db = make_db(max_connections=MAX, ping_after=0, timeout=5)
    report, t, gone_after, killed = run_kill(db, admin, lull=lull)
    check_load(report)
    before = report.started_between(0, t["kill"])
    during = report.started_between(t["kill"], t["gone"])
    after = report.started_between(t["gone"])
    assert killed
    assert after and all(r.outcome == "ok" for r in after), report.error_types(after)
    assert set(report.error_types()) <= DRIVER_ERRORS, report.error_types()
    assert monitor.max_live <= MAX
    end = settle(db, admin)
    stats = db.pool.stats()
    figures(
        killed=len(killed), kill_to_sessions_gone_s=round(gone_after, 3),
        errors_started_before_kill=report.error_types(before),
        errors_started_during_kill=report.error_types(during),
        errors_started_after_kill=report.error_types(after),
        requests_after_kill=len(after), ping_failures=stats.counters.ping_failures,
        server_max_live=monitor.max_live, server_max_incl_killed=monitor.max_all,
        **summary(report), **end)


def test_kill_in_a_lull_default_settings_requests_after_the_kill_see_no_error(
        make_db: Any, admin: Any, monitor: Any, figures: Any) -> None:
    # Direct to the server (no proxy): the kernel has delivered the server's FIN to the
    # client socket before the session leaves the processlist, so "after" is exact.
    db = make_db(direct=True, max_connections=MAX, timeout=5)
    report, t, _, killed = run_kill(db, admin, lull=True)
    check_load(report)
    after = report.started_between(t["gone"])
    figures(defaults=True, killed=len(killed),
            errors_started_after_kill=report.error_types(after),
            requests_after_kill=len(after),
            ping_failures=db.pool.stats().counters.ping_failures,
            server_max_live=monitor.max_live, **summary(report))
    settle(db, admin)
    assert monitor.max_live <= MAX
    assert after and all(r.outcome == "ok" for r in after), report.error_types(after)
