"""The worker classes ``rq worker --worker-class`` loads in the RQ tests.

Without rq's remote-command listener (its pubsub thread): with rq 3.0 and redis-py 8, the
listener's ``stop()`` at worker teardown can wait out its 60 s poll when it races the
subscription, which would make a burst worker's exit take a minute. Nothing here uses
remote commands.
"""

from __future__ import annotations

from flask_peewee_pool.jobs.rq import JobConnections, PooledSimpleWorker, PooledWorker

from . import workload


class Worker(PooledWorker):
    connections = JobConnections(workload.db)

    def subscribe(self) -> None:
        pass


class SimpleWorker(PooledSimpleWorker):
    connections = JobConnections(workload.db)

    def subscribe(self) -> None:
        pass
