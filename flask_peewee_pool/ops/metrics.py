"""Prometheus metrics for a pool (optional extra: ``pip install flask-peewee-pool[prometheus]``).

::

    from flask_peewee_pool.metrics import instrument

    instrument(database)                  # a pooled peewee database, or a ConnectionPool
    # Flask: app.config["PEEWEE_POOL_METRICS"] = True

Every series carries a ``pool`` label (the pool's name; the Flask extension names it after
the app). Gauges: ``peewee_pool_connections{state="idle|in_use|opening|closing"}`` (the four
add up to the pool's size), ``peewee_pool_max_connections``, ``peewee_pool_waiting``,
``peewee_pool_database_down``. Counters: ``peewee_pool_checkouts_total``,
``peewee_pool_connects_total``, ``peewee_pool_connect_failures_total``,
``peewee_pool_retired_total{reason="lifetime|idle|broken|drained"}``,
``peewee_pool_recycled_total``, ``peewee_pool_timeouts_total``, ``peewee_pool_rejected_total``,
``peewee_pool_drains_total``,
``peewee_pool_pings_total{kind="checkout|keepalive"}``,
``peewee_pool_ping_failures_total{kind}``, ``peewee_pool_rollbacks_total``,
``peewee_pool_leaks_total``, ``peewee_pool_reclaimed_abandoned_total``. Histograms:
``peewee_pool_checkout_wait_seconds``, ``peewee_pool_connect_seconds``,
``peewee_pool_usage_seconds`` (how long a connection was held, observed at checkin).

**No cost on the request path.** Nothing here runs in checkout or checkin: the pool already
counts everything under the segment lock it holds anyway (see :mod:`..core.stats`).

**Fresh at scrape time** in a single process: each registry gets, ahead of the pool
metrics, a collector (:class:`_FreshOnScrape`) whose ``collect()`` reads :meth:`pool.stats()
<flask_peewee_pool.core.pool.ConnectionPool.stats>` of every pool it publishes and applies
it, so a scrape right after traffic already counts that traffic (about 0.2 ms per pool per
scrape). For prometheus_client's multiprocess mode (``registry=None``: the scrape is
answered by another process reading files), a hook on the pool's maintainer thread
(``pool.tick_hooks``) writes the values every ``interval`` seconds (default 1), so a scrape
there sees values at most ``interval`` old. The hook runs in single-process mode too
(cheap, and it keeps gauges current for code reading the metric objects directly).

**Real prometheus_client metrics**, so they work in prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, one process per gunicorn worker), where a custom collector
would only ever see the worker answering the scrape. Gauges use ``multiprocess_mode=
"livesum"`` (connections and capacity add up over live workers) except
``database_down``, which is ``"livemax"`` (1 if any live worker sees the database down).
Counters and histograms are summed over every process that ever wrote them, dead ones
included, so they never go backwards when a worker is replaced. Call
``prometheus_client.multiprocess.mark_process_dead(worker.pid)`` in gunicorn's
``child_exit`` hook, or the live* gauges of a dead worker stay in the sums until the
directory is wiped (see docs/operations.md). Metrics created before a fork (gunicorn
``--preload``) are fine: prometheus_client gives each pid its own files, and the updater
starts its counts again from the child's new, empty pool. ``fork()`` waits for an update in
progress (the fork registry, :mod:`..core.forking`), so no child inherits a lock held by a
maintainer thread that does not exist in the child.

**Histogram precision.** The pool records latencies in log buckets, four per power of two
from 1 microsecond (:class:`.stats.Histogram`). The hook moves each pool bucket's new
observations into the Prometheus bucket that contains that pool bucket's upper edge, and
adds the exact new total to ``_sum``. :data:`DEFAULT_BUCKETS` (1 us to ~18 min, a factor of
4 apart) fall on pool bucket edges, so with them every ``_bucket``, ``_count`` and ``_sum``
is exact. With other ``buckets`` (``instrument(..., buckets=[0.005, 0.01, ...])``) counts
and sums stay exact but an observation less than one pool bucket (a factor 2**(1/4),
about 19%) below a bound may be counted in the next bucket up: never in a faster one.
The increments go straight into the Prometheus histogram's bucket values (one write per
bucket that changed, not one per observation: :func:`~flask_peewee_pool.compat.histogram_feed`,
the one place that touches prometheus_client's histogram internals); should a future
prometheus_client lay its histograms out differently, the hook falls back to ``observe()``
once per observation at the Prometheus bucket's bound, with ``_sum`` then approximate.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:  # the "prometheus" extra is not installed
    raise ImportError(
        "flask_peewee_pool.metrics needs prometheus_client: "
        "pip install 'flask-peewee-pool[prometheus]'") from exc

from .. import compat
from ..core import forking
from ..core import stats as _stats
from ..core.pool import ConnectionPool

__all__ = ["DEFAULT_BUCKETS", "DEFAULT_INTERVAL", "PoolMetrics", "instrument"]

logger = logging.getLogger("flask_peewee_pool")

#: Seconds between two updates by the maintainer thread: fresher than any scrape needs.
DEFAULT_INTERVAL = 1.0

#: Prometheus bucket bounds (seconds) on the pool's own bucket edges: 1 us * 4**k.
DEFAULT_BUCKETS: tuple[float, ...] = tuple(
    _stats._MIN_SECONDS * 2 ** (8 * k / _stats._BUCKETS_PER_OCTAVE) for k in range(16))

STATES = ("idle", "in_use", "opening", "closing")
RETIRE_REASONS = ("lifetime", "idle", "broken", "drained")

#: (metric name, help, label name or None, ((label value or None, Counters field), ...)).
_COUNTERS: tuple[tuple[str, str, str | None, tuple[tuple[str | None, str], ...]], ...] = (
    ("peewee_pool_checkouts", "Connections handed out by the pool.", None,
     ((None, "checkouts"),)),
    ("peewee_pool_connects", "Connections opened.", None, ((None, "connects"),)),
    ("peewee_pool_connect_failures", "Connection attempts that failed.", None,
     ((None, "connect_failures"),)),
    ("peewee_pool_retired", "Connections closed by the pool, by reason.", "reason",
     tuple((reason, f"retired_{reason}") for reason in RETIRE_REASONS)),
    ("peewee_pool_recycled", "Connections replaced by the maintainer before their "
     "lifetime ended.", None, ((None, "recycled"),)),
    ("peewee_pool_timeouts", "Checkouts that gave up after the pool's timeout.", None,
     ((None, "timeouts"),)),
    ("peewee_pool_rejected", "Checkouts refused at once because max_waiting threads were "
     "already waiting.", None, ((None, "rejected"),)),
    ("peewee_pool_pings", "Pings: before a checkout (idle longer than ping_after) and "
     "keepalive pings of idle connections.", "kind",
     (("checkout", "pings"), ("keepalive", "keepalive_pings"))),
    ("peewee_pool_ping_failures", "Pings that failed (the connection was replaced).", "kind",
     (("checkout", "ping_failures"), ("keepalive", "keepalive_failures"))),
    ("peewee_pool_rollbacks", "Transactions left open by the holder, rolled back at "
     "checkin.", None, ((None, "rollbacks"),)),
    ("peewee_pool_leaks", "Connections held longer than leak_threshold.", None,
     ((None, "leaks"),)),
    ("peewee_pool_drains", "Calls of drain(): every connection replaced.", None,
     ((None, "drains"),)),
    ("peewee_pool_reclaimed_abandoned", "Connections taken back because the thread or "
     "greenlet holding them ended without returning them.", None,
     ((None, "reclaimed_abandoned"),)),
)

#: (metric name, help, key in the pool's histograms).
_HISTOGRAMS = (
    ("peewee_pool_checkout_wait_seconds", "Time a checkout waited for a connection "
     "(0 when one was idle; includes the connect when it had to open one).", "checkout_wait"),
    ("peewee_pool_connect_seconds", "Time to open a new connection.", "connect_time"),
    ("peewee_pool_usage_seconds", "How long a connection was held, checkout to checkin.",
     "usage_time"),
)

_DEFAULT: Any = object()

# One set of metric objects per registry (prometheus_client refuses a name twice), and the
# pool that owns each ``pool`` label value in it. Guarded by _lock.
_lock = threading.Lock()
_families: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_unregistered: dict[None, _Families] = {}

# Held while a hook reads the pool and writes metric values. fork() takes it first (see
# _before_fork), so a child never inherits it, nor prometheus_client's multiprocess-mode
# lock, held by a maintainer thread that does not exist in the child.
_update_lock = threading.Lock()


class _FreshOnScrape:
    """A collector registered ahead of the pool metrics: brings them up to date at scrape.

    prometheus_client collects a registry's collectors in registration order, so by the
    time the pool metrics are read, this one has applied every pool's current stats.
    It yields no metric of its own.
    """

    def __init__(self, families: _Families) -> None:
        self._families = weakref.ref(families)

    def describe(self) -> list[Any]:
        return []  # no names of its own (and no collect() at registration)

    def collect(self) -> list[Any]:
        families = self._families()
        if families is not None:
            for metrics in list(families.owners.values()):
                try:
                    metrics.update()
                except Exception:  # a scrape must still answer
                    logger.exception("updating the metrics of pool %r failed", metrics.name)
        return []


class _Families:
    """The metric objects of one registry, shared by every instrumented pool."""

    def __init__(self, registry: CollectorRegistry | None, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.owners: dict[str, PoolMetrics] = {}
        if registry is not None:  # single process: fresh at scrape time
            self.fresh: _FreshOnScrape | None = _FreshOnScrape(self)
            registry.register(self.fresh)
        else:
            self.fresh = None
        self.connections = Gauge("peewee_pool_connections",
                                 "Connections of the pool by state (they add up to its size).",
                                 ("pool", "state"), registry=registry,
                                 multiprocess_mode="livesum")
        self.max_connections = Gauge("peewee_pool_max_connections",
                                     "The pool's cap on open connections.", ("pool",),
                                     registry=registry, multiprocess_mode="livesum")
        self.waiting = Gauge("peewee_pool_waiting", "Threads waiting for a connection.",
                             ("pool",), registry=registry, multiprocess_mode="livesum")
        self.database_down = Gauge("peewee_pool_database_down",
                                   "1 while the pool cannot connect and retries with backoff.",
                                   ("pool",), registry=registry, multiprocess_mode="livemax")
        self.counters = {
            name: Counter(name, doc, ("pool", label) if label else ("pool",),
                          registry=registry)
            for name, doc, label, _ in _COUNTERS
        }
        self.histograms = {
            name: Histogram(name, doc, ("pool",), registry=registry, buckets=buckets)
            for name, doc, _ in _HISTOGRAMS
        }


def _families_for(registry: CollectorRegistry | None,
                  buckets: tuple[float, ...]) -> _Families:
    """Caller holds ``_lock``."""
    families = _unregistered.get(None) if registry is None else _families.get(registry)
    if families is None:
        families = _Families(registry, buckets)
        if registry is None:
            _unregistered[None] = families
        else:
            _families[registry] = families
    elif families.buckets != buckets:
        raise ValueError(
            f"the pool histograms of this registry already use buckets {families.buckets}; "
            "every pool of one registry shares them")
    return families


def _pool_of(target: Any) -> ConnectionPool:
    """The ConnectionPool of a pooled database, a DatabaseProxy of one, or a pool."""
    if isinstance(target, ConnectionPool):
        return target
    try:  # a peewee DatabaseProxy forwards .pool to the database it holds
        pool = getattr(target, "pool", None)
    except Exception:  # an uninitialised proxy
        pool = None
    if isinstance(pool, ConnectionPool):
        return pool
    raise TypeError(f"instrument() takes a pooled database or a ConnectionPool, got "
                    f"{type(target).__name__}")


def instrument(database: Any, *, registry: CollectorRegistry | None = _DEFAULT,
               name: str | None = None, buckets: Iterable[float] = DEFAULT_BUCKETS,
               interval: float = DEFAULT_INTERVAL) -> PoolMetrics:
    """Publish ``database``'s pool statistics as Prometheus metrics; returns the updater.

    ``database``: a pooled peewee database (``PooledMySQLDatabase``...), a
    ``DatabaseProxy`` initialised with one, or a :class:`ConnectionPool`. ``registry``:
    where the metrics are registered (default ``prometheus_client.REGISTRY``; ``None``: not
    registered, for multiprocess mode where a ``MultiProcessCollector`` reads the files).
    ``name``: the ``pool`` label (default: the pool's name). ``buckets``: histogram
    bounds in seconds, shared by every pool of the registry (see the module docstring for
    their precision). ``interval``: seconds between two updates by the maintainer (0:
    every tick, ~0.1 s).

    Idempotent for one pool and registry. If another pool already publishes the same
    ``pool`` label in the registry, the new one takes the label over (an app factory
    called again); the old pool stops publishing.
    """
    pool = _pool_of(database)
    if registry is _DEFAULT:
        registry = REGISTRY
    if not (isinstance(interval, (int, float)) and math.isfinite(interval) and interval >= 0):
        raise ValueError(f"interval: a number of seconds >= 0, got {interval!r}")
    bounds = tuple(sorted(float(b) for b in buckets if not math.isinf(float(b))))
    if not bounds:
        raise ValueError("buckets: give at least one finite bound")
    label = pool.name if name is None else str(name)
    with _lock:
        families = _families_for(registry, bounds)
        previous = families.owners.get(label)
        if previous is not None and previous.pool is pool:
            return previous
        metrics = PoolMetrics(pool, families, label, float(interval))
        families.owners[label] = metrics
    if previous is not None:
        old = previous.pool
        if old is not None and not old.closed:
            logger.warning("prometheus metrics of pool %r now come from a new pool with the "
                           "same name; the previous one stops publishing them", label)
        previous.detach()
    pool.tick_hooks.append(metrics)
    return metrics


class PoolMetrics:
    """Copies one pool's statistics into its Prometheus metrics; a maintainer tick hook.

    Holds the pool weakly. :meth:`update` applies the current statistics now (tests, or
    before an in-process scrape if one tick of delay matters); :meth:`close` stops
    publishing and removes the pool's series.
    """

    def __init__(self, pool: ConnectionPool, families: _Families, label: str,
                 interval: float = 1.0) -> None:
        self._pool = weakref.ref(pool)
        self._families = families
        self.name = label
        self.interval = interval
        self._last: float | None = None
        self._detached = False
        self._pid = os.getpid()
        self._seen: dict[str, float] = {}  # Counters field -> value at the last update
        self._seen_hist: dict[str, _Seen] = {}
        self._gauge_values: dict[Any, float] = {}
        f = families
        self._states = {state: f.connections.labels(label, state) for state in STATES}
        self._max = f.max_connections.labels(label)
        self._waiting = f.waiting.labels(label)
        self._down = f.database_down.labels(label)
        self._counters: list[tuple[Any, str]] = []
        for metric_name, _, label_name, fields in _COUNTERS:
            metric = f.counters[metric_name]
            for value, field in fields:
                child = metric.labels(label, value) if label_name else metric.labels(label)
                self._counters.append((child, field))
        self._histograms = [
            _HistogramFeed(f.histograms[metric_name].labels(label), f.buckets, key)
            for metric_name, _, key in _HISTOGRAMS
        ]

    def __repr__(self) -> str:
        return f"<PoolMetrics pool={self.name!r}>"

    @property
    def pool(self) -> ConnectionPool | None:
        return self._pool()

    def __call__(self, now: float) -> None:
        """The maintainer hook: update if ``interval`` has passed (``now``: the pool's
        clock), and at the first tick of a forked child."""
        if (self._last is not None and now - self._last < self.interval
                and os.getpid() == self._pid):
            return
        self._last = now
        self.update()

    def update(self) -> None:
        """Read the pool's statistics and apply them to the metrics now."""
        pool = self._pool()
        if pool is None or self._detached:
            return
        with _update_lock:
            pid = os.getpid()
            if pid != self._pid:
                # A forked child: its pool starts from zero, and so do its deltas (in
                # multiprocess mode prometheus_client starts this pid's files from zero).
                self._pid = pid
                self._seen.clear()
                self._seen_hist.clear()
                self._gauge_values.clear()
            stats = pool.stats()
            self._apply(stats, _raw_histograms(pool, stats))

    def _apply(self, stats: Any, histograms: dict[str, _stats.Histogram]) -> None:
        self._set(self._states["idle"], stats.idle)
        self._set(self._states["in_use"], stats.in_use)
        self._set(self._states["opening"], stats.opening)
        self._set(self._states["closing"], stats.closing)
        self._set(self._max, stats.max_connections)
        self._set(self._waiting, stats.waiting)
        self._set(self._down, 1 if stats.database_down else 0)
        counters = stats.counters
        seen = self._seen
        for child, field in self._counters:
            value = getattr(counters, field, 0)
            delta = value - seen.get(field, 0)
            if delta > 0:  # pool counters never go back (a forked child starts anew, above)
                child.inc(delta)
                seen[field] = value
        for feed in self._histograms:
            hist = histograms.get(feed.key)
            if hist is not None:
                feed.apply(hist, self._seen_hist)

    def _set(self, child: Any, value: float) -> None:
        if self._gauge_values.get(child) != value:
            child.set(value)
            self._gauge_values[child] = value

    def detach(self) -> None:
        """Stop publishing (the hook leaves the pool); the series stay as they are."""
        self._detached = True
        pool = self._pool()
        if pool is not None:
            with contextlib.suppress(ValueError):
                pool.tick_hooks.remove(self)

    def close(self) -> None:
        """Stop publishing and remove this pool's series from the metrics."""
        self.detach()
        f = self._families
        with _lock:
            if f.owners.get(self.name) is self:
                del f.owners[self.name]
            else:
                return  # another pool took the label over: its series are not ours
        with _update_lock:
            for state in STATES:
                f.connections.remove(self.name, state)
            for gauge in (f.max_connections, f.waiting, f.database_down):
                gauge.remove(self.name)
            for metric_name, _, label_name, fields in _COUNTERS:
                for value, _field in fields:
                    args = (self.name, value) if label_name else (self.name,)
                    f.counters[metric_name].remove(*args)
            for metric_name, _, _key in _HISTOGRAMS:
                f.histograms[metric_name].remove(self.name)


class _HistogramFeed:
    """Moves a pool histogram's new observations into one Prometheus histogram child."""

    def __init__(self, child: Any, bounds: Sequence[float], key: str) -> None:
        self.child = child
        self.key = key
        uppers = [*bounds, math.inf]
        # Pool bucket i holds [MIN * 2**((i-1)/4), MIN * 2**(i/4)) (bucket 0: <= MIN, the
        # last one: everything above): it goes to the first Prometheus bucket whose bound
        # is >= its upper edge. The tolerance absorbs float rounding of equal edges.
        self.target = []
        for i in range(_stats._BUCKET_COUNT):
            if i == _stats._BUCKET_COUNT - 1:
                edge = math.inf
            else:
                edge = _stats._MIN_SECONDS * 2 ** (i / _stats._BUCKETS_PER_OCTAVE)
            self.target.append(next(j for j, b in enumerate(uppers) if b >= edge * (1 - 1e-9)))
        self.uppers = uppers
        self.direct = compat.histogram_feed(child, len(uppers))

    def apply(self, hist: _stats.Histogram, seen_all: dict[str, _Seen]) -> None:
        seen = seen_all.get(self.key)
        if seen is None:
            seen = _Seen([0] * len(hist.buckets), 0, 0.0)
        if hist.count == seen.count:
            return
        seen_all[self.key] = _Seen(list(hist.buckets), hist.count, hist.total)
        adds = [0] * len(self.uppers)
        for i, (now, before) in enumerate(zip(hist.buckets, seen.buckets, strict=True)):
            if now < before:
                return  # cannot happen to one pool; never publish a negative count
            if now > before:
                adds[self.target[i]] += now - before
        if self.direct:
            self.direct(adds, hist.total - seen.total)
            return
        last = len(self.uppers) - 1
        for j, n in enumerate(adds):
            value = self.uppers[j] if j < last else max(
                hist.max, math.nextafter(self.uppers[last - 1], math.inf))
            for _ in range(n):
                self.child.observe(value)


class _Seen(NamedTuple):
    buckets: list[int]
    count: int
    total: float


def _raw_histograms(pool: ConnectionPool, stats: Any) -> dict[str, _stats.Histogram]:
    """The pool's latency histograms with their raw buckets (``stats.histograms``)."""
    return getattr(stats, "histograms", None) or {}


def _before_fork() -> None:
    _update_lock.acquire()


def _after_fork_in_parent() -> None:
    _update_lock.release()


def _after_fork_in_child() -> None:
    global _update_lock, _lock
    _update_lock = threading.Lock()
    _lock = threading.Lock()


forking.register(forking.SERVICES, before=_before_fork,
                 after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
