"""The S1 scaling benchmark's schedule and speed-up (pure functions, no pool runs).

A speed-up divides two measurements; on a VM whose other tenants drift over minutes, they
must be taken side by side and divided within one repeat.
"""

from __future__ import annotations

import itertools

import pytest

from benchmarks.scaling import schedule, speedup


def test_schedule_measures_every_cell_once_with_a_pools_thread_counts_back_to_back() -> None:
    order = schedule([1, 2, 4, 8], ["a", "b", "c"], repeats=4)
    assert sorted(order) == sorted(itertools.product(range(4), "abc", [1, 2, 4, 8]))
    for (rep, pool), group in itertools.groupby(order, key=lambda cell: cell[:2]):
        counts = [n for _, _, n in group]
        # Consecutive: nothing else is measured between a pool's 1- and 2-thread runs.
        assert sorted(counts) == [1, 2, 4, 8], (rep, pool, counts)
        # Reversed every other repeat: a drift within a block does not always favour
        # the same thread count.
        assert counts == ([1, 2, 4, 8] if rep % 2 == 0 else [8, 4, 2, 1])
    firsts = [pool for rep, pool, _ in order[::12]]
    assert firsts == ["a", "b", "c", "a"]  # pools rotated per repeat


def _rec(rep: int, threads: int, ops: float, pool: str = "p") -> dict:
    return {"pool": pool, "threads": threads, "repeat": rep, "units_per_s": ops}


def test_speedup_divides_within_a_repeat_and_takes_the_median() -> None:
    records = [
        _rec(0, 1, 100.0), _rec(0, 2, 170.0),
        # A slow moment that lasted through both of this repeat's runs: its ratio is right.
        _rec(1, 1, 50.0), _rec(1, 2, 90.0),
        _rec(2, 1, 100.0), _rec(2, 2, 175.0),
        _rec(2, 2, 1.0, pool="other"),
    ]
    assert speedup(records, "p", 2, 1) == pytest.approx(1.75)


def test_speedup_skips_a_repeat_missing_its_base_or_failed() -> None:
    records = [
        _rec(0, 1, 100.0), _rec(0, 2, 160.0),
        _rec(1, 2, 500.0),  # its 1-thread run failed: no pair
        {"pool": "p", "threads": 1, "repeat": 2, "error": "boom"}, _rec(2, 2, 999.0),
    ]
    assert speedup(records, "p", 2, 1) == pytest.approx(1.6)
    assert speedup([], "p", 2, 1) != speedup([], "p", 2, 1)  # NaN when nothing pairs
