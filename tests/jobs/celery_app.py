"""The Celery app a real worker process runs in the jobs tests.

``celery -A tests.jobs.celery_app worker --pool threads -c 8``; broker and result backend
are the Redis database named by ``FPP_JOBS_REDIS`` (a dedicated db number).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from flask_peewee_pool.jobs.celery import init_celery

from . import workload

redis_url = os.environ.get("FPP_JOBS_REDIS", "redis://127.0.0.1:6379/7")
app = Celery("fpp_jobs_tests", broker=redis_url, backend=redis_url)
app.conf.update(task_default_queue=os.environ.get("FPP_JOBS_QUEUE", "fpp_jobs"),
                worker_prefetch_multiplier=1, result_expires=600,
                broker_connection_retry_on_startup=True)


connections = init_celery(app, workload.db)


@app.task(name="fpp.work")
def work(number: int) -> dict[str, Any]:
    return workload.work(number)


@app.task(name="fpp.pool_stats")
def pool_stats() -> dict[str, Any]:
    return workload.pool_stats()


@app.task(name="fpp.echo")
def echo(number: int) -> int:
    return workload.echo(number)


@app.task(name="fpp.slow", soft_time_limit=0.5)
def slow(seconds: float) -> int:
    return workload.slow(seconds)
