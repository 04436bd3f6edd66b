"""flask_peewee_pool.metrics on a fake driver and a manual clock: every value is known.

Each test uses its own ``CollectorRegistry``; the pool has no maintainer thread, so metrics
change only when a test runs ``pool.maintainer.tick()`` (which runs the hook, as the
maintainer thread would) or ``metrics.update()``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
from typing import Any

import peewee
import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry  # noqa: E402

from flask_peewee_pool import PoolTimeout  # noqa: E402
from flask_peewee_pool.core.pool import ConnectionPool  # noqa: E402
from flask_peewee_pool.core.stats import Histogram as PoolHistogram  # noqa: E402
from flask_peewee_pool.metrics import DEFAULT_BUCKETS, PoolMetrics, instrument  # noqa: E402
from flask_peewee_pool.ops import metrics as fpp_metrics  # noqa: E402
from tests.unit.fakes import FakeClock, FakeDriver, make_pool  # noqa: E402

QUIET = {"max_lifetime": None, "idle_timeout": None, "keepalive": None, "ping_after": None}
CONNECT_TIME = 0.003


class SlowConnectDriver(FakeDriver):
    """Every connect takes ``connect_time`` seconds of the fake clock."""

    def __init__(self, clock: FakeClock, connect_time: float) -> None:
        super().__init__()
        self.clock = clock
        self.connect_time = connect_time

    def connect(self) -> Any:
        raw = super().connect()
        self.clock.advance(self.connect_time)
        return raw


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def new_pool(clock: FakeClock) -> Any:
    made: list[tuple[ConnectionPool, FakeDriver]] = []

    def make(name: str = "orders", connect_time: float = CONNECT_TIME,
             **options: Any) -> ConnectionPool:
        driver = SlowConnectDriver(clock, connect_time)
        pool = make_pool(driver, clock, name=name, **{**QUIET, **options})
        made.append((pool, driver))
        return pool

    yield make
    for pool, driver in made:
        driver.release_all()
        pool.close(timeout=1.0)
        assert driver.watch.violations == []
        assert driver.errors == []


def value(registry: CollectorRegistry, name: str, pool: str = "orders",
          **labels: str) -> float | None:
    return registry.get_sample_value(name, {"pool": pool, **labels})


def cumulative(registry: CollectorRegistry, name: str, pool: str = "orders") -> dict[float, float]:
    """{le: cumulative count} of one histogram."""
    found = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name + "_bucket" and sample.labels.get("pool") == pool:
                found[float(sample.labels["le"])] = sample.value
    return found


def hold(pool: ConnectionPool, clock: FakeClock, seconds: float) -> float:
    """One checkout held ``seconds`` of the fake clock (plus a connect if it had to open
    one); returns the duration the pool saw, computed as it does."""
    start = clock()
    conn = pool.checkout()
    clock.advance(seconds)
    held = clock() - start
    pool.checkin(conn)
    return held


# ---------------------------------------------------------------------------- values


def test_values_match_pool_stats_after_known_traffic(new_pool: Any, clock: FakeClock,
                                                      registry: CollectorRegistry) -> None:
    pool = new_pool(max_connections=2)
    metrics = instrument(pool, registry=registry, interval=0)  # every tick
    assert metrics in pool.tick_hooks

    a = pool.checkout()  # opens: waits CONNECT_TIME
    clock.advance(0.25)
    b = pool.checkout()  # opens too
    with pytest.raises(PoolTimeout):
        pool.checkout(timeout=0)  # both in use: times out at once
    pool.maintainer.tick(clock())  # runs the hook, as the maintainer thread does

    assert value(registry, "peewee_pool_connections", state="in_use") == 2
    assert value(registry, "peewee_pool_connections", state="idle") == 0
    assert value(registry, "peewee_pool_connections", state="opening") == 0
    assert value(registry, "peewee_pool_max_connections") == 2
    assert value(registry, "peewee_pool_waiting") == 0
    assert value(registry, "peewee_pool_checkouts_total") == 2
    assert value(registry, "peewee_pool_connects_total") == 2
    assert value(registry, "peewee_pool_timeouts_total") == 1
    assert value(registry, "peewee_pool_connect_seconds_count") == 2
    assert value(registry, "peewee_pool_connect_seconds_sum") == pytest.approx(2 * CONNECT_TIME)

    # Held from the start of their checkout: a for its connect, 0.25 and b's connect; b for
    # its connect and 0.5. b is returned broken: retired, closed by the next tick.
    pool.checkin(a)
    clock.advance(0.5)
    pool.checkin(b, broken=True)
    pool.maintainer.tick(clock())

    stats = pool.stats()
    assert value(registry, "peewee_pool_connections", state="idle") == stats.idle == 1
    assert value(registry, "peewee_pool_connections", state="in_use") == stats.in_use == 0
    assert value(registry, "peewee_pool_retired_total", reason="broken") == 1
    assert value(registry, "peewee_pool_retired_total", reason="lifetime") == 0
    assert value(registry, "peewee_pool_usage_seconds_count") == 2
    assert value(registry, "peewee_pool_usage_seconds_sum") == pytest.approx(
        0.25 + 2 * CONNECT_TIME + CONNECT_TIME + 0.5)
    usage = cumulative(registry, "peewee_pool_usage_seconds")
    assert usage[0.065536] == 0
    assert usage[0.262144] == 1  # a: 0.256
    assert usage[1.048576] == 2  # b: 0.503
    assert usage[math.inf] == 2
    assert value(registry, "peewee_pool_checkout_wait_seconds_count") == 2
    assert value(registry, "peewee_pool_checkout_wait_seconds_sum") == pytest.approx(
        2 * CONNECT_TIME)

    # Every counter equals the pool's own, whatever its name.
    for metric_name, _, label_name, fields in fpp_metrics._COUNTERS:
        for label_value, field in fields:
            labels = {label_name: label_value} if label_name else {}
            assert value(registry, metric_name + "_total", **labels) == getattr(
                stats.counters, field), field
    for metric_name, _, key in fpp_metrics._HISTOGRAMS:
        assert value(registry, metric_name + "_count") == getattr(stats, key)["count"]


def test_counters_add_only_what_is_new(new_pool: Any, clock: FakeClock,
                                       registry: CollectorRegistry) -> None:
    pool = new_pool()
    metrics = instrument(pool, registry=registry)
    for expected in (3, 3, 7):
        while pool.stats().counters.checkouts < expected:
            hold(pool, clock, 0.001)
        metrics.update()
        metrics.update()  # nothing new: nothing added
        assert value(registry, "peewee_pool_checkouts_total") == expected
        assert value(registry, "peewee_pool_usage_seconds_count") == expected


def test_gauges_follow_the_pool_both_ways(new_pool: Any, clock: FakeClock,
                                          registry: CollectorRegistry) -> None:
    pool = new_pool(max_connections=4)
    metrics = instrument(pool, registry=registry)
    held = [pool.checkout() for _ in range(3)]
    metrics.update()
    assert value(registry, "peewee_pool_connections", state="in_use") == 3
    for conn in held:
        pool.checkin(conn)
    pool.resize(max_connections=6)
    metrics.update()
    assert value(registry, "peewee_pool_connections", state="in_use") == 0
    assert value(registry, "peewee_pool_connections", state="idle") == 3
    assert value(registry, "peewee_pool_max_connections") == 6


def written(registry: CollectorRegistry, name: str) -> float | None:
    """A sample as the maintainer hook wrote it: read past the scrape-time refresh (a
    restricted registry collects only the named metrics), as a multiprocess scrape sees it."""
    for metric in registry.restricted_registry([name]).collect():
        for sample in metric.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def test_the_hook_publishes_every_interval(new_pool: Any, clock: FakeClock,
                                           registry: CollectorRegistry) -> None:
    pool = new_pool()
    instrument(pool, registry=registry, interval=1.0)
    published = []
    for _ in range(6):  # ticks every 0.25 s of the pool's clock
        hold(pool, clock, 0.0)
        pool.maintainer.tick(clock())
        published.append(written(registry, "peewee_pool_checkouts_total"))
        clock.advance(0.25)
    assert published == [1, 1, 1, 1, 5, 5]  # at the first tick, then once a second
    with pytest.raises(ValueError, match="interval"):
        instrument(new_pool(name="x"), registry=registry, interval=-1)


# ---------------------------------------------------------------------------- histograms


def test_default_buckets_lie_on_the_pools_own_bucket_edges() -> None:
    hist = PoolHistogram()
    for bound in DEFAULT_BUCKETS:
        below, above = bound * (1 - 1e-6), bound * (1 + 1e-6)
        hist.buckets = [0] * len(hist.buckets)
        hist.observe(below)
        i_below = hist.buckets.index(1)
        hist.buckets = [0] * len(hist.buckets)
        hist.observe(above)
        assert hist.buckets.index(1) == i_below + 1, bound  # an edge between them


def test_default_buckets_are_exact(new_pool: Any, clock: FakeClock,
                                   registry: CollectorRegistry) -> None:
    pool = new_pool()
    metrics = instrument(pool, registry=registry)
    rng = random.Random(7)
    # Log-uniform from 0.5 us to 30 min, plus zeros, batched over several updates.
    durations = [0.0, 0.0]
    for batch in range(4):
        for _ in range(150):
            durations.append(hold(pool, clock, 10 ** rng.uniform(-6.3, 3.25)))
        if batch % 2:
            metrics.update()
    metrics.update()

    buckets = cumulative(registry, "peewee_pool_usage_seconds")
    assert len(buckets) == len(DEFAULT_BUCKETS) + 1
    held = durations[2:]
    for bound in DEFAULT_BUCKETS:
        assert buckets[bound] == sum(1 for d in held if d <= bound), bound
    assert buckets[math.inf] == len(held)
    assert value(registry, "peewee_pool_usage_seconds_count") == len(held)
    assert value(registry, "peewee_pool_usage_seconds_sum") == pytest.approx(sum(held),
                                                                          rel=1e-12)


def test_other_buckets_err_one_pool_bucket_up_never_down(new_pool: Any, clock: FakeClock,
                                                         registry: CollectorRegistry) -> None:
    pool = new_pool(connect_time=0.0)
    metrics = instrument(pool, registry=registry, buckets=[0.01, 0.1])
    exact = [0.005, 0.009, 0.05, 0.2]   # more than one pool bucket (19%) from any bound
    near = [0.0098, 0.099]              # less than 19% below a bound: may go one bucket up
    for d in exact + near:
        hold(pool, clock, d)
    metrics.update()
    buckets = cumulative(registry, "peewee_pool_usage_seconds")
    assert set(buckets) == {0.01, 0.1, math.inf}
    true_10ms = sum(1 for d in exact + near if d <= 0.01)
    true_100ms = sum(1 for d in exact + near if d <= 0.1)
    assert buckets[0.01] == 2  # 0.005, 0.009; 0.0098 counted above 10 ms
    assert buckets[0.1] == 4   # + 0.05 and 0.0098; 0.099 counted above 100 ms
    assert buckets[0.01] <= true_10ms and buckets[0.1] <= true_100ms
    assert buckets[math.inf] == 6
    assert value(registry, "peewee_pool_usage_seconds_sum") == pytest.approx(
        sum(exact + near))


def test_fallback_through_observe_gives_the_same_counts(new_pool: Any, clock: FakeClock,
                                                        registry: CollectorRegistry) -> None:
    """Without the histogram internals the hook observes once per observation."""
    pool = new_pool()
    metrics = instrument(pool, registry=registry)
    assert all(feed.direct for feed in metrics._histograms)  # the installed client's layout
    other = CollectorRegistry()
    slow = instrument(pool, registry=other)
    for feed in slow._histograms:
        feed.direct = False
    rng = random.Random(3)
    for _ in range(200):
        hold(pool, clock, 10 ** rng.uniform(-5, 1))
    metrics.update()
    slow.update()
    assert cumulative(other, "peewee_pool_usage_seconds") == cumulative(
        registry, "peewee_pool_usage_seconds")
    exact = value(registry, "peewee_pool_usage_seconds_sum")
    approx = value(other, "peewee_pool_usage_seconds_sum")
    assert exact is not None and approx is not None
    assert exact <= approx <= 4 * exact  # each observation counted at its bucket's bound


# ---------------------------------------------------------------------------- hot path


def test_checkout_and_checkin_never_touch_the_metrics(new_pool: Any, clock: FakeClock,
                                                      registry: CollectorRegistry,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pool = new_pool()
    instrument(pool, registry=registry, interval=0)
    calls = []
    real_update = PoolMetrics.update
    monkeypatch.setattr(PoolMetrics, "update", lambda self: calls.append(1) or real_update(self))
    for _ in range(200):
        hold(pool, clock, 0.0001)
    assert calls == []
    pool.maintainer.tick(clock())
    assert calls == [1]
    assert value(registry, "peewee_pool_checkouts_total") == 200


# ---------------------------------------------------------------------------- lifecycle


def test_instrument_is_idempotent_and_takes_a_database_or_proxy(
        tmp_path: Any, registry: CollectorRegistry) -> None:
    from flask_peewee_pool import PooledSqliteDatabase

    db = PooledSqliteDatabase(str(tmp_path / "m.db"), pool_name="sqlite")
    try:
        proxy = peewee.DatabaseProxy()
        proxy.initialize(db)
        first = instrument(db, registry=registry)
        assert instrument(proxy, registry=registry) is first
        assert instrument(db.pool, registry=registry) is first
        assert db.pool.tick_hooks.count(first) == 1
        with db.connection_context():
            db.execute_sql("SELECT 1")
        first.update()
        assert value(registry, "peewee_pool_checkouts_total", pool="sqlite") == 1
    finally:
        db.close_pool()
    with pytest.raises(TypeError, match="pooled database or a ConnectionPool"):
        instrument(peewee.SqliteDatabase(":memory:"), registry=registry)


def test_a_new_pool_with_the_same_name_takes_the_series_over(
        new_pool: Any, clock: FakeClock, registry: CollectorRegistry,
        caplog: pytest.LogCaptureFixture) -> None:
    old = new_pool()
    old_metrics = instrument(old, registry=registry)
    for _ in range(3):
        hold(old, clock, 0.001)
    old_metrics.update()
    new = new_pool()
    with caplog.at_level(logging.WARNING, logger="flask_peewee_pool"):
        new_metrics = instrument(new, registry=registry)
    assert "same name" in caplog.text  # the old pool is still open: say so
    assert old_metrics not in old.tick_hooks
    hold(old, clock, 0.001)
    old_metrics.update()  # detached: publishes nothing any more
    hold(new, clock, 0.001)
    new_metrics.update()
    assert value(registry, "peewee_pool_checkouts_total") == 4  # 3 old + 1 new, never back
    assert value(registry, "peewee_pool_connections", state="idle") == 1


def test_close_removes_the_pools_series(new_pool: Any, clock: FakeClock,
                                        registry: CollectorRegistry) -> None:
    pool = new_pool()
    other = new_pool(name="other")
    metrics = instrument(pool, registry=registry)
    kept = instrument(other, registry=registry)
    hold(pool, clock, 0.01)
    hold(other, clock, 0.01)
    metrics.update()
    kept.update()
    metrics.close()
    assert metrics not in pool.tick_hooks
    names = {s.labels.get("pool") for m in registry.collect() for s in m.samples}
    assert names == {"other"}
    assert value(registry, "peewee_pool_checkouts_total", pool="other") == 1
    assert instrument(pool, registry=registry) is not metrics  # can come back


def test_buckets_are_shared_by_every_pool_of_a_registry(new_pool: Any,
                                                        registry: CollectorRegistry) -> None:
    instrument(new_pool(), registry=registry, buckets=[0.1, 1])
    with pytest.raises(ValueError, match="already use buckets"):
        instrument(new_pool(name="b"), registry=registry, buckets=[0.5])
    instrument(new_pool(name="c"), registry=registry, buckets=[1.0, 0.1, math.inf])  # same
    with pytest.raises(ValueError, match="finite bound"):
        instrument(new_pool(name="d"), registry=CollectorRegistry(), buckets=[math.inf])


def test_the_default_registry_is_prometheus_clients(new_pool: Any, clock: FakeClock) -> None:
    pool = new_pool(name="default-registry-test")
    metrics = instrument(pool)
    try:
        hold(pool, clock, 0.001)
        metrics.update()
        assert prometheus_client.REGISTRY.get_sample_value(
            "peewee_pool_checkouts_total", {"pool": "default-registry-test"}) == 1
    finally:
        metrics.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_counts_from_its_own_pool(new_pool: Any, clock: FakeClock,
                                                 registry: CollectorRegistry) -> None:
    """After fork() the child's pool starts from zero: so do the hook's deltas."""
    pool = new_pool()
    metrics = instrument(pool, registry=registry)
    for _ in range(5):
        hold(pool, clock, 0.001)
    metrics.update()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        try:
            for _ in range(2):
                hold(pool, clock, 0.001)
            metrics.update()
            got = (value(registry, "peewee_pool_checkouts_total"),
                   value(registry, "peewee_pool_connections", state="idle"))
            os.write(write, repr(got).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    # In-process registries are copied by fork(): 5 from the parent, + the child's 2 (not
    # 2 - 5 ignored, nor 0): multiprocess mode is what separates processes (next module).
    assert report == repr((7.0, 1.0))
    assert value(registry, "peewee_pool_checkouts_total") == 5


def test_missing_prometheus_client_is_a_clear_import_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "flask_peewee_pool.metrics")
    monkeypatch.delitem(sys.modules, "flask_peewee_pool.ops.metrics")
    with pytest.raises(ImportError, match=r"pip install 'flask-peewee-pool\[prometheus\]'"):
        import flask_peewee_pool.metrics  # noqa: F401


def test_raw_histograms_come_from_pool_stats(new_pool: Any) -> None:
    """PoolStats.histograms carries the raw buckets (the old fallback reading the pool's
    segments is gone: metrics touch no pool internals)."""
    pool = new_pool()
    carried = {"checkout_wait": PoolHistogram(), "connect_time": PoolHistogram(),
               "usage_time": PoolHistogram()}

    class Stats:
        histograms = carried

    assert fpp_metrics._raw_histograms(pool, Stats()) is carried
    read = fpp_metrics._raw_histograms(pool, pool.stats())
    assert set(read) == set(carried)
