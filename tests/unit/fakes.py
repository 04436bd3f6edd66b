"""Test doubles for the pool: a manual clock, a scripted driver, and lock instrumentation.

The most important job of :class:`FakeDriver` is invariant 4 of the design: *no pool lock is
held during driver I/O*. :func:`make_pool` replaces every lock of a pool (each segment's
lock, the waiters' lock, the maintainer's lock) with an :class:`InstrumentedLock` that
records its owner thread; every driver method first checks that the calling thread owns
none of them. A violation is recorded in ``driver.watch.violations`` (checked by the
``new_pool`` fixture at teardown, so one in a background thread fails the test too) and
raised as :class:`LockViolation`, a ``BaseException`` the pool's ``except Exception``
handlers cannot swallow.

The driver also enforces invariant 2 from its side: no I/O on a connection that a test
thread currently holds (see :func:`take` / :func:`give`), no double close, no I/O after
close.
"""

from __future__ import annotations

import collections
import itertools
import random
import threading
from collections.abc import Callable, Iterable
from typing import Any

from flask_peewee_pool.core import drivers
from flask_peewee_pool.core.pool import ConnectionPool, PooledConnection

#: Upper bound for every wait in a test; reached only when something is broken.
WAIT = 10.0


class LockViolation(BaseException):
    """A driver method ran while the calling thread held a pool lock."""


class Interrupt(BaseException):
    """What an interrupted step raises (stands for KeyboardInterrupt, SystemExit,
    gevent.Timeout, GreenletExit): a ``BaseException`` the pool must not swallow."""


# ---------------------------------------------------------------------------------------
# Clock
# ---------------------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        assert seconds >= 0, "a monotonic clock never goes back"
        self.now += seconds
        return self.now


# ---------------------------------------------------------------------------------------
# Locks
# ---------------------------------------------------------------------------------------


class LockWatch:
    """The instrumented locks of one or more pools, and what went wrong with them."""

    def __init__(self) -> None:
        self.locks: list[InstrumentedLock] = []
        self.violations: list[str] = []
        #: (kind held, kind acquired with blocking=True) pairs seen, for lock-order checks.
        self.order: set[tuple[str, str]] = set()
        #: Called (in the releasing thread) after every release, to interleave deterministically.
        self.after_release: Callable[[InstrumentedLock], None] | None = None
        self._mutex = threading.Lock()

    def add(self, lock: InstrumentedLock) -> None:
        with self._mutex:
            self.locks.append(lock)

    def held_by_me(self) -> list[InstrumentedLock]:
        me = threading.get_ident()
        return [lock for lock in list(self.locks) if lock.owner == me]

    def violation(self, message: str) -> LockViolation:
        with self._mutex:
            self.violations.append(message)
        return LockViolation(message)

    def assert_unlocked(self, what: str) -> None:
        held = self.held_by_me()
        if held:
            names = ", ".join(lock.name for lock in held)
            raise self.violation(
                f"{what} called in thread {threading.current_thread().name!r} "
                f"while holding {names}")


