"""``pool.drain()``: every connection replaced, idle ones by the maintainer at once, busy
ones when returned; the cap holds throughout and no request closes anything.

The maintainer is driven by explicit ``tick(now)`` calls (jobs run inline), as in
test_maintainer.py; the fake driver fails the test if any driver call runs under a lock.
"""

from __future__ import annotations

import pytest

from flask_peewee_pool.core.errors import PoolClosed
from tests.unit.fakes import check_accounting, give, start, take, wait_waiting


def quiet_pool(new_pool, **options):
    defaults = dict(max_lifetime=None, idle_timeout=None, keepalive=None, ping_after=None)
    defaults.update(options)
    return new_pool(**defaults)


def fill(pool, n):
    conns = [take(pool) for _ in range(n)]
    for conn in conns:
        give(pool, conn)
    return conns


def test_idle_connections_are_replaced_by_the_maintainer_replacement_first(
        new_pool, driver, clock):
    pool = quiet_pool(new_pool, max_connections=4, maintenance_concurrency=4)
    old = fill(pool, 2)
    driver.reset_counts()
    assert pool.drain() == 2
    assert driver.calls["connect"] == 0  # drain() itself does no I/O
    pool.maintainer.tick(clock.now)
    # Below the cap: each replacement opens before its old connection closes.
    assert driver.calls["connect"] == 2 and driver.calls["close"] == 2
    assert driver.max_open <= 4
    s = pool.stats()
    assert (s.size, s.idle, s.counters.retired_drained, s.counters.drains) == (2, 2, 2, 1)
    # The next checkouts are plain pops of the new connections: no request connects.
    driver.reset_counts()
    fresh = [take(pool), take(pool)]
    assert driver.calls["connect"] == 0
    assert not {id(c) for c in fresh} & {id(c) for c in old}
    for conn in fresh:
        give(pool, conn)
    check_accounting(pool)


def test_at_the_cap_the_old_connection_closes_before_its_replacement_opens(
        new_pool, driver, clock):
    pool = quiet_pool(new_pool, max_connections=2)
    fill(pool, 2)
    pool.drain()
    pool.maintainer.tick(clock.now)
    assert driver.max_open == 2  # never above the cap
    s = pool.stats()
    assert (s.size, s.idle, s.counters.retired_drained) == (2, 2, 2)
    assert all(c.generation == pool._generation for seg in pool._segments for c in seg.idle)
    check_accounting(pool)


def test_a_busy_connection_serves_its_holder_then_is_replaced_at_checkin(
        new_pool, driver, clock):
    pool = quiet_pool(new_pool, max_connections=2)
    busy = take(pool)
    pool.drain()
    assert (pool.stats().stale, pool.stats().generation) == (1, 1)
    pool.maintainer.tick(clock.now)
    assert busy.raw.open and driver.calls["close"] == 0  # nothing closed under its holder
    assert pool.stats().stale == 1
    give(pool, busy)
    assert driver.calls["close"] == 0  # the checkin itself does not close it...
    pool.maintainer.tick(clock.now)  # ...the maintainer does, and reopens the slot
    assert busy.raw.closed
    s = pool.stats()
    assert (s.size, s.idle, s.in_use, s.counters.retired_drained) == (1, 1, 0, 1)
    assert s.stale == 0
    again = take(pool)
    assert again is not busy
    give(pool, again)
    check_accounting(pool)


def test_a_drained_connection_returned_while_threads_wait_is_not_handed_on(
        new_pool, driver, clock):
    pool = quiet_pool(new_pool, max_connections=1)
    busy = take(pool)
    pool.drain()
    waiter = start(lambda: take(pool, timeout=10), "waiter")
    wait_waiting(pool, 1)
    give(pool, busy)  # retired, not handed to the waiter
    pool.maintainer.tick(clock.now)  # closes it, opens the replacement, hands it over
    conn = waiter.get()
    assert conn is not busy and busy.raw.closed
    assert driver.max_open == 1
    give(pool, conn)
    check_accounting(pool)


def test_connections_opened_after_the_drain_are_kept(new_pool, driver, clock):
    pool = quiet_pool(new_pool, max_connections=3)
    pool.drain()
    fill(pool, 2)  # opened after drain(): already of the new generation
    driver.reset_counts()
    pool.maintainer.tick(clock.now)
    assert driver.calls["connect"] == driver.calls["close"] == 0
    assert pool.stats().counters.retired_drained == 0


def test_a_second_drain_replaces_the_first_drains_replacements(new_pool, driver, clock):
    pool = quiet_pool(new_pool, max_connections=2)
    fill(pool, 1)
    pool.drain()
    pool.maintainer.tick(clock.now)
    pool.drain()
    pool.maintainer.tick(clock.now)
    s = pool.stats()
    assert (s.counters.drains, s.counters.retired_drained, s.size) == (2, 2, 1)
    check_accounting(pool)


def test_a_failed_replacement_keeps_the_old_connection_serving(new_pool, driver, clock):
    pool = quiet_pool(new_pool, max_connections=2)
    (old,) = fill(pool, 1)
    pool.drain()
    driver.fail_connect = True
    pool.maintainer.tick(clock.now)  # the database is down: the old one serves on
    conn = take(pool)
    assert conn is old and old.raw.open
    give(pool, conn)
    check_accounting(pool)


def test_drain_of_a_closed_pool_raises(new_pool):
    pool = quiet_pool(new_pool)
    pool.close()
    with pytest.raises(PoolClosed):
        pool.drain()


@pytest.mark.parametrize(("method", "nth"), [
    ("connect", 1), ("connect", 2), ("close", 1), ("close", 2), ("is_usable", 1),
    ("needs_rollback", 1)])
def test_a_drain_interrupted_at_any_driver_call_loses_nothing(
        new_pool, driver, clock, method, nth):
    """A BaseException in the replacement's connect or the old one's close, or in the
    busy connection's checkin: propagated unchanged, and nothing is lost."""
    from tests.unit.fakes import Interrupt
    from tests.unit.test_interrupts import _assert_whole

    pool = quiet_pool(new_pool, max_connections=2, maintenance_concurrency=1)
    fill(pool, 2)
    busy = take(pool)
    pool.drain()
    driver.interrupt_at[method] = nth
    seen = []
    for step in (lambda: pool.maintainer.tick(clock.now), lambda: give(pool, busy),
                 *[lambda: pool.maintainer.tick(clock.now)] * 4):
        try:
            step()
        except Interrupt as exc:
            seen.append(str(exc))
    assert driver.interrupted == [method]
    assert seen == [f"interrupted in driver.{method}"]
    assert pool.stats().counters.retired_drained >= 1
    _assert_whole(pool, driver)
