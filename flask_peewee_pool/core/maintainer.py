"""The maintainer: every duty of the pool that costs a round trip and that no request should
wait for.

One named daemon thread per pool wakes every ``TICK`` seconds (or at once when a connection
is handed over for closing) and runs :meth:`Maintainer.tick`. The tick itself only does
bookkeeping; the connects, pings and closes it decides on run as jobs on a small executor of
``maintenance_concurrency`` threads, so a batch of expiring connections is recycled a few at a
time and a slow connect never delays the next tick. Tests call ``tick(now)`` directly with a
fake clock and no executor, which runs the jobs inline and deterministically.

Duties, in tick order: close retiring connections (replacing those whose lifetime ended);
recycle idle connections whose lifetime is about to end, replacement first when the pool has
a free slot; close connections idle longer than ``idle_timeout`` down to ``min_idle``; ping
connections idle longer than ``keepalive``; refill to ``min_idle``; warn about leaks; run the
extra per-tick hooks (stats snapshots). Connect failures put the maintainer in backoff
(exponential, jittered, capped at ``max_backoff``) and it logs once when the database goes
down and once when it is back.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import concurrency
from .errors import ConnectError, PoolClosed

if TYPE_CHECKING:
    from .pool import ConnectionPool, PooledConnection

logger = logging.getLogger("flask_peewee_pool")

#: Seconds between two ticks when nothing wakes the maintainer earlier.
TICK = 0.1
#: Initial reconnect delay while the database is down; doubles up to ``max_backoff``.
BASE_BACKOFF = 0.1


class Maintainer:
    """Background duties of one :class:`~flask_peewee_pool.core.pool.ConnectionPool`."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._jobs_done = threading.Condition(self._lock)
        self._inflight = 0
        self._failures = 0
        self._next_connect_at = 0.0
        self.database_down = False
        self.backoff = 0.0

    @property
    def hooks(self) -> list[Callable[[float], None]]:
        """The pool's tick hooks (``pool.tick_hooks``), run at the end of every tick."""
        return self.pool.tick_hooks

    # ---------------------------------------------------------------- thread

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        name = f"fpp-maintainer-{self.pool.name}"
        self._job_thread_prefix = name
        if concurrency.threading_patched():
            # Under gevent a job is a greenlet: cheap, and no ThreadPoolExecutor whose
            # module-level lock may predate the patching (held across a greenlet switch).
            self._executor = _GreenletExecutor(name)
        else:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.pool.options.maintenance_concurrency,
                thread_name_prefix=name)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, then wait (at most ``timeout`` in all) for running jobs.

        A job still connecting when the pool closes finds it closed and closes what it
        opened; waiting for it means ``close()`` returns with nothing left open, unless a
        connect outlasts ``timeout``.
        """
        deadline = self.pool.clock() + timeout
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._executor is not None:
            # Never cancel queued jobs: each holds a connection already taken out of the
            # pool's lists (a retiring one to close, an idle one to recycle); a cancelled
            # job never closes it, and never decrements _inflight either.
            self._executor.shutdown(wait=False, cancel_futures=False)
            if threading.current_thread().name.startswith(self._job_thread_prefix):
                return  # called from one of our own jobs: it cannot wait for itself
            with self._jobs_done:
                self._jobs_done.wait_for(lambda: self._inflight == 0,
                                         max(0.0, deadline - self.pool.clock()))

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        clock = self.pool.clock
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.tick(clock())
            except Exception:  # a bug here must not kill the pool's upkeep
                logger.exception("pool %r: maintainer tick failed", self.pool.name)
            self._wake.wait(TICK)

    def _submit(self, job: Callable[[], None]) -> None:
        if self._executor is None:
            job()
            return
        with self._lock:
            self._inflight += 1

        def run() -> None:
            try:
                job()
            except Exception:
                logger.exception("pool %r: maintenance job failed", self.pool.name)
            finally:
                with self._lock:
                    self._inflight -= 1
                    if not self._inflight:
                        self._jobs_done.notify_all()

        try:
            self._executor.submit(run)
        except RuntimeError:  # executor shut down: do it here
            run()

    def _submit_each(self, items: list[Any], job: Callable[[Any], None],
                     undo: Callable[[Any], None]) -> None:
        """Submit ``job(item)`` for each item taken out of the pool. If the tick is
        interrupted (a job run inline raised a BaseException), the items not submitted yet
        are put back with ``undo``: nothing taken out is stranded."""
        pending = list(items)
        try:
            while pending:
                item = pending.pop(0)
                self._submit(lambda i=item: job(i))
        except BaseException:
            for item in pending:
                undo(item)
            raise

    def _budget(self) -> int:
        with self._lock:
            return max(0, self.pool.options.maintenance_concurrency - self._inflight)

    # ---------------------------------------------------------------- tick

    def tick(self, now: float) -> None:
        """Run every duty that is due at ``now``."""
        pool = self.pool
        if pool._abandoned:
            pool.reclaim_abandoned()
        retiring = pool._take_retiring()
        self._submit_each(retiring, lambda item: self._close(*item),
                          lambda item: pool._queue_for_close(*item))
        if pool.closed:
            return
        opts = pool.options
        can_connect = now >= self._next_connect_at
        if opts.max_lifetime is not None and can_connect:
            horizon = min(1.0, opts.max_lifetime * 0.1) + TICK
            expiring = pool._withdraw_idle(lambda c: c.expires_at - horizon <= now,
                                          self._budget())
            self._submit_each(expiring, lambda old: self._recycle(old, pool._reserve_slot()),
                              pool._install)
        generation = pool._generation
        if generation and can_connect:  # drain(): replace the idle ones of older generations
            stale = pool._withdraw_idle(lambda c: c.generation != generation, self._budget())
            self._submit_each(
                stale, lambda old: self._recycle(old, pool._reserve_slot(), "drained"),
                pool._install)
        if opts.idle_timeout is not None:
            excess = pool.idle_count() - opts.min_idle  # the same measure _refill tops up
            if excess > 0:
                cutoff = now - opts.idle_timeout
                idle = pool._withdraw_idle(lambda c: c.last_used_at <= cutoff,
                                          min(excess, self._budget()))
                self._submit_each(idle, lambda c: self._close(c, "idle"), pool._install)
        if opts.keepalive is not None:
            cutoff = now - opts.keepalive
            due = pool._withdraw_idle(
                lambda c: max(c.last_used_at, c.last_checked_at) <= cutoff, self._budget())
            self._submit_each(due, self._keepalive, pool._install)
        if opts.min_idle and can_connect:
            self._refill()
        if opts.leak_threshold is not None:
            self._check_leaks(now, opts.leak_threshold)
        for hook in list(self.hooks):
            try:
                hook(now)
            except Exception:
                logger.exception("pool %r: maintainer hook failed", pool.name)

    def _refill(self) -> None:
        pool = self.pool
        stats = pool.stats()
        deficit = min(pool.options.min_idle - stats.idle - stats.opening,
                      pool.options.max_connections - stats.size)
        for _ in range(min(deficit, self._budget())):
            seg = pool._reserve_slot()
            if seg is None:
                break
            self._submit(lambda s=seg: self._open(s))

    # ---------------------------------------------------------------- jobs

    def _open(self, seg: object | None) -> PooledConnection | None:
        pool = self.pool
        if seg is None:  # _reuse_slot() freed the slot: the pool is shrinking or closed
            return None
        if pool.clock() < self._next_connect_at:  # in backoff: give the slot back
            pool._unreserve(seg)  # type: ignore[arg-type]
            return None
        try:
            conn = pool._open_in_slot(seg)  # type: ignore[arg-type]
        except ConnectError as exc:
            self._connect_failed(exc)
            return None
        except PoolClosed:
            return None
        self.connect_succeeded()
        pool._install(conn)
        return conn

    def _close(self, conn: PooledConnection, reason: str) -> None:
        pool = self.pool
        if reason not in ("lifetime", "keepalive", "drained") or pool.closed:
            pool._close_and_release(conn, reason)
            return
        pool.close_raw(conn, reason)
        self._open(pool._reuse_slot(conn, reason))  # None when shrinking: nothing opened

    def _recycle(self, old: PooledConnection, spare: object | None,
                 reason: str = "lifetime") -> None:
        """Replace ``old`` (its lifetime ends, or a drain): open first if there is room."""
        pool = self.pool
        if spare is None:  # at the cap: the old one must go first
            self._close(old, reason)
        else:
            try:
                new = self._open(spare)
            except BaseException:  # interrupted: the spare slot is freed, old serves on
                pool._install(old)
                raise
            if new is None:  # no replacement now: keep serving until it really expires
                pool._install(old)
                return
            pool._close_and_release(old, reason)
        pool.count("recycled")

    def _keepalive(self, conn: PooledConnection) -> None:
        pool = self.pool
        ok = True
        try:
            pool.driver.ping(conn.raw)
        except Exception as exc:
            ok = False
            logger.info("pool %r: keepalive ping failed, replacing: %s", pool.name, exc)
        except BaseException:  # interrupted mid-ping: the protocol state is unknown
            pool._queue_for_close(conn, "broken")
            raise
        with conn.segment.lock:
            conn.segment.counters.keepalive_pings += 1
            if not ok:
                conn.segment.counters.keepalive_failures += 1
                conn.segment.counters.retired_broken += 1
        if ok:
            conn.last_checked_at = pool.clock()
            pool._install(conn)
        else:
            self._close(conn, "keepalive")

    def close_retiring(self) -> None:
        """Close every retiring connection now, in the calling thread (pool shutdown)."""
        taken = self.pool._take_retiring()
        try:
            while taken:
                conn, reason = taken.pop()
                self.pool._close_and_release(conn, reason)
        except BaseException:  # interrupted: the rest go back to the maintainer's queue
            self.pool._retiring.extend(taken)
            raise

    # ---------------------------------------------------------------- outage

    def _connect_failed(self, exc: Exception) -> None:
        pool = self.pool
        with self._lock:
            self._failures += 1
            delay = min(pool.options.max_backoff, BASE_BACKOFF * 2 ** (self._failures - 1))
            self.backoff = delay * (0.5 + 0.5 * pool.rng())
            self._next_connect_at = pool.clock() + self.backoff
            first = not self.database_down
            self.database_down = True
        if first:
            logger.warning("pool %r: database unreachable, retrying with backoff: %s",
                           pool.name, exc)

    def connect_succeeded(self) -> None:
        with self._lock:
            was_down, failures = self.database_down, self._failures
            self._failures = 0
            self.backoff = 0.0
            self._next_connect_at = 0.0
            self.database_down = False
        if was_down:
            logger.warning("pool %r: database reachable again after %d failed attempts",
                           self.pool.name, failures)

    # ---------------------------------------------------------------- leaks

    def _check_leaks(self, now: float, threshold: float) -> None:
        for conn in self.pool.in_use_connections():
            if conn.leak_warned or now - conn.checked_out_at < threshold:
                continue
            conn.leak_warned = True
            with conn.segment.lock:
                conn.segment.counters.leaks += 1
            stack = "".join(traceback.format_list(conn.site or []))
            logger.warning(
                "pool %r: connection held for %.1f s by thread %s (leak_threshold=%s s); "
                "checked out at:\n%s", self.pool.name, now - conn.checked_out_at,
                conn.holder, threshold, stack)


class _GreenletExecutor:
    """The executor's two methods, each job in its own (gevent-patched) thread."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._shutdown = False

    def submit(self, fn: Callable[[], None]) -> None:
        if self._shutdown:
            raise RuntimeError("executor shut down")
        threading.Thread(target=fn, name=f"{self._name}-job", daemon=True).start()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self._shutdown = True
