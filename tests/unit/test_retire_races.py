"""Retirement racing a checkin, and shrinking while connections expire (issue 12, items 2-3).

Events hold the checkin's rollback (or its status check) open inside the fake driver, so
``reclaim()``, ``close_all``-style calls and ``close()`` run exactly inside the window; no
sleeps. Afterwards: a closed connection never went back to idle, no slot was released twice
(the accounting adds up), and with ``max_connections=1`` never two holders, never two
connections open on the "server".
"""

from __future__ import annotations

import pytest

from flask_peewee_pool.core.pool import CLOSED, IDLE
from tests.unit.fakes import check_accounting, give, start, take


def _dirty_checkin_held_in_rollback(pool, driver):
    conn = take(pool)
    conn.raw.in_transaction = True
    blocker = driver.block("rollback")
    returning = start(lambda: give(pool, conn), "returning")
    blocker.wait_entered()
    return conn, blocker, returning


@pytest.mark.parametrize("race", ["reclaim", "close_all", "close_stale", "close_idle"])
def test_retirement_racing_a_rolling_back_checkin(new_pool, driver, clock, quiet, race):
    pool = new_pool(max_connections=1, **quiet)
    conn, blocker, returning = _dirty_checkin_held_in_rollback(pool, driver)
    if race == "reclaim":
        pool.reclaim(older_than=0)
    elif race == "close_all":  # PooledDatabase.close_all(): idle, then everything in use
        pool.close_idle()
        pool.reclaim(older_than=0)
    elif race == "close_stale":
        clock.advance(700)
        pool.reclaim(older_than=600)
    else:
        pool.close_idle()
    blocker.release()
    returning.get()
    pool.maintainer.tick(clock.now)
    check_accounting(pool)
    # Mid-checkin the connection is not "in use" by anyone: it comes back, rolled back.
    assert conn.state == IDLE and conn.raw.open and not conn.raw.in_transaction
    first = take(pool, timeout=0)
    assert first is conn
    stats = pool.stats()
    assert stats.size == 1 and stats.in_use == 1
    give(pool, first)
    assert driver.max_open == 1


def test_close_racing_a_rolling_back_checkin_closes_it_once(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=1, **quiet)
    conn, blocker, returning = _dirty_checkin_held_in_rollback(pool, driver)
    pool.close()
    blocker.release()
    returning.get()
    assert conn.state == CLOSED and conn.raw.closed
    assert pool.stats().size == 0
    check_accounting(pool)
    assert driver.open_connections() == []


def test_clean_checkin_racing_reclaim_is_a_quiet_no_op(new_pool, driver, clock, quiet):
    """reclaim() lands between the checkin's first look and its critical section."""
    pool = new_pool(max_connections=1, **quiet)
    conn = take(pool)
    blocker = driver.block("is_usable")
    returning = start(lambda: give(pool, conn), "returning")
    blocker.wait_entered()
    assert pool.reclaim(older_than=0) == 1
    blocker.release()
    returning.get()  # no CheckinError
    pool.maintainer.tick(clock.now)
    assert conn.state == CLOSED and conn.raw.closed
    check_accounting(pool)
    assert pool.stats().size == 0
    again = take(pool, timeout=0)
    assert again is not conn
    give(pool, again)
    assert driver.max_open == 1


def test_retirement_is_idempotent(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=1, **quiet)
    conn = take(pool)
    assert pool.reclaim(older_than=0) == 1
    pool._retire(conn, "broken")  # a second retirement, e.g. an interrupted step
    with conn.segment.lock:
        assert not pool._retire_locked(conn, "lifetime")
    pool.maintainer.tick(clock.now)
    assert driver.calls["close"] == 1
    check_accounting(pool)
    assert pool.stats().size == 0


# ------------------------------------------------------------------------------ resize


def test_shrink_drains_even_when_connections_expire(new_pool, driver, clock, quiet):
    """Issue 12 item 3: 4 -> 1 with a short lifetime used to reconnect forever at size 4."""
    pool = new_pool(max_connections=4, **{**quiet, "max_lifetime": 0.3,
                                           "lifetime_jitter": 0.0})
    held = [take(pool) for _ in range(4)]
    connects = driver.calls["connect"]
    pool.resize(max_connections=1)
    clock.advance(1.0)  # every held connection is now past its lifetime
    for conn in held:
        give(pool, conn)
    for _ in range(30):  # three seconds of maintainer ticks with no traffic
        clock.advance(0.1)
        pool.maintainer.tick(clock.now)
        assert pool.size <= 4
    stats = pool.stats()
    assert stats.size <= 1, stats
    assert len(driver.open_connections()) <= 1
    # One connection's worth of recycling (it is replaced up to 0.13 s before its 0.3 s
    # lifetime ends: at most one connect per 0.15 s), not four connections' worth.
    assert driver.calls["connect"] - connects <= 3 / 0.15
    check_accounting(pool)


def test_shrink_opens_nothing_while_draining(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=4, **{**quiet, "max_lifetime": 1.0,
                                           "lifetime_jitter": 0.0, "keepalive": 0.2})
    held = [take(pool) for _ in range(4)]
    connects = driver.calls["connect"]
    pool.resize(max_connections=2)
    clock.advance(2.0)  # expired while in use
    give(pool, held.pop())  # drained (over capacity), not replaced
    give(pool, held.pop())  # drained too
    pool.maintainer.tick(clock.now)
    pool.maintainer.tick(clock.now)
    assert driver.calls["connect"] == connects, "opened a connection while over capacity"
    for conn in held:
        give(pool, conn)  # now at capacity: expired ones are replaced, as usual
    for _ in range(5):
        pool.maintainer.tick(clock.now)
    assert pool.size <= 2 and len(driver.open_connections()) <= 2
    check_accounting(pool)


def test_keepalive_and_recycle_respect_a_shrunk_capacity(new_pool, driver, clock, quiet):
    """Idle connections withdrawn by the maintainer come back only within capacity."""
    pool = new_pool(max_connections=3, **{**quiet, "keepalive": 1.0, "max_lifetime": 5.0,
                                           "lifetime_jitter": 0.0})
    held = [take(pool) for _ in range(3)]
    for conn in held:
        give(pool, conn)
    clock.advance(1.5)
    # The maintainer withdraws all three for a keepalive ping; shrink while they are out.
    blocker = driver.block("ping")
    ticking = start(lambda: pool.maintainer.tick(clock.now), "tick")
    blocker.wait_entered()
    pool.resize(max_connections=1)
    blocker.release()
    ticking.get()
    for _ in range(10):
        clock.advance(1.0)
        pool.maintainer.tick(clock.now)
        assert pool.size <= 3
    assert pool.size <= 1 and len(driver.open_connections()) <= 1
    check_accounting(pool)
