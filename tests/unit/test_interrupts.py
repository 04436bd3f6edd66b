"""Every step interrupted by a BaseException is undone or completed (issue 12, item 1).

A ``BaseException`` (KeyboardInterrupt, SystemExit, gevent.Timeout, GreenletExit) can hit
any blocking call: every driver call, every hook, every wait. The fake driver raises
:class:`Interrupt` at the n-th call of one method; a workload that goes through checkout,
ping, dirty and clean checkin, expiry, keepalive and the maintainer's recycling runs
around it. Afterwards, whatever was hit: nothing is in use, the slot accounting adds up,
``max_connections`` checkouts succeed at once, the fake server never saw more than the cap,
and after ``close()`` nothing is left open. The interrupt itself reached the caller
unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest

from flask_peewee_pool.core import pool as pool_module
from flask_peewee_pool.core.errors import ConnectError, PoolTimeout
from flask_peewee_pool.core.pool import IDLE, ConnectionPool
from tests.unit.fakes import (
    WAIT,
    Interrupt,
    check_accounting,
    give,
    start,
    take,
    wait_waiting,
)

CAP = 2

#: Where the fake driver raises, and on which call of that method (1st, 2nd, 3rd).
DRIVER_SITES = ["connect", "ping", "is_usable", "needs_rollback", "rollback", "close"]
#: Two option sets: pings at checkout, or keepalive pings by the maintainer.
VARIANTS = {
    "checkout": {"ping_after": 0.0, "keepalive": None},
    "maintainer": {"ping_after": None, "keepalive": 2.0},
}


def _attempt(fn: Any, seen: list[BaseException]) -> Any:
    try:
        return fn()
    except Interrupt as exc:
        seen.append(exc)
    except (PoolTimeout, ConnectError):
        pass
    return None


def _workload(pool: ConnectionPool, clock: Any, seen: list[BaseException]) -> None:
    """Checkouts, a dirty and a clean return, time passing (expiry, keepalive), ticks."""
    for _ in range(6):
        held = []
        for _ in range(CAP):
            conn = _attempt(lambda: take(pool, timeout=0), seen)
            if conn is not None:
                held.append(conn)
        for i, conn in enumerate(held):
            conn.raw.in_transaction = i == 0
            _attempt(lambda c=conn: give(pool, c), seen)
        clock.advance(3.0)  # lifetime 10: the third round meets expiring connections
        _attempt(lambda: pool.maintainer.tick(clock.now), seen)


def _settle(pool: ConnectionPool, clock: Any, seen: list[BaseException]) -> None:
    for _ in range(5):
        _attempt(lambda: pool.maintainer.tick(clock.now), seen)


def _assert_whole(pool: ConnectionPool, driver: Any) -> None:
    stats = pool.stats()
    assert stats.in_use == 0 and stats.waiting == 0 and stats.opening == 0, stats
    check_accounting(pool)
    held = [take(pool, timeout=0) for _ in range(CAP)]  # no slot lost, no wait
    assert len({id(c.raw) for c in held}) == CAP
    for conn in held:
        give(pool, conn)
    assert pool.stats().in_use == 0
    assert driver.max_open <= CAP, (driver.log, driver.open_now)
    pool.close()
    assert driver.open_connections() == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("nth", [1, 2, 3])
@pytest.mark.parametrize("method", DRIVER_SITES)
def test_interrupt_at_every_driver_call(new_pool, driver, clock, method, nth, variant):
    pool = new_pool(max_connections=CAP, max_lifetime=10.0, lifetime_jitter=0.0,
                    idle_timeout=None, **VARIANTS[variant])
    driver.interrupt_at[method] = nth
    seen: list[BaseException] = []
    _workload(pool, clock, seen)
    _settle(pool, clock, seen)
    if driver.interrupted != [method]:
        driver.interrupt_at.clear()  # never in the fixture's teardown
        pytest.skip(f"driver.{method} is called fewer than {nth} times in this variant")
    assert len(seen) == 1 and str(seen[0]) == f"interrupted in driver.{method}"
    _assert_whole(pool, driver)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("nth", [1, 2, 3])
def test_interrupt_in_a_one_call_checkin_status(new_pool, driver, clock, nth, variant):
    """The same, for a driver answering checkin's two questions in one call (what the
    SQLite, psycopg and PyMySQL drivers do): the fast checkin path meets it first."""
    driver.checkin_status = driver.one_call_checkin_status
    pool = new_pool(max_connections=CAP, max_lifetime=10.0, lifetime_jitter=0.0,
                    idle_timeout=None, **VARIANTS[variant])
    driver.interrupt_at["checkin_status"] = nth
    seen: list[BaseException] = []
    _workload(pool, clock, seen)
    _settle(pool, clock, seen)
    assert driver.interrupted == ["checkin_status"]
    assert len(seen) == 1 and str(seen[0]) == "interrupted in driver.checkin_status"
    _assert_whole(pool, driver)


class _HookInterrupts:
    """A hook that raises Interrupt on its n-th call, and does nothing otherwise."""

    def __init__(self, nth: int) -> None:
        self.nth = nth
        self.calls = 0

    def __call__(self, raw: Any) -> None:
        self.calls += 1
        if self.calls == self.nth:
            raise Interrupt("interrupted in a hook")


@pytest.mark.parametrize("nth", [1, 2, 3])
@pytest.mark.parametrize("hook", ["check", "reset", "configure"])
def test_interrupt_in_every_hook(new_pool, driver, clock, hook, nth):
    fn = _HookInterrupts(nth)
    pool = new_pool(max_connections=CAP, max_lifetime=10.0, lifetime_jitter=0.0,
                    idle_timeout=None, keepalive=None, ping_after=0.0, **{hook: fn})
    seen: list[BaseException] = []
    _workload(pool, clock, seen)
    _settle(pool, clock, seen)
    assert fn.calls >= nth
    assert [str(e) for e in seen] == ["interrupted in a hook"]
    _assert_whole(pool, driver)


# ------------------------------------------------------------------------------ waits


class _InterruptedEvent:
    """A waiter's event whose ``wait`` first waits for real (so a releasing thread can
    hand it a connection or a slot), then raises as if interrupted at that moment."""

    def __init__(self, real: Any, after_handoff: bool) -> None:
        self._real = real
        self._after_handoff = after_handoff

    def wait(self, timeout: float | None = None) -> bool:
        if self._after_handoff:
            assert self._real.wait(WAIT), "nothing was handed to the waiter"
        raise Interrupt("interrupted while waiting")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _interrupt_waits(monkeypatch: pytest.MonkeyPatch, after_handoff: bool) -> None:
    real_init = pool_module._Waiter.__init__

    def init(self: Any) -> None:
        real_init(self)
        self.event = _InterruptedEvent(self.event, after_handoff)

    monkeypatch.setattr(pool_module._Waiter, "__init__", init)


def test_interrupted_waiter_leaves_the_queue(new_pool, driver, quiet, monkeypatch):
    """The issue's first case: the next returned connection must not go to a dead waiter."""
    pool = new_pool(max_connections=1, **quiet)
    holder = take(pool)
    _interrupt_waits(monkeypatch, after_handoff=False)
    with pytest.raises(Interrupt):
        pool.checkout(timeout=5)
    monkeypatch.undo()
    assert pool.stats().waiting == 0
    give(pool, holder)
    assert holder.state == IDLE
    again = take(pool, timeout=0)  # at once: the connection is idle, not handed to a ghost
    assert again is holder
    give(pool, again)
    check_accounting(pool)


