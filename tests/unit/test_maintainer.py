"""The maintainer, driven by explicit ``tick(now)`` calls with a fake clock.

With no executor (``start_maintainer=False``) every job runs inline in the ticking thread,
so each test sees the whole effect of a tick when ``tick`` returns. The per-tick budget
(``maintenance_concurrency``) is then always full at the start of each duty: inline, it caps
how many connections *each duty* takes per tick. With an executor, jobs still in flight
use the budget up, which ``test_in_flight_jobs_use_up_the_budget_of_later_ticks`` covers.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading

import pytest

from flask_peewee_pool.core.maintainer import BASE_BACKOFF
from flask_peewee_pool.core.pool import IDLE, MAINTENANCE
from tests.unit.fakes import WAIT, check_accounting, give, start, take, wait_waiting

LOGGER = "flask_peewee_pool"


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING]


def fill(pool, n):
    """Open ``n`` connections and leave them idle (all created at the same instant)."""
    conns = [take(pool) for _ in range(n)]
    for conn in conns:
        give(pool, conn)
    return conns


def lifetime_pool(new_pool, **options):
    defaults = dict(rng=lambda: 0.0, max_lifetime=100.0, idle_timeout=None, keepalive=None,
                    ping_after=None)
    defaults.update(options)
    return new_pool(**defaults)


# --------------------------------------------------------------------------- recycling


def test_recycle_opens_the_replacement_first_below_the_cap(new_pool, driver, clock):
    pool = lifetime_pool(new_pool, max_connections=4)
    (old,) = fill(pool, 1)
    clock.advance(98.0)  # more than the horizon (1 s + one tick) before expiry: not yet
    pool.maintainer.tick(clock.now)
    assert driver.calls["connect"] == 1
    clock.advance(1.0)
    pool.maintainer.tick(clock.now)
    assert driver.log == [("connect", 1), ("connect", 2), ("close", 1)]
    s = pool.stats()
    assert (s.size, s.idle) == (1, 1)
    assert (s.counters.recycled, s.counters.retired_lifetime) == (1, 1)
    assert driver.max_open == 2
    # No request pays for the expiry: the next checkout is a plain pop.
    driver.reset_counts()
    new = take(pool)
    assert new is not old and driver.calls["connect"] == 0
    assert new.raw.opened_by == "MainThread"  # the ticking thread here
    give(pool, new)


def test_recycle_at_the_cap_closes_then_reopens_never_exceeding_it(new_pool, driver, clock):
    pool = lifetime_pool(new_pool, max_connections=1)
    fill(pool, 1)
    clock.advance(99.0)
    pool.maintainer.tick(clock.now)
    assert driver.log == [("connect", 1), ("close", 1), ("connect", 2)]
    assert driver.max_open == 1
    s = pool.stats()
    assert (s.size, s.idle, s.counters.recycled) == (1, 1, 1)


def test_recycling_is_gradual_at_most_maintenance_concurrency_per_tick(new_pool, driver, clock):
    pool = lifetime_pool(new_pool, max_connections=10, maintenance_concurrency=3)
    fill(pool, 10)
    clock.advance(99.0)
    recycled_per_tick = []
    for _ in range(5):
        before = driver.calls["close"]
        pool.maintainer.tick(clock.now)
        recycled_per_tick.append(driver.calls["close"] - before)
        assert pool.stats().size == 10
        check_accounting(pool)
    assert recycled_per_tick == [3, 3, 3, 1, 0]
    assert driver.max_open == 10
    assert pool.stats().counters.recycled == 10


def test_in_flight_jobs_use_up_the_budget_of_later_ticks(new_pool, driver, clock):
    pool = lifetime_pool(new_pool, max_connections=6, maintenance_concurrency=2)
    fill(pool, 6)
    executor = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="job")
    pool.maintainer._executor = executor
    gate = driver.block("close")
    try:
        clock.advance(99.0)
        pool.maintainer.tick(clock.now)
        gate.wait_entered()
        pool.maintainer.tick(clock.now)  # both jobs still closing: no budget left
        pool.maintainer.tick(clock.now)
        states = [c.state for seg in pool._segments for c in seg.idle]
        assert len(states) == 4 and set(states) == {IDLE}
        assert pool.maintainer._inflight == 2
    finally:
        gate.release()
        executor.shutdown(wait=True)
    assert pool.maintainer._inflight == 0
    assert driver.calls["close"] == 2
    assert all(name.startswith("job") for name in driver.calls_by("close"))
    pool.maintainer._executor = None
    pool.maintainer.tick(clock.now)
    assert driver.calls["close"] == 4


def test_no_recycling_without_max_lifetime(new_pool, driver, clock):
    pool = new_pool(max_lifetime=None, idle_timeout=None, keepalive=None, ping_after=None)
    fill(pool, 2)
    clock.advance(1e7)
    pool.maintainer.tick(clock.now)
    assert driver.calls["close"] == 0


# --------------------------------------------------------------------------- idle timeout


def test_idle_timeout_shrinks_to_min_idle_and_not_below(new_pool, driver, clock):
    pool = new_pool(max_connections=5, min_idle=2, idle_timeout=60.0, max_lifetime=None,
                    keepalive=None, ping_after=None)
    fill(pool, 5)
    clock.advance(59.0)
    pool.maintainer.tick(clock.now)
    assert pool.stats().size == 5
    clock.advance(2.0)
    pool.maintainer.tick(clock.now)
    s = pool.stats()
    assert (s.size, s.idle) == (2, 2)
    assert s.counters.retired_idle == 3
    for _ in range(3):
        clock.advance(61.0)
        pool.maintainer.tick(clock.now)
    s = pool.stats()
    assert (s.size, s.idle, s.counters.retired_idle) == (2, 2, 3)
    assert driver.calls["connect"] == 5, "nothing reopened"


def test_idle_timeout_is_gradual_and_spares_recently_used(new_pool, driver, clock):
    pool = new_pool(max_connections=6, segments=1, idle_timeout=60.0,
                    maintenance_concurrency=2, max_lifetime=None, keepalive=None,
                    ping_after=None)
    conns = fill(pool, 6)
    clock.advance(61.0)
    recent = take(pool)
    give(pool, recent)
    closed_per_tick = []
    for _ in range(4):
        before = driver.calls["close"]
        pool.maintainer.tick(clock.now)
        closed_per_tick.append(driver.calls["close"] - before)
    assert closed_per_tick == [2, 2, 1, 0]
    assert [c for c in conns if not c.raw.closed] == [recent]


def test_idle_timeout_and_refill_agree_on_min_idle(new_pool, driver, clock):
    pool = new_pool(max_connections=5, min_idle=2, idle_timeout=60.0, max_lifetime=None,
                    keepalive=None, ping_after=None)
    busy = [take(pool) for _ in range(2)]
    fill(pool, 3)
    clock.advance(61.0)
    driver.reset_counts()
    pool.maintainer.tick(clock.now)
    assert not (driver.calls["close"] and driver.calls["connect"]), (
        f"closed {driver.calls['close']} and opened {driver.calls['connect']} in one tick")
    for conn in busy:
        give(pool, conn)


# --------------------------------------------------------------------------- refill


def test_refill_to_min_idle(new_pool, driver, clock):
    pool = new_pool(max_connections=5, min_idle=3, max_lifetime=None, idle_timeout=None,
                    keepalive=None, ping_after=None)
    pool.maintainer.tick(clock.now)
    s = pool.stats()
    assert (s.size, s.idle, driver.calls["connect"]) == (3, 3, 3)
    pool.maintainer.tick(clock.now)
    assert driver.calls["connect"] == 3
    held = [take(pool) for _ in range(2)]
    pool.maintainer.tick(clock.now)
    s = pool.stats()
    assert (s.size, s.idle, s.in_use) == (5, 3, 2), "idle topped up, within the cap"
    held.append(take(pool))
    pool.maintainer.tick(clock.now)
    assert pool.stats().size == 5, "never beyond max_connections"
    for conn in held:
        give(pool, conn)


def test_refill_is_capped_per_tick(new_pool, driver, clock):
    pool = new_pool(max_connections=10, min_idle=5, maintenance_concurrency=2,
                    max_lifetime=None, idle_timeout=None, keepalive=None, ping_after=None)
    sizes = []
    for _ in range(4):
        pool.maintainer.tick(clock.now)
        sizes.append(pool.stats().size)
    assert sizes == [2, 4, 5, 5]


def test_refilled_connection_goes_to_a_waiter(new_pool, driver, clock):
    pool = new_pool(max_connections=2, min_idle=1, timeout=30, max_lifetime=None,
                    idle_timeout=None, keepalive=None, ping_after=None)
    held = take(pool)
    gate = driver.block("connect", lambda raw: threading.current_thread().name == "B")
    b = start(lambda: take(pool), "B")  # reserves the last slot, stuck connecting
    gate.wait_entered()
    c = start(lambda: take(pool), "C")
    wait_waiting(pool, 1)
    give(pool, held)  # straight to C
    conn_c = c.get()
    assert conn_c is held
    gate.release()
    give(pool, b.get())
    give(pool, conn_c)


# --------------------------------------------------------------------------- keepalive


def keepalive_pool(new_pool, **options):
    defaults = dict(keepalive=60.0, max_lifetime=None, idle_timeout=None, ping_after=None)
    defaults.update(options)
    return new_pool(**defaults)


def test_keepalive_pings_idle_connections(new_pool, driver, clock):
    pool = keepalive_pool(new_pool)
    (conn,) = fill(pool, 1)
    clock.advance(59.0)
    pool.maintainer.tick(clock.now)
    assert driver.calls["ping"] == 0
    clock.advance(2.0)
    start(lambda: pool.maintainer.tick(clock.now), "maintainer").get()
    assert driver.calls_by("ping") == {"maintainer": 1}
    assert conn.state == IDLE and pool.stats().idle == 1
    c = pool.stats().counters
    assert (c.keepalive_pings, c.keepalive_failures) == (1, 0)


def test_keepalive_spares_connections_in_use(new_pool, driver, clock):
    pool = keepalive_pool(new_pool)
    conn = take(pool)
    clock.advance(1000.0)
    pool.maintainer.tick(clock.now)
    assert driver.calls["ping"] == 0
    give(pool, conn)


def test_keepalive_waits_a_full_period_before_the_next_ping(new_pool, driver, clock):
    pool = keepalive_pool(new_pool)
    fill(pool, 1)
    clock.advance(61.0)
    pool.maintainer.tick(clock.now)
    assert driver.calls["ping"] == 1
    for _ in range(10):
        clock.advance(1.0)
        pool.maintainer.tick(clock.now)
    assert driver.calls["ping"] == 1


def test_keepalive_replaces_a_connection_whose_ping_fails(new_pool, driver, clock):
    pool = keepalive_pool(new_pool)
    (dead,) = fill(pool, 1)
    dead.raw.ping_fails = True
    clock.advance(61.0)
    start(lambda: pool.maintainer.tick(clock.now), "maintainer").get()
    assert dead.raw.closed and dead.raw.closed_by == "maintainer"
    assert driver.calls_by("connect") == {"MainThread": 1, "maintainer": 1}
    s = pool.stats()
    assert (s.size, s.idle) == (1, 1)
    c = s.counters
    assert (c.keepalive_pings, c.keepalive_failures, c.retired_broken) == (1, 1, 1)
    assert driver.max_open == 1


# --------------------------------------------------------------------------- outage


def test_outage_backoff_grows_logs_once_and_recovers_within_one_step(
        new_pool, driver, clock, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    pool = new_pool(rng=lambda: 1.0, min_idle=1, max_backoff=1.0, max_lifetime=None,
                    idle_timeout=None, keepalive=None, ping_after=None)
    driver.fail_connect = True
    step = 1 / 64
    attempts: list[float] = []
    backoffs: list[float] = []
    end = clock.now + 6.0
    while clock.now < end:
        before = driver.calls["connect"]
        pool.maintainer.tick(clock.now)
        if driver.calls["connect"] > before:
            assert driver.calls["connect"] == before + 1
            attempts.append(clock.now)
            backoffs.append(pool.stats().backoff)
        clock.advance(step)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert 6 <= len(attempts) <= 12, attempts  # 384 ticks, a handful of attempts
    assert backoffs[:5] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])
    assert all(b == pytest.approx(1.0) for b in backoffs[4:]), "capped at max_backoff"
    for gap, backoff in zip(gaps, backoffs, strict=False):
        assert backoff <= gap <= backoff + step + 1e-9
    s = pool.stats()
    assert s.database_down and s.backoff == pytest.approx(1.0)
    assert s.counters.connect_failures == len(attempts)
    assert s.size == 0 and s.opening == 0
    assert len(warnings_of(caplog)) == 1
    assert "unreachable" in warnings_of(caplog)[0]

    driver.fail_connect = False
    back_at = clock.now
    while pool.stats().idle < 1:
        assert clock.now - back_at <= 1.0 + step, "refilled within one backoff step"
        pool.maintainer.tick(clock.now)
        clock.advance(step)
    s = pool.stats()
    assert not s.database_down and s.backoff == 0.0
    assert len(warnings_of(caplog)) == 2
    assert "reachable again" in warnings_of(caplog)[1]


@pytest.mark.parametrize(("draw", "factor"), [(0.0, 0.5), (0.5, 0.75), (1.0, 1.0)])
def test_backoff_is_jittered_between_half_and_full_delay(new_pool, driver, clock, draw, factor):
    pool = new_pool(rng=lambda: draw, min_idle=1, max_lifetime=None, idle_timeout=None,
                    keepalive=None, ping_after=None)
    driver.fail_connect = True
    pool.maintainer.tick(clock.now)
    assert pool.stats().backoff == pytest.approx(BASE_BACKOFF * factor)


def test_requests_get_connect_errors_at_once_during_an_outage(new_pool, driver, clock):
    from flask_peewee_pool.core.errors import ConnectError

    pool = new_pool(min_idle=1, timeout=30, max_lifetime=None, idle_timeout=None,
                    keepalive=None, ping_after=None)
    driver.fail_connect = True
    pool.maintainer.tick(clock.now)
    with pytest.raises(ConnectError):
        pool.checkout()


def test_outage_flag_clears_when_requests_connect_again(new_pool, driver, clock):
    pool = keepalive_pool(new_pool, keepalive=10.0)
    (conn,) = fill(pool, 1)
    conn.raw.ping_fails = True
    driver.fail_connect = True
    clock.advance(11.0)
    pool.maintainer.tick(clock.now)
    assert pool.stats().database_down
    driver.fail_connect = False
    give(pool, take(pool))
    clock.advance(100.0)
    pool.maintainer.tick(clock.now)
    assert not pool.stats().database_down


# --------------------------------------------------------------------------- leaks


def test_leak_warning_once_with_the_checkout_stack(new_pool, driver, clock, caplog, quiet):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    pool = new_pool(leak_threshold=5.0, **quiet)
    conn = take(pool)
    clock.advance(4.0)
    pool.maintainer.tick(clock.now)
    assert warnings_of(caplog) == []
    clock.advance(2.0)
    pool.maintainer.tick(clock.now)
    clock.advance(100.0)
    pool.maintainer.tick(clock.now)
    (message,) = warnings_of(caplog)
    assert "test_leak_warning_once_with_the_checkout_stack" in message
    assert "by thread MainThread" in message
    assert "leak_threshold=5.0" in message
    assert pool.stats().counters.leaks == 1
    give(pool, conn)
    again = take(pool)
    clock.advance(6.0)
    pool.maintainer.tick(clock.now)
    assert len(warnings_of(caplog)) == 2, "a new checkout is watched afresh"
    give(pool, again)


def test_no_leak_tracking_without_threshold(new_pool, clock, caplog, quiet):
    pool = new_pool(**quiet)
    conn = take(pool)
    assert conn.site is None
    clock.advance(1e6)
    pool.maintainer.tick(clock.now)
    assert warnings_of(caplog) == []


def test_leak_warning_for_a_handed_over_connection_names_the_waiter(
        new_pool, clock, caplog, quiet):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    pool = new_pool(max_connections=1, leak_threshold=5.0, timeout=30, **quiet)
    held = take(pool)
    got, release = threading.Event(), threading.Event()

    def waiter_site_marker():
        conn = take(pool)
        got.set()
        release.wait(WAIT)
        give(pool, conn)

    def releasing_site_marker():
        give(pool, held)

    waiter = start(waiter_site_marker, "the-waiter")
    try:
        wait_waiting(pool, 1)
        releasing_site_marker()
        assert got.wait(WAIT)
        clock.advance(6.0)
        pool.maintainer.tick(clock.now)
    finally:
        release.set()
        waiter.get()
    (message,) = warnings_of(caplog)
    assert "by thread the-waiter" in message
    assert "waiter_site_marker" in message
    assert "releasing_site_marker" not in message


# --------------------------------------------------------------------------- misc duties


def test_stats_count_retirements_by_cause(new_pool, driver, clock):
    pool = new_pool(rng=lambda: 0.0, max_connections=6, segments=1, max_lifetime=100.0,
                    idle_timeout=30.0, keepalive=None, ping_after=None)
    a, b, c = take(pool), take(pool), take(pool)
    give(pool, a, broken=True)
    give(pool, b)
    pool.maintainer.tick(clock.now)  # a: broken
    clock.advance(31.0)
    pool.maintainer.tick(clock.now)  # b: idle
    clock.advance(70.0)
    give(pool, c)  # expired while in use
    pool.maintainer.tick(clock.now)  # c: lifetime (replaced)
    counters = pool.stats().counters
    assert (counters.retired_broken, counters.retired_idle, counters.retired_lifetime) == (
        1, 1, 1)
    assert counters.closed == 3


def test_hooks_run_every_tick_and_a_failing_hook_is_logged(new_pool, clock, caplog):
    pool = new_pool()
    seen: list[float] = []

    def broken_hook(now):
        raise RuntimeError("hook bug")

    pool.maintainer.hooks.extend([seen.append, broken_hook])
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        pool.maintainer.tick(clock.now)
        clock.advance(1.0)
        pool.maintainer.tick(clock.now)
    assert seen == [clock.now - 1.0, clock.now]
    assert sum("hook failed" in r.getMessage() for r in caplog.records) == 2


def test_close_idle_closes_inline_without_a_maintainer_thread(new_pool, driver, quiet):
    pool = new_pool(**quiet)
    fill(pool, 3)
    assert pool.close_idle() == 3
    assert driver.calls["close"] == 3
    s = pool.stats()
    assert (s.size, s.counters.retired_idle) == (0, 3)


def test_reclaim_takes_back_long_held_connections(new_pool, driver, clock, quiet):
    pool = new_pool(**quiet)
    old = take(pool)
    clock.advance(100.0)
    recent = take(pool)
    assert pool.reclaim(older_than=50.0) == 1
    assert old.reclaimed and not recent.reclaimed
    pool.maintainer.tick(clock.now)
    assert old.raw.closed
    assert pool.stats().size == 1
    pool.checkin(old)  # the late return of a reclaimed connection is a no-op
    assert pool.stats().size == 1
    give(pool, recent)


def test_background_thread_closes_retired_connections_promptly(new_pool, driver):
    pool = new_pool(max_lifetime=None, idle_timeout=None, keepalive=None, ping_after=None)
    conn = take(pool)
    gate = driver.block("close")
    pool.maintainer.start()
    try:
        assert pool.maintainer.running
        give(pool, conn, broken=True)
        gate.wait_entered()  # woken at once, not after a tick period of polling
        (closer,) = driver.calls_by("close")
        assert closer.startswith("fpp-maintainer-pool")
    finally:
        gate.release()
        pool.close(timeout=WAIT)
    assert not pool.maintainer.running
    # close() does not wait for executor jobs already running (shutdown(wait=False)).
    pool.maintainer._executor.shutdown(wait=True)
    assert conn.raw.closed


def test_tick_on_a_closed_pool_only_closes(new_pool, driver, clock):
    pool = new_pool(min_idle=2, keepalive=1.0, idle_timeout=1.0)
    pool.close()
    clock.advance(100.0)
    pool.maintainer.tick(clock.now)
    assert driver.calls["connect"] == 0 and driver.calls["ping"] == 0


def test_maintenance_state_connections_are_not_handed_out(new_pool, driver, clock):
    pool = keepalive_pool(new_pool, max_connections=2, segments=1, timeout=30)
    (conn,) = fill(pool, 1)
    clock.advance(61.0)
    gate = driver.block("ping")
    m = start(lambda: pool.maintainer.tick(clock.now), "maintainer")
    gate.wait_entered()
    assert conn.state == MAINTENANCE
    other = take(pool)
    assert other is not conn
    gate.release()
    m.get()
    give(pool, other)
