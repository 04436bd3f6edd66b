"""close(), fork (simulated), and the stats() gauges."""

from __future__ import annotations

import threading

import pytest

from flask_peewee_pool.core.errors import CheckinError, PoolClosed
from flask_peewee_pool.core.pool import CLOSED
from flask_peewee_pool.core.stats import Counters
from tests.unit.fakes import (
    InstrumentedLock,
    check_accounting,
    gauges,
    give,
    join_all,
    start,
    take,
    wait_waiting,
)

# --------------------------------------------------------------------------- close


def test_close_closes_idle_connections(new_pool, driver, quiet):
    pool = new_pool(**quiet)
    conns = [take(pool) for _ in range(3)]
    for conn in conns:
        give(pool, conn)
    pool.close()
    assert all(c.raw.closed for c in conns)
    assert all(c.state == CLOSED for c in conns)
    s = pool.stats()
    assert s.closed and s.size == 0 and s.idle == 0
    assert pool.closed


def test_checkout_after_close_raises_pool_closed(new_pool, quiet):
    pool = new_pool(**quiet)
    pool.close()
    with pytest.raises(PoolClosed):
        pool.checkout()
    pool.close()  # idempotent


def test_close_wakes_waiters_with_pool_closed(new_pool, quiet):
    pool = new_pool(max_connections=1, timeout=30, **quiet)
    held = take(pool)
    waiters = [start(lambda: take(pool), f"waiter-{i}") for i in range(3)]
    wait_waiting(pool, 3)
    pool.close()
    for waiter in waiters:
        with pytest.raises(PoolClosed):
            waiter.get()
    assert pool.stats().waiting == 0
    give(pool, held)


def test_in_use_connection_is_closed_when_returned_after_close(new_pool, driver, quiet):
    pool = new_pool(**quiet)
    held = take(pool)
    idle = take(pool)
    give(pool, idle)
    pool.close()
    assert idle.raw.closed and not held.raw.closed
    assert pool.stats().size == 1
    give(pool, held)
    assert held.raw.closed
    assert pool.stats().size == 0
    assert driver.open_connections() == []


def test_dirty_connection_returned_after_close_is_closed_not_rolled_back_forever(
        new_pool, driver, quiet):
    pool = new_pool(**quiet)
    held = take(pool)
    pool.close()
    held.raw.in_transaction = True
    give(pool, held)
    assert held.raw.closed and pool.stats().size == 0


def test_close_during_a_connect_closes_the_new_connection(new_pool, driver, quiet):
    pool = new_pool(timeout=30, **quiet)
    gate = driver.block("connect")
    a = start(lambda: take(pool), "A")
    gate.wait_entered()
    pool.close()
    gate.release()
    with pytest.raises(PoolClosed):
        a.get()
    assert pool.stats().size == 0
    assert driver.open_connections() == []


def test_close_stops_and_the_maintainer_does_nothing_after(new_pool, driver, clock):
    pool = new_pool(min_idle=2, max_lifetime=None, idle_timeout=None, keepalive=None)
    pool.close()
    pool.maintainer.tick(clock.now)
    assert driver.calls["connect"] == 0


def test_keepalive_in_flight_during_close_does_not_leak(new_pool, driver, clock, quiet):
    quiet["keepalive"] = 10.0
    pool = new_pool(**quiet)
    conn = take(pool)
    give(pool, conn)
    clock.advance(11.0)
    gate = driver.block("ping")
    m = start(lambda: pool.maintainer.tick(clock.now), "maintainer-job")
    gate.wait_entered()
    pool.close()  # the keepalive job is still pinging
    gate.release()
    m.get()
    assert conn.raw.closed
    assert pool.stats().size == 0


# --------------------------------------------------------------------------- fork


def test_after_fork_child_drops_everything_without_closing(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=5, **quiet)
    a, b, c, d = (take(pool) for _ in range(4))
    give(pool, a)
    give(pool, b)
    give(pool, d, broken=True)  # retiring, not yet closed
    old_maintainer = pool.maintainer
    pool._after_fork_in_child()
    assert driver.calls["close"] == 0, "never close the parent's sessions"
    assert driver.calls["discard"] == 4
    assert all(x.raw.discarded for x in (a, b, c, d))
    assert all(x.state == CLOSED for x in (a, b, c, d))
    s = pool.stats()
    assert (s.size, s.idle, s.in_use, s.opening, s.closing, s.waiting) == (0, 0, 0, 0, 0, 0)
    assert s.counters == Counters()
    assert pool.maintainer is not old_maintainer
    assert all(isinstance(seg.lock, InstrumentedLock) for seg in pool._segments)
    assert isinstance(pool._waiters_lock, InstrumentedLock)
    # The child's pool works: new connections, the cap intact.
    conns = [take(pool) for _ in range(5)]
    assert all(not x.raw.discarded for x in conns)
    assert driver.calls["connect"] == 9
    for conn in conns:
        give(pool, conn)
    check_accounting(pool)
    # A thread returning an inherited connection changes nothing.
    before = gauges(pool)
    with pytest.raises(CheckinError):
        pool.checkin(c)
    assert gauges(pool) == before
    assert driver.calls["close"] == 0


