"""Counters, latency histograms and the :class:`PoolStats` snapshot.

The pool updates these under a lock it already holds for its bookkeeping, so statistics add
no lock of their own to the checkout path. Histograms use fixed logarithmic buckets (four per
power of two, from 1 microsecond to about 18 hours): constant memory, O(1) recording, and
percentiles accurate to about 19%, which is what a dashboard needs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

_BUCKETS_PER_OCTAVE = 4
_MIN_SECONDS = 1e-6
_BUCKET_COUNT = 37 * _BUCKETS_PER_OCTAVE


class Histogram:
    """A log-bucketed histogram of durations in seconds. Not thread-safe by itself."""

    __slots__ = ("buckets", "count", "max", "min_seconds", "total")

    def __init__(self) -> None:
        #: The lower bound of bucket 1, as a float object of this histogram's own, for the
        #: pool's inlined ``observe``: on free-threaded CPython a module's float constant
        #: is one mortal object (constants are immortal only when the module came from a
        #: .pyc) whose reference count every thread's checkin would write.
        self.min_seconds = _MIN_SECONDS + 0.0
        self.buckets = [0] * _BUCKET_COUNT
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def observe(self, seconds: float) -> None:
        if seconds <= _MIN_SECONDS:
            index = 0
        else:
            index = int(math.log2(seconds / _MIN_SECONDS) * _BUCKETS_PER_OCTAVE) + 1
            index = min(index, _BUCKET_COUNT - 1)
        self.buckets[index] += 1
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Histogram) -> None:
        for i, n in enumerate(other.buckets):
            self.buckets[i] += n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def copy(self) -> Histogram:
        new = Histogram()
        new.merge(self)
        return new

    def quantile(self, q: float) -> float:
        """Upper edge of the bucket holding quantile ``q`` (0 when empty), capped by max."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                if index == _BUCKET_COUNT - 1:
                    return self.max  # the overflow bucket has no upper edge
                upper = _MIN_SECONDS * 2 ** (index / _BUCKETS_PER_OCTAVE)
                return min(upper, self.max)
        return self.max

    def summary(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50": self.quantile(0.5),
            "p99": self.quantile(0.99),
            "max": self.max,
            "mean": self.total / self.count if self.count else 0.0,
        }


@dataclasses.dataclass
class Counters:
    """Monotonic event counts of one segment (or, merged, of the whole pool)."""

    checkouts: int = 0
    connects: int = 0
    connect_failures: int = 0
    pings: int = 0
    ping_failures: int = 0
    keepalive_pings: int = 0
    keepalive_failures: int = 0
    timeouts: int = 0
    rejected: int = 0
    rollbacks: int = 0
    leaks: int = 0
    retired_lifetime: int = 0
    retired_idle: int = 0
    retired_broken: int = 0
    #: Connections replaced because drain() asked for fresh ones.
    retired_drained: int = 0
    #: Calls of drain().
    drains: int = 0
    closed: int = 0
    recycled: int = 0
    hook_failures: int = 0
    #: Connections taken back because their holder (thread, greenlet) ended holding them.
    reclaimed_abandoned: int = 0

    def merge(self, other: Counters) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclasses.dataclass
class PoolStats:
    """A point-in-time snapshot of a pool: gauges, counters, latency summaries."""

    name: str
    max_connections: int
    min_idle: int
    segments: int
    size: int
    idle: int
    in_use: int
    opening: int
    closing: int
    waiting: int
    counters: Counters
    checkout_wait: dict[str, float]
    connect_time: dict[str, float]
    usage_time: dict[str, float]
    database_down: bool = False
    backoff: float = 0.0
    closed: bool = False
    #: Open connections (idle or in use) opened before the last drain(): still to be
    #: replaced. 0 once a drain is complete.
    stale: int = 0
    #: How many drain() calls this pool has seen (the generation connections must reach).
    generation: int = 0
    #: The longest current holders: ``{"thread", "held_for", "origin"}``, longest first.
    holders: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: The merged latency histograms, raw buckets included (``checkout_wait``,
    #: ``connect_time``, ``usage_time``), for exporters such as :mod:`.metrics`. Not in
    #: :meth:`as_dict`: snapshots carry the summaries above.
    histograms: dict[str, Histogram] = dataclasses.field(
        default_factory=dict, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(dataclasses.replace(self, histograms={}))
        del doc["histograms"]
        return doc
