"""Connection hooks, holder diagnostics and runtime resize, with the fake driver."""

from __future__ import annotations

import pytest

from flask_peewee_pool.core.errors import ConfigError, ConnectError, PoolTimeout
from tests.unit.fakes import give, start, take, wait_waiting


def test_configure_runs_once_per_new_connection_before_first_use(new_pool, quiet):
    seen = []
    pool = new_pool(configure=lambda raw: seen.append(raw.id), **quiet)
    a = take(pool)
    assert seen == [a.raw.id]
    give(pool, a)
    again = take(pool)
    assert again.raw is a.raw and seen == [a.raw.id]  # reuse: not configured again
    give(pool, again)


def test_failing_configure_discards_the_connection_and_counts_it(new_pool, driver, clock,
                                                                  quiet):
    calls = []

    def configure(raw):
        calls.append(raw)
        if len(calls) == 1:
            raise RuntimeError("cannot set the session time zone")

    pool = new_pool(configure=configure, max_connections=1, **quiet)
    with pytest.raises(ConnectError, match="session time zone"):
        pool.checkout()
    pool.maintainer.tick(clock.now)
    assert calls[0].closed  # never handed out, closed by the maintainer
    assert pool.stats().counters.hook_failures == 1
    conn = take(pool)  # the slot came back
    assert conn.raw is calls[1]
    give(pool, conn)


def test_reset_runs_at_every_checkin_after_the_rollback(new_pool, driver, quiet):
    order = []
    real_rollback = driver.rollback

    def rollback(raw):
        order.append("rollback")
        real_rollback(raw)

    driver.rollback = rollback
    pool = new_pool(reset=lambda raw: order.append("reset"), **quiet)
    conn = take(pool)
    conn.raw.in_transaction = True
    give(pool, conn)
    assert order == ["rollback", "reset"]
    conn = take(pool)
    give(pool, conn)  # clean: no rollback, but the hook still runs
    assert order == ["rollback", "reset", "reset"]


def test_failing_reset_discards_the_connection(new_pool, clock, quiet):
    def reset(raw):
        raise RuntimeError("DISCARD ALL failed")

    pool = new_pool(reset=reset, **quiet)
    conn = take(pool)
    give(pool, conn)
    pool.maintainer.tick(clock.now)
    assert conn.raw.closed
    stats = pool.stats()
    assert stats.counters.hook_failures == 1 and stats.size == 0


def test_check_replaces_the_ping(new_pool, driver, clock):
    checked = []
    pool = new_pool(check=lambda raw: checked.append(raw.id), ping_after=0,
                    max_lifetime=None, keepalive=None, idle_timeout=None)
    conn = take(pool)
    give(pool, conn)
    clock.advance(1)
    conn = take(pool)
    assert checked == [conn.raw.id] and conn.raw.pings == 0
    give(pool, conn)


def test_failing_check_discards_and_checkout_continues(new_pool, clock):
    def check(raw):
        raise RuntimeError("stale")

    pool = new_pool(check=check, ping_after=0, max_lifetime=None, keepalive=None,
                    idle_timeout=None)
    first = take(pool)
    give(pool, first)
    clock.advance(1)
    second = take(pool)  # the first failed its check: a new one, transparently
    assert second.raw is not first.raw
    give(pool, second)


def test_bad_hooks_are_config_errors():
    from flask_peewee_pool.core.options import PoolOptions

    with pytest.raises(ConfigError, match="configure"):
        PoolOptions(configure=42)
    with pytest.raises(ConfigError, match="init_sql"):
        PoolOptions(init_sql=[""])


def holder_code(pool):
    return pool.checkout()  # the line the diagnostics must point at


def test_timeout_message_names_the_longest_holders_and_where_they_took_it(new_pool, quiet):
    pool = new_pool(max_connections=2, name="orders", **quiet)
    holders = [start(lambda: holder_code(pool), name=f"worker-{i}") for i in range(2)]
    conns = [w.get() for w in holders]
    with pytest.raises(PoolTimeout) as info:
        pool.checkout(timeout=0.05)
    message = str(info.value)
    assert "pool 'orders'" in message and "size 2/2" in message
    assert "thread 'worker-0'" in message and "thread 'worker-1'" in message
    assert "test_hooks_holders_resize.py:" in message
    stats = pool.stats()
    assert {h["thread"] for h in stats.holders} == {"worker-0", "worker-1"}
    for conn in conns:
        give(pool, conn)
    assert pool.stats().holders == []


def test_growing_takes_effect_at_once_for_waiters(new_pool, quiet):
    pool = new_pool(max_connections=1, timeout=5, **quiet)
    held = take(pool)
    waiter = start(lambda: take(pool), name="waiter")
    wait_waiting(pool, 1)
    pool.resize(max_connections=2)
    second = waiter.get()
    assert pool.stats().size == 2 and pool.options.max_connections == 2
    give(pool, held)
    give(pool, second)


def test_shrinking_closes_idle_now_and_drains_in_use(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=4, segments=1, **quiet)
    conns = [take(pool) for _ in range(4)]
    for conn in conns[:2]:
        give(pool, conn)
    pool.resize(max_connections=1)
    pool.maintainer.tick(clock.now)
    assert pool.stats().size == 2  # two idle closed, two still in use
    give(pool, conns[2])
    pool.maintainer.tick(clock.now)
    assert pool.stats().size == 1
    give(pool, conns[3])  # within the new cap: kept
    assert pool.stats().size == 1 and pool.stats().idle == 1
    assert len(driver.open_connections()) == 1


def test_resize_validates(new_pool, quiet):
    pool = new_pool(max_connections=4, min_idle=2, **quiet)
    with pytest.raises(ConfigError, match="min_idle"):
        pool.resize(max_connections=1)
    assert pool.options.max_connections == 4
