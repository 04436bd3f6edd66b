"""ConnectionPool: a segmented connection pool that never does network I/O under a lock.

The pool is split into segments, each with its own lock, idle stack and share of
``max_connections`` (the shares sum exactly to it). A thread has a home segment; checkout
pops the warmest idle connection there (one lock, taken once), else takes an idle one from
another segment (and moves it home if home has a free slot, so the thread's next checkout is
the fast one again), else reserves a free slot (home first, then others) and connects with no
lock held, else waits in a FIFO queue. Locks guard only in-memory bookkeeping; every connect,
ping, rollback and close runs outside them, so one slow round trip never stalls another
thread. A slot stays counted from the moment it is reserved until its connection is closed,
which is what keeps the server-side count at or below ``max_connections`` at all times.

Retiring connections (expired, broken, idle too long) are handed to the
:class:`~flask_peewee_pool.core.maintainer.Maintainer`, which closes them and, for expiry, opens
the replacement in the same slot, so no request ever pays for a connection's end of life.

The pool knows nothing of Flask or peewee: it talks to the database only through a
:class:`~flask_peewee_pool.core.drivers.Driver`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import itertools
import logging
import math
import os
import random
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from . import concurrency, forking
from .drivers import BROKEN, CLEAN, DIRTY, Driver, RawConnection, checkin_status_of
from .errors import (
    CheckinError,
    ConnectError,
    PoolClosed,
    PoolError,
    PoolExhausted,
    PoolTimeout,
)
from .options import PoolOptions
from .stats import (
    _BUCKET_COUNT,
    _BUCKETS_PER_OCTAVE,
    Counters,
    Histogram,
    PoolStats,
)

logger = logging.getLogger("flask_peewee_pool")

IDLE = "idle"
IN_USE = "in_use"
MAINTENANCE = "maintenance"  # withdrawn by the maintainer for a keepalive ping
RETIRING = "retiring"  # slot still counted; waiting for the maintainer to close it
CLOSED = "closed"


class _UseDefault:
    """``checkout(timeout=...)`` not given: use ``options.timeout``.

    A class, not an ``object()``: a default argument is stored into every call's frame,
    and on free-threaded CPython 3.13 that writes the object's reference count from every
    thread (one cache line for all of them: ``python -m benchmarks.sharedreads
    object-default class-default``); classes there are immortal once a second thread has
    started, so nothing is written.
    """


_USE_DEFAULT: Any = _UseDefault
_LAST_BUCKET = _BUCKET_COUNT - 1
_log2 = math.log2
_getcurrent = concurrency.getcurrent
_get_ident = concurrency.get_ident
#: The whole flask_peewee_pool package (core/ and orm/ alike): not application code.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PooledConnection:
    """A raw DB-API connection plus the pool's bookkeeping about it."""

    __slots__ = (
        "__weakref__",
        "checked_out_at",
        "checkouts",
        "created_at",
        "expires_at",
        "generation",
        "holder_home",
        "holder_key",
        "interrupted",
        "last_checked_at",
        "last_used_at",
        "leak_warned",
        "origin",
        "pool",
        "raw",
        "reclaimed",
        "retired",
        "segment",
        "site",
        "state",
    )

    def __init__(self, raw: RawConnection, pool: ConnectionPool, segment: _Segment,
                 now: float, expires_at: float) -> None:
        self.raw = raw
        self.pool = pool
        self.segment = segment
        self.created_at = now
        self.expires_at = expires_at
        #: The pool's drain generation when it was opened: an older one is replaced.
        self.generation = pool._generation
        self.last_used_at = now
        self.last_checked_at = now
        self.checked_out_at = 0.0
        self.checkouts = 0
        self.state = IDLE
        #: The holder's :class:`_Home` (made by the holder's thread, so on free-threaded
        #: CPython storing it here writes no shared reference count, as storing the
        #: ``Thread``, made by another thread, would). Its thread's name is read only when
        #: a report needs it (:attr:`holder`).
        self.holder_home: _Home | None = None
        #: concurrency.holder_key() of the holder: who may take a cursor on it.
        self.holder_key = 0
        #: Handed to the maintainer for closing (once: retirement is idempotent).
        self.retired = False
        #: A query on it was interrupted by a BaseException (gevent.Timeout, a kill): the
        #: protocol may be out of step (a late reply would answer the next query), so it
        #: is closed at checkin, never reused. Set by the database layer.
        self.interrupted = False
        self.site: Any = None
        self.leak_warned = False
        self.reclaimed = False
        self.origin: tuple[str, int] | None = None

    @property
    def holder(self) -> str | None:
        """The name of the thread that checked it out (the name it has now, even if the
        thread has ended)."""
        home = self.holder_home
        return None if home is None else home.thread.name

    def __repr__(self) -> str:
        return (f"<PooledConnection pool={self.pool.name!r} segment={self.segment.index} "
                f"state={self.state} checkouts={self.checkouts}>")


class _Segment:
    """One sub-pool. ``lock`` guards the bookkeeping (capacity to usage_time).

    The fast paths of checkout and checkin read the pool's settings and state from here,
    not from the pool (``open`` to ``reset``: copies kept current by the pool, see
    ``ConnectionPool._publish``): on free-threaded CPython every read of an object that
    other threads read too writes its reference count, so the one pool object all threads
    share would bounce a cache line between cores at every checkout. A thread's home
    segment is touched by that thread alone (while threads <= segments).
    """

    __slots__ = ("capacity", "checkin_status", "clock", "connect_time", "counters",
                 "current", "generation", "has_input", "idle", "in_use", "index", "lock",
                 "open", "opening", "ping_after", "pool", "reset", "retiring", "slots",
                 "track_sites", "usage_time", "wait_time", "waiting")

    def __init__(self, pool: ConnectionPool, index: int, capacity: int) -> None:
        #: Read on the slow paths only (the fast ones read the copies below).
        self.pool = pool
        self.index = index
        #: One of the pool's segments (False once a forked child rebuilt them: a thread's
        #: :class:`_Home` kept by a caller then moves to a new one).
        self.current = True
        #: Checkouts may take the fast path: maintainer started, pool not closed.
        self.open = False
        #: Threads are waiting: a checkin goes the general way (hand-off).
        self.waiting = False
        #: The pool's drain generation.
        self.generation = 0
        self.clock: Callable[[], float] = time.monotonic
        self.ping_after: float | None = None
        self.has_input: Callable[[RawConnection], bool] | None = None
        self.track_sites = False
        self.checkin_status: Callable[[RawConnection], int] | None = None
        self.reset: Callable[[RawConnection], None] | None = None
        self.lock = threading.Lock()
        self.capacity = capacity
        self.slots = 0  # idle + in use + opening + maintenance + retiring
        self.opening = 0
        self.retiring = 0  # retired, slot still counted until the maintainer closes them
        self.idle: list[PooledConnection] = []  # a stack: the warmest connection on top
        self.in_use: set[PooledConnection] = set()
        self.counters = Counters()
        self.wait_time = Histogram()
        self.connect_time = Histogram()
        self.usage_time = Histogram()


