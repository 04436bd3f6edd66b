"""Fixtures of the unit suite: a fake clock, a fake driver, and instrumented pools."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flask_peewee_pool.core.pool import ConnectionPool
from tests.unit.fakes import FakeClock, FakeDriver, make_pool

#: Options that switch every time-based duty off, so a test turns on only what it tests.
QUIET = {
    "max_lifetime": None,
    "idle_timeout": None,
    "keepalive": None,
    "ping_after": None,
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def driver() -> Iterator[FakeDriver]:
    driver = FakeDriver()
    yield driver
    driver.release_all()


@pytest.fixture
def new_pool(driver: FakeDriver, clock: FakeClock) -> Iterator[Callable[..., ConnectionPool]]:
    """``new_pool(**options)``: an instrumented pool (no maintainer thread) over ``driver``.

    At teardown the pools are closed, and the test fails if any driver call ran under a
    pool lock or the driver saw a protocol misuse, in any thread.
    """
    pools: list[ConnectionPool] = []

    def factory(rng: Callable[[], float] | None = None, **options: Any) -> ConnectionPool:
        pool = make_pool(driver, clock, rng=rng, **options)
        pools.append(pool)
        return pool

    yield factory
    driver.release_all()
    for pool in pools:
        pool.close(timeout=1.0)
    assert driver.watch.violations == []
    assert driver.errors == []
    # Lock order: waiters -> segment, and segment -> segment in index order only (checked
    # at each acquisition: an out-of-order one is a violation above). No cycle.
    assert ("segment", "waiters") not in driver.watch.order


@pytest.fixture
def quiet() -> dict[str, Any]:
    return dict(QUIET)