def test_after_fork_a_kept_home_moves_to_the_new_segments(new_pool, driver, quiet):
    """A caller that keeps its home (the peewee layer, per holder) across a fork never
    gets the parent's connection back from the old segment's idle stack: the rebuild
    closes the old segments and the home's next checkout moves it to a new one."""
    pool = new_pool(max_connections=2, **quiet)
    home = pool.home()
    parents = home.checkout()
    home.checkin(parents)  # idle on top of the home segment
    old_segment = home.segment
    pool._after_fork_in_child()
    assert not old_segment.open and not old_segment.current
    conn = home.checkout()
    assert conn is not parents and not conn.raw.discarded
    assert conn.segment in pool._segments and home.segment in pool._segments
    assert home.segment is pool._home_record().segment
    home.checkin(conn)
    assert home.checkout() is conn, "the home's fast path works again"
    home.checkin(conn)
    check_accounting(pool)
    assert parents in old_segment.idle, "the parent's connection was never handed out"


def test_a_kept_home_of_a_closed_pool_raises_pool_closed(new_pool, quiet):
    pool = new_pool(max_connections=2, **quiet)
    home = pool.home()
    home.checkin(home.checkout())
    pool.close()
    with pytest.raises(PoolClosed):
        home.checkout()
    with pytest.raises(PoolClosed):
        pool.home()


def test_after_fork_a_closed_pool_stays_closed(new_pool):
    pool = new_pool()
    pool.close()
    pool._after_fork_in_child()
    with pytest.raises(PoolClosed):
        pool.checkout()


def test_after_fork_waits_are_not_inherited(new_pool, quiet):
    pool = new_pool(max_connections=1, timeout=0.05, **quiet)
    take(pool)
    pool._after_fork_in_child()
    assert pool.stats().waiting == 0
    conn = take(pool)  # the inherited in-use connection no longer counts
    give(pool, conn)


def test_after_fork_discards_connections_the_maintainer_was_working_on(new_pool, driver, quiet):
    pool = new_pool(**quiet)
    a, b = take(pool), take(pool)
    give(pool, a)
    give(pool, b)
    # The maintainer thread had withdrawn `a` for a keepalive ping when the fork happened.
    withdrawn = pool._withdraw_idle(lambda conn: conn is a, 1)
    assert withdrawn == [a]
    pool._after_fork_in_child()
    assert b.raw.discarded
    assert a.raw.discarded


# --------------------------------------------------------------------------- stats


def test_stats_gauges_add_up_in_every_state(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=6, segments=2, timeout=30, **quiet)
    in_use, idle, retiring = take(pool), take(pool), take(pool)
    give(pool, retiring, broken=True)
    gate = driver.block("connect", lambda raw: threading.current_thread().name == "opener")
    opener = start(lambda: take(pool), "opener")
    gate.wait_entered()
    give(pool, idle)
    s = pool.stats()
    assert (s.size, s.idle, s.in_use, s.opening, s.closing) == (4, 1, 1, 1, 1)
    assert s.size == s.idle + s.in_use + s.opening + s.closing
    check_accounting(pool)
    gate.release()
    opened = opener.get()
    pool.maintainer.tick(clock.now)
    s = pool.stats()
    assert (s.size, s.idle, s.in_use, s.opening, s.closing) == (3, 1, 2, 0, 0)
    c = s.counters
    assert (c.checkouts, c.connects, c.closed, c.retired_broken) == (4, 4, 1, 1)
    assert s.connect_time["count"] == 4
    assert s.usage_time["count"] == 2
    assert s.checkout_wait["count"] == 4
    assert s.name == "pool" and s.max_connections == 6 and s.segments == 2
    assert not s.closed and not s.database_down
    as_dict = s.as_dict()
    assert as_dict["counters"]["checkouts"] == 4 and as_dict["size"] == 3
    give(pool, opened)
    give(pool, in_use)


def test_stats_under_concurrency_always_add_up(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=4, segments=2, timeout=30, **quiet)
    stop = threading.Event()
    barrier = threading.Barrier(9)

    def work():
        barrier.wait()
        while not stop.is_set():
            conn = take(pool)
            give(pool, conn, broken=conn.checkouts % 7 == 0)

    stop_maintainer = threading.Event()

    def maintain():
        barrier.wait()
        while not stop_maintainer.is_set():
            pool.maintainer.tick(clock.now)
            stop_maintainer.wait(0.0005)

    workers = [start(work, f"w{i}") for i in range(8)]
    maintainer = start(maintain, "m")
    try:
        for _ in range(300):
            s = pool.stats()
            assert s.size == s.idle + s.in_use + s.opening + s.closing
            assert s.size <= 4 and min(s.idle, s.in_use, s.opening, s.closing) >= 0
    finally:
        stop.set()
        try:
            join_all(workers)  # the maintainer keeps closing broken ones meanwhile
        finally:
            stop_maintainer.set()
            maintainer.get()
    assert driver.max_open <= 4
