"""The network to the database black-holed for 5 s under load (``timeout=1``).

Nothing is forwarded and nothing is refused: packets vanish, as in a partition. Four
connections, ten threads, so the pool is full when the blackhole starts: the requests that
hold a connection are stuck in their query; every other one waits for a connection and
must get :class:`PoolTimeout` (peewee: ``CheckoutTimeout``) after ``timeout``, never later.

* PyMySQL's default ``read_timeout`` is None: a query stuck in the blackhole waits until the
  network comes back (here 5 s; for ever, in a partition that lasts).
* With ``read_timeout=2`` (connect argument; Flask: ``PEEWEE_POOL_CONNECT_ARGS``) the stuck
  queries fail after 2 s and their connections are discarded.

Either way the pool recovers by itself once the network is back, and the server never sees
more sessions than ``max_connections`` from the pool.

Finding F3 (docs/reliability.md), fixed: a checkout that has to *connect* or *ping* during
a blackhole is bounded by what is left of its ``timeout``, and PyMySQL's handshake and ping
by ``connect_timeout`` (PyMySQL alone reads them with ``read_timeout``, None: for ever, and
bounds only the TCP connect). One edge remains: a waiter handed a free slot at its deadline
connects with nothing left, bounded by ``connect_timeout`` alone, so up to
``timeout + connect_timeout``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from flask_peewee_pool import CheckoutTimeout
from tests.faults.conftest import Load, Timeline, check_load, clock, r3, settle, summary

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

MAX = 4
THREADS = 10
TIMEOUT = 1.0
BLACKHOLE = 5.0
SLACK = 0.3


@pytest.mark.parametrize("read_timeout", [None, 2.0], ids=["no-read-timeout", "read-timeout-2s"])
def test_blackhole_5s_under_load(make_db: Any, proxy: Any, admin: Any, monitor: Any,
                                 figures: Any, read_timeout: float | None) -> None:
    extra = {} if read_timeout is None else {"read_timeout": read_timeout,
                                              "write_timeout": read_timeout}
    db = make_db(max_connections=MAX, timeout=TIMEOUT, connect_timeout=1, **extra)
    t = Timeline()
    load = Load(db, THREADS).start()
    time.sleep(1.0)
    t.mark("blackhole")
    proxy.blackhole()
    time.sleep(BLACKHOLE)
    proxy.restore()
    t.mark("restore")
    time.sleep(2.5)
    report = load.stop()
    check_load(report)

    timeouts = [r for r in report.requests if r.outcome == "CheckoutTimeout"]
    assert timeouts, "nobody waited for a connection"
    assert all(r.exc_type is not None and issubclass(r.exc_type, CheckoutTimeout)
               for r in timeouts)
    longest_timeout = max(r.duration for r in timeouts)
    # Threads beyond those stuck in a query get PoolTimeout within timeout + 0.3 s.
    assert longest_timeout <= TIMEOUT + SLACK, longest_timeout

    # Requests longer than timeout + slack: either stuck in their query (they had a
    # connection when the network went away), or a checkout handed a slot (freed by a read
    # timeout) at its deadline, then connecting through the blackhole up to connect_timeout.
    bound = TIMEOUT + SLACK
    long_requests = [r for r in report.requests if r.duration > bound]
    in_query = [r for r in long_requests
                if r.checkout_time is not None and r.checkout_time <= bound]
    stuck_checkout = [r for r in long_requests
                      if (r.checkout_time is None and r.outcome != "CheckoutTimeout")
                      or (r.checkout_time is not None and r.checkout_time > bound)]
    unexplained = [r for r in long_requests if r not in in_query and r not in stuck_checkout]
    assert unexplained == [], [(r.outcome, r.phase, r3(r.checkout_time),
                                r3(r.start - t["blackhole"]), r3(r.duration), r.error)
                               for r in unexplained]
    assert 1 <= len(in_query) <= MAX
    assert all(r.start < t["blackhole"] + 0.1 for r in in_query)
    longest_stuck = max(r.duration for r in in_query)
    if read_timeout is None:
        # They wait for the network and complete, correctly, once it is back. The pool
        # stays full meanwhile: nobody has to connect, so no checkout is stuck.
        assert all(r.outcome == "ok" for r in in_query), [r.error for r in in_query]
        assert longest_stuck >= BLACKHOLE - 0.5
        assert stuck_checkout == []
    else:
        # They end at the read timeout, with the driver's error; the checkouts that then
        # connect through the blackhole fail within what is left of their timeout, or, given
        # the slot at their deadline, within connect_timeout (1 s) more.
        assert all(r.outcome == "OperationalError" for r in in_query), [r.error for r in in_query]
        assert longest_stuck <= read_timeout + SLACK
        assert all(r.duration <= TIMEOUT + read_timeout + SLACK for r in stuck_checkout)

    # The pool recovers by itself: every request that starts 1 s after the restore succeeds.
    after = report.started_between(t["restore"] + 1.0)
    assert after and all(r.outcome == "ok" for r in after), report.error_types(after)
    last_error = max((r.end for r in report.errors() if r.start >= t["blackhole"]), default=None)
    recovery = 0.0 if last_error is None else max(0.0, last_error - t["restore"])
    first_ok = min((r.end for r in report.ok() if r.end > t["restore"]), default=None)
    assert monitor.max_live <= MAX, monitor.max_live
    end = settle(db, admin)
    figures(
        read_timeout=read_timeout, blackhole_s=BLACKHOLE, timeout=TIMEOUT,
        pool_timeouts=len(timeouts), longest_pool_timeout_s=round(longest_timeout, 3),
        stuck_in_query=len(in_query), longest_stuck_query_s=round(longest_stuck, 3),
        stuck_query_outcomes=report.error_types(in_query) or {"ok": len(in_query)},
        checkouts_stuck_connecting=len(stuck_checkout),
        stuck_checkout_outcomes=report.error_types(stuck_checkout),
        longest_stuck_checkout_s=r3(max((r.duration for r in stuck_checkout), default=None)),
        errors_during_blackhole=report.error_types(
            report.started_between(t["blackhole"], t["restore"])),
        first_success_after_restore_s=r3(None if first_ok is None else first_ok - t["restore"]),
        recovery_s=round(recovery, 3), server_max_live=monitor.max_live,
        **summary(report), **end)


def _timed_checkout(db: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        t0 = clock()
        try:
            conn = db.pool.checkout()
        except Exception as exc:
            result["error"] = type(exc).__name__
        else:
            result["ok"] = True
            db.pool.checkin(conn)
        result["elapsed"] = clock() - t0

    thread = threading.Thread(target=run, name="timed-checkout", daemon=True)
    thread.start()
    return thread, result


def _bounded(db: Any, proxy: Any, figures: Any, what: str) -> None:
    proxy.blackhole()
    try:
        thread, result = _timed_checkout(db)
        thread.join(TIMEOUT + 2.0)  # long enough to tell "bounded" from "waits for ever"
    finally:
        proxy.restore()
    thread.join(10)
    figures(what=what, timeout=TIMEOUT, connect_timeout=1, **result)
    assert result["elapsed"] <= TIMEOUT + SLACK, result


def test_checkout_that_connects_during_a_blackhole_is_bounded_by_timeout(
        make_db: Any, proxy: Any, figures: Any) -> None:
    db = make_db(max_connections=2, timeout=TIMEOUT, connect_timeout=1)
    _bounded(db, proxy, figures, "connect during blackhole")


def test_checkout_that_pings_during_a_blackhole_is_bounded_by_timeout(
        make_db: Any, proxy: Any, figures: Any) -> None:
    db = make_db(max_connections=1, timeout=TIMEOUT, connect_timeout=1, ping_after=0)
    conn = db.pool.checkout()
    db.pool.checkin(conn)
    _bounded(db, proxy, figures, "ping during blackhole")
