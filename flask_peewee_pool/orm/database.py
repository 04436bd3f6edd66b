"""peewee database classes built on :class:`~flask_peewee_pool.core.pool.ConnectionPool`.

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

Two keywords beyond playhouse's (also URL query parameters):

* ``application_name``: the name every server connection is labelled with, as
  ``<name>[<pid>]`` (PostgreSQL ``application_name``, MySQL ``program_name`` connection
  attribute; see :func:`~flask_peewee_pool.core.attribution.connection_label`). Default: the pool's
  name (for the Flask extension, the app's import name); ``""`` sends no label.
* ``external_pooler``: ``"pgbouncer"`` or ``"proxysql"`` when the database is reached
  through one. PgBouncer: psycopg 3's server-side prepared statements are turned off.
  Either: settings that would break the pooler (or, for ProxySQL, its multiplexing) are
  logged as warnings once, when the pool is built.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import types
import weakref
from typing import Any
from urllib.parse import urlsplit

import peewee
from playhouse.pool import MaxConnectionsExceeded

from ..core import concurrency, errors, forking
from ..core.attribution import normalize_application_name
from ..core.credentials import check_credentials, resolve_credentials
from ..core.drivers import (
    Driver,
    MySQLClientDriver,
    PostgresDriver,
    PyMySQLDriver,
    SqliteDriver,
    _describe_params,
)
from ..core.options import PoolOptions
from ..core.pool import ConnectionPool, PooledConnection
from ..core.poolers import external_pooler_warnings, normalize_external_pooler

logger = logging.getLogger("flask_peewee_pool")


class ConnectFailed(errors.ConnectError, peewee.OperationalError):
    """Opening a connection failed (also a ``peewee.OperationalError``)."""


class CheckoutTimeout(errors.PoolTimeout, MaxConnectionsExceeded):
    """No connection within ``timeout`` (also playhouse's ``MaxConnectionsExceeded``)."""


class CheckoutRejected(errors.PoolExhausted, MaxConnectionsExceeded):
    """Too many threads waiting (also playhouse's ``MaxConnectionsExceeded``)."""


class WrongHolder(errors.HolderError, peewee.InterfaceError):
    """A cursor was asked for on a connection another thread or greenlet checked out
    (also a ``peewee.InterfaceError``). Raised before anything is sent."""


class _PooledState(peewee._ConnectionState):
    """One holder's peewee connection state (a plain object, one per thread, or per
    greenlet under gevent), plus the pooled connection it holds.

    Plain, not a ``threading.local``: the database keeps one thread-local whose only
    attribute is this object, so a connect or a close reads the thread-local once and then
    touches only its own thread's object. (On free-threaded CPython every read of a shared
    object writes its reference count: peewee's own state, one ``threading.local`` read
    some 16 times per connect + close by every thread, bounced a cache line between cores.)

    When the holder ends, its thread-local entry is freed and so is this state, whose
    finalizer tells the pool if a connection is still held (lock-free; the pool rolls it
    back and reuses it later). A return clears ``pooled`` first.
    """

    def __init__(self, **kwargs: Any) -> None:
        #: The pooled connection this holder has checked out (None: not connected).
        self.pooled: PooledConnection | None = None
        #: Its checkout number (tells a later checkout of the same connection apart).
        self.checkout = 0
        #: This holder's home in the pool (``ConnectionPool.home()``): checkout and return
        #: go through it, reading neither the pool nor its thread-local (shared objects,
        #: which on free-threaded CPython cost a contended write per read). Kept across
        #: returns; replaced when the database's pool is (``init()``, ``dispose()``).
        self.home: Any = None
        #: Run the database's per-connect steps (server version, ``_initialize_connection``)
        #: at this holder's next checkout: until the server version is known, and always
        #: for a class with its own ``_initialize_connection``.
        self.init_at_checkout = True
        self.ctx: list[Any] = []
        self.transactions: list[Any] = []
        self.commit_callbacks: list[Any] = []
        super().__init__(**kwargs)

    def __del__(self) -> None:
        pooled = self.pooled
        if pooled is not None:
            with contextlib.suppress(Exception):  # e.g. at interpreter shutdown
                pooled.pool.abandoned(pooled, self.checkout)

    def reset(self) -> None:
        # peewee's reset, without its three new lists when the old ones are empty (it runs
        # at every return), plus ours.
        self.pooled = None  # returned (or forgotten) on purpose: not abandoned
        self.closed = True
        self.conn = None
        if self.ctx:
            self.ctx = []
        if self.transactions:
            self.transactions = []
        if self.commit_callbacks:
            self.commit_callbacks = []


_getcurrent = concurrency.getcurrent
_get_ident = concurrency.get_ident


def _new_holders(thread_safe: bool) -> Any:
    """Where each holder's :class:`_PooledState` lives (attribute ``state``): a
    thread-local (greenlet-local once gevent patched ``threading``), or, for peewee's
    ``thread_safe=False``, one namespace shared by every thread."""
    if thread_safe:
        return threading.local()  # looked up now: gevent's local once patched
    return types.SimpleNamespace(state=_PooledState())


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
    #: Database kind, as drivers name it (``external_pooler`` must front this kind).
    kind = "unknown"

    def __init__(self, database: str | None, *args: Any, **kwargs: Any) -> None:
        # playhouse.pool's positional order: max_connections, stale_timeout, timeout.
        for name, value in zip(("max_connections", "stale_timeout", "timeout"), args, strict=False):
            kwargs.setdefault(name, value)
        self._pool_options = PoolOptions()
        self._application_name: str | None = None
        self._external_pooler: str | None = None
        self._pool = None
        super().__init__(database, **kwargs)  # type: ignore[call-arg]
        _live_databases.add(self)

    @property
    def _state(self) -> _PooledState:
        """peewee's per-thread connection state: this holder's :class:`_PooledState`."""
        try:
            return self._holders.state  # type: ignore[no-any-return]
        except AttributeError:
            state = self._holders.state = _PooledState()
            return state

    @_state.setter
    def _state(self, value: Any) -> None:
        # peewee's Database.__init__ assigns its own state object: ours replaces it.
        self._holders = _new_holders(self.thread_safe)  # type: ignore[attr-defined]

    #: Check, where a cursor is taken, that the caller is the thread (greenlet) that
    #: checked the connection out; a mismatch raises :class:`WrongHolder` before any byte
    #: is sent. Costs one C call per cursor. Set False on an instance only if connections
    #: are deliberately shared (``thread_safe=False`` with outside locking).
    check_holder = True

    # ---------------------------------------------------------------- configuration

    def init(self, database: str | None, **kwargs: Any) -> None:  # type: ignore[override]
        pool_kwargs = self._take_pool_kwargs(kwargs)
        # Validated before anything is torn down: a bad value leaves the old pool alone.
        application_name, external_pooler = self._application_name, self._external_pooler
        if "application_name" in kwargs:
            application_name = normalize_application_name(kwargs.pop("application_name"))
        if "external_pooler" in kwargs:
            external_pooler = normalize_external_pooler(kwargs.pop("external_pooler"),
                                                        kind=self.kind)
        self._application_name, self._external_pooler = application_name, external_pooler
        if self._pool is not None:
            # Threads still holding a connection of the old pool return it there (its
            # checkin closes it): see _release().
            self._pool.close()
            self._pool = None
        super().init(database, **kwargs)  # type: ignore[misc]
        self._pool_options = self._pool_options.replace(**pool_kwargs)
        if not self.deferred:  # type: ignore[attr-defined]
            if "name" not in pool_kwargs:
                self._pool_options = self._pool_options.replace(name=_pool_name(database))
            self._pool = ConnectionPool(self._make_driver(), self._pool_options)
            self._warn_about_external_pooler()

    @property
    def application_name(self) -> str | None:
        """The name part of the label on every server connection (None: no label).

        Explicit ``application_name=`` wins; otherwise the pool's name, reduced to the
        database name when it is a URL (a URL can hold a password, and every user of the
        server can read connection labels).
        """
        if self._application_name is not None:
            return self._application_name or None
        return _pool_name(self._pool_options.name)

    @property
    def external_pooler(self) -> str | None:
        """``"pgbouncer"``, ``"proxysql"`` or None."""
        return self._external_pooler

    def _warn_about_external_pooler(self) -> None:
        """Log, once per pool built, every setting that would break the external pooler."""
        if self._external_pooler is None:
            return
        options = self._pool_options
        for problem in external_pooler_warnings(
                self._external_pooler, self.connect_params,  # type: ignore[attr-defined]
                init_sql=options.init_sql, configure=options.configure, reset=options.reset):
            logger.warning("pool %r (external_pooler=%s): %s", options.name,
                           self._external_pooler, problem)

    def _take_pool_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        taken: dict[str, Any] = {}
        whole = kwargs.pop("pool_options", None)
        if whole is not None:
            if not isinstance(whole, PoolOptions):
                raise errors.ConfigError("pool_options", "must be a PoolOptions instance")
            self._pool_options = whole
            if whole.name != PoolOptions().name:  # a name set in the record is kept
                taken["name"] = whole.name
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
            if key != "name":  # strings, and playhouse's timeout=0 (waits forever)
                taken[key] = PoolOptions.coerce(key, value)
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
        if _threading_patched and not concurrency.is_current_local(self._holders):
            self._adopt_threading()
        # The state property, inlined: one read of this shared database object and one of
        # its thread-local per connect (on free-threaded CPython each read of an object
        # that other threads read too writes its reference count).
        try:
            state = self._holders.state
        except AttributeError:
            state = self._holders.state = _PooledState()
        if not state.closed:
            if reuse_if_open:
                return False
            raise peewee.OperationalError("Connection already opened.")
        home = state.home
        pooled = None
        try:
            if home is None:  # this holder's first checkout, or its pool was replaced
                home = self._bind_home(state)
            pooled = home.checkout()
        except errors.PoolClosed:
            if home is None or home.pool is self._pool:
                raise
            state.home = None  # its pool was closed by init() or dispose(): move (below)
        except errors.ConnectError as exc:
            raise ConnectFailed(str(exc)) from exc.__cause__
        except errors.PoolTimeout as exc:
            raise CheckoutTimeout(str(exc)) from None
        except errors.PoolExhausted as exc:
            raise CheckoutRejected(str(exc)) from None
        if pooled is None:  # outside the handler: its errors are not chained to PoolClosed
            return self.connect(reuse_if_open)
        # peewee's set_connection, without new lists: reset() left them empty.
        state.conn = pooled.raw
        state.closed = False
        state.pooled = pooled
        state.checkout = pooled.checkouts
        if state.init_at_checkout:
            self._initialize_checkout(pooled)
        return True

    def _bind_home(self, state: _PooledState) -> Any:
        """The calling holder's home in the current pool (kept in ``state``, except with
        ``thread_safe=False``, where one state serves every thread)."""
        pool = self._pool
        if pool is None:
            raise peewee.InterfaceError(
                "Error, database must be initialized before opening a connection.")
        home = pool.home()
        if self.thread_safe:  # type: ignore[attr-defined]
            state.home = home
        return home

    def cursor(self, named_cursor: Any = None) -> Any:
        """peewee's ``cursor()``, after checking the caller holds the connection.

        Every query takes its cursor here, so this is the one cheap place to catch two
        holders on one connection, before a byte is sent.
        """
        state = self._state
        pooled = state.pooled
        if pooled is None:  # not connected: peewee autoconnects (or raises)
            return super().cursor(named_cursor)  # type: ignore[misc]
        key = _get_ident() if _getcurrent is None else id(_getcurrent())  # holder_key()
        if pooled.holder_key != key and self.check_holder:
            raise WrongHolder(self._wrong_holder_message(pooled))
        if named_cursor is None and self._peewee_cursor:
            return state.conn.cursor()  # what peewee.Database.cursor does when connected
        return super().cursor(named_cursor)  # type: ignore[misc]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # True when the cursor() after ours in the MRO is peewee's own: then the connected
        # case can be answered here without the extra call.
        after = cls.__mro__[cls.__mro__.index(PooledDatabase) + 1:]
        following = next((k.__dict__["cursor"] for k in after if "cursor" in k.__dict__),
                         None)
        cls._peewee_cursor = following is peewee.Database.cursor
        # Decided once per class, not at every connect.
        cls._has_connection_hook = (
            cls._initialize_connection is not peewee.Database._initialize_connection)

    _peewee_cursor = False
    #: A subclass overrides peewee's ``_initialize_connection`` (run at every checkout).
    _has_connection_hook = False

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        """peewee's ``execute_sql``; a query interrupted by a ``BaseException`` (gevent's
        Timeout, a killed greenlet, Ctrl-C) marks the connection for closing at checkin:
        its reply may still arrive and would answer the next query."""
        try:
            return super().execute_sql(sql, params)  # type: ignore[misc]
        except BaseException as exc:
            if not isinstance(exc, Exception):
                pooled = self._state.pooled
                if pooled is not None:
                    pooled.interrupted = True
            raise

    def _wrong_holder_message(self, pooled: PooledConnection) -> str:
        from ..core.pool import _format_origin

        return (
            f"pool {pooled.pool.name!r}: {concurrency.describe_holder()} asked for a cursor "
            f"on a connection checked out by thread {pooled.holder!r} at "
            f"{_format_origin(pooled.origin)}; nothing was sent. One connection has one "
            "holder: this database's per-thread state is shared. Usual causes: gevent "
            "patching threading after the database was created (call "
            "gevent.monkey.patch_all() before importing the app, or use gunicorn's gevent "
            "worker, which patches first); greenlets spawned without monkey-patching "
            "threading; a database built with thread_safe=False used from several threads; "
            "a connection passed to another thread. Open a connection in each thread or "
            "greenlet (db.connection_context()).")

    def _adopt_threading(self) -> None:
        """Replace the thread-local and lock made before gevent patched ``threading`` (one
        real thread-local shared by every greenlet) with greenlet-local ones."""
        old = getattr(self._holders, "state", None)  # this OS thread's, if any
        self._holders = _new_holders(self.thread_safe)  # type: ignore[attr-defined]
        self._lock = threading.Lock()
        if old is not None:
            pooled = old.pooled
            is_open = not old.closed
            old.reset()
            if is_open and pooled is not None and not pooled.reclaimed:
                # Checked out before patching by this OS thread: no greenlet owns it now.
                pooled.pool.checkin(pooled)

    def _initialize_checkout(self, pooled: PooledConnection) -> None:
        """peewee's per-connect steps: server version (once), ``_initialize_connection``."""
        state = self._state
        try:
            with peewee.__exception_wrapper__:
                if self.server_version is None:  # type: ignore[attr-defined]
                    self._set_server_version(pooled.raw)  # type: ignore[attr-defined]
                self._initialize_connection(pooled.raw)  # type: ignore[attr-defined]
        except BaseException:
            state.reset()
            pooled.pool.checkin(pooled, broken=True)
            raise
        # Per holder, so a connect reads the shared database object as little as it can.
        state.init_at_checkout = (self._has_connection_hook
                                  or self.server_version is None)  # type: ignore[attr-defined]

    def _connect(self) -> Any:
        raise peewee.InterfaceError("pooled databases connect through connect()")

    def close(self) -> bool:
        """Return this thread's connection to the pool (rolled back if needed)."""
        try:  # the state property, inlined: one thread-local read per close
            state = self._holders.state
        except AttributeError:
            state = self._state
        if state.transactions:  # peewee's in_transaction()
            raise peewee.OperationalError(
                "Attempting to close database while transaction is open.")
        if state.closed:  # (a deferred database is never connected: checked only here)
            if self.deferred:  # type: ignore[attr-defined]
                raise peewee.InterfaceError(
                    "Error, database must be initialized before opening a connection.")
            state.reset()
            return False
        # _release(), written out (it runs at every return).
        pooled: PooledConnection | None = state.pooled
        state.pooled = None  # returned on purpose: not abandoned
        state.closed = True
        state.conn = None
        if state.ctx or state.commit_callbacks:
            state.reset()
        if pooled is not None:
            # To the pool it came from (a home's checkin returns a connection to its own
            # pool): after init() that is the old (closed) pool, which closes it, not the
            # new one. A reclaimed connection is left alone.
            home = state.home
            if home is not None:
                home.checkin(pooled)
            else:  # thread_safe=False: no home kept
                pooled.pool.checkin(pooled)
        return True

    def release(self) -> bool:
        """Return this thread's connection whatever state peewee thinks it is in.

        For request teardown: peewee's transaction stack is dropped and the pool's checkin
        rolls back whatever the view left open. Returns whether a connection was held.
        """
        del self._state.transactions[:]
        return self._release(broken=False)

    def _release(self, *, broken: bool) -> bool:
        state = self._state
        is_open = not state.closed
        pooled: PooledConnection | None = state.pooled
        state.reset()
        if is_open and pooled is not None and not pooled.reclaimed:
            # To the pool it came from: after init() that is the old (closed) pool, which
            # closes it, not the new one.
            pooled.pool.checkin(pooled, broken=broken)
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
        """Forget the whole pool, as ``playhouse.pool`` does: later checkouts use a new
        pool; the old one closes its idle connections now and the others as their holders
        return them. This thread's connection goes back to the old pool (and is closed)."""
        state = self._state
        pooled: PooledConnection | None = state.pooled
        is_open = not state.closed
        state.reset()
        old = self._pool
        if old is not None:
            self._pool = ConnectionPool(self._make_driver(), self._pool_options)
            old.close()
        if is_open and pooled is not None and not pooled.reclaimed:
            pooled.pool.checkin(pooled)

    def _forget_connection(self) -> None:
        """Forget this thread's connection without returning it (after fork: it is the
        parent's; the pool itself drops its copies)."""
        self._state.reset()


class PooledMySQLDatabase(PooledDatabase, peewee.MySQLDatabase):
    """MySQL / MariaDB; drop-in for ``playhouse.pool.PooledMySQLDatabase``.

    ``driver="pymysql"`` (default, pure Python) or ``driver="mysqlclient"`` (the C driver,
    ``MySQLdb``): same pool semantics either way.
    """

    kind = "mysql"
    _driver_name = "pymysql"

    def init(self, database: str | None, **kwargs: Any) -> None:  # type: ignore[override]
        if "driver" in kwargs:
            self._driver_name = _mysql_driver(kwargs.pop("driver"))
        super().init(database, **kwargs)

    def _make_driver(self) -> Driver:
        driver_class = MySQLClientDriver if self._driver_name == "mysqlclient" else PyMySQLDriver
        return driver_class(database=self.database, application_name=self.application_name,
                            external_pooler=self._external_pooler, **self.connect_params)


def _mysql_driver(value: Any) -> str:
    name = str(value).strip().lower()
    if name not in MYSQL_DRIVERS:
        raise errors.ConfigError("driver", f"expected one of {', '.join(MYSQL_DRIVERS)}, "
                                 f"got {value!r}")
    if name == "mysqlclient":
        try:
            import MySQLdb  # noqa: F401
        except ImportError:
            raise errors.ConfigError("driver", "mysqlclient is not installed: pip install "
                                     "'flask-peewee-pool[mysqlclient]'") from None
    return name


#: The MySQL client libraries ``PooledMySQLDatabase(driver=...)`` accepts.
MYSQL_DRIVERS = ("pymysql", "mysqlclient")


class _ParamsView:
    """``database`` seen with other ``connect_params``: lets peewee's own ``_connect`` open
    a connection with per-connect parameters, without touching the shared attribute."""

    def __init__(self, database: Any, connect_params: dict[str, Any]) -> None:
        self.connect_params = connect_params
        self._database = database

    def __getattr__(self, name: str) -> Any:
        return getattr(self._database, name)


class PooledPostgresqlDatabase(PooledDatabase, peewee.PostgresqlDatabase):
    """PostgreSQL (psycopg 3 or psycopg2); drop-in for ``playhouse.pool``'s class.

    Connections are made by peewee's own ``_connect`` (autocommit, isolation level,
    encoding), so every option peewee accepts keeps working.
    """

    kind = "postgresql"

    def _make_driver(self) -> Driver:
        check_credentials(self.connect_params)
        params = {k: v for k, v in self.connect_params.items() if k != "password"}
        params["database"] = self.database
        description = _describe_params("postgresql", params)
        if "://" in str(self.database):  # a connection URL as the database name
            from .urls import redact

            description = redact(str(self.database))
        elif "=" in str(self.database):  # a conninfo string as the database name
            params["database"] = _mask_conninfo(str(self.database))
            description = _describe_params("postgresql", params)
        adapter = getattr(self, "_adapter", None)  # peewee >= 4: psycopg 3 or psycopg2
        return PostgresDriver(self._open_connection,
                              description=description,
                              application_name=self.application_name,
                              external_pooler=self._external_pooler,
                              psycopg3=type(adapter).__name__ == "Psycopg3Adapter")

    def _open_connection(self, **extra: Any) -> Any:
        # The driver's per-connect parameters (label with the current pid, PgBouncer's
        # prepare_threshold) are defaults: what the user passed explicitly wins.
        params = resolve_credentials({**extra, **self.connect_params})  # callables called now
        return peewee.PostgresqlDatabase._connect(_ParamsView(self, params))  # type: ignore[arg-type]


class PooledSqliteDatabase(PooledDatabase, peewee.SqliteDatabase):
    """SQLite; drop-in for ``playhouse.pool.PooledSqliteDatabase``.

    peewee's own ``_connect`` opens each connection, so pragmas and user functions apply.
    There is no server to label connections for: ``application_name`` is accepted (one
    URL or setting can serve every backend) and ignored.
    """

    kind = "sqlite"

    def _make_driver(self) -> Driver:
        # The pool hands a connection to whichever thread checks it out next.
        self.connect_params.setdefault("check_same_thread", False)
        return SqliteDriver(peewee.SqliteDatabase._connect.__get__(self),
                            database=str(self.database))


def _pool_name(database: Any) -> str:
    """A name for the pool: the database name, never a whole connection URL (which can
    hold a password, and pool names appear in logs, errors and server-side labels)."""
    name = str(database)
    if "://" in name:
        name = urlsplit(name).path.rstrip("/").rpartition("/")[2] or "pool"
    elif "=" in name:  # a libpq key=value conninfo string: its dbname, else a mask
        found = re.search(r"(?:^|\s)dbname\s*=\s*'?([^'\s]*)", name)
        name = (found.group(1) if found else "") or _mask_conninfo(name)
    return name


def _mask_conninfo(text: str) -> str:
    """A libpq conninfo string with its password value replaced by ``***``."""
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text,
                  flags=re.IGNORECASE)


_live_databases: weakref.WeakSet[PooledDatabase] = weakref.WeakSet()


def _forget_connections_in_child() -> None:
    # The forking thread's peewee state still points at a connection that now belongs to
    # the parent; the pool itself drops its own copies (see pool._reinit_pools_in_child).
    for db in list(_live_databases):
        db._forget_connection()


#: gevent has patched ``threading`` in this process (then connect() checks that the state's
#: thread-local is a greenlet-local one). A plain flag: cheaper to read than the module.
_threading_patched = concurrency.threading_patched()


def _adopt_patched_threading() -> None:
    """Right after ``gevent.monkey.patch_all()``: greenlet-local state for every database."""
    global _threading_patched
    _threading_patched = True
    for db in list(_live_databases):
        if not concurrency.is_current_local(db._holders):
            db._adopt_threading()


forking.register(forking.DATABASE, after_in_child=_forget_connections_in_child)
concurrency.on_patch_all(_adopt_patched_threading)
