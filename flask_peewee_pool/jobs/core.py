"""One job, one lease: connect (optionally) before a job, always give back after it.

Framework-neutral: the Celery and RQ adapters only decide *when* :meth:`JobConnections.start`
and :meth:`JobConnections.finish` run. Both act on the calling thread's connection only
(peewee's connection state is thread-local), so they are safe under any worker concurrency
model that runs a job start to end on one thread: prefork, threads, solo, RQ's forking and
simple workers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import peewee

logger = logging.getLogger("flask_peewee_pool")

F = TypeVar("F", bound=Callable[..., Any])


def _resolve(database: Any) -> Any:
    """The database behind a ``peewee.DatabaseProxy`` (the extension's proxy included);
    None for a proxy not initialised yet (nothing can have connected through it)."""
    while isinstance(database, peewee.Proxy):
        database = database.obj
    return database


class JobConnections:
    """The databases one kind of job uses, and what to do with them around each job.

    ``eager=False`` (the default) connects lazily: peewee checks a connection out at the
    job's first query, so a job that never queries never waits for one. ``eager=True``
    checks one out of every database before the job body runs.

    Every :meth:`start` must be matched by a :meth:`finish` on the same thread, even when
    ``start`` raised (:meth:`job`, :meth:`wrap` and the queue hooks do this).

    :meth:`finish` is what matters: it returns the thread's connection whatever happened
    (an exception, a soft time limit, an open transaction: the pool rolls it back at
    checkin). A worker process that is killed outright (a hard time limit, ``SIGKILL``)
    runs no code at all; its sockets close with it and the server ends its sessions, and
    no other process's pool is affected.
    """

    def __init__(self, *databases: Any, eager: bool = False) -> None:
        if not databases:
            raise ValueError("JobConnections: pass at least one database")
        self._databases = tuple(databases)
        self.eager = bool(eager)
        #: Per thread, one entry per job being run: the databases it found already held.
        self._local = threading.local()

    @property
    def databases(self) -> list[Any]:
        """The databases, proxies resolved (a proxy may be initialised after this object)."""
        resolved = (_resolve(db) for db in self._databases)
        return [db for db in resolved if db is not None]

    def start(self) -> None:
        """Before a job: check connections out now if ``eager``; else only take note.

        A database whose connection this thread already holds (a task applied eagerly
        inside a web request, or inside another task) is left to its holder: the matching
        :meth:`finish` will not return it. If an eager checkout fails (or anything
        interrupts it), the connections this call took are given back before the
        exception propagates; the matching :meth:`finish` is still due.
        """
        held = frozenset(id(db) for db in self.databases if not db.is_closed())
        self._frames().append(held)
        if not self.eager:
            return
        done = False
        try:
            for db in self.databases:
                db.connect(reuse_if_open=True)
            done = True
        finally:
            if not done:
                self.finish(end=False)

    def finish(self, *, end: bool = True, discard: bool = False) -> int:
        """After a job, whatever its outcome: give this thread's connections back.

        Only those the job took (see :meth:`start`); all of them when no :meth:`start`
        was seen on this thread. Returns how many were returned. Never raises an
        ``Exception`` (it runs in a queue's signal handlers, where an error would hide the
        job's own); a failure with one database is logged and the others are still
        released. ``end=False`` releases but keeps the job open, for a hook that runs
        before the final one (Celery's ``task_failure`` before ``task_postrun``).
        ``discard=True`` closes the connections instead of returning them to the pool: for
        a job cut short by a time limit, whose connection may have been interrupted in the
        middle of a query (the server still running it, its answer still to come).
        """
        frames = self._frames()
        if not frames:
            held: frozenset[int] = frozenset()
        else:
            held = frames.pop() if end else frames[-1]
        released = 0
        for db in self.databases:
            if id(db) in held:
                continue
            try:
                released += bool(_release(db, discard=discard))
            except Exception:
                logger.exception("could not return a job's connection to %r", db)
        return released

    def _frames(self) -> list[frozenset[int]]:
        frames = getattr(self._local, "frames", None)
        if frames is None:
            frames = self._local.frames = []
        return frames

    def close(self) -> None:
        """Worker shutdown: close every pool (idle connections now, busy ones at checkin),
        so the server sees each session end instead of a dropped socket."""
        for db in self.databases:
            try:
                closer = getattr(db, "close_pool", None)
                if closer is not None:
                    closer()
                elif not db.is_closed():
                    db.close()
            except Exception:
                logger.exception("could not close the pool of %r at worker shutdown", db)

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        """``with connections.job(): ...``: :meth:`start` before, :meth:`finish` after."""
        try:
            self.start()
            yield
        finally:
            self.finish()

    def wrap(self, func: F) -> F:
        """Decorator form of :meth:`job`, for a function run as a job by any queue."""

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.job():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def _release(db: Any, *, discard: bool = False) -> bool:
    """Return (or with ``discard``, close) the calling thread's connection of ``db``;
    True if one was held."""
    if discard and hasattr(db, "manual_close"):  # closed by the pool, slot freed
        return bool(db.manual_close())
    release = getattr(db, "release", None)
    if release is not None:  # our pooled databases: drops peewee's transaction stack too
        return bool(release())
    if db.is_closed():  # a plain peewee database: close it the way peewee allows
        return False
    del db._state.transactions[:]
    return bool(db.close())
