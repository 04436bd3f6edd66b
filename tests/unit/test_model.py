"""A stateful model of the pool: random sequences of checkouts, checkins, faults, clock jumps
and maintainer ticks, interrupted steps (a BaseException at a driver call), reclaim,
resize and re-init, with the design's invariants checked after every step.

The machine is single-threaded, so checkouts use ``timeout=0`` (a try: never blocks) and,
between two steps, nothing is in flight: no connection is opening and nobody waits. That
makes the strongest form of invariant 3 checkable: the pool's size equals the number of fake
connections the "server" sees open. Invariant 4 (no driver call under a lock) is enforced by
the fake driver on every call.

Invariant 5 (no request waits on a connect or close that expiry caused) is checked in two
parts: a checkout or checkin never closes a connection itself (closing is the maintainer's
job; only after ``close()`` does a checkin close what it returns), and once the maintainer
has *settled* (ticked often enough since the clock last moved, with the database up and no
backoff pending) no idle connection is within the maintainer's expiry horizon, so no
checkout can meet an expired connection and have to connect because of it.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from flask_peewee_pool.core.errors import CheckinError, ConnectError, PoolClosed, PoolTimeout
from flask_peewee_pool.core.pool import IDLE, IN_USE, ConnectionPool, PooledConnection
from tests.unit.fakes import (
    FakeClock,
    FakeDriver,
    Interrupt,
    check_accounting,
    gauges,
    give,
    make_pool,
    take,
)

CHECKIN_KINDS = ["clean", "clean", "dirty", "dirty_rollback_fails", "broken", "broken_arg"]


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.driver = FakeDriver()
        self.pool: ConnectionPool | None = None
        self.held: list[PooledConnection] = []
        self.returned: list[PooledConnection] = []
        self.closed = False
        self.max_connections = 0
        #: Maintainer ticks since the clock last moved (invariant 5's "settled").
        self.ticks_since_advance = 0
        #: Options of the current pool (re-init builds a new one with them).
        self.options: dict = {}
        #: Connections of pools replaced by re-init, still held: (old pool, connection).
        self.old_held: list[tuple[ConnectionPool, PooledConnection]] = []
        self.old_pools: list[ConnectionPool] = []
        #: The largest cap in force since the last shrink finished draining, and ever.
        self.cap_bound = 0
        self.max_ever = 0
        self.max_old_held = 0

    @initialize(
        max_connections=st.integers(1, 4),
        segments=st.sampled_from([None, 1, 2, 3]),
        min_idle=st.integers(0, 4),
        ping_after=st.sampled_from([None, 0.0, 1.0]),
        max_lifetime=st.sampled_from([None, 5.0, 50.0]),
        idle_timeout=st.sampled_from([None, 10.0]),
        keepalive=st.sampled_from([None, 3.0]),
        maintenance_concurrency=st.integers(1, 3),
        leak_threshold=st.sampled_from([None, 20.0]),
        seed=st.integers(0, 2**16),
    )
    def setup(self, max_connections, segments, min_idle, ping_after, max_lifetime,
              idle_timeout, keepalive, maintenance_concurrency, leak_threshold, seed):
        self.max_connections = self.cap_bound = self.max_ever = max_connections
        self.seed = seed
        self.options = dict(
            max_connections=max_connections, segments=segments,
            min_idle=min(min_idle, max_connections), ping_after=ping_after,
            max_lifetime=max_lifetime, idle_timeout=idle_timeout, keepalive=keepalive,
            maintenance_concurrency=maintenance_concurrency, leak_threshold=leak_threshold,
            max_backoff=2.0, timeout=30.0)
        self.pool = make_pool(self.driver, self.clock, rng=random.Random(seed).random,
                              **self.options)

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: self.pool is not None and not self.closed)
    @rule()
    def checkout(self):
        pool = self.pool
        armed = self.driver.fail_connect or self.driver.fail_next_connects > 0
        closes = self.driver.calls["close"]
        try:
            conn = take(pool, timeout=0)
        except PoolTimeout:
            s = pool.stats()
            assert s.idle == 0 and s.size >= pool.options.max_connections, "timed out with room"
        except ConnectError:
            assert armed, "connect failed although the driver did not fail it"
        else:
            assert conn.state == IN_USE and conn.raw.open
            assert conn.expires_at > self.clock.now, "handed out an expired connection"
            self.held.append(conn)
        finally:
            # 5. A request never closes a connection (the maintainer does).
            assert self.driver.calls["close"] == closes, "a checkout closed a connection"

    @precondition(lambda self: self.pool is not None and self.closed)
    @rule()
    def checkout_after_close(self):
        with pytest.raises(PoolClosed):
            self.pool.checkout(timeout=0)

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), kind=st.sampled_from(CHECKIN_KINDS))
    def checkin(self, data, kind):
        conn = self.held.pop(data.draw(st.integers(0, len(self.held) - 1), label="which"))
        raw = conn.raw
        if kind.startswith("dirty"):
            raw.in_transaction = True
            raw.rollback_fails = kind == "dirty_rollback_fails"
        elif kind == "broken":
            raw.broken = True
        closes = self.driver.calls["close"]
        give(self.pool, conn, broken=kind == "broken_arg")
        if not self.closed:  # 5. after close(), a checkin closes what it returns: shutdown
            assert self.driver.calls["close"] == closes, "a checkin closed a connection"
        if conn.state == IDLE:
            assert not raw.in_transaction and raw.open and not raw.broken
        if self.closed:
            assert raw.closed, "returned after close: closed at once"
        self.returned = [*self.returned[-20:], conn]

    @precondition(lambda self: bool(self.returned))
    @rule(data=st.data())
    def checkin_again(self, data):
        candidates = [c for c in self.returned if c.state != IN_USE and not c.reclaimed]
        if not candidates:
            return
        conn = data.draw(st.sampled_from(candidates), label="again")
        before = gauges(self.pool)
        counters = self.pool.stats().counters
        with pytest.raises(CheckinError):
            self.pool.checkin(conn)
        assert gauges(self.pool) == before
        assert self.pool.stats().counters == counters

    @precondition(lambda self: self.pool is not None)
    @rule(data=st.data())
    def break_an_idle_connection(self, data):
        idle = [c for seg in self.pool._segments for c in seg.idle]
        if idle:
            conn = data.draw(st.sampled_from(idle), label="idle")
            conn.raw.ping_fails = True

    @precondition(lambda self: self.pool is not None)
    @rule()
    def fail_next_ping(self):
        self.driver.fail_next_pings += 1

    @precondition(lambda self: self.pool is not None)
    @rule()
    def fail_next_connect(self):
        self.driver.fail_next_connects += 1

    @precondition(lambda self: self.pool is not None)
    @rule(down=st.booleans())
    def outage(self, down):
        self.driver.fail_connect = down

    @precondition(lambda self: self.pool is not None)
    @rule(seconds=st.sampled_from([0.01, 0.5, 1.0, 2.0, 3.5, 6.0, 11.0, 25.0, 60.0]))
    def advance(self, seconds):
        self.clock.advance(seconds)
        self.ticks_since_advance = 0

    @precondition(lambda self: self.pool is not None)
    @rule()
    def tick(self):
        self.pool.maintainer.tick(self.clock.now)
        self.ticks_since_advance += 1

    @precondition(lambda self: self.pool is not None)
    @rule()
    def close_idle(self):
        idle = self.pool.stats().idle
        assert self.pool.close_idle() == idle
        assert self.pool.stats().idle == 0

    @precondition(lambda self: self.pool is not None and not self.closed)
    @rule()
    def close(self):
        self.pool.close()
        self.closed = True
        s = self.pool.stats()
        assert s.closed and s.idle == 0 and s.size == len(self.held)

    # ---------------------------------------------------- interrupts, reclaim, resize, init

    @precondition(lambda self: self.pool is not None and not self.closed)
    @rule(site=st.sampled_from(["connect", "ping", "is_usable"]))
    def interrupted_checkout(self, site):
        self.driver.interrupt_at[site] = 1
        closes = self.driver.calls["close"]
        try:
            conn = take(self.pool, timeout=0)
        except (Interrupt, PoolTimeout, ConnectError):
            pass
        else:
            self.held.append(conn)
        finally:
            self.driver.interrupt_at.pop(site, None)
        assert self.driver.calls["close"] == closes, "a checkout closed a connection"

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), site=st.sampled_from(["is_usable", "needs_rollback", "rollback"]),
          dirty=st.booleans())
    def interrupted_checkin(self, data, site, dirty):
        conn = self.held.pop(data.draw(st.integers(0, len(self.held) - 1), label="which"))
        conn.raw.in_transaction = dirty
        self.driver.interrupt_at[site] = 1
        try:
            give(self.pool, conn)  # interrupted or not, it is returned
        except Interrupt:
            pass
        finally:
            self.driver.interrupt_at.pop(site, None)
        if conn.state == IDLE:
            assert not conn.raw.in_transaction and conn.raw.open
        self.returned = [*self.returned[-20:], conn]

    @precondition(lambda self: self.pool is not None)
    @rule(site=st.sampled_from(["connect", "close", "ping"]))
    def interrupted_tick(self, site):
        self.driver.interrupt_at[site] = 1
        try:
            self.pool.maintainer.tick(self.clock.now)
        except Interrupt:
            pass
        finally:
            self.driver.interrupt_at.pop(site, None)

    @precondition(lambda self: self.pool is not None)
    @rule()
    def reclaim(self):
        assert self.pool.reclaim(older_than=0) == len(self.held)
        for conn in self.held:
            give(self.pool, conn)  # a late return of a reclaimed connection: a no-op
        self.held.clear()

    @precondition(lambda self: self.pool is not None and not self.closed)
    @rule(n=st.integers(1, 4))
    def resize(self, n):
        self.pool.resize(max_connections=n, min_idle=min(self.pool.options.min_idle, n))
        self.max_connections = n
        self.options.update(max_connections=n, min_idle=self.pool.options.min_idle)
        self.cap_bound = max(self.cap_bound, n)
        self.max_ever = max(self.max_ever, n)

    @precondition(lambda self: self.pool is not None and not self.closed)
    @rule()
    def reinit(self):
        """What ``db.init()`` does: close the pool, build a new one; holders keep theirs."""
        old = self.pool
        old.close()
        self.old_pools.append(old)
        self.old_held += [(old, conn) for conn in self.held]
        self.max_old_held = max(self.max_old_held, len(self.old_held))
        self.held = []
        self.returned = []
        self.pool = make_pool(self.driver, self.clock, rng=random.Random(self.seed).random,
                              **self.options)
        self.ticks_since_advance = 0

    @precondition(lambda self: bool(self.old_held))
    @rule()
    def return_to_old_pool(self):
        old, conn = self.old_held.pop()
        give(old, conn)
        assert conn.raw.closed, "returned to a closed pool: closed at once"

    # ------------------------------------------------------------------ invariants

    @invariant()
    def invariants(self):
        pool = self.pool
        if pool is None:
            return
        driver = self.driver
        assert driver.watch.violations == [], "driver I/O under a pool lock"
        assert driver.errors == []
        draining = any(seg.slots > seg.capacity for seg in pool._segments)
        if not draining:
            self.cap_bound = self.max_connections  # a shrink has finished draining
        check_accounting(pool, draining=draining)
        s = pool.stats()
        open_raws = driver.open_connections()
        old_open = sum(old.stats().size for old in self.old_pools)
        assert old_open == len(self.old_held)
        # 1. Never more than max_connections open on the "server" (the larger cap while a
        # shrink drains; plus what holders of a replaced pool still hold).
        assert len(open_raws) <= self.cap_bound + len(self.old_held)
        assert driver.max_open <= self.max_ever + self.max_old_held
        # 2. Never held twice (take() asserts it on every checkout, too).
        assert len({id(c.raw) for c in self.held}) == len(self.held)
        assert all(c.state == IN_USE and c.raw.open for c in self.held)
        # 3. Accounting: nothing in flight between steps; size is what the server sees.
        assert s.in_use == len(self.held)
        assert s.opening == 0 and s.waiting == 0
        assert s.size == s.idle + s.in_use + s.opening + s.closing
        assert s.size + old_open == len(open_raws), (s, open_raws)
        assert all(v >= 0 for v in vars(s.counters).values())
        # 5. Settled maintainer: nothing idle is about to expire, so no request pays for it.
        if self._settled():
            from flask_peewee_pool.core.maintainer import TICK

            lifetime = pool.options.max_lifetime
            horizon = min(1.0, lifetime * 0.1) + TICK
            due = [c for seg in pool._segments for c in seg.idle
                   if c.expires_at - horizon <= self.clock.now]
            assert due == [], f"settled maintainer left expiring idle connections: {due}"

    def _settled(self) -> bool:
        pool, driver = self.pool, self.driver
        return (pool.options.max_lifetime is not None and not self.closed
                and self.ticks_since_advance > self.max_connections
                and not driver.fail_connect and driver.fail_next_connects == 0
                and not pool.maintainer.database_down
                and pool.maintainer._next_connect_at <= self.clock.now)

    def teardown(self):
        pool = self.pool
        if pool is None:
            return
        pool.close()
        for conn in self.held:
            give(pool, conn)
        self.held.clear()
        for old, conn in self.old_held:
            give(old, conn)
        self.old_held.clear()
        assert pool.stats().size == 0
        assert self.driver.open_connections() == []
        assert self.driver.watch.violations == []
        assert self.driver.errors == []


PoolMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPoolModel = PoolMachine.TestCase
