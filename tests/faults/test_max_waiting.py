"""``max_waiting`` under a stall: excess requests are rejected at once, not queued.

The network black-holes while four threads hold the pool's four connections in a query and
two more wait for one (``max_waiting=2``). Every further request must be rejected with
:class:`PoolExhausted` (peewee: ``CheckoutRejected``, also playhouse's
``MaxConnectionsExceeded``) *at once*: measured here as under 50 ms, one at a time and in a
burst of concurrent requests. Once the network is back the pool serves everyone again.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from playhouse.pool import MaxConnectionsExceeded

from flask_peewee_pool import CheckoutRejected, PoolExhausted
from tests.faults.conftest import Load, check_load, clock, settle, summary

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

MAX = 4
MAX_WAITING = 2
AT_ONCE = 0.050


def _attempt(db: Any) -> tuple[float, BaseException | None]:
    t0 = clock()
    try:
        db.connect()
    except Exception as exc:
        return clock() - t0, exc
    db.close()
    return clock() - t0, None


def test_max_waiting_rejects_at_once_under_a_stall(make_db: Any, proxy: Any, admin: Any,
                                                   monitor: Any, figures: Any) -> None:
    db = make_db(max_connections=MAX, max_waiting=MAX_WAITING, timeout=10)
    load = Load(db, MAX + MAX_WAITING).start()
    time.sleep(0.5)
    proxy.blackhole()
    deadline = clock() + 5
    while clock() < deadline:
        stats = db.pool.stats()
        if stats.in_use == MAX and stats.waiting == MAX_WAITING:
            break
        time.sleep(0.005)
    else:
        raise AssertionError(f"the stall did not fill the pool and its queue: {stats}")

    # One at a time.
    sequential = [_attempt(db) for _ in range(20)]
    # A burst: 10 threads at once.
    barrier = threading.Barrier(10)
    burst: list[tuple[float, BaseException | None]] = []

    def one() -> None:
        barrier.wait()
        burst.append(_attempt(db))

    threads = [threading.Thread(target=one) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    stats = db.pool.stats()
    proxy.restore()
    time.sleep(1.0)
    report = load.stop()
    check_load(report)

    for _, exc in sequential + burst:
        assert isinstance(exc, CheckoutRejected), exc
        assert isinstance(exc, PoolExhausted) and isinstance(exc, MaxConnectionsExceeded)
        assert "max_waiting=2" in str(exc)
    worst_sequential = max(e for e, _ in sequential)
    worst_burst = max(e for e, _ in burst)
    assert worst_sequential < AT_ONCE, worst_sequential
    assert worst_burst < AT_ONCE, worst_burst
    assert stats.counters.rejected == 30
    assert monitor.max_live <= MAX
    end = settle(db, admin)
    figures(
        max_connections=MAX, max_waiting=MAX_WAITING, rejected=len(sequential) + len(burst),
        worst_rejection_sequential_ms=round(worst_sequential * 1000, 2),
        median_rejection_sequential_ms=round(
            sorted(e for e, _ in sequential)[len(sequential) // 2] * 1000, 2),
        worst_rejection_burst_of_10_ms=round(worst_burst * 1000, 2),
        server_max_live=monitor.max_live, **summary(report), **end)