def _checkin(conn: PooledConnection, broken: bool = False) -> None:
    """:meth:`ConnectionPool.checkin` without the ownership check (``_Home.checkin``): it
    reads the connection's segment, never the pool (see _Segment)."""
    if conn.reclaimed:  # taken back by reclaim(); the maintainer closes it
        return
    seg = conn.segment
    interrupted: BaseException | None = None
    if broken or conn.interrupted:
        status = BROKEN
    else:
        try:
            status = seg.checkin_status(conn.raw)  # type: ignore[misc]
            if status == CLEAN and seg.reset is not None:
                status = DIRTY  # the reset hook is a round trip to make first
        except BaseException as exc:
            status = BROKEN
            if not isinstance(exc, Exception):
                interrupted = exc
    if status == CLEAN and not seg.waiting:
        # Fast path, written out: back on top of its segment's idle stack, when nothing
        # calls for the general case below (expiry, drain, close, shrink, a double
        # return, a reclaim: all fall through to it, which re-checks under the lock).
        now = seg.clock()
        with seg.lock:
            returned = (conn.state == IN_USE and conn.expires_at > now
                        and conn.generation == seg.generation and seg.open
                        and seg.slots - seg.retiring <= seg.capacity
                        and conn in seg.in_use)
            if returned:
                seg.in_use.remove(conn)
                # Histogram.observe(held), inlined (the same buckets; tested equal).
                held = now - conn.checked_out_at
                usage = seg.usage_time
                low = usage.min_seconds  # stats._MIN_SECONDS: see Histogram.min_seconds
                if held > low:
                    index = int(_log2(held / low) * _BUCKETS_PER_OCTAVE) + 1
                    if index > _LAST_BUCKET:
                        index = _LAST_BUCKET
                    usage.buckets[index] += 1
                else:
                    usage.buckets[0] += 1
                usage.count += 1
                usage.total += held
                if held > usage.max:
                    usage.max = held
                conn.site = None
                conn.last_used_at = now
                conn.state = IDLE
                seg.idle.append(conn)
        if returned:
            if seg.waiting:  # a waiter came meanwhile (nothing was retired here)
                seg.pool._dispatch()
            return
    seg.pool._checkin_slow(conn, status, interrupted)


class _Home:
    """Per thread (per greenlet under gevent), per pool: the home segment and the holder's
    ``Thread``, made by that thread (so on free-threaded CPython its reference count is
    the thread's own), and the checkout fast path.

    Reached through the pool's thread-local (:meth:`ConnectionPool.checkout`) or kept by
    the caller (:meth:`ConnectionPool.home`).
    """

    __slots__ = ("app_files", "checkin", "pool", "segment", "thread")

    def __init__(self, pool: ConnectionPool, segment: _Segment) -> None:
        self.pool = pool
        self.segment = segment
        self.thread = threading.current_thread()
        #: :meth:`ConnectionPool.checkin` without the ownership check, for a caller that
        #: has the connection from this pool's checkout (the peewee layer, which keeps its
        #: home). Kept per record, not as a ``staticmethod`` on the class: on free-threaded
        #: CPython that wrapper is one object every thread's checkin would load (functions
        #: are immortal there, a staticmethod object is not).
        self.checkin: Callable[..., None] = _checkin
        #: Per source file: is it application code? (_application_frame's cache, per
        #: thread: one dict shared by every thread is a shared cache line.)
        self.app_files: dict[str, bool] = {}

    def checkout(self, timeout: float | None = _USE_DEFAULT) -> PooledConnection:
        """:meth:`ConnectionPool.checkout` for this thread."""
        seg = self.segment
        if not seg.open:  # before the first checkout, after close(), after gevent patched
            return self._checkout_cold(timeout)
        start = seg.clock()
        conn = None
        # Fast path, written out (it is most of what a checkout costs): the warmest idle
        # connection of the home segment, one lock taken once, and no round trip when it
        # is fresh. Every diagnostic is kept: holder, application frame, exact counters.
        # It reads this record and the segment, never the pool (see _Segment).
        # From the pop on a connection is ours: whatever interrupts the checkout
        # (KeyboardInterrupt, gevent.Timeout) retires it.
        try:
            with seg.lock:
                idle = seg.idle
                if idle:
                    conn = idle.pop()
                    conn.state = IN_USE
                    conn.checkouts += 1
                    conn.leak_warned = False
                    conn.checked_out_at = start
                    seg.in_use.add(conn)
                    seg.counters.checkouts += 1
                    wait = seg.wait_time  # Histogram.observe(0.0), inlined: bucket 0
                    wait.buckets[0] += 1
                    wait.count += 1
            if conn is not None:
                ping_after = seg.ping_after
                has_input = seg.has_input
                if conn.expires_at > start and (
                        ping_after is None or start - conn.last_used_at < ping_after) and (
                        has_input is None or not has_input(conn.raw)):
                    conn.holder_key = (  # concurrency.holder_key(), inlined
                        _get_ident() if _getcurrent is None else id(_getcurrent()))
                    conn.holder_home = self
                    conn.origin = _application_frame(_getframe(1), self.app_files)
                    if seg.track_sites:
                        conn.site = self.pool._capture_site()
                    return conn
        except BaseException:
            if conn is not None:
                self.pool._retire(conn, "broken")
            raise
        return self.pool._checkout_slow(conn, self, start, timeout)

    def _checkout_cold(self, timeout: float | None) -> PooledConnection:
        """The segment is not open: start the pool (or raise why not), then check out
        through the thread's current record: gevent's adoption rebuilt the thread-local,
        or a forked child rebuilt the segments (this record then moves to a new one)."""
        pool = self.pool
        pool._before_first_checkout()
        home = pool._home_record()
        if not self.segment.current:
            self.segment = home.segment
        return home.checkout(timeout)


class _Waiter:
    __slots__ = ("conn", "event", "slot")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.conn: PooledConnection | None = None
        self.slot: _Segment | None = None