class InstrumentedLock:
    """A ``threading.Lock`` that knows its owner (for the driver's no-lock assertion)."""

    def __init__(self, name: str, kind: str, watch: LockWatch, rank: int = 0) -> None:
        self.name = name
        self.kind = kind
        #: Locks of one kind nest only in increasing rank (segments: their index).
        self.rank = rank
        self._lock = threading.Lock()
        self._watch = watch
        self.owner: int | None = None
        self.acquisitions = 0
        watch.add(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        if self.owner == me:
            if not blocking:
                return False
            raise self._watch.violation(f"{self.name} re-acquired by its owner (deadlock)")
        if blocking:
            for held in self._watch.held_by_me():
                self._watch.order.add((held.kind, self.kind))
                if held.kind == self.kind and held.rank >= self.rank:
                    self._watch.violation(
                        f"{self.name} acquired while holding {held.name} (out of order)")
        ok = self._lock.acquire(blocking, timeout)
        if ok:
            self.owner = me
            self.acquisitions += 1
        return ok

    def release(self) -> None:
        if self.owner != threading.get_ident():
            self._watch.violation(f"{self.name} released by a thread that does not own it")
        self.owner = None
        self._lock.release()
        hook = self._watch.after_release
        if hook is not None:
            hook(self)

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<InstrumentedLock {self.name} owner={self.owner}>"


class WatchedDeque(collections.deque):  # type: ignore[type-arg]
    """The pool's waiter queue, observable: tests wait for ``n`` waiters without polling."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.changed = threading.Condition(threading.Lock())
        self.appended = 0

    def append(self, item: Any) -> None:
        super().append(item)
        with self.changed:
            self.appended += 1
            self.changed.notify_all()

    def wait_appended(self, n: int, timeout: float = WAIT) -> None:
        """Wait until ``n`` waiters have ever been queued."""
        with self.changed:
            if not self.changed.wait_for(lambda: self.appended >= n, timeout):
                raise AssertionError(f"only {self.appended} of {n} waiters queued")


def instrument(pool: ConnectionPool, watch: LockWatch) -> None:
    """Swap every lock of ``pool`` for an :class:`InstrumentedLock` (and the waiter queue)."""
    for seg in pool._segments:
        seg.lock = InstrumentedLock(f"{pool.name}.segment[{seg.index}]", "segment", watch,
                                    rank=seg.index)
    pool._waiters_lock = InstrumentedLock(f"{pool.name}.waiters", "waiters", watch)
    assert not pool._waiters
    pool._waiters = WatchedDeque()
    pool.maintainer._lock = InstrumentedLock(f"{pool.name}.maintainer", "maintainer", watch)


def make_pool(driver: FakeDriver, clock: Callable[[], float], *,
              rng: Callable[[], float] | None = None, **options: Any) -> ConnectionPool:
    """A pool over ``driver`` with no maintainer thread, every lock instrumented.

    ``pool._init_state`` (run after ``fork()``) is wrapped so the rebuilt locks are
    instrumented again.
    """
    pool = ConnectionPool(driver, clock=clock, rng=rng or random.Random(1234).random,
                          start_maintainer=False, **options)
    instrument(pool, driver.watch)
    rebuild = pool._init_state

    def init_state_instrumented() -> None:
        rebuild()
        instrument(pool, driver.watch)

    pool._init_state = init_state_instrumented  # type: ignore[method-assign]
    return pool


def wait_waiting(pool: ConnectionPool, n: int, timeout: float = WAIT) -> None:
    """Wait until ``n`` threads have queued as waiters in ``pool`` (made with make_pool)."""
    pool._waiters.wait_appended(n, timeout)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------


class FakeError(Exception):
    """What the fake "database client library" raises."""


class FakeConnection:
    """A fake DB-API connection with switches for every failure the pool must handle."""

    def __init__(self, driver: FakeDriver, ident: int) -> None:
        self.driver = driver
        self.id = ident
        self.opened_by = threading.current_thread().name
        self.closed = False
        self.closed_by: str | None = None
        self.discarded = False
        #: Known broken: ``is_usable`` is False and ``ping`` fails.
        self.broken = False
        #: An open transaction: ``needs_rollback`` is True until ``rollback``.
        self.in_transaction = False
        self.ping_fails = False
        self.rollback_fails = False
        self.pings = 0
        #: Thread ident of the test code holding it (set by :func:`take`).
        self.holder: int | None = None
        #: Statements run through ``cursor().execute()``: what the "server" received.
        self.executed: list[str] = []

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    @property
    def open(self) -> bool:
        return not self.closed and not self.discarded

    def __repr__(self) -> str:
        state = "closed" if self.closed else "discarded" if self.discarded else "open"
        return f"<FakeConnection #{self.id} {state}>"


class FakeCursor:
    """Enough of a DB-API cursor for peewee's ``execute_sql``; records what is sent."""

    def __init__(self, raw: FakeConnection) -> None:
        self.raw = raw
        self.description = None
        self.rowcount = 0
        self.lastrowid = None

    def execute(self, sql: str, params: Any = ()) -> None:
        self.raw.driver._enter("execute", self.raw)
        self.raw.executed.append(sql)

    def fetchone(self) -> Any:
        return (1,)

    def fetchall(self) -> list[Any]:
        return [(1,)]

    def close(self) -> None:
        pass


class Blocker:
    """Holds matching calls of one driver method inside the driver until released."""

    def __init__(self, method: str, match: Callable[[FakeConnection | None], bool] | None):
        self.method = method
        self.match = match
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.blocked = 0
        self.timed_out = False

    def release(self) -> None:
        self.gate.set()

    def wait_entered(self, timeout: float = WAIT) -> None:
        if not self.entered.wait(timeout):
            raise AssertionError(f"nobody entered driver.{self.method}")


class FakeDriver:
    """Implements :class:`flask_peewee_pool.core.drivers.Driver` over :class:`FakeConnection`."""

    kind = "fake"

    def __init__(self, description: str = "fake://app@db.example:5432/orders",
                 watch: LockWatch | None = None) -> None:
        self.description = description
        self.watch = watch or LockWatch()
        self._lock = threading.Lock()  # the driver's own bookkeeping; never a pool lock
        self._ids = itertools.count(1)
        self.connections: list[FakeConnection] = []
        self.calls: collections.Counter[str] = collections.Counter()
        #: (method, thread name) -> calls
        self.thread_calls: collections.Counter[tuple[str, str]] = collections.Counter()
        #: ("connect" | "close" | "discard" | "ping" | "rollback", connection id) in order.
        self.log: list[tuple[str, int]] = []
        #: Protocol misuse seen (double close, I/O on a closed or held connection).
        self.errors: list[str] = []
        #: While true, every connect raises ``connect_error()``.
        self.fail_connect = False
        #: The next n connects raise.
        self.fail_next_connects = 0
        #: The next n pings raise, whatever the connection.
        self.fail_next_pings = 0
        self.connect_error: Callable[[], Exception] = lambda: FakeError(
            "fake: connection refused")
        self.open_now = 0
        self.max_open = 0
        self._blockers: list[Blocker] = []
        #: method -> n: the n-th next call of that method raises :class:`Interrupt`
        #: (before doing anything), once.
        self.interrupt_at: dict[str, int] = {}
        self.interrupted: list[str] = []

    # ------------------------------------------------------------- test controls

    def block(self, method: str,
              match: Callable[[FakeConnection | None], bool] | None = None) -> Blocker:
        """Hold every matching call of ``method`` (in the driver, no lock) until released.

        ``match`` gets the connection (None for ``connect``) and runs in the calling
        thread, so it may look at ``threading.current_thread().name``.
        """
        blocker = Blocker(method, match)
        with self._lock:
            self._blockers.append(blocker)
        return blocker

    def release_all(self) -> None:
        with self._lock:
            blockers, self._blockers = self._blockers, []
        for blocker in blockers:
            blocker.release()

    def calls_by(self, method: str) -> dict[str, int]:
        """{thread name: calls} of one method."""
        return {t: n for (m, t), n in self.thread_calls.items() if m == method}

    def open_connections(self) -> list[FakeConnection]:
        with self._lock:
            return [c for c in self.connections if c.open]

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()
            self.thread_calls.clear()
            self.log.clear()

    # ------------------------------------------------------------- plumbing

    def _enter(self, method: str, raw: FakeConnection | None, *, io: bool = True) -> None:
        self.watch.assert_unlocked(f"driver.{method}")
        thread = threading.current_thread()
        with self._lock:
            self.calls[method] += 1
            self.thread_calls[(method, thread.name)] += 1
            if raw is not None and io:
                self.log.append((method, raw.id))
                if raw.closed and method != "discard":
                    self.errors.append(f"driver.{method} on closed {raw!r}")
                if raw.discarded:
                    self.errors.append(f"driver.{method} on discarded {raw!r}")
                if raw.holder is not None and raw.holder != thread.ident:
                    self.errors.append(
                        f"driver.{method} on {raw!r} in thread {thread.name!r} while "
                        f"another thread holds it")
            blockers = [b for b in self._blockers if b.method == method]
            countdown = self.interrupt_at.get(method)
            if countdown is not None:
                if countdown <= 1:
                    del self.interrupt_at[method]
                    self.interrupted.append(method)
                else:
                    self.interrupt_at[method] = countdown - 1
        if countdown is not None and countdown <= 1:
            raise Interrupt(f"interrupted in driver.{method}")
        for blocker in blockers:
            if blocker.gate.is_set() or (blocker.match is not None and not blocker.match(raw)):
                continue
            blocker.blocked += 1
            blocker.entered.set()
            if not blocker.gate.wait(WAIT):
                blocker.timed_out = True
                with self._lock:
                    self.errors.append(f"driver.{method} blocked for {WAIT} s: never released")

    def _opened(self, raw: FakeConnection) -> None:
        with self._lock:
            self.connections.append(raw)
            self.log.append(("connect", raw.id))
            self.open_now += 1
            self.max_open = max(self.max_open, self.open_now)

    # ------------------------------------------------------------- Driver protocol

    def connect(self) -> FakeConnection:
        self._enter("connect", None)
        with self._lock:
            fail = self.fail_connect or self.fail_next_connects > 0
            if self.fail_next_connects > 0:
                self.fail_next_connects -= 1
        if fail:
            raise self.connect_error()
        raw = FakeConnection(self, next(self._ids))
        self._opened(raw)
        return raw

    def ping(self, raw: FakeConnection) -> None:
        self._enter("ping", raw)
        with self._lock:
            raw.pings += 1
            fail = raw.broken or raw.ping_fails or raw.closed or self.fail_next_pings > 0
            if self.fail_next_pings > 0:
                self.fail_next_pings -= 1
        if fail:
            raise FakeError(f"fake: server has gone away (#{raw.id})")

    def is_usable(self, raw: FakeConnection) -> bool:
        self._enter("is_usable", raw, io=False)
        return raw.open and not raw.broken

    def needs_rollback(self, raw: FakeConnection) -> bool:
        self._enter("needs_rollback", raw, io=False)
        return raw.in_transaction

    def one_call_checkin_status(self, raw: FakeConnection) -> int:
        """What a driver with ``checkin_status`` answers (SQLite, psycopg, PyMySQL): both
        questions in one call. Installed by a test as ``driver.checkin_status``; the fake
        otherwise has none, so the pool asks ``is_usable`` and ``needs_rollback``."""
        self._enter("checkin_status", raw, io=False)
        if not raw.open or raw.broken:
            return drivers.BROKEN
        return drivers.DIRTY if raw.in_transaction else drivers.CLEAN

    def rollback(self, raw: FakeConnection) -> None:
        self._enter("rollback", raw)
        if raw.rollback_fails or raw.broken:
            raise FakeError(f"fake: rollback failed (#{raw.id})")
        raw.in_transaction = False

    def close(self, raw: FakeConnection) -> None:
        self._enter("close", raw)
        with self._lock:
            if raw.closed:
                self.errors.append(f"{raw!r} closed twice")
                return
            raw.closed = True
            raw.closed_by = threading.current_thread().name
            if not raw.discarded:
                self.open_now -= 1

    def discard(self, raw: FakeConnection) -> None:
        self._enter("discard", raw)
        with self._lock:
            if not raw.discarded and not raw.closed:
                self.open_now -= 1
            raw.discarded = True

    def describe(self) -> str:
        self._enter("describe", None, io=False)
        return self.description


# ---------------------------------------------------------------------------------------
# Holding connections (invariant 2) and threads
# ---------------------------------------------------------------------------------------


def take(pool: ConnectionPool, **kwargs: Any) -> PooledConnection:
    """``pool.checkout(**kwargs)``, asserting nobody else holds the connection."""
    conn = pool.checkout(**kwargs)
    raw: FakeConnection = conn.raw
    me = threading.get_ident()
    with raw.driver._lock:
        if raw.holder is not None:
            message = f"{raw!r} handed to {threading.current_thread().name!r} while held"
            raw.driver.errors.append(message)
            raise AssertionError(message)
        if not raw.open:
            raw.driver.errors.append(f"{raw!r} handed out after close")
        raw.holder = me
    return conn


def give(pool: ConnectionPool, conn: PooledConnection, **kwargs: Any) -> None:
    """``pool.checkin(conn, **kwargs)`` after letting go of the connection."""
    raw: FakeConnection = conn.raw
    with raw.driver._lock:
        raw.holder = None  # whoever returns it is its holder (possibly another thread)
    pool.checkin(conn, **kwargs)


class Worker(threading.Thread):
    """A named thread that keeps its target's result or exception."""

    def __init__(self, target: Callable[[], Any], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._fn = target
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def get(self, timeout: float = WAIT) -> Any:
        """Join and return the result, or re-raise the thread's exception."""
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"thread {self.name} still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result


def start(target: Callable[[], Any], name: str) -> Worker:
    worker = Worker(target, name)
    worker.start()
    return worker


def join_all(workers: Iterable[Worker], timeout: float = WAIT) -> list[Any]:
    return [w.get(timeout) for w in workers]


def gauges(pool: ConnectionPool) -> dict[str, int]:
    s = pool.stats()
    return {"size": s.size, "idle": s.idle, "in_use": s.in_use, "opening": s.opening,
            "closing": s.closing, "waiting": s.waiting}


def check_accounting(pool: ConnectionPool, *, draining: bool = False) -> None:
    """Per-segment counts are sane and the gauges add up (invariants 1 and 3).

    ``draining``: a ``resize()`` shrink is still draining, so slots may exceed the new
    capacity (never by anything but connections opened before the shrink).
    """
    total = 0
    for seg in pool._segments:
        with seg.lock:
            assert 0 <= seg.retiring <= seg.slots, (seg.index, seg.retiring, seg.slots)
            if draining:
                total += seg.slots
                continue
            assert 0 <= seg.slots <= seg.capacity, (seg.index, seg.slots, seg.capacity)
            assert seg.opening >= 0
            assert len(seg.idle) + len(seg.in_use) + seg.opening <= seg.slots
            assert len(set(map(id, seg.idle))) == len(seg.idle), "a connection idle twice"
            assert not set(seg.idle) & seg.in_use, "a connection both idle and in use"
            total += seg.slots
    if not draining:
        assert total <= pool.options.max_connections
    s = pool.stats()
    assert s.size == s.idle + s.in_use + s.opening + s.closing
    assert s.size - s.idle - s.in_use - s.opening >= 0
    if not draining:
        assert s.size <= s.max_connections
