"""Connections for work outside a web request: Celery tasks, RQ jobs, scripts.

A web request has a teardown that returns its connection. A worker thread that runs one
task after another has none, and peewee keeps a connection per thread: without a hook, each
worker thread keeps one connection checked out for as long as it lives, and a pool smaller
than the worker's concurrency runs dry. :class:`JobConnections` is the framework-neutral
hook; :mod:`.celery` and :mod:`.rq` wire it to each queue's own lifecycle.
"""

from __future__ import annotations

from .core import JobConnections

__all__ = ["JobConnections"]
