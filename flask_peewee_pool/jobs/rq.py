"""RQ: a worker class whose every job gives its connection back.

::

    # myapp/worker.py
    from flask_peewee_pool.jobs.rq import PooledWorker
    from myapp.models import db

    class Worker(PooledWorker):
        connections = JobConnections(db)

    $ rq worker -w myapp.worker.Worker

:class:`PooledWorker` (RQ's forking worker) and :class:`PooledSimpleWorker` (jobs in the
worker's own process) return the connection when the job function ends, before RQ stores
the result: a job that raised gives it back too, and one that hit its ``job_timeout``
(``JobTimeoutException``, possibly in the middle of a query) has it closed instead. In a
forked work horse the pool is then closed before the horse exits, so the server sees the
session end rather than a dropped socket. A horse killed outright (``rq``'s
``kill-horse``, ``SIGKILL``) runs no code; its sockets close with it. A pool used in the
worker's parent process before the fork is fork-safe: the horse opens its own connections.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rq.timeouts import JobTimeoutException
from rq.worker import SimpleWorker, Worker

from .core import JobConnections

__all__ = ["JobConnections", "PooledSimpleWorker", "PooledWorker", "PooledWorkerMixin"]


class PooledWorkerMixin:
    """Wraps each job's ``perform`` in :meth:`JobConnections.job`.

    Set ``connections`` on a subclass (or pass ``connections=`` to the constructor).
    """

    connections: ClassVar[JobConnections | None] = None

    def __init__(self, *args: Any, connections: JobConnections | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if connections is not None:
            self.connections = connections  # type: ignore[misc]
        if self.connections is None:
            raise TypeError(f"{type(self).__name__}: set `connections = JobConnections(db)` "
                            "on the class or pass connections=")

    def perform_job(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> bool:
        connections = self.connections
        assert connections is not None
        perform = job.perform

        def perform_with_connections() -> Any:
            try:
                connections.start()
                result = perform()
            except JobTimeoutException:
                connections.finish(discard=True)
                raise
            except BaseException:
                connections.finish()
                raise
            connections.finish()
            return result

        job.perform = perform_with_connections  # this job object only
        try:
            return super().perform_job(job, queue, *args, **kwargs)  # type: ignore[misc]
        finally:
            job.perform = perform
            connections.finish()  # whatever RQ's own bookkeeping may have checked out
            if getattr(self, "_is_horse", False):  # a forked horse exits right after this
                connections.close()


class PooledWorker(PooledWorkerMixin, Worker):
    """RQ's default worker (a forked work horse per job), connections returned per job."""


class PooledSimpleWorker(PooledWorkerMixin, SimpleWorker):
    """RQ's in-process worker, connections returned per job."""
