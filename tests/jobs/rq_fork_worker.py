"""The worker class ``rq worker --worker-class`` loads in the forking-worker test."""

from __future__ import annotations

from flask_peewee_pool.jobs.rq import JobConnections, PooledWorker

from . import workload


class Worker(PooledWorker):
    connections = JobConnections(workload.db)