def _takes_timeout(method: Any) -> bool:
    try:
        return "timeout" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class ConnectionPool:
    """A thread-safe pool of connections made by ``driver``.

    ``clock`` and ``rng`` are injectable so tests can drive lifetimes and timeouts
    deterministically; ``start_maintainer=False`` leaves the background duties to explicit
    :meth:`Maintainer.tick` calls.
    """

    def __init__(
        self,
        driver: Driver,
        options: PoolOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        start_maintainer: bool = True,
        **overrides: Any,
    ) -> None:
        options = options or PoolOptions()
        if overrides:
            options = options.replace(**overrides)
        self._use_options(options)
        self.driver = driver
        #: Optional driver capabilities (see drivers.Driver): a zero-cost "did the server
        #: send anything to this idle connection" check, and timeouts on connect and ping.
        self._has_input: Callable[[RawConnection], bool] | None = getattr(
            driver, "has_input", None)
        #: One driver call at checkin: CLEAN, DIRTY or BROKEN.
        self._checkin_status = checkin_status_of(driver)
        self._connect_takes_timeout = _takes_timeout(driver.connect)
        self._ping_takes_timeout = _takes_timeout(driver.ping)
        self.clock = clock
        self.rng = rng
        self._start_maintainer = start_maintainer
        #: Callables run by the maintainer at the end of every tick with ``now`` (e.g. stats
        #: snapshot writers). Kept on the pool so they survive the rebuild after a fork.
        self.tick_hooks: list[Callable[[float], None]] = []
        #: Bumped by drain(): connections of an older generation are replaced.
        self._generation = 0
        self._init_state()
        _live_pools.add(self)

    def _init_state(self) -> None:
        """(Re)build every lock and list; also run in a forked child."""
        options = self.options
        for old in getattr(self, "_segments", ()):  # a forked child's rebuild
            old.open = old.current = False  # a _Home kept by a caller moves (see _Home)
        self._segments = concurrency.made_apart([
            functools.partial(_Segment, self, i, cap)
            for i, cap in enumerate(_split(options.max_connections, options.segment_count))
        ])
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._waiters_lock = threading.Lock()
        self._retiring: collections.deque[tuple[PooledConnection, str]] = collections.deque()
        #: Every connection opened and not yet closed, whatever its state or who has it:
        #: what a forked child must discard (strong references: no finalizer runs first).
        self._open_conns: set[PooledConnection] = set()
        self._home = threading.local()
        self._next_home = itertools.count()
        self._closed = False
        self._pid = os.getpid()
        self._start_lock = threading.Lock()
        #: (connection, checkout number) whose holder ended without returning it; filled
        #: by finalizers (lock-free), drained by checkouts and the maintainer.
        self._abandoned: collections.deque[tuple[PooledConnection, int]] = collections.deque()
        #: Set when gevent patched threading after this pool's maintainer thread started.
        self._patch_error: str | None = None
        self.maintainer: Any = None
        self._maintainer_started = False
        from .maintainer import Maintainer

        self.maintainer = Maintainer(self)
        self._publish()

    def _use_options(self, options: PoolOptions) -> None:
        """Set ``options`` and the settings the fast paths read as plain attributes."""
        self.options = options
        self._ping_after = options.ping_after
        #: Capture a stack at each checkout (for leak reports): only with leak_threshold.
        self._track_sites = options.leak_threshold is not None
        self._reset = options.reset
        if hasattr(self, "_segments"):
            self._publish()

    def _publish(self) -> None:
        """Copy what the fast paths read into every segment (see :class:`_Segment`)."""
        is_open = self._maintainer_started and not self._closed and self._patch_error is None
        ping_after = self._ping_after
        for seg in self._segments:
            seg.clock = self.clock
            # A float object of its own per segment (x + 0.0 is a new one): one shared by
            # every segment would be a shared object again (see _Segment).
            seg.ping_after = None if ping_after is None else ping_after + 0.0
            seg.has_input = self._has_input
            seg.track_sites = self._track_sites
            seg.checkin_status = self._checkin_status
            seg.reset = self._reset
            seg.generation = self._generation
            seg.open = is_open
        if is_open and self._closed:  # close() ran meanwhile: it wins
            for seg in self._segments:
                seg.open = False

    def _sync_waiting_locked(self) -> None:
        """Mirror "threads are waiting" into every segment; caller holds the waiters' lock
        (so a checkin that read False appended before a new waiter scanned the stacks)."""
        waiting = bool(self._waiters)
        for seg in self._segments:
            seg.waiting = waiting

    # ------------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return (f"<ConnectionPool {self.name!r} {self.driver.describe()} "
                f"max_connections={self.options.max_connections}>")

    # ------------------------------------------------------------------ checkout

    def checkout(self, timeout: float | None = _USE_DEFAULT) -> PooledConnection:
        """Return a connection for the calling thread's exclusive use.

        Waits at most ``timeout`` seconds (default: the pool's ``timeout``), then raises
        :class:`PoolTimeout`. Connect errors are raised at once as :class:`ConnectError`.
        """
        try:
            home = self._home.record
        except AttributeError:
            home = self._home_record()
        return home.checkout(timeout)

    def home(self) -> _Home:
        """The calling thread's home in this pool, with the pool started: its
        ``checkout()`` is :meth:`checkout` without the thread-local lookup.

        For a caller that keeps one per thread (the peewee layer keeps it in its own
        per-holder state): a checkout then reads neither the pool object nor its
        thread-local, which on free-threaded CPython are shared cache lines. Valid for the
        calling thread (greenlet) only; after :meth:`close` its checkout raises
        :class:`PoolClosed`, like the pool's.
        """
        if not self._segments[0].open:
            self._before_first_checkout()
        return self._home_record()

    def _checkout_slow(self, conn: PooledConnection | None, home: _Home, start: float,
                       timeout: float | None) -> PooledConnection:
        """The rest of a checkout: ping a connection that is not fresh, take one from
        another segment, open one in a free slot, or wait. ``conn`` (if any) is ours."""
        if timeout is _USE_DEFAULT:
            timeout = self.options.timeout
        deadline = None if timeout is None else start + timeout
        try:
            if conn is not None and not self._validate(conn, deadline):
                conn = None
            while conn is None:
                conn, opened = self._acquire_slow(home.segment, start, deadline)
                # A connection opened for this very checkout needs no ping.
                if (not opened and not self._fresh(conn, self.clock())
                        and not self._validate(conn, deadline)):
                    conn = None
            return self._claim(conn, home)
        except BaseException:
            if conn is not None:
                self._retire(conn, "broken")
            raise

    def _before_first_checkout(self) -> None:
        if self._closed:
            raise PoolClosed(f"pool {self.name!r} is closed")
        self._start_background()

    def _claim(self, conn: PooledConnection, home: _Home) -> PooledConnection:
        """Record who holds ``conn`` and where they took it (the slow path's twin of the
        bookkeeping written out in :meth:`checkout`): in the receiving thread, with no lock
        held (the connection is ours alone; capturing the stack may stat files)."""
        conn.holder_key = concurrency.holder_key()
        conn.holder_home = home
        conn.origin = _application_frame(_getframe(1), home.app_files)
        conn.site = self._capture_site() if self._track_sites else None
        return conn

    def _fresh(self, conn: PooledConnection, now: float) -> bool:
        """True if the connection can be handed out without a round trip: used less than
        ``ping_after`` ago, and nothing arrived on its socket meanwhile (a server that ended
        the session sent EOF or an error: seen by a zero-timeout poll, no round trip)."""
        ping_after = self._ping_after
        return conn.expires_at > now and (
            ping_after is None or now - conn.last_used_at < ping_after
        ) and not (self._has_input is not None and self._has_input(conn.raw))

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - self.clock()

    def _validate(self, conn: PooledConnection, deadline: float | None = None) -> bool:
        """Check an idle connection before use (no lock held). False: it was retired."""
        now = self.clock()
        if conn.expires_at <= now:
            self._retire(conn, "lifetime")
            return False
        seg = conn.segment
        try:
            if not self.driver.is_usable(conn.raw):
                raise ConnectionError("connection is closed")
            remaining = self._remaining(deadline)
            if self.options.check is not None:
                self.options.check(conn.raw)
            elif remaining is not None and self._ping_takes_timeout:
                self.driver.ping(conn.raw, timeout=max(0.05, remaining))
            else:
                self.driver.ping(conn.raw)
        except Exception as exc:
            logger.info("pool %r: discarding a connection that failed its ping: %s",
                        self.name, exc)
            with seg.lock:
                seg.counters.pings += 1
                seg.counters.ping_failures += 1
            self._retire(conn, "broken")
            return False
        conn.last_checked_at = conn.last_used_at = self.clock()
        with seg.lock:
            seg.counters.pings += 1
        return True

    def _acquire_slow(self, home: _Segment, start: float,
                      deadline: float | None) -> tuple[PooledConnection, bool]:
        """An idle connection from any segment, a new one in a free slot, or a wait.

        Returns the connection and whether it was opened for this checkout.
        """
        now = self.clock()
        for seg in self._segments_from(home):
            if seg.idle and seg.lock.acquire(blocking=seg is home):
                taken = None
                try:
                    if seg.idle:
                        taken = seg.idle.pop()
                        self._hand_out(seg, taken, start, now - start)
                finally:
                    seg.lock.release()
                if taken is not None:
                    if seg is not home and home.slots < home.capacity:
                        try:
                            self._move(taken, seg, home)
                        except BaseException:  # interrupted waiting for the locks: ours
                            self._retire(taken, "broken")
                            raise
                    return taken, False
        for seg in self._segments_from(home):
            if seg.slots < seg.capacity and seg.lock.acquire(blocking=seg is home):
                try:
                    reserved = seg.slots < seg.capacity
                    if reserved:
                        seg.slots += 1
                        seg.opening += 1
                finally:
                    seg.lock.release()
                if reserved:
                    return self._open_for_checkout(seg, start, deadline), True
        if self._abandoned:
            self.reclaim_abandoned()
            return self._acquire_slow(home, start, deadline)
        return self._wait(start, deadline)

    def _move(self, conn: PooledConnection, src: _Segment, dst: _Segment) -> None:
        """Give ``conn`` (just taken from ``src`` by a thread whose home is ``dst``) and its
        slot to ``dst``, if ``dst`` still has a free one.

        Without it a thread that once took a neighbour's connection would come back to the
        neighbour at every checkout (its home stays empty): the slow path every time, and on
        free-threaded CPython two threads on one segment's lock and cache lines. Both locks
        are held, in segment order (as in :meth:`_all_segments_locked`), so the connection
        and its slot are counted in exactly one segment by every reader that sums them.
        """
        first, second = (src, dst) if src.index < dst.index else (dst, src)
        with first.lock, second.lock:
            if (dst.slots >= dst.capacity or not dst.current or conn.segment is not src
                    or conn not in src.in_use):
                return
            src.in_use.remove(conn)
            src.slots -= 1
            dst.slots += 1
            dst.in_use.add(conn)
            conn.segment = dst

    @contextlib.contextmanager
    def _all_segments_locked(self) -> Iterator[list[_Segment]]:
        """Every segment's lock, in segment order (the one order any code holding two
        takes them in): for the readers whose sums must not count a moving connection
        twice, or not at all (``size <= max_connections`` holds in every reading)."""
        segments = self._segments
        with contextlib.ExitStack() as held:
            for seg in segments:
                held.enter_context(seg.lock)
            yield segments

    def _wait(self, start: float, deadline: float | None) -> tuple[PooledConnection, bool]:
        waiter = _Waiter()
        with self._waiters_lock:
            if self._closed:
                raise PoolClosed(f"pool {self.name!r} is closed")
            limit = self.options.max_waiting
            if limit and len(self._waiters) >= limit:
                self.count("rejected")
                raise PoolExhausted(self._describe_pressure(
                    f"{len(self._waiters)} threads already waiting (max_waiting={limit})"))
            self._waiters.append(waiter)
            self._sync_waiting_locked()
        try:
            # Anything released between our scan and our enqueue is paired with us now.
            self._dispatch()
            while True:
                remaining = None if deadline is None else deadline - self.clock()
                if remaining is not None and remaining <= 0:
                    signalled = waiter.event.is_set()
                else:
                    signalled = waiter.event.wait(remaining)
                if not signalled:
                    with self._waiters_lock:
                        if not waiter.event.is_set():
                            # Described before leaving the queue: "waiting" counts us.
                            message = self._describe_pressure(
                                f"no connection available within {deadline - start:g} s")
                            self._waiters.remove(waiter)
                            self._sync_waiting_locked()
                            self.count("timeouts")
                            raise PoolTimeout(message)
                    continue
                break
        except BaseException:
            self._leave_queue(waiter)
            raise
        if waiter.conn is not None:
            conn = waiter.conn
            now = self.clock()
            with conn.segment.lock:
                self._record_wait(conn.segment, now - start)
            return conn, False
        if waiter.slot is not None:
            return self._open_for_checkout(waiter.slot, start, deadline), True
        raise PoolClosed(f"pool {self.name!r} was closed while waiting")

    def _leave_queue(self, waiter: _Waiter) -> None:
        """Undo a wait that was interrupted: leave the queue, and pass on what a releasing
        thread handed us meanwhile (a connection goes back, a reserved slot is freed)."""
        with self._waiters_lock:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            self._sync_waiting_locked()
            conn, slot = waiter.conn, waiter.slot
            waiter.conn = waiter.slot = None
        if conn is not None:
            self._put_back(conn)
        elif slot is not None:
            self._unreserve(slot)

    def _put_back(self, conn: PooledConnection) -> None:
        """Return a connection handed out but never used (no round trip needed)."""
        seg = conn.segment
        handoff = bool(self._waiters)
        if handoff:
            self._waiters_lock.acquire()
        try:
            with seg.lock:
                if conn.state == IN_USE and conn in seg.in_use:
                    self._checkin_locked(seg, conn, False, conn.last_used_at, handoff)
        finally:
            if handoff:
                self._waiters_lock.release()
        self._after_return()

    def _after_return(self) -> None:
        if self._retiring:
            if self._closed:
                self.maintainer.close_retiring()
            else:
                self.maintainer.wake()
        if self._waiters:
            self._dispatch()

    def _dispatch(self) -> None:
        """Pair waiting threads, oldest first, with idle connections or free slots."""
        while self._waiters:
            with self._waiters_lock:
                if not self._waiters:
                    return
                waiter = self._waiters[0]
                conn = self._pop_idle_any()
                if conn is not None:
                    waiter.conn = conn
                else:
                    seg = self._reserve_any()
                    if seg is None:
                        return
                    waiter.slot = seg
                self._waiters.popleft()
                self._sync_waiting_locked()
                waiter.event.set()

    def _pop_idle_any(self) -> PooledConnection | None:
        for seg in self._segments:
            if seg.idle:
                with seg.lock:
                    if seg.idle:
                        conn = seg.idle.pop()
                        self._hand_out(seg, conn, self.clock(), None)
                        return conn
        return None

    def _reserve_any(self) -> _Segment | None:
        for seg in self._segments:
            if seg.slots < seg.capacity:
                with seg.lock:
                    if seg.slots < seg.capacity:
                        seg.slots += 1
                        seg.opening += 1
                        return seg
        return None

    def _hand_out(self, seg: _Segment, conn: PooledConnection, start: float,
                  waited: float | None) -> None:
        """Bookkeeping of a checkout; caller holds ``seg.lock``."""
        conn.state = IN_USE
        conn.checkouts += 1
        conn.leak_warned = False
        seg.in_use.add(conn)
        seg.counters.checkouts += 1
        if waited is not None:
            seg.wait_time.observe(waited)
        conn.checked_out_at = start  # holder and origin: _claim(), in the receiving thread

    def _record_wait(self, seg: _Segment, waited: float) -> None:
        seg.wait_time.observe(waited)

    def _capture_site(self) -> Any:
        return traceback.extract_stack(limit=40)

    def _open_for_checkout(self, seg: _Segment, start: float,
                           deadline: float | None = None) -> PooledConnection:
        # Raises ConnectError with the slot released. Bounded by what is left of the
        # checkout's timeout (nothing left, as with timeout=0: by the driver's own bound).
        remaining = self._remaining(deadline)
        conn = self._open_in_slot(
            seg, timeout=remaining if remaining is not None and remaining > 0 else None)
        now = self.clock()
        with seg.lock:
            self._hand_out(seg, conn, start, now - start)
        return conn

    def _open_in_slot(self, seg: _Segment, timeout: float | None = None) -> PooledConnection:
        """Connect into a slot already reserved in ``seg`` (no lock held).

        On failure the slot is released (and waiters told) before the error propagates.
        ``timeout`` bounds the connect if the driver supports it (a checkout's remainder).
        """
        t0 = self.clock()
        try:
            if timeout is not None and self._connect_takes_timeout:
                raw = self.driver.connect(timeout=timeout)
            else:
                raw = self.driver.connect()
        except Exception as exc:
            self._unreserve(seg, failed=True)
            raise ConnectError(
                f"pool {self.name!r}: cannot connect to {self.driver.describe()}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        except BaseException:  # interrupted: the slot is free again, the error unchanged
            self._unreserve(seg)
            raise
        now = self.clock()
        conn = PooledConnection(raw, self, seg, now, self._draw_expiry(now))
        with seg.lock:
            self._open_conns.add(conn)
            seg.opening -= 1
            seg.counters.connects += 1
            seg.connect_time.observe(now - t0)
            conn.state = MAINTENANCE
        try:
            if self.maintainer.database_down:
                self.maintainer.connect_succeeded()
            if self._closed:
                self._retire(conn, "closed")  # closes it: the maintainer is stopped
                raise PoolClosed(f"pool {self.name!r} is closed")
            if self.options.init_sql or self.options.configure is not None:
                try:
                    self._initialize(raw)
                except Exception as exc:
                    self.count("hook_failures")
                    self._retire(conn, "broken")
                    raise ConnectError(
                        f"pool {self.name!r}: a new connection failed init_sql/configure, "
                        f"discarded: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            self._retire(conn, "broken")  # a no-op if already retired above
            raise
        return conn

    def _initialize(self, raw: RawConnection) -> None:
        """Run ``init_sql`` and ``configure`` on a new connection (no lock held)."""
        if self.options.init_sql:
            cursor = raw.cursor()
            try:
                for statement in self.options.init_sql:
                    cursor.execute(statement)
            finally:
                cursor.close()
        if self.options.configure is not None:
            self.options.configure(raw)

    def _unreserve(self, seg: _Segment, *, failed: bool = False) -> None:
        """Give back a slot reserved for a connect that did not happen or failed."""
        with seg.lock:
            seg.opening -= 1
            seg.slots -= 1
            if failed:
                seg.counters.connect_failures += 1
        if self._waiters:
            self._dispatch()

    def _draw_expiry(self, now: float) -> float:
        lifetime = self.options.max_lifetime
        if lifetime is None:
            return float("inf")
        jitter = self.options.lifetime_jitter
        return now + lifetime * (1.0 - jitter * self.rng())

    # ------------------------------------------------------------------ checkin

    def checkin(self, conn: PooledConnection, *, broken: bool = False) -> None:
        """Give a connection back. Rolls back an open transaction (outside any lock).

        A broken or expired connection goes to the maintainer, which closes it; the caller
        never waits for a close. Returning a connection twice, or one from another pool,
        raises :class:`CheckinError` and changes nothing. A checkin interrupted by a
        ``BaseException`` (in the driver or the ``reset`` hook) still completes, with the
        connection retired, before the exception propagates.
        """
        try:
            pool = conn.pool
        except AttributeError:  # not a PooledConnection
            pool = None
        if pool is not self:
            raise CheckinError(f"pool {self.name!r}: {conn!r} does not belong to this pool")
        _checkin(conn, broken)

    def _checkin_slow(self, conn: PooledConnection, status: int,
                      interrupted: BaseException | None) -> None:
        """The general checkin: rollback / reset hook, retirement, hand-off to a waiter,
        double returns. ``status`` is the driver's answer (see :meth:`checkin`)."""
        seg = conn.segment
        driver = self.driver
        reset = self._reset
        broken = status == BROKEN
        dirty = status == DIRTY
        now = self.clock()
        # With threads waiting, a healthy connection goes straight to the oldest of them,
        # under the waiters' lock then the segment's (the usual order): no thread arriving
        # meanwhile can take it from the idle stack first.
        handoff = not dirty and bool(self._waiters)
        if handoff:
            self._waiters_lock.acquire()
        try:
            with seg.lock:
                if conn.reclaimed:  # reclaim() won the race: nothing left to do
                    if interrupted is not None:
                        raise interrupted
                    return
                if conn.state != IN_USE or conn not in seg.in_use:
                    if interrupted is not None:
                        raise interrupted
                    raise CheckinError(
                        f"pool {self.name!r}: connection returned twice (state {conn.state})")
                seg.usage_time.observe(now - conn.checked_out_at)
                if dirty:
                    # Rolling back, outside the lock, below. Still in ``in_use`` (its slot
                    # is held) but no longer IN_USE: reclaim() leaves it alone.
                    conn.state = MAINTENANCE
                else:
                    self._checkin_locked(seg, conn, broken, now, handoff)
        finally:
            if handoff:
                self._waiters_lock.release()
        if dirty:
            rolled_back = hook_failed = False
            try:
                if driver.needs_rollback(conn.raw):
                    rolled_back = True
                    driver.rollback(conn.raw)
                if reset is not None:
                    hook_failed = True
                    reset(conn.raw)
                    hook_failed = False
            except BaseException as exc:
                if isinstance(exc, Exception):
                    logger.info("pool %r: %s at checkin failed, discarding the connection: "
                                "%s", self.name, "reset" if hook_failed else "rollback", exc)
                else:
                    interrupted = exc
                broken = True
            now = self.clock()
            handoff = bool(self._waiters)
            if handoff:
                self._waiters_lock.acquire()
            try:
                with seg.lock:
                    seg.counters.rollbacks += rolled_back
                    seg.counters.hook_failures += hook_failed
                    # Re-checked: only the checkin that set MAINTENANCE may finish it.
                    if conn.state == MAINTENANCE and conn in seg.in_use:
                        self._checkin_locked(seg, conn, broken, now, handoff)
            finally:
                if handoff:
                    self._waiters_lock.release()
        if self._retiring or self._waiters:  # two truth tests on the common path
            self._after_return()
        if interrupted is not None:
            raise interrupted

    def _checkin_locked(self, seg: _Segment, conn: PooledConnection, broken: bool,
                        now: float, handoff: bool = False) -> None:
        """Caller holds ``seg.lock``, and the waiters' lock too if ``handoff``."""
        seg.in_use.discard(conn)
        conn.site = None  # holder and origin are only read while it is in use
        conn.last_used_at = now
        if broken:
            self._retire_locked(conn, "broken")
        elif self._closed:
            self._retire_locked(conn, "closed")
        elif seg.slots - seg.retiring > seg.capacity:  # shrunk by resize: drain, no reopen
            self._retire_locked(conn, "idle")
        elif conn.generation != self._generation:  # drain() asked for a fresh one
            self._retire_locked(conn, "drained")
        elif conn.expires_at <= now:
            self._retire_locked(conn, "lifetime")
        elif handoff and self._waiters:
            waiter = self._waiters.popleft()
            self._sync_waiting_locked()
            self._hand_out(seg, conn, now, None)
            waiter.conn = conn
            waiter.event.set()
        else:
            conn.state = IDLE
            seg.idle.append(conn)

    # ------------------------------------------------------------------ retirement

    def _retire(self, conn: PooledConnection, reason: str) -> None:
        with conn.segment.lock:
            conn.segment.in_use.discard(conn)
            self._retire_locked(conn, reason)
        if self._closed:
            self.maintainer.close_retiring()  # the maintainer is stopped: close it here
        else:
            self.maintainer.wake()

    def _retire_locked(self, conn: PooledConnection, reason: str) -> bool:
        """Hand ``conn`` to the maintainer for closing; caller holds its segment's lock.

        Idempotent: a connection is retired once, so its slot is released once, whichever
        of checkin, reclaim, close or an interrupted step gets there first. False if it
        was retired (or closed) already.
        """
        if conn.retired or conn.state == CLOSED:
            return False
        conn.retired = True
        conn.state = RETIRING
        conn.segment.retiring += 1
        self._retiring.append((conn, reason))
        return True

    def _take_retiring(self) -> list[tuple[PooledConnection, str]]:
        """Hand the retiring connections to the maintainer (their slots stay counted)."""
        taken = []
        while self._retiring:
            try:
                taken.append(self._retiring.popleft())
            except IndexError:
                break
        return taken

    def close_raw(self, conn: PooledConnection, reason: str = "broken") -> None:
        """Close a retiring connection's socket (no lock held).

        Never raises an ``Exception``. Interrupted by a ``BaseException``, the close did not
        complete: the connection goes back to the retiring queue (its slot still counted,
        so the cap holds) for the maintainer to close again, and the exception propagates.
        """
        try:
            self.driver.close(conn.raw)
        except Exception as exc:
            logger.debug("pool %r: error closing a connection: %s", self.name, exc)
        except BaseException:
            self._queue_for_close(conn, reason)
            raise
        with conn.segment.lock:
            conn.state = CLOSED
            self._open_conns.discard(conn)

    def _queue_for_close(self, conn: PooledConnection, reason: str) -> None:
        """(Re)queue a connection taken out of circulation for the maintainer to close."""
        with conn.segment.lock:
            if not self._retire_locked(conn, reason):  # retired before: queue it again
                self._retiring.append((conn, reason))

    def _release_slot(self, conn: PooledConnection, reason: str) -> None:
        """Free a closed connection's slot and let a waiter use it."""
        seg = conn.segment
        with seg.lock:
            seg.slots -= 1
            if conn.retired:
                seg.retiring -= 1
            self._count_retired_locked(seg, reason)
        if self._waiters:
            self._dispatch()

    def _close_and_release(self, conn: PooledConnection, reason: str) -> None:
        """Close ``conn`` and free its slot (an interrupted close keeps both: see
        :meth:`close_raw`)."""
        self.close_raw(conn, reason)
        self._release_slot(conn, reason)

    def _count_retired_locked(self, seg: _Segment, reason: str) -> None:
        seg.counters.closed += 1
        if reason == "lifetime":
            seg.counters.retired_lifetime += 1
        elif reason == "idle":
            seg.counters.retired_idle += 1
        elif reason == "broken":
            seg.counters.retired_broken += 1
        elif reason == "drained":
            seg.counters.retired_drained += 1

    def _reuse_slot(self, old: PooledConnection, reason: str) -> _Segment | None:
        """Account for ``old`` (closed) and keep its slot for a replacement.

        None, with the slot freed instead, when the segment is above its capacity (a
        ``resize()`` shrink is draining): then nothing is reopened.
        """
        seg = old.segment
        with seg.lock:
            self._count_retired_locked(seg, reason)
            if old.retired:
                seg.retiring -= 1
            if seg.slots - seg.retiring > seg.capacity or self._closed:
                seg.slots -= 1
                return None
            seg.opening += 1
        return seg

    def _install(self, conn: PooledConnection) -> None:
        """Make a connection opened (or pinged) by the maintainer available, to a waiter
        first; above capacity (a shrink draining) or after close, retire it instead."""
        seg = conn.segment
        now = self.clock()
        with seg.lock:
            conn.last_used_at = min(conn.last_used_at, now)
            if self._closed:
                self._retire_locked(conn, "closed")
            elif seg.slots - seg.retiring > seg.capacity:
                self._retire_locked(conn, "idle")
            else:
                conn.state = IDLE
                seg.idle.append(conn)
        if self._closed:
            self.maintainer.close_retiring()  # the maintainer is stopped: close it here
        elif conn.state == RETIRING:
            self.maintainer.wake()
        if self._waiters:
            self._dispatch()

    def _withdraw_idle(self, predicate: Callable[[PooledConnection], bool],
                      limit: int) -> list[PooledConnection]:
        """Take up to ``limit`` idle connections matching ``predicate`` out of circulation.

        Oldest-used first (the bottom of each stack), so warm connections stay in service.
        """
        taken: list[PooledConnection] = []
        for seg in self._segments:
            if len(taken) >= limit:
                break
            with seg.lock:
                keep = []
                for conn in seg.idle:
                    if len(taken) < limit and predicate(conn):
                        conn.state = MAINTENANCE
                        taken.append(conn)
                    else:
                        keep.append(conn)
                seg.idle[:] = keep
        return taken

    def _reserve_slot(self) -> _Segment | None:
        """Reserve a free slot for the maintainer (refill, replacement first)."""
        return self._reserve_any()

    def reclaim(self, older_than: float) -> int:
        """Take back connections checked out more than ``older_than`` seconds ago.

        For connections leaked by code that never returns them (playhouse's
        ``close_stale``). They are closed by the maintainer; a later checkin of one is
        a no-op. Returns how many were reclaimed.
        """
        now = self.clock()
        reclaimed = 0
        for seg in self._segments:
            with seg.lock:
                # A connection mid-checkin (MAINTENANCE: rolling back) is coming back by
                # itself; taking it here would let that checkin finish on a closed one.
                for conn in [c for c in seg.in_use if c.state == IN_USE
                             and now - c.checked_out_at >= older_than]:
                    seg.in_use.discard(conn)
                    conn.reclaimed = True
                    self._retire_locked(conn, "broken")
                    reclaimed += 1
        if reclaimed:
            if self._closed:
                self.maintainer.close_retiring()  # the maintainer is stopped: close here
            else:
                self.maintainer.wake()
        return reclaimed

    def abandoned(self, conn: PooledConnection, checkout: int) -> None:
        """Note that the holder of ``conn`` (its ``checkout``-th checkout) ended without
        returning it. Safe from a finalizer: no lock, no I/O (``reclaim_abandoned`` does
        the work, in a checkout that would otherwise wait, or in the maintainer)."""
        self._abandoned.append((conn, checkout))

    def reclaim_abandoned(self) -> int:
        """Take back connections whose holder ended: rolled back and reused, or closed.

        One warning per connection, naming where it was checked out. Returns how many.
        """
        count = 0
        while self._abandoned:
            try:
                conn, checkout = self._abandoned.popleft()
            except IndexError:
                break
            seg = conn.segment
            with seg.lock:
                ours = (conn.state == IN_USE and conn.checkouts == checkout
                        and conn in seg.in_use and not conn.reclaimed)
                if ours:
                    seg.counters.reclaimed_abandoned += 1
            if not ours:
                continue
            count += 1
            logger.warning(
                "pool %r: thread %r ended without returning its connection (checked out at "
                "%s, %.1f s ago); taken back. Return connections with db.close() or "
                "db.connection_context().", self.name, conn.holder,
                _format_origin(conn.origin), self.clock() - conn.checked_out_at)
            with contextlib.suppress(CheckinError):
                self.checkin(conn)
        return count

    def in_use_connections(self) -> list[PooledConnection]:
        with self._all_segments_locked() as segments:
            return [conn for seg in segments for conn in seg.in_use]

    # ------------------------------------------------------------------ lifecycle

    def _start_background(self) -> None:
        """First checkout in this process: adopt gevent's threading if it was patched in
        after this pool was built, then start the maintainer.

        The start lock is never held across ``Thread.start()``: under gevent that call
        switches greenlets, and another greenlet blocking on a real OS lock would block
        the whole worker (the ``--preload -k gevent`` deadlock).
        """
        if self._patch_error is not None:
            raise PoolError(self._patch_error)
        if not concurrency.is_current_local(self._home):
            self._adopt_threading()
        with self._start_lock:
            if self._maintainer_started or self._closed:
                self._publish()
                return
            self._maintainer_started = True
        if self._start_maintainer:
            try:
                self.maintainer.start()
            except BaseException:
                self._maintainer_started = False
                raise
        self._publish()  # the fast path is open from here

    def _adopt_threading(self) -> None:
        """Rebuild the locks, thread-locals and maintainer made before gevent patched
        ``threading`` (``gunicorn --preload -k gevent``), so greenlets get their own.

        Only possible before the maintainer ran in this process (a real thread then uses
        the old locks): otherwise the next checkout raises with what to change.
        """
        if self.maintainer.running:
            self._patch_error = (
                f"pool {self.name!r} was used before gevent.monkey.patch_all() in this "
                "process (its maintainer runs as a real thread with real locks, which would "
                "block every greenlet). Call gevent.monkey.patch_all() before the first "
                "query: first thing in the entry point (gunicorn's gevent worker does; with "
                "--preload a query in the master is fine, the worker is a new process).")
            self._maintainer_started = False  # route the next checkout to the cold path
            self._publish()
            return
        with self._start_lock:
            if concurrency.is_current_local(self._home):
                return
            for seg in self._segments:
                seg.lock = threading.Lock()
            self._waiters_lock = threading.Lock()
            self._home = threading.local()
            from .maintainer import Maintainer

            self.maintainer = Maintainer(self)
            self._maintainer_started = False
            self._publish()
        self._start_lock = threading.Lock()

    def _home_record(self) -> _Home:
        """This thread's :class:`_Home` for this pool (made at its first checkout)."""
        try:
            return self._home.record  # type: ignore[no-any-return]
        except AttributeError:
            record = _Home(self, self._segments[next(self._next_home) % len(self._segments)])
            self._home.record = record
            return record

    def _home_segment(self) -> _Segment:
        return self._home_record().segment

    def _segments_from(self, home: _Segment) -> list[_Segment]:
        i = home.index
        return self._segments[i:] + self._segments[:i]

    @contextlib.contextmanager
    def connection(self, timeout: float | None = _USE_DEFAULT) -> Iterator[RawConnection]:
        """``with pool.connection() as raw:``: checkout, and checkin whatever happens."""
        conn = self.checkout(timeout)
        try:
            yield conn.raw
        except BaseException:
            self.checkin(conn, broken=not self.driver.is_usable(conn.raw))
            raise
        self.checkin(conn)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the maintainer, close idle connections, and in-use ones as they return.

        Waiting threads get :class:`PoolClosed`; later checkouts too.
        """
        with self._waiters_lock:
            if self._closed:
                return
            self._closed = True
            waiters = list(self._waiters)
            self._waiters.clear()
            self._sync_waiting_locked()
        self._publish()
        for waiter in waiters:
            waiter.event.set()
        idle = self._withdraw_idle(lambda c: True, limit=sys.maxsize)
        for conn in idle:
            with conn.segment.lock:
                self._retire_locked(conn, "closed")
        self.maintainer.stop(timeout)
        self.maintainer.close_retiring()

    def drain(self) -> int:
        """Replace every open connection, gracefully (after a fail-over, a password change,
        a server restart).

        Idle connections are replaced by the maintainer at once, replacement first where
        the cap leaves room; connections in use serve their holder to the end and are
        retired when returned, their slot reopened by the maintainer. Nothing is closed
        under anyone, no lock is held across I/O, and the cap holds throughout. Returns
        how many connections were open (all of them are to be replaced).
        """
        if self._closed:
            raise PoolClosed(f"pool {self.name!r} is closed")
        with self._waiters_lock:  # serialises drains against each other; no I/O
            self._generation += 1
            self._publish()
        self.count("drains")
        self.maintainer.wake()
        return len(self._open_conns)

    def close_idle(self) -> int:
        """Close every idle connection now (playhouse's ``close_idle``)."""
        idle = self._withdraw_idle(lambda c: True, limit=sys.maxsize)
        for conn in idle:
            with conn.segment.lock:
                self._retire_locked(conn, "idle")
        self.maintainer.wake()
        if not self._maintainer_started or not self._start_maintainer:
            self.maintainer.close_retiring()
        return len(idle)

    def _after_fork_in_child(self) -> None:
        """Drop everything inherited from the parent without touching its sockets."""
        for conn in list(self._open_conns):
            with contextlib.suppress(Exception):
                self.driver.discard(conn.raw)
            conn.state = CLOSED
        was_closed = self._closed
        self._init_state()
        self._closed = was_closed
        self._publish()

    # ------------------------------------------------------------------ stats

    def count(self, counter: str) -> None:
        seg = self._segments[0]
        with seg.lock:
            setattr(seg.counters, counter, getattr(seg.counters, counter) + 1)

    def idle_count(self) -> int:
        return self._census()[1]

    @property
    def size(self) -> int:
        return self._census()[0]

    def stats(self) -> PoolStats:
        """A snapshot: the connection counts read with every segment locked at once (a
        connection moving between segments is counted once), the counters and histograms
        segment by segment (each under its own lock; merging them is the long part)."""
        counters = Counters()
        wait, connect, usage = Histogram(), Histogram(), Histogram()
        for seg in self._segments:
            with seg.lock:
                counters.merge(seg.counters)
                wait.merge(seg.wait_time)
                connect.merge(seg.connect_time)
                usage.merge(seg.usage_time)
        generation = self._generation
        size, idle, in_use, opening, stale = self._census(generation)
        m = self.maintainer
        return PoolStats(
            name=self.name,
            max_connections=self.options.max_connections,
            min_idle=self.options.min_idle,
            segments=len(self._segments),
            size=size,
            idle=idle,
            in_use=in_use,
            opening=opening,
            closing=max(0, size - idle - in_use - opening),
            waiting=len(self._waiters),
            counters=counters,
            checkout_wait=wait.summary(),
            connect_time=connect.summary(),
            usage_time=usage.summary(),
            histograms={"checkout_wait": wait, "connect_time": connect, "usage_time": usage},
            database_down=m.database_down,
            backoff=m.backoff,
            closed=self._closed,
            stale=stale,
            generation=generation,
            holders=self.holders(),
        )

    def holders(self, limit: int = 5) -> list[dict[str, Any]]:
        """The threads holding connections longest: who, for how long, taken where."""
        now = self.clock()
        held = sorted(self.in_use_connections(), key=lambda c: c.checked_out_at)[:limit]
        return [{"thread": c.holder, "held_for": round(now - c.checked_out_at, 3),
                 "origin": _format_origin(c.origin)} for c in held]

    def _census(self, generation: int = 0) -> tuple[int, int, int, int, int]:
        """(size, idle, in use, opening, stale: not of ``generation``), one consistent
        reading."""
        size = idle = in_use = opening = stale = 0
        with self._all_segments_locked() as segments:
            for seg in segments:
                if generation:
                    stale += sum(c.generation != generation for c in seg.idle)
                    stale += sum(c.generation != generation for c in seg.in_use)
                size += seg.slots
                idle += len(seg.idle)
                in_use += len(seg.in_use)
                opening += seg.opening
        return size, idle, in_use, opening, stale

    def _describe_pressure(self, what: str) -> str:
        size, _, in_use, _, _ = self._census()
        text = (f"pool {self.name!r}: {what} (size {size}/{self.options.max_connections}, "
                f"in use {in_use}, waiting {len(self._waiters)})")
        holders = self.holders(limit=3)
        if holders:
            text += "; longest holders: " + "; ".join(
                f"thread {h['thread']!r} for {h['held_for']:.2f} s, checked out at "
                f"{h['origin']}" for h in holders)
        return text

    def resize(self, max_connections: int | None = None, min_idle: int | None = None) -> None:
        """Change the cap and ``min_idle`` at run time.

        Growing takes effect at once (waiting threads get the new slots). Shrinking closes
        idle connections above the new share of each segment now and lets in-use ones
        drain as they are returned; meanwhile no new connection is opened, so the number
        open never exceeds the larger of the old and new caps.
        """
        changes: dict[str, Any] = {}
        if max_connections is not None:
            changes["max_connections"] = max_connections
        if min_idle is not None:
            changes["min_idle"] = min_idle
        options = self.options.replace(**changes)  # validates, e.g. min_idle <= max
        shares = _split(options.max_connections, len(self._segments))
        surplus: list[PooledConnection] = []
        for seg, share in zip(self._segments, shares, strict=True):
            with seg.lock:
                seg.capacity = share
                draining = seg.slots - seg.retiring
                while draining > share and seg.idle:
                    conn = seg.idle.pop(0)  # the coldest first
                    self._retire_locked(conn, "idle")
                    surplus.append(conn)
                    draining -= 1
        self._use_options(options)
        if surplus:
            self.maintainer.wake()
        if self._waiters:
            self._dispatch()


_NOT_APPLICATION = (_PACKAGE_DIR + os.sep, os.path.dirname(contextlib.__file__) + os.sep
                    + "contextlib.py")


def _application_frame(frame: Any, known: dict[str, bool]) -> tuple[str, int] | None:
    """(file, line) of the innermost caller outside peewee, this library and contextlib,
    from ``frame`` outwards (the pool's own frames are skipped like any library frame).
    ``known``: the caller's cache of classified files (one per thread: see _Home).

    A few attribute reads per frame: cheap enough for every checkout, unlike a stack.
    """
    while frame is not None:
        filename = frame.f_code.co_filename
        is_application = known.get(filename)
        if is_application is None:
            is_application = known[filename] = _is_application_file(filename)
        if is_application:
            return filename, frame.f_lineno
        frame = frame.f_back
    return None


def _is_application_file(filename: str) -> bool:
    """Is ``filename`` application code (not peewee, this library or contextlib)? Cached
    for the process too: a new greenlet (gevent: one per request) starts a new cache."""
    is_application = _IS_APPLICATION_FILE.get(filename)
    if is_application is None:
        is_application = _IS_APPLICATION_FILE[filename] = not (
            filename.startswith(_NOT_APPLICATION)
            or filename.endswith(("peewee.py", "contextlib.py"))
            or f"{os.sep}playhouse{os.sep}" in filename)
    return is_application


_IS_APPLICATION_FILE: dict[str, bool] = {}
_getframe = sys._getframe


def _format_origin(origin: tuple[str, int] | None) -> str:
    if origin is None:
        return "an unknown place"
    filename, line = origin
    with contextlib.suppress(ValueError):  # on another drive (Windows)
        filename = os.path.relpath(filename)
    return f"{filename}:{line}"


_live_pools: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()


def _reinit_pools_in_child() -> None:
    for pool in list(_live_pools):
        pool._after_fork_in_child()


def _adopt_patched_threading() -> None:
    """Right after ``gevent.monkey.patch_all()``: rebuild every pool's locks (see
    ``ConnectionPool._adopt_threading``)."""
    for pool in list(_live_pools):
        if not pool._closed and not concurrency.is_current_local(pool._home):
            pool._adopt_threading()


concurrency.on_patch_all(_adopt_patched_threading)


forking.register(forking.POOL, after_in_child=_reinit_pools_in_child)
