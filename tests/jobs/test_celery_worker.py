"""A real Celery worker process (threads pool, concurrency 8) over a pool capped at 4.

Without the task hooks each of the 8 worker threads would keep the connection of its first
task for good: 4 threads would hold the whole pool and the other 4 would time out on every
task. With them: every task answered, failures only the planned ones, in_use back to 0, the
server never sees more than 4 sessions, no checkout waits anywhere near ``timeout``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import REPO, ProcesslistSampler

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

TASKS = 500
CAP = 4
TIMEOUT = 10.0


@pytest.fixture
def celery_worker(celery_redis: str, worker_env: dict[str, str]) -> Iterator[Any]:
    env = {**worker_env, "FPP_JOBS_REDIS": celery_redis}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.jobs.celery_app", "worker",
         "--pool", "threads", "--concurrency", "8", "--loglevel", "warning",
         "--without-heartbeat", "--without-gossip", "--without-mingle"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    from tests.jobs import celery_app

    celery_app.app.conf.update(broker_url=celery_redis, result_backend=celery_redis)
    try:
        yield celery_app
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=10)
        text = err.decode(errors="replace")
        # The planned failures are logged as "raised unexpected: Planned(...)"; a hook that
        # failed would be logged by Celery as "Signal handler ... raised" or by ours.
        errors = [line for line in text.splitlines()
                  if ("ERROR" in line and "raised unexpected: Planned" not in line)
                  or "Signal handler" in line or "could not return" in line]
        assert not errors, text[-3000:]


def _stats_when_idle(celery_app: Any, deadline: float) -> dict[str, Any]:
    # Celery stores a task's result before it sends task_postrun: the last connections may
    # come back a moment after the last result. Ask the worker until they have.
    while True:
        stats = celery_app.pool_stats.delay().get(timeout=30)
        if stats["in_use"] == 0 or time.monotonic() > deadline:
            return stats


def test_500_tasks_concurrency_8_over_cap_4(celery_worker: Any, mysql_pool_user: Any) -> None:
    from tests.jobs.workload import Planned

    celery_worker.pool_stats.delay().get(timeout=60)  # the worker is up and consuming
    started = time.monotonic()
    with ProcesslistSampler(mysql_pool_user) as sampler:
        results = [celery_worker.work.delay(n) for n in range(TASKS)]
        answered, planned, other = 0, 0, []
        for n, result in enumerate(results):
            try:
                value = result.get(timeout=60, propagate=True)
            except Planned:
                planned += 1
                assert n % 10 == 0
            except Exception as exc:  # a timeout, a connect error: never expected
                other.append(f"{n}: {type(exc).__name__}: {exc}")
            else:
                assert value["number"] == n
                assert value["seconds"] < TIMEOUT, value
                answered += 1
    elapsed = time.monotonic() - started
    stats = _stats_when_idle(celery_worker, time.monotonic() + 10)

    assert other == []
    assert answered + planned == TASKS
    assert planned == TASKS // 10
    assert stats["in_use"] == 0, stats
    assert stats["counters"]["timeouts"] == 0
    assert stats["checkout_wait"]["max"] < TIMEOUT
    assert stats["counters"]["checkouts"] >= TASKS
    assert 0 < stats["size"] <= CAP
    assert sampler.samples > 0
    assert sampler.max_seen <= CAP, sampler.max_seen
    print(f"\ncelery: {TASKS} tasks in {elapsed:.1f}s, server max {sampler.max_seen} "
          f"sessions over {sampler.samples} samples, checkout wait p99 "
          f"{stats['checkout_wait']['p99'] * 1000:.1f} ms max "
          f"{stats['checkout_wait']['max'] * 1000:.1f} ms, checkouts "
          f"{stats['counters']['checkouts']}, connects {stats['counters']['connects']}")
