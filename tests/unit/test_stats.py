"""stats.Histogram (log buckets), Counters and PoolStats."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_peewee_pool.core.stats import Counters, Histogram, PoolStats

#: Relative width of one bucket: four buckets per power of two.
BUCKET = 2 ** 0.25


def true_quantile(data: list[float], q: float) -> float:
    ordered = sorted(data)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def histogram(data) -> Histogram:
    h = Histogram()
    for x in data:
        h.observe(x)
    return h


def test_empty_histogram():
    h = Histogram()
    assert h.quantile(0.5) == 0.0 and h.quantile(0.99) == 0.0
    assert h.summary() == {"count": 0, "p50": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    h.merge(Histogram())
    assert h.count == 0


def test_quantiles_within_one_bucket_on_known_data():
    data = [0.001 * k for k in range(1, 1001)]  # 1 ms .. 1 s, uniform
    h = histogram(data)
    for q, exact in [(0.5, 0.5), (0.9, 0.9), (0.99, 0.99), (0.01, 0.01)]:
        got = h.quantile(q)
        assert exact <= got <= exact * BUCKET, (q, got)
    assert h.quantile(1.0) == pytest.approx(1.0)  # capped by the maximum
    s = h.summary()
    assert s["count"] == 1000
    assert s["max"] == pytest.approx(1.0)
    assert s["mean"] == pytest.approx(sum(data) / 1000)


def test_single_value_is_reported_exactly():
    h = histogram([0.0123])
    assert h.quantile(0.5) == pytest.approx(0.0123)
    assert h.quantile(0.99) == pytest.approx(0.0123)


def test_tiny_zero_and_huge_values_are_bucketed_at_the_ends():
    h = histogram([0.0, 1e-9, 1e-6])
    assert h.buckets[0] == 3
    assert h.quantile(0.99) <= 1e-6
    big = histogram([1e9])
    assert big.buckets[-1] == 1
    assert big.max == 1e9


def test_quantile_of_values_beyond_the_last_bucket_is_not_underestimated():
    h = histogram([1e9])  # about 32 years
    assert h.quantile(0.5) == 1e9


def test_merge_equals_observing_everything_in_one():
    rng = random.Random(3)
    a_data = [rng.lognormvariate(-5, 2) for _ in range(500)]
    b_data = [rng.lognormvariate(-3, 1) for _ in range(300)]
    a, b = histogram(a_data), histogram(b_data)
    a.merge(b)
    both = histogram(a_data + b_data)
    assert a.buckets == both.buckets
    assert a.count == both.count == 800
    assert a.max == both.max
    assert a.total == pytest.approx(both.total)
    for q in (0.5, 0.9, 0.99):
        assert a.quantile(q) == both.quantile(q)


def test_copy_is_independent():
    h = histogram([0.1, 0.2])
    c = h.copy()
    c.observe(5.0)
    assert h.count == 2 and c.count == 3 and h.max == 0.2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=2e-6, max_value=1e4), min_size=1, max_size=200),
       st.sampled_from([0.01, 0.25, 0.5, 0.9, 0.99, 0.999]))
def test_quantile_is_within_one_bucket_of_the_truth(data, q):
    h = histogram(data)
    exact = true_quantile(data, q)
    got = h.quantile(q)
    assert exact * (1 - 1e-9) <= got <= exact * BUCKET * (1 + 1e-9)
    assert got <= max(data)


def test_counters_merge_adds_every_field():
    a = Counters(checkouts=2, connects=1, leaks=1)
    b = Counters(checkouts=3, retired_idle=4, recycled=1)
    a.merge(b)
    assert a == Counters(checkouts=5, connects=1, leaks=1, retired_idle=4, recycled=1)


def test_pool_stats_as_dict_is_plain_data():
    s = PoolStats(name="p", max_connections=2, min_idle=0, segments=1, size=1, idle=1,
                  in_use=0, opening=0, closing=0, waiting=0, counters=Counters(connects=1),
                  checkout_wait=Histogram().summary(), connect_time=Histogram().summary(),
                  usage_time=Histogram().summary())
    d = s.as_dict()
    assert d["counters"]["connects"] == 1
    assert d["checkout_wait"]["p99"] == 0.0
    assert d["database_down"] is False and d["closed"] is False


#: Held times that hit every edge of the bucketing: zero, the first bucket's edge and just
#: past it, ordinary ones, an exact power of two, and past the last bucket (overflow).
HELD_TIMES = [0.0, 1e-6, 1.0001e-6, 3e-6, 0.000123, 0.001, 0.5, 2.0, 61.0, 3600.0, 1e6]


def test_the_fast_paths_record_exactly_what_histogram_observe_records(new_pool, clock, quiet):
    """checkout and checkin write their histogram updates out (hot path); the buckets,
    count, total and max must be those of Histogram.observe for the same durations."""
    pool = new_pool(max_connections=1, **quiet)
    pool.checkin(pool.checkout())  # opened in the slow path; later ones reuse it
    for held in HELD_TIMES:
        conn = pool.checkout()
        clock.advance(held)
        pool.checkin(conn)
    histograms = pool.stats().histograms
    usage, wait = histograms["usage_time"], histograms["checkout_wait"]
    expected_usage = histogram([0.0, *HELD_TIMES])
    assert usage.buckets == expected_usage.buckets
    assert (usage.count, usage.total, usage.max) == (
        expected_usage.count, expected_usage.total, expected_usage.max)
    expected_wait = histogram([0.0] * (len(HELD_TIMES) + 1))  # a zero wait each time
    assert wait.buckets == expected_wait.buckets
    assert (wait.count, wait.total, wait.max) == (expected_wait.count, 0.0, 0.0)
    assert pool.stats().counters.checkouts == len(HELD_TIMES) + 1
