"""A soft time limit interrupts a task in the middle of a query (prefork pool).

Celery raises ``SoftTimeLimitExceeded`` inside the task from a signal handler, here while
PyMySQL waits for the answer to ``SELECT SLEEP(3)``: the server is still running that query
and will send its result later. Such a connection must not go back to the pool as if
clean: the next task on the same worker process would send its query and read the previous
one's answer. The hooks return it as broken (closed), and the next tasks get answers that
are their own.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import REPO

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


@pytest.fixture
def prefork_worker(celery_redis: str, worker_env: dict[str, str]) -> Iterator[Any]:
    env = {**worker_env, "FPP_JOBS_REDIS": celery_redis, "FPP_JOBS_QUEUE": "fpp_prefork"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.jobs.celery_app", "worker",
         "--pool", "prefork", "--concurrency", "1", "--loglevel", "warning",
         "--without-heartbeat", "--without-gossip", "--without-mingle"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from tests.jobs import celery_app

    celery_app.app.conf.update(broker_url=celery_redis, result_backend=celery_redis,
                               task_default_queue="fpp_prefork")
    try:
        yield celery_app
    finally:
        celery_app.app.conf.update(task_default_queue="fpp_jobs")
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_a_query_cut_by_the_soft_time_limit_never_reaches_the_next_task(
        prefork_worker: Any, mysql_pool_user: Any) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    assert prefork_worker.echo.delay(-1).get(timeout=60) == -1  # the child has a connection
    for round_ in range(2):
        cut = prefork_worker.slow.delay(3)
        with pytest.raises(SoftTimeLimitExceeded):
            cut.get(timeout=60)
        answers = [prefork_worker.echo.delay(round_ * 100 + n) for n in range(5)]
        assert [a.get(timeout=60) for a in answers] == [round_ * 100 + n for n in range(5)]
    stats = prefork_worker.pool_stats.delay().get(timeout=30)
    assert stats["in_use"] == 0
    # The two interrupted connections were not reused: each next task connected anew.
    assert stats["counters"]["connects"] >= 3