@pytest.mark.parametrize("handed", ["connection", "slot"])
def test_waiter_interrupted_after_the_handoff_passes_it_on(new_pool, driver, clock, quiet,
                                                           monkeypatch, handed):
    """Interrupted in the race where a releasing thread already handed it something."""
    pool = new_pool(max_connections=1, **quiet)
    holder = take(pool)
    _interrupt_waits(monkeypatch, after_handoff=True)
    waiter = start(lambda: pool.checkout(timeout=WAIT), "waiter")
    wait_waiting(pool, 1)
    if handed == "connection":
        give(pool, holder)  # handed straight to the waiter, who is interrupted
    else:
        give(pool, holder, broken=True)  # retired: its slot goes to the waiter on close
        pool.maintainer.tick(clock.now)
    with pytest.raises(Interrupt):
        waiter.get()
    monkeypatch.undo()
    stats = pool.stats()
    assert stats.in_use == 0 and stats.waiting == 0 and stats.opening == 0, stats
    check_accounting(pool)
    conn = take(pool, timeout=0)  # the connection (or the slot) was passed on, not lost
    if handed == "connection":
        assert conn is holder
    give(pool, conn)
    assert driver.max_open <= 1


def test_interrupted_wait_with_others_queued_hands_on_to_the_next(new_pool, driver, quiet,
                                                                  monkeypatch):
    pool = new_pool(max_connections=1, **quiet)
    holder = take(pool)
    _interrupt_waits(monkeypatch, after_handoff=True)
    first = start(lambda: pool.checkout(timeout=WAIT), "first")
    wait_waiting(pool, 1)
    monkeypatch.undo()
    second = start(lambda: take(pool, timeout=WAIT), "second")
    wait_waiting(pool, 2)
    give(pool, holder)
    with pytest.raises(Interrupt):
        first.get()
    conn = second.get()  # what the interrupted waiter got went on to the next in line
    assert conn is holder
    give(pool, conn)
    check_accounting(pool)
