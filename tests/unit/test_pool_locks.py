"""No I/O under a lock: a thread stuck in the driver never stops another thread's checkout.

Every test here parks one thread inside a driver call (connect, ping, rollback, close) on an
Event and shows that another thread checks a connection out and back in meanwhile. The
fake driver independently fails any call made while its thread holds a pool lock.
"""

from __future__ import annotations

import linecache
import threading

import pytest

from tests.unit.fakes import LockViolation, give, start, take


def named(name: str):
    return lambda raw: threading.current_thread().name == name


def round_trip(pool):
    conn = take(pool)
    give(pool, conn)
    return conn


def assert_b_finishes_while_a_is_stuck(pool, a, blocker, expected=None):
    b = start(lambda: round_trip(pool), "B")
    conn = b.get()
    assert a.is_alive() and not blocker.gate.is_set(), "A is still inside the driver"
    if expected is not None:
        assert conn is expected
    return conn


@pytest.mark.parametrize("segments", [1, 2])
def test_blocked_connect_does_not_stop_another_checkout(new_pool, driver, quiet, segments):
    pool = new_pool(max_connections=3, segments=segments, timeout=30, **quiet)
    idle = take(pool)
    gate = driver.block("connect", named("A"))
    a = start(lambda: take(pool), "A")
    gate.wait_entered()
    give(pool, idle)
    assert pool.stats().opening == 1
    assert_b_finishes_while_a_is_stuck(pool, a, gate, expected=idle)
    gate.release()
    assert a.get().raw.opened_by == "A"


def test_blocked_checkout_ping_does_not_stop_another_checkout(new_pool, driver, clock, quiet):
    quiet["ping_after"] = 0.0
    pool = new_pool(max_connections=3, segments=1, timeout=30, **quiet)
    first, second = take(pool), take(pool)
    give(pool, second)
    give(pool, first)  # first on top: A gets it
    gate = driver.block("ping", lambda raw: raw is first.raw)
    a = start(lambda: take(pool), "A")
    gate.wait_entered()
    assert_b_finishes_while_a_is_stuck(pool, a, gate, expected=second)
    gate.release()
    assert a.get() is first


def test_blocked_rollback_at_checkin_does_not_stop_another_checkout(new_pool, driver, quiet):
    pool = new_pool(max_connections=3, segments=1, timeout=30, **quiet)
    dirty, clean = take(pool), take(pool)
    give(pool, clean)
    dirty.raw.in_transaction = True
    gate = driver.block("rollback")
    a = start(lambda: give(pool, dirty), "A")
    gate.wait_entered()
    assert_b_finishes_while_a_is_stuck(pool, a, gate, expected=clean)
    gate.release()
    a.get()
    assert pool.stats().idle == 2


def test_blocked_maintainer_close_does_not_stop_checkouts(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=2, segments=1, timeout=30, **quiet)
    broken, healthy = take(pool), take(pool)
    give(pool, healthy)
    give(pool, broken, broken=True)
    gate = driver.block("close")
    m = start(lambda: pool.maintainer.tick(clock.now), "maintainer")
    gate.wait_entered()
    assert_b_finishes_while_a_is_stuck(pool, m, gate, expected=healthy)
    gate.release()
    m.get()
    assert broken.raw.closed and pool.stats().size == 1


def test_blocked_keepalive_ping_does_not_stop_checkouts(new_pool, driver, clock, quiet):
    quiet["keepalive"] = 30.0
    pool = new_pool(max_connections=3, segments=1, timeout=30, **quiet)
    old, other = take(pool), take(pool)
    give(pool, other)
    clock.advance(31.0)
    give(pool, old)  # used a moment ago: not due for a keepalive
    gate = driver.block("ping", lambda raw: raw is other.raw)
    m = start(lambda: pool.maintainer.tick(clock.now), "maintainer")
    gate.wait_entered()
    b = start(lambda: round_trip(pool), "B")
    assert b.get() is old, "the connection not being pinged is still available"
    assert m.is_alive()
    gate.release()
    m.get()
    assert pool.stats().counters.keepalive_pings == 1


def test_blocked_refill_connect_does_not_stop_checkouts(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=3, segments=1, min_idle=2, timeout=30, **quiet)
    idle = take(pool)
    give(pool, idle)
    gate = driver.block("connect", named("maintainer"))
    m = start(lambda: pool.maintainer.tick(clock.now), "maintainer")
    gate.wait_entered()
    assert_b_finishes_while_a_is_stuck(pool, m, gate, expected=idle)
    gate.release()
    m.get()
    assert pool.stats().idle == 2


def test_lock_violation_is_detected(new_pool, driver, quiet):
    # The instrumentation itself: a driver call under a pool lock is caught.
    pool = new_pool(**quiet)
    seg = pool._segments[0]
    with seg.lock, pytest.raises(LockViolation):
        driver.connect()
    assert len(driver.watch.violations) == 1
    driver.watch.violations.clear()


def test_instrumented_lock_supports_the_lock_api(new_pool):
    pool = new_pool()
    lock = pool._segments[0].lock
    assert lock.acquire(blocking=False)
    assert lock.locked()
    got = []
    t = start(lambda: got.append(lock.acquire(blocking=False)), "other")
    t.get()
    assert got == [False]
    lock.release()
    assert not lock.locked()
    with lock:
        assert lock.owner == threading.get_ident()
    assert lock.owner is None


def test_leak_tracking_does_no_file_io_under_a_lock(new_pool, driver, monkeypatch, quiet):
    pool = new_pool(leak_threshold=10.0, **quiet)
    real_checkcache = linecache.checkcache
    real_updatecache = linecache.updatecache
    held: list[str] = []

    def checkcache(*args, **kwargs):
        held.extend(lock.name for lock in driver.watch.held_by_me())
        return real_checkcache(*args, **kwargs)

    def updatecache(*args, **kwargs):
        held.extend(lock.name for lock in driver.watch.held_by_me())
        return real_updatecache(*args, **kwargs)

    monkeypatch.setattr(linecache, "checkcache", checkcache)
    monkeypatch.setattr(linecache, "updatecache", updatecache)
    conn = pool.checkout()
    monkeypatch.undo()
    pool.checkin(conn)
    assert held == []


def test_fake_driver_implements_the_driver_protocol(driver):
    from flask_peewee_pool.core.drivers import Driver

    assert isinstance(driver, Driver)
