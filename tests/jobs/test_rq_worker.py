"""Real RQ workers over a pool capped at 4: 8 work loops in one process, and RQ's
forking worker (a work horse per job) through the ``rq worker`` command.

Without :class:`PooledSimpleWorker` each work loop would keep its first job's connection for
good (peewee's connection is per thread): 4 loops would hold the pool, the other 4 would
time out on every job.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
import redis
from rq import Queue

from .conftest import REPO, ProcesslistSampler

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

JOBS = 500
CAP = 4
TIMEOUT = 10.0


def _enqueue(redis_url: str, queue: str, count: int) -> list[Any]:
    from tests.jobs.workload import work

    q = Queue(queue, connection=redis.Redis.from_url(redis_url))
    return [q.enqueue(work, n, job_timeout=60, result_ttl=600, failure_ttl=600)
            for n in range(count)]


def _outcomes(jobs: list[Any]) -> tuple[int, int, list[str]]:
    answered, planned, other = 0, 0, []
    for n, job in enumerate(jobs):
        status = job.get_status(refresh=True)
        if status == "finished":
            value = job.return_value(refresh=True)
            assert value["number"] == n and value["seconds"] < TIMEOUT, value
            answered += 1
        elif status == "failed" and "Planned" in (job.latest_result().exc_string or ""):
            planned += 1
            assert n % 10 == 0
        else:
            result = job.latest_result()
            other.append(f"{n}: {status}: {result.exc_string[-300:] if result else ''}")
    return answered, planned, other


def test_500_jobs_8_worker_threads_over_cap_4(rq_redis: str, worker_env: dict[str, str],
                                              mysql_pool_user: Any) -> None:
    jobs = _enqueue(rq_redis, "fpp_rq", JOBS)
    started = time.monotonic()
    with ProcesslistSampler(mysql_pool_user) as sampler:
        done = subprocess.run(
            [sys.executable, "-m", "tests.jobs.rq_threads", rq_redis, "fpp_rq", "8"],
            env=worker_env, cwd=REPO, capture_output=True, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    stats = report["stats"]
    answered, planned, other = _outcomes(jobs)

    assert report["errors"] == []
    assert other == []
    assert (answered, planned) == (JOBS - JOBS // 10, JOBS // 10)
    assert stats["in_use"] == 0, stats
    assert stats["counters"]["timeouts"] == 0
    assert stats["checkout_wait"]["max"] < TIMEOUT
    assert stats["counters"]["checkouts"] >= JOBS
    assert 0 < stats["size"] <= CAP
    assert sampler.samples > 0 and sampler.max_seen <= CAP, sampler.max_seen
    print(f"\nrq threads: {JOBS} jobs in {elapsed:.1f}s, server max {sampler.max_seen} "
          f"sessions over {sampler.samples} samples, checkout wait p99 "
          f"{stats['checkout_wait']['p99'] * 1000:.1f} ms max "
          f"{stats['checkout_wait']['max'] * 1000:.1f} ms, checkouts "
          f"{stats['counters']['checkouts']}, connects {stats['counters']['connects']}")


def test_forking_worker_closes_each_horse_pool(rq_redis: str, worker_env: dict[str, str],
                                               mysql_pool_user: Any) -> None:
    # RQ's default worker forks a horse per job; the horse's pool is closed before it
    # exits, so no session is left behind and every job, failing or not, is answered.
    count = 30
    jobs = _enqueue(rq_redis, "fpp_rq_fork", count)
    with ProcesslistSampler(mysql_pool_user) as sampler:
        done = subprocess.run(
            [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", rq_redis,
             "--worker-class", "tests.jobs.rq_fork_worker.Worker", "fpp_rq_fork"],
            env=worker_env, cwd=REPO, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    answered, planned, other = _outcomes(jobs)
    assert other == []
    assert (answered, planned) == (count - count // 10, count // 10)
    assert sampler.max_seen <= 1  # one horse at a time, one connection each
    assert mysql_pool_user.wait_until(0, timeout=10) == 0


def test_job_timeout_mid_query_never_reaches_the_next_job(rq_redis: str,
                                                          worker_env: dict[str, str]) -> None:
    # SimpleWorker runs every job in its own process, on one connection: a job cut by its
    # job_timeout inside SELECT SLEEP(3) must not hand that connection to the next job.
    from tests.jobs.workload import echo, slow

    q = Queue("fpp_rq_timeout", connection=redis.Redis.from_url(rq_redis))
    first = q.enqueue(echo, -1)
    cut = q.enqueue(slow, 3, job_timeout=1)
    echoes = [q.enqueue(echo, n) for n in range(5)]
    done = subprocess.run(
        [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", rq_redis,
         "--worker-class", "tests.jobs.rq_fork_worker.SimpleWorker", "fpp_rq_timeout"],
        env=worker_env, cwd=REPO, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    assert first.return_value(refresh=True) == -1
    assert cut.get_status(refresh=True) == "failed"
    assert "JobTimeoutException" in cut.latest_result().exc_string
    assert [job.return_value(refresh=True) for job in echoes] == list(range(5))
