"""Checkout: FIFO handoff, timeouts, max_waiting, jittered lifetimes, ping_after, expiry,
connect failures."""

from __future__ import annotations

import random
import threading
import time

import pytest

from flask_peewee_pool.core.errors import ConnectError, PoolExhausted, PoolTimeout
from flask_peewee_pool.core.pool import IN_USE, RETIRING
from tests.unit.fakes import (
    FakeError,
    check_accounting,
    give,
    join_all,
    start,
    take,
    wait_waiting,
)

# --------------------------------------------------------------------------- FIFO handoff


def test_released_connection_goes_to_the_oldest_waiter_first(new_pool, driver, quiet):
    pool = new_pool(max_connections=1, timeout=10, **quiet)
    held = take(pool)
    order: list[str] = []

    def wait_then_pass_on(name: str):
        conn = take(pool)
        order.append(name)
        assert conn is held, "handed over, not reopened"
        give(pool, conn)

    workers = []
    for i, name in enumerate(["first", "second", "third"]):
        workers.append(start(lambda n=name: wait_then_pass_on(n), name))
        wait_waiting(pool, i + 1)
    assert pool.stats().waiting == 3
    give(pool, held)
    join_all(workers)
    assert order == ["first", "second", "third"]
    assert driver.calls["connect"] == 1
    s = pool.stats()
    assert s.waiting == 0 and s.in_use == 0 and s.idle == 1
    assert s.checkout_wait["count"] == 4


def test_freed_slot_goes_to_the_oldest_waiter(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=1, timeout=10, **quiet)
    held = take(pool)
    got: list[str] = []

    def waiter(name):
        conn = take(pool)
        got.append(name)
        give(pool, conn)

    workers = []
    for i, name in enumerate(["a", "b"]):
        workers.append(start(lambda n=name: waiter(n), name))
        wait_waiting(pool, i + 1)
    give(pool, held, broken=True)  # slot freed only when the maintainer has closed it
    assert pool.stats().waiting == 2
    pool.maintainer.tick(clock.now)
    join_all(workers)
    assert got == ["a", "b"]
    assert driver.calls["connect"] == 2
    assert held.raw.closed and held.raw.closed_by == "MainThread"


# --------------------------------------------------------------------------- timeouts


def test_timeout_raises_after_the_deadline_naming_pool_size_in_use_waiters(new_pool, quiet):
    pool = new_pool(max_connections=1, timeout=30, name="orders", **quiet)
    held = take(pool)
    other = start(lambda: give(pool, take(pool, timeout=10)), "other-waiter")
    wait_waiting(pool, 1)
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout) as info:
        pool.checkout(timeout=0.2)
    elapsed = time.monotonic() - t0
    assert 0.15 <= elapsed < 5.0
    message = str(info.value)
    assert "'orders'" in message
    assert "size 1/1" in message
    assert "in use 1" in message
    assert "waiting 2" in message  # the other waiter and the one timing out
    s = pool.stats()
    assert s.counters.timeouts == 1
    assert s.waiting == 1, "the timed-out waiter left the queue"
    give(pool, held)
    other.get()
    assert pool.stats().waiting == 0


def test_timeout_message_states_the_timeout_that_applied(new_pool, quiet):
    pool = new_pool(max_connections=1, timeout=30, **quiet)
    take(pool)
    with pytest.raises(PoolTimeout) as info:
        pool.checkout(timeout=0.05)
    assert "within 0.05 s" in str(info.value)


def test_zero_timeout_never_waits(new_pool, quiet):
    pool = new_pool(max_connections=1, timeout=30, **quiet)
    take(pool)
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout):
        pool.checkout(timeout=0)
    assert time.monotonic() - t0 < 1.0


