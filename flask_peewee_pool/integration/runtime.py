"""PoolRuntime: one application's pool and the services around it, framework-neutral.

Every adapter (the Flask extension, FlaskDB, Django, a plain WSGI app or a worker) builds
one from a mapping of settings and then only translates its framework's events into calls
on it. It owns the whole life of what it starts: the pooled database, the snapshot writer
(``pool-stats``) and the Prometheus metrics; :meth:`PoolRuntime.close` stops them all, so
an app factory run a thousand times in a test loop leaves no thread, connection or file.

::

    runtime = PoolRuntime.from_settings({"DATABASE": "mysql://u:pw@db/app"}, name="worker")
    runtime.start()
    ...
    runtime.close()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from ..core.options import PoolOptions
from ..core.stats import PoolStats
from ..ops import snapshots
from . import config as _config

__all__ = ["PoolRuntime"]

logger = logging.getLogger("flask_peewee_pool")


class PoolRuntime:
    """A pooled database, its settings, snapshot writer and metrics: start, use, close.

    ``settings`` holds every validated value by lower-case name with secrets masked: it is
    meant to be shown (``pool-stats``, logs, snapshots). ``name`` is the application's
    name (the ``app`` of snapshots and reports); ``app`` the framework's application
    object, if any, and ``extension`` the adapter that built this runtime.
    """

    def __init__(self, built: _config.PoolConfig, *, name: str, app: Any = None,
                 extension: Any = None) -> None:
        self.database = built.database
        self.options: PoolOptions = built.options
        self.settings: dict[str, Any] = built.shown
        self.checkout = built.checkout
        self.excluded_endpoints = built.excluded_endpoints
        self.stats_dir = built.stats_dir
        self.stats_interval = built.stats_interval
        #: ``METRICS``: None (off), True (the default registry) or a registry.
        self.metrics_registry = built.metrics_registry
        #: The :class:`~flask_peewee_pool.metrics.PoolMetrics` publishing it, or None.
        self.metrics: Any = None
        #: How the user spells a setting (``PEEWEE_POOL_MAX_LIFETIME``), for messages.
        self.label = built.label
        self.name = name
        self.app = app
        self.extension = extension
        #: What the adapter keeps per app (Flask's request hooks), or None.
        self.adapter: Any = None
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    @classmethod
    def from_settings(cls, raw: Mapping[str, Any], *, name: str,
                      label: _config.Label = _config.flask_label,
                      stats_dir: str | None = None, checkout: str = "lazy",
                      database: Any = None, extra_excluded: Iterable[str] = (),
                      app_name: str | None = None, app: Any = None,
                      extension: Any = None) -> PoolRuntime:
        """Validate ``raw`` (keys without prefix, see :mod:`.config`) and build a runtime.

        ``name`` is the application's name and the pool's default name (``app_name``, if
        given, is the application's name instead). Raises
        :class:`~flask_peewee_pool.ConfigError` naming the key with nothing built.
        Nothing is started yet: call :meth:`start`.
        """
        built = _config.build(raw, label=label, name=name, stats_dir=stats_dir,
                              checkout=checkout, database=database,
                              extra_excluded=extra_excluded)
        return cls(built, name=app_name or name, app=app, extension=extension)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._started else "new"
        return f"<PoolRuntime {self.name!r} {self.settings['database']!r} {state}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Start the snapshot writer and the metrics (the pool starts at its first use)."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
            if self.stats_dir:
                snapshots.start_snapshots(self)
            self.metrics = _instrument(self.database, self.metrics_registry)

    def stats(self) -> PoolStats:
        return self.database.pool_stats()  # type: ignore[no-any-return]

    def drain(self) -> int:
        """Replace every connection of this process's pool, gracefully: idle ones now, busy
        ones when returned (``ConnectionPool.drain``). Returns how many were open.

        Only this process: ``flask pool-drain`` / ``manage.py pool_drain`` ask every
        process of the app (:mod:`flask_peewee_pool.ops.drain`).
        """
        return self.database.pool.drain()  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the metrics and the snapshot writer (its file is removed), close the pool.

        Idempotent. Connections still checked out are closed when they come back.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            metrics, self.metrics = self.metrics, None
        try:
            if metrics is not None:
                metrics.close()
        finally:
            try:
                snapshots.stop_snapshots(self)
            finally:
                self.database.close_pool()


def _instrument(database: Any, metrics_registry: Any) -> Any:
    """Publish ``database``'s pool to Prometheus as ``METRICS`` asked; the PoolMetrics."""
    if metrics_registry is None:
        return None
    from ..ops import metrics

    kwargs = {} if metrics_registry is True else {"registry": metrics_registry}
    return metrics.instrument(database, **kwargs)
