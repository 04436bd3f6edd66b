"""Celery: every task gives its connection back, whatever happened to it.

::

    from flask_peewee_pool.jobs.celery import init_celery

    celery_app = Celery("tasks", broker=...)
    init_celery(celery_app, db)          # db: a pooled database, or the extension's proxy

Hooks (Celery's public signals):

* ``task_prerun``: notes what the thread already holds; with ``eager=True`` checks a
  connection out before the task body runs. Default: lazily, at the first query. (Celery
  logs and swallows an exception raised in a signal handler: a failed eager checkout does
  not fail the task, whose first query then tries again.)
* ``task_failure`` and ``task_postrun``: return the connection. Celery sends
  ``task_postrun`` from a ``finally`` for every outcome (success, exception, retry,
  ``SoftTimeLimitExceeded``), in the thread that ran the task, so this works with the
  prefork, threads and solo pools alike. A task stopped by its soft time limit may have
  been interrupted inside a query: its connection is closed instead of reused.
* ``worker_process_shutdown`` (a prefork child recycled by ``max_tasks_per_child`` or
  ``max_memory_per_child``, or stopping) and ``worker_shutdown``: close the pool, so the
  server sees each session end.

A task killed outright (hard ``time_limit``, ``revoke(terminate=True)``) runs no code: its
process dies and its sockets with it, and the server ends those sessions; a prefork child
that replaces it starts with a pool of its own (pools are fork-safe).
"""

from __future__ import annotations

from typing import Any

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from .core import JobConnections

__all__ = ["JobConnections", "init_celery"]


def init_celery(celery_app: Any, *databases: Any, eager: bool = False,
                close_on_shutdown: bool = True) -> JobConnections:
    """Tie ``databases`` to the lifecycle of every task of ``celery_app``.

    Only tasks of ``celery_app`` are hooked (Celery's signals are process-wide). Returns
    the :class:`JobConnections`, whose :meth:`~JobConnections.job` also serves code that
    uses the databases outside a task.
    """
    connections = JobConnections(*databases, eager=eager)

    def ours(sender: Any) -> bool:
        return getattr(sender, "app", None) is celery_app

    def prerun(sender: Any = None, **_: Any) -> None:
        if ours(sender):
            connections.start()

    def failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
        if ours(sender):
            cut = isinstance(exception, (SoftTimeLimitExceeded, TimeLimitExceeded))
            connections.finish(end=False, discard=cut)

    def postrun(sender: Any = None, **_: Any) -> None:
        if ours(sender):
            connections.finish()

    def shutdown(**_: Any) -> None:
        connections.close()

    # weak=False: these closures are referenced by the signals only.
    signals.task_prerun.connect(prerun, weak=False)
    signals.task_failure.connect(failure, weak=False)
    signals.task_postrun.connect(postrun, weak=False)
    if close_on_shutdown:
        signals.worker_process_shutdown.connect(shutdown, weak=False)
        signals.worker_shutdown.connect(shutdown, weak=False)
    return connections