def test_max_waiting_rejects_the_next_waiter_at_once(new_pool, quiet):
    pool = new_pool(max_connections=1, timeout=30, max_waiting=2, name="api", **quiet)
    held = take(pool)
    workers = []
    for i in range(2):
        workers.append(start(lambda: give(pool, take(pool)), f"waiter-{i}"))
        wait_waiting(pool, i + 1)
    t0 = time.monotonic()
    with pytest.raises(PoolExhausted) as info:
        pool.checkout()
    assert time.monotonic() - t0 < 1.0, "rejected at once, not after the timeout"
    assert "'api'" in str(info.value) and "max_waiting=2" in str(info.value)
    assert pool.stats().counters.rejected == 1
    assert pool.stats().waiting == 2
    give(pool, held)
    join_all(workers)


# --------------------------------------------------------------------------- lifetimes


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 1.0), (1.0, 0.7), (0.5, 0.85)])
def test_lifetime_is_drawn_within_the_jitter_bounds(new_pool, clock, draw, expected):
    pool = new_pool(rng=lambda: draw, max_connections=2, max_lifetime=100.0,
                    lifetime_jitter=0.3, ping_after=None)
    conn = take(pool)
    assert conn.created_at == clock.now
    assert conn.expires_at - conn.created_at == pytest.approx(100.0 * expected)


def test_many_connections_get_distinct_lifetimes_within_bounds(new_pool):
    pool = new_pool(rng=random.Random(7).random, max_connections=50, max_lifetime=600.0,
                    lifetime_jitter=0.2, ping_after=None)
    held = [take(pool) for _ in range(50)]
    lifetimes = [c.expires_at - c.created_at for c in held]
    assert all(480.0 <= life <= 600.0 for life in lifetimes)
    assert len(set(lifetimes)) == 50
    assert max(lifetimes) - min(lifetimes) > 60.0, "spread over the jitter range"


def test_no_lifetime_means_no_expiry(new_pool):
    pool = new_pool(max_lifetime=None, ping_after=None)
    assert take(pool).expires_at == float("inf")


def test_expired_idle_connection_is_not_handed_out(new_pool, driver, clock):
    pool = new_pool(rng=lambda: 0.0, max_connections=2, max_lifetime=100.0, ping_after=1.0,
                    idle_timeout=None, keepalive=None)
    old = take(pool)
    give(pool, old)
    clock.advance(100.0)
    new = take(pool)
    assert new is not old
    assert old.state == RETIRING
    assert not old.raw.closed, "closed by the maintainer, not by the checkout"
    assert driver.calls["ping"] == 0, "no ping wasted on an expired connection"
    pool.maintainer.tick(clock.now)
    assert old.raw.closed
    assert pool.stats().counters.retired_lifetime == 1
    give(pool, new)


def test_in_use_connection_that_expires_is_retired_at_checkin_closed_by_maintainer(
        new_pool, driver, clock):
    pool = new_pool(rng=lambda: 0.0, max_connections=2, max_lifetime=100.0, ping_after=None,
                    idle_timeout=None, keepalive=None)

    def request():
        conn = take(pool)
        clock.advance(150.0)
        give(pool, conn)
        return conn

    conn = start(request, "request").get()
    assert conn.state == RETIRING and not conn.raw.closed
    assert driver.calls_by("close") == {}
    s = pool.stats()
    assert (s.size, s.idle, s.closing) == (1, 0, 1)
    start(lambda: pool.maintainer.tick(clock.now), "maintainer").get()
    assert conn.raw.closed
    assert driver.calls_by("close") == {"maintainer": 1}
    # Lifetime expiry is replaced in the same slot, by the maintainer too.
    assert driver.calls_by("connect") == {"request": 1, "maintainer": 1}
    s = pool.stats()
    assert (s.size, s.idle, s.closing) == (1, 1, 0)
    assert s.counters.retired_lifetime == 1


# --------------------------------------------------------------------------- ping_after


def test_recently_used_connection_is_handed_out_without_a_ping(new_pool, driver, clock):
    pool = new_pool(ping_after=1.0, max_lifetime=None, keepalive=None, idle_timeout=None)
    conn = take(pool)
    give(pool, conn)
    clock.advance(0.5)
    assert take(pool) is conn
    assert driver.calls["ping"] == 0
    give(pool, conn)
    clock.advance(1.0)
    assert take(pool) is conn
    assert driver.calls["ping"] == 1
    assert pool.stats().counters.pings == 1


