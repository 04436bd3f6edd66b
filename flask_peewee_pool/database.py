"""peewee database classes built on :class:`~flask_peewee_pool.pool.ConnectionPool`.

Drop-ins for ``playhouse.pool``: same constructor arguments (``max_connections``,
``stale_timeout``, ``timeout``), same methods (``close_idle``, ``close_stale``,
``close_all``, ``manual_close``), deferred ``init()``, ``DatabaseProxy``,
``connection_context()``. Two differences matter and are the reason this library exists:

* peewee's ``Database.connect()`` and ``close()`` hold a database-wide lock across the
  driver call. Connection state is thread-local already, so these classes take no shared
  lock at all: a checkout that has to connect or ping never makes another thread wait.
* ``stale_timeout`` is the upper bound of a jittered lifetime, and expiry is handled by the
  pool's maintainer in the background instead of by the request that happens to find it.

Pool errors keep their pool type and also subclass what peewee users already catch:
a failed connect is a ``peewee.OperationalError``, a checkout timeout a
``playhouse.pool.MaxConnectionsExceeded``.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import peewee
from playhouse.pool import MaxConnectionsExceeded

from . import errors
from .drivers import Driver, PostgresDriver, PyMySQLDriver, SqliteDriver
from .options import PoolOptions
from .pool import ConnectionPool, PooledConnection


class ConnectFailed(errors.ConnectError, peewee.OperationalError):
    """Opening a connection failed (also a ``peewee.OperationalError``)."""


class CheckoutTimeout(errors.PoolTimeout, MaxConnectionsExceeded):
    """No connection within ``timeout`` (also playhouse's ``MaxConnectionsExceeded``)."""


class CheckoutRejected(errors.PoolExhausted, MaxConnectionsExceeded):
    """Too many threads waiting (also playhouse's ``MaxConnectionsExceeded``)."""


_POOL_FIELDS = frozenset(PoolOptions.field_names()) - {"name"}
_PLAYHOUSE_ALIASES = {"stale_timeout": "max_lifetime"}


class PooledDatabase:
    """Mixin turning a peewee ``Database`` class into a pooled one.

    Pool settings are the fields of :class:`PoolOptions` as keyword arguments (plus
    ``stale_timeout`` for ``max_lifetime``, ``pool_name`` for ``name``, and
    ``pool_options=`` for a whole record); everything else goes to peewee and the driver.
    ``timeout=0`` means wait forever, as in ``playhouse.pool``.
    """

    _pool: ConnectionPool | None = None

    def __init__(self, database: str | None, *args: Any, **kwargs: Any) -> None:
        # playhouse.pool's positional order: max_connections, stale_timeout, timeout.
        for name, value in zip(("max_connections", "stale_timeout", "timeout"), args, strict=False):
            kwargs.setdefault(name, value)
        self._pool_options = PoolOptions()
        self._pool = None
        super().__init__(database, **kwargs)  # type: ignore[call-arg]
        _live_databases.add(self)

    # ---------------------------------------------------------------- configuration

    def init(self, database: str | None, **kwargs: Any) -> None:  # type: ignore[override]
        pool_kwargs = self._take_pool_kwargs(kwargs)
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        super().init(database, **kwargs)  # type: ignore[misc]
        self._pool_options = self._pool_options.replace(**pool_kwargs)
        if not self.deferred:  # type: ignore[attr-defined]
            if "name" not in pool_kwargs:
                self._pool_options = self._pool_options.replace(name=str(database))
            self._pool = ConnectionPool(self._make_driver(), self._pool_options)

    def _take_pool_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        taken: dict[str, Any] = {}
        whole = kwargs.pop("pool_options", None)
        if whole is not None:
            if not isinstance(whole, PoolOptions):
                raise errors.ConfigError("pool_options", "must be a PoolOptions instance")
            self._pool_options = whole
        for key in list(kwargs):
            field = _PLAYHOUSE_ALIASES.get(key, key)
            if field in _POOL_FIELDS:
                value = kwargs.pop(key)
                if key == "stale_timeout" and "max_lifetime" in kwargs:
                    continue  # the explicit name wins
                taken[field] = value
        if "pool_name" in kwargs:
            taken["name"] = kwargs.pop("pool_name")
        for key, value in taken.items():
            if isinstance(value, str) and key != "name":  # playhouse accepted strings
                taken[key] = PoolOptions.coerce(key, value)
        if taken.get("timeout") == 0:
            taken["timeout"] = None  # playhouse.pool: 0 waits forever
        return taken

    def _make_driver(self) -> Driver:
        raise NotImplementedError

    @property
    def pool(self) -> ConnectionPool:
        """The underlying :class:`ConnectionPool` (after ``init``)."""
        if self._pool is None:
            raise peewee.InterfaceError(
                "Error, database must be initialized before opening a connection.")
        return self._pool

    @property
    def pool_options(self) -> PoolOptions:
        return self._pool_options

    # ---------------------------------------------------------------- connections

    def connect(self, reuse_if_open: bool = False) -> bool:
        """Check a connection out of the pool for this thread (no shared lock held)."""
        if self.deferred:  # type: ignore[attr-defined]
            raise peewee.InterfaceError(
                "Error, database must be initialized before opening a connection.")
        state = self._state  # type: ignore[attr-defined]
        if not state.closed:
            if reuse_if_open:
                return False
            raise peewee.OperationalError("Connection already opened.")
        state.reset()
        pooled = self._checkout()
        try:
            with peewee.__exception_wrapper__:
                state.set_connection(pooled.raw)
                state.pooled = pooled
                if self.server_version is None:  # type: ignore[attr-defined]
                    self._set_server_version(pooled.raw)  # type: ignore[attr-defined]
                self._initialize_connection(pooled.raw)  # type: ignore[attr-defined]
        except BaseException:
            state.reset()
            state.pooled = None
            self.pool.checkin(pooled, broken=True)
            raise
        return True

    def _checkout(self) -> PooledConnection:
        try:
            return self.pool.checkout()
        except errors.ConnectError as exc:
            raise ConnectFailed(str(exc)) from exc.__cause__
        except errors.PoolTimeout as exc:
            raise CheckoutTimeout(str(exc)) from None
        except errors.PoolExhausted as exc:
            raise CheckoutRejected(str(exc)) from None

    def _connect(self) -> Any:
        raise peewee.InterfaceError("pooled databases connect through connect()")

    def close(self) -> bool:
        """Return this thread's connection to the pool (rolled back if needed)."""
        if self.deferred:  # type: ignore[attr-defined]
            raise peewee.InterfaceError(
                "Error, database must be initialized before opening a connection.")
        if self.in_transaction():  # type: ignore[attr-defined]
            raise peewee.OperationalError(
                "Attempting to close database while transaction is open.")
        return self._release(broken=False)

    def release(self) -> bool:
        """Return this thread's connection whatever state peewee thinks it is in.

        For request teardown: peewee's transaction stack is dropped and the pool's checkin
        rolls back whatever the view left open. Returns whether a connection was held.
        """
        del self._state.transactions[:]  # type: ignore[attr-defined]
        return self._release(broken=False)

    def _release(self, *, broken: bool) -> bool:
        state = self._state  # type: ignore[attr-defined]
        is_open = not state.closed
        pooled: PooledConnection | None = getattr(state, "pooled", None)
        state.reset()
        state.pooled = None
        if is_open and pooled is not None and not pooled.reclaimed:
            self.pool.checkin(pooled, broken=broken)
        return is_open

    def manual_close(self) -> bool:
        """Close this thread's connection instead of returning it to the pool."""
        if self.is_closed():  # type: ignore[attr-defined]
            return False
        self._release(broken=True)
        return True

    def close_idle(self) -> int:
        """Close every idle connection of the pool."""
        return self.pool.close_idle()

    def close_stale(self, age: float = 600) -> int:
        """Reclaim connections checked out longer than ``age`` seconds, as playhouse does.

        Their holders may still be using them: this is for connections leaked by threads
        that never returned them. Prefer ``leak_threshold`` to find the code responsible.
        """
        return self.pool.reclaim(older_than=age)

    def close_all(self) -> None:
        """Return this thread's connection, close idle ones and reclaim all in use."""
        self.close()
        self.pool.close_idle()
        self.pool.reclaim(older_than=0)

    def close_pool(self) -> None:
        """Shut the pool down: no more checkouts; connections closed as they return."""
        if self._pool is not None:
            self._pool.close()

    def pool_stats(self) -> Any:
        return self.pool.stats()

    def resize(self, max_connections: int | None = None, min_idle: int | None = None) -> None:
        """Change the pool's cap and ``min_idle`` at run time (see ``ConnectionPool.resize``)."""
        self.pool.resize(max_connections=max_connections, min_idle=min_idle)
        self._pool_options = self.pool.options

    def dispose(self) -> None:
        """Forget this thread's connection without returning it (used after fork)."""
        state = self._state  # type: ignore[attr-defined]
        state.reset()
        state.pooled = None


class PooledMySQLDatabase(PooledDatabase, peewee.MySQLDatabase):
    """MySQL / MariaDB through PyMySQL; drop-in for ``playhouse.pool.PooledMySQLDatabase``."""

    def _make_driver(self) -> Driver:
        return PyMySQLDriver(database=self.database, **self.connect_params)


class PooledPostgresqlDatabase(PooledDatabase, peewee.PostgresqlDatabase):
    """PostgreSQL (psycopg 3 or psycopg2); drop-in for ``playhouse.pool``'s class.

    Connections are made by peewee's own ``_connect`` (autocommit, isolation level,
    encoding), so every option peewee accepts keeps working.
    """

    def _make_driver(self) -> Driver:
        params = {k: v for k, v in self.connect_params.items() if k != "password"}
        params["database"] = self.database
        from .drivers import _describe_params

        return PostgresDriver(peewee.PostgresqlDatabase._connect.__get__(self),
                              description=_describe_params("postgresql", params))


class PooledSqliteDatabase(PooledDatabase, peewee.SqliteDatabase):
    """SQLite; drop-in for ``playhouse.pool.PooledSqliteDatabase``.

    peewee's own ``_connect`` opens each connection, so pragmas and user functions apply.
    """

    def _make_driver(self) -> Driver:
        # The pool hands a connection to whichever thread checks it out next.
        self.connect_params.setdefault("check_same_thread", False)
        return SqliteDriver(peewee.SqliteDatabase._connect.__get__(self),
                            database=str(self.database))


_live_databases: weakref.WeakSet[PooledDatabase] = weakref.WeakSet()


def _forget_connections_in_child() -> None:
    # The forking thread's peewee state still points at a connection that now belongs to
    # the parent; the pool itself drops its own copies (see pool._reinit_pools_in_child).
    for db in list(_live_databases):
        db.dispose()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_connections_in_child)