def test_ping_after_zero_always_pings_a_reused_connection(new_pool, driver):
    pool = new_pool(ping_after=0.0, max_lifetime=None, keepalive=None, idle_timeout=None)
    conn = take(pool)
    give(pool, conn)
    driver.reset_counts()
    for _ in range(3):
        assert take(pool) is conn
        give(pool, conn)
    assert driver.calls["ping"] == 3


def test_a_connection_opened_for_this_checkout_is_not_pinged(new_pool, driver):
    pool = new_pool(ping_after=0.0, max_lifetime=None, keepalive=None, idle_timeout=None)
    conn = take(pool)
    assert (driver.calls["connect"], driver.calls["ping"]) == (1, 0)
    give(pool, conn)


def test_ping_after_none_never_pings(new_pool, driver, clock):
    pool = new_pool(ping_after=None, max_lifetime=None, keepalive=None, idle_timeout=None)
    conn = take(pool)
    give(pool, conn)
    clock.advance(1e6)
    assert take(pool) is conn
    assert driver.calls["ping"] == 0


def test_failed_ping_discards_and_checkout_returns_a_new_connection(new_pool, driver, clock):
    pool = new_pool(max_connections=2, ping_after=1.0, max_lifetime=None, keepalive=None,
                    idle_timeout=None, timeout=30)
    stale = take(pool)
    give(pool, stale)
    clock.advance(5.0)
    stale.raw.ping_fails = True
    t0 = time.monotonic()
    fresh = start(lambda: take(pool), "request").get()
    assert time.monotonic() - t0 < 5.0
    assert fresh is not stale and fresh.raw.open
    assert driver.calls_by("connect") == {"MainThread": 1, "request": 1}
    assert stale.state == RETIRING and not stale.raw.closed
    s = pool.stats()
    assert s.counters.ping_failures == 1 and s.counters.retired_broken == 0
    assert (s.size, s.in_use, s.closing) == (2, 1, 1)
    start(lambda: pool.maintainer.tick(clock.now), "maintainer").get()
    assert stale.raw.closed
    assert driver.calls_by("close") == {"maintainer": 1}
    s = pool.stats()
    assert s.counters.retired_broken == 1
    assert (s.size, s.in_use, s.closing) == (1, 1, 0)


def test_failed_ping_tries_the_next_idle_connection(new_pool, driver, clock):
    pool = new_pool(max_connections=3, segments=1, ping_after=1.0, max_lifetime=None,
                    keepalive=None, idle_timeout=None)
    a, b = take(pool), take(pool)
    give(pool, a)
    give(pool, b)  # b on top of the stack
    clock.advance(5.0)
    b.raw.ping_fails = True
    assert take(pool) is a
    assert driver.calls["connect"] == 2, "a working idle connection beats a new one"
    assert driver.calls["ping"] == 2


def test_failed_ping_at_the_cap_waits_for_the_maintainer_then_reconnects(
        new_pool, driver, clock):
    # At max_connections the broken connection's slot stays counted until it is closed,
    # so the checkout waits (within its deadline) for the maintainer to close it.
    pool = new_pool(max_connections=1, ping_after=1.0, max_lifetime=None, keepalive=None,
                    idle_timeout=None, timeout=30)
    stale = take(pool)
    give(pool, stale)
    clock.advance(5.0)
    stale.raw.ping_fails = True
    request = start(lambda: take(pool), "request")
    wait_waiting(pool, 1)
    assert not stale.raw.closed
    start(lambda: pool.maintainer.tick(clock.now), "maintainer").get()
    fresh = request.get()
    assert fresh is not stale
    assert stale.raw.closed_by == "maintainer"
    assert driver.calls_by("connect") == {"MainThread": 1, "request": 1}
    assert driver.max_open == 1


# --------------------------------------------------------------------------- connect failure


def test_connect_error_is_raised_at_once_without_the_password(new_pool, driver, quiet):
    driver.description = "fake://app@db.example:5432/orders"
    driver.connect_error = lambda: FakeError("access denied: marker-7f3a9 (password hunter2?)")
    pool = new_pool(max_connections=2, timeout=30, name="orders-pool", **quiet)
    driver.fail_connect = True
    t0 = time.monotonic()
    with pytest.raises(ConnectError) as info:
        pool.checkout()
    assert time.monotonic() - t0 < 5.0, "at once, not after the 30 s timeout"
    message = str(info.value)
    assert "'orders-pool'" in message
    assert "fake://app@db.example:5432/orders" in message
    assert "marker-7f3a9" in message, "the driver's message is kept"
    assert isinstance(info.value.__cause__, FakeError)
    assert "marker-7f3a9" in str(info.value.__cause__)
    s = pool.stats()
    assert s.size == 0 and s.opening == 0, "the slot was released"
    assert s.counters.connect_failures == 1
    driver.fail_connect = False
    conn = take(pool)
    assert conn.state == IN_USE
    check_accounting(pool)


def test_connect_error_description_never_includes_a_password(new_pool, driver, quiet):
    driver.connect_error = lambda: FakeError("refused")
    pool = new_pool(**quiet)
    driver.fail_next_connects = 1
    with pytest.raises(ConnectError) as info:
        pool.checkout()
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(pool)


def test_connect_error_reaches_a_waiter_that_got_a_slot_at_once(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=1, timeout=30, **quiet)
    held = take(pool)
    t0 = time.monotonic()
    waiter = start(lambda: take(pool), "waiter")
    wait_waiting(pool, 1)
    driver.fail_connect = True
    give(pool, held, broken=True)
    pool.maintainer.tick(clock.now)  # closes it; the freed slot goes to the waiter
    with pytest.raises(ConnectError):
        waiter.get()
    assert time.monotonic() - t0 < 5.0
    s = pool.stats()
    assert (s.size, s.waiting, s.opening) == (0, 0, 0)


def test_connect_failure_releases_the_slot_to_a_waiting_thread(new_pool, driver, quiet):
    # Thread A fails to connect while B waits: B is given A's freed slot and succeeds.
    pool = new_pool(max_connections=1, timeout=30, **quiet)
    gate = driver.block("connect", lambda raw: threading.current_thread().name == "A")
    driver.fail_next_connects = 1
    a = start(lambda: take(pool), "A")
    gate.wait_entered()
    b = start(lambda: take(pool), "B")
    wait_waiting(pool, 1)
    gate.release()
    with pytest.raises(ConnectError):
        a.get()
    conn = b.get()
    assert conn.raw.opened_by == "B"


def test_returned_connection_is_not_taken_by_a_newcomer_while_others_wait(
        new_pool, driver, quiet):
    pool = new_pool(max_connections=1, timeout=30, **quiet)
    held = take(pool)
    waiter = start(lambda: take(pool), "waiter")
    wait_waiting(pool, 1)
    newcomer: list[object] = []
    returning = threading.Event()

    def arrive():
        try:
            return take(pool, timeout=0)
        except PoolTimeout as exc:
            return exc

    def newcomer_arrives_as_soon_as_checkin_holds_no_lock(lock):
        # A thread arriving while the connection is being returned, at the first moment
        # the returning thread holds no pool lock (deterministic interleaving).
        if (returning.is_set() and threading.current_thread().name == "MainThread"
                and not newcomer and not driver.watch.held_by_me()):
            newcomer.append(None)
            newcomer[0] = start(arrive, "newcomer").get()

    driver.watch.after_release = newcomer_arrives_as_soon_as_checkin_holds_no_lock
    returning.set()
    try:
        give(pool, held)
    finally:
        returning.clear()
        driver.watch.after_release = None
    got_newcomer = newcomer[0]
    if not isinstance(got_newcomer, PoolTimeout):
        give(pool, got_newcomer)  # let the waiter finish before failing
    assert waiter.get() is held
    assert isinstance(got_newcomer, PoolTimeout), "the newcomer barged past the waiter"
