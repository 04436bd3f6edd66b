"""The pools under test, each behind the same small interface.

Why an adapter per pool: scenarios only say "do one unit of work from this thread"
and "fill the pool", so adding a pool means adding one class here and one line in
:data:`POOLS`.  Pools are imported lazily: a pool whose import or construction fails is
skipped with its error, so the harness keeps working while ``flask_peewee_pool`` is under
construction.

Every pool gets the same :class:`PoolConfig` (size, lifetime, checkout timeout),
translated into its own option names, and the same :class:`Target` (driver arguments,
timeouts included).  Every raw connect goes through a :class:`ConnectLog`, so a scenario
can tell which thread paid for each connect (a request thread, or a pool's background
thread) without touching the pool's code.

Units of work (one checkout, one ``SELECT 1``, one checkin):

* peewee-style (``ours``, ``peewee``): ``db.connect(); db.execute_sql(...); db.close()``.
* ``sqlalchemy``: ``pool.connect()``, a cursor, ``close()`` (QueuePool with pre_ping and
  its default reset-on-return rollback: 3 round trips per unit, none under a lock).
* ``dbutils``: ``pool.connection()``, a cursor, ``close()`` (PooledDB with its defaults
  ``ping=1``, ``reset=True``: ping when taken from the pool and rollback when returned,
  both under the pool's one lock: 3 round trips per unit).
* ``dedicated``: ``SELECT 1`` on the thread's own connection, the physical ceiling.
* ``dedicated-peewee``: the same through peewee's ``execute_sql`` (the ceiling for any
  pool used through peewee; S2 only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pymysql

SQL = "SELECT 1"


@dataclass(frozen=True)
class Target:
    """Where and how to connect (normally the proxy in front of the server)."""

    host: str
    port: int
    user: str = "root"
    password: str = ""
    database: str = "test"
    tls: bool = False  # False passes ssl_disabled=True (PyMySQL otherwise tries TLS)
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. shorter timeouts

    def driver_kwargs(self) -> dict[str, Any]:
        """PyMySQL keyword arguments, bounded timeouts included (database excluded)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "connect_timeout": 10,
            "read_timeout": 30,
            "write_timeout": 30,
        }
        if not self.tls:
            kwargs["ssl_disabled"] = True
        kwargs.update(self.extra)
        return kwargs

    def connect(self) -> pymysql.connections.Connection:
        return pymysql.connect(database=self.database, autocommit=True, **self.driver_kwargs())


@dataclass(frozen=True)
class PoolConfig:
    """The settings every pool gets, each in its own words (see each adapter)."""

    size: int
    lifetime: float | None = None  # max age of a connection (None: unlimited)
    checkout_timeout: float = 30.0  # longest wait for a free connection


class ConnectLog:
    """Every raw connect: (start perf_counter, seconds, thread name, ok)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, float, str, bool]] = []

    def wrap(self, connect: Callable[..., Any]) -> Callable[..., Any]:
        def logged(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            ok = False
            try:
                conn = connect(*args, **kwargs)
                ok = True
                return conn
            finally:  # list.append is atomic: no lock needed
                self.events.append(
                    (t0, time.perf_counter() - t0, threading.current_thread().name, ok)
                )

        return logged


class PoolAdapter:
    """One pool under test.  ``unit`` is called from many threads at once."""

    name: ClassVar[str]

    def __init__(self, target: Target, config: PoolConfig) -> None:
        self.target = target
        self.config = config
        self.size = config.size
        self.connects = ConnectLog()
        self.query_log: list[float] | None = None  # when set: perf_counter of each result

    def _queried(self) -> None:
        if self.query_log is not None:
            self.query_log.append(time.perf_counter())

    def unit(self) -> None:
        raise NotImplementedError

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep one connection checked out (used to fill the pool)."""
        raise NotImplementedError
        yield

    def thread_start(self, warm: bool) -> None:
        """Called in each worker thread before the timed window."""

    def thread_end(self) -> None:
        """Called in each worker thread after the timed window."""

    def warm(self, n: int, timeout: float = 60.0) -> None:
        """Make the pool open ``n`` connections: ``n`` threads hold one at the same time."""
        barrier = threading.Barrier(n)
        errors: list[BaseException] = []

        def hold_one() -> None:
            try:
                with self.hold():
                    barrier.wait(timeout)
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()

        threads = [
            threading.Thread(target=hold_one, name=f"warm-{i}", daemon=True) for i in range(n)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 5)
        if errors:
            raise RuntimeError(f"warm-up failed: {errors[0]!r}") from errors[0]

    def close(self) -> None:
        """Close every connection of the pool."""


class _PeeweeStyle(PoolAdapter):
    """Shared by peewee's pool and ours: same constructor, same unit of work."""

    def __init__(self, target: Target, config: PoolConfig) -> None:
        super().__init__(target, config)
        self.db = self.database_class()(
            target.database,
            max_connections=config.size,
            timeout=config.checkout_timeout,
            stale_timeout=config.lifetime,
            **target.driver_kwargs(),
        )

    @staticmethod
    def database_class() -> type[Any]:
        raise NotImplementedError

    def unit(self) -> None:
        db = self.db
        db.connect()
        try:
            db.execute_sql(SQL).fetchone()
            self._queried()
        finally:
            db.close()

    @contextmanager
    def hold(self) -> Iterator[None]:
        self.db.connect()
        try:
            yield
        finally:
            self.db.close()


class OursAdapter(_PeeweeStyle):
    """flask_peewee_pool.PooledMySQLDatabase: ``stale_timeout`` is its ``max_lifetime``
    (jittered down by ``lifetime_jitter``, default 0.2); everything else at defaults."""

    name = "ours"

    def __init__(self, target: Target, config: PoolConfig) -> None:
        super().__init__(target, config)
        driver = self.db.pool.driver
        driver.connect = self.connects.wrap(driver.connect)  # the pool calls driver.connect()

    @staticmethod
    def database_class() -> type[Any]:
        from flask_peewee_pool import PooledMySQLDatabase

        return PooledMySQLDatabase

    def close(self) -> None:
        self.db.close_pool()


class OursMySQLClientAdapter(OursAdapter):
    """Ours over mysqlclient (MySQLdb, the C driver): ``driver="mysqlclient"``."""

    name = "ours-mysqlclient"

    def __init__(self, target: Target, config: PoolConfig) -> None:
        PoolAdapter.__init__(self, target, config)
        kwargs = target.driver_kwargs()
        if kwargs.pop("ssl_disabled", False):
            kwargs["ssl_mode"] = "DISABLED"
        self.db = self.database_class()(
            target.database,
            driver="mysqlclient",
            max_connections=config.size,
            timeout=config.checkout_timeout,
            stale_timeout=config.lifetime,
            **kwargs,
        )
        driver = self.db.pool.driver
        driver.connect = self.connects.wrap(driver.connect)

    @staticmethod
    def database_class() -> type[Any]:
        import MySQLdb  # noqa: F401  (skipped when mysqlclient is not installed)

        from flask_peewee_pool import PooledMySQLDatabase

        return PooledMySQLDatabase


class PeeweeAdapter(_PeeweeStyle):
    """playhouse.pool.PooledMySQLDatabase, with a log around the raw ``_connect``.

    The log sits between playhouse's pool and ``MySQLDatabase`` in the class hierarchy
    (where playhouse calls ``super()._connect()``), so the pool's code is untouched.
    """

    name = "peewee"

    def __init__(self, target: Target, config: PoolConfig) -> None:
        super().__init__(target, config)
        self.db.connect_log = self.connects

    @staticmethod
    def database_class() -> type[Any]:
        import peewee
        from playhouse.pool import PooledMySQLDatabase, _PooledMySQLDatabase

        class _LoggedMySQL(peewee.MySQLDatabase):
            connect_log: ConnectLog | None = None

            def _connect(self) -> Any:
                log = self.connect_log
                connect = super()._connect
                return connect() if log is None else log.wrap(connect)()

        class PooledMySQLDatabaseLogged(_PooledMySQLDatabase, _LoggedMySQL):
            pass

        assert PooledMySQLDatabase.__mro__[1] is _PooledMySQLDatabase
        return PooledMySQLDatabaseLogged

    def close(self) -> None:
        self.db.close_all()


class SQLAlchemyAdapter(PoolAdapter):
    """QueuePool(pool_size=N, max_overflow=0, pre_ping=True, recycle=lifetime or -1)."""

    name = "sqlalchemy"

    def __init__(self, target: Target, config: PoolConfig) -> None:
        super().__init__(target, config)
        from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql
        from sqlalchemy.pool import QueuePool

        # Standalone, a 2.x pool needs a dialect for pre_ping (it pings with ping(False)).
        self.pool = QueuePool(
            self.connects.wrap(target.connect),
            pool_size=config.size,
            max_overflow=0,
            timeout=config.checkout_timeout,
            pre_ping=True,
            recycle=-1 if config.lifetime is None else int(config.lifetime),
            dialect=MySQLDialect_pymysql(dbapi=pymysql),
        )

    def unit(self) -> None:
        conn = self.pool.connect()
        try:
            cur = conn.cursor()
            cur.execute(SQL)
            cur.fetchone()
            cur.close()
            self._queried()
        finally:
            conn.close()

    @contextmanager
    def hold(self) -> Iterator[None]:
        conn = self.pool.connect()
        try:
            yield
        finally:
            conn.close()

    def close(self) -> None:
        self.pool.dispose()


class DBUtilsAdapter(PoolAdapter):
    """DBUtils PooledDB(maxconnections=N, maxcached=N, blocking=True, ping=1, reset=True).

    ``ping=1``: ping (``ping(False)``; on failure it silently reconnects) whenever a
    connection is taken from the pool; ``reset=True``: roll back on every return. Both run
    while the pool's one lock is held, as does a connect.  ``blocking=True`` waits for a
    free connection *without any timeout* (PooledDB has none; ``False`` raises at once).
    PooledDB has no age limit (``maxusage`` counts uses): ``lifetime`` is ignored.
    """

    name = "dbutils"
    ping = 1

    def __init__(self, target: Target, config: PoolConfig) -> None:
        super().__init__(target, config)
        from dbutils.pooled_db import PooledDB

        creator = self.connects.wrap(target.connect)
        creator.dbapi = pymysql  # type: ignore[attr-defined]  # errors, threadsafety
        self.pool = PooledDB(
            creator,
            mincached=0,
            maxcached=config.size,
            maxconnections=config.size,
            blocking=True,
            ping=self.ping,
            reset=True,
        )

    def unit(self) -> None:
        conn = self.pool.connection()
        try:
            cur = conn.cursor()
            cur.execute(SQL)
            cur.fetchone()
            cur.close()
            self._queried()
        finally:
            conn.close()

    @contextmanager
    def hold(self) -> Iterator[None]:
        conn = self.pool.connection()
        try:
            yield
        finally:
            conn.close()

    def close(self) -> None:
        self.pool.close()


class DedicatedAdapter(PoolAdapter):
    """No pool: each thread owns a connection; opened before the window when warm."""

    name = "dedicated"

    def __init__(self, target: Target, config: PoolConfig) -> None:
        super().__init__(target, config)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[pymysql.connections.Connection] = []
        self._connect = self.connects.wrap(target.connect)

    def _conn(self) -> pymysql.connections.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:  # cold: the connect is part of the unit, with no pool in the way
            conn = self._local.conn = self._connect()
            with self._lock:
                self._all.append(conn)
        return conn

    def unit(self) -> None:
        with self._conn().cursor() as cur:
            cur.execute(SQL)
            cur.fetchone()
        self._queried()

    def thread_start(self, warm: bool) -> None:
        if warm:
            self._conn()

    def thread_end(self) -> None:
        self._local.conn = None

    def warm(self, n: int, timeout: float = 60.0) -> None:
        """Nothing to share: each worker opens its own in ``thread_start``."""

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except Exception:
                conn._force_close()  # closing sends COM_QUIT; never let it hang the run


class DedicatedPeeweeAdapter(PoolAdapter):
    """No pool, but peewee's query path: a thread-owned connection (peewee's own
    thread-local state, ``connect()`` once per thread) queried with ``execute_sql``.

    The ceiling for a peewee-level pool: ``ours`` minus this is what the pool costs;
    this minus ``dedicated`` is what peewee's query layer costs.
    """

    name = "dedicated-peewee"

    def __init__(self, target: Target, config: PoolConfig) -> None:
        super().__init__(target, config)
        import peewee

        log = self.connects

        class LoggedMySQL(peewee.MySQLDatabase):
            def _connect(self) -> Any:
                return log.wrap(super()._connect)()

        self.db = LoggedMySQL(target.database, **target.driver_kwargs())

    def unit(self) -> None:
        db = self.db
        if db.is_closed():  # cold: the connect is part of the unit
            db.connect()
        db.execute_sql(SQL).fetchone()
        self._queried()

    def thread_start(self, warm: bool) -> None:
        if warm:
            self.db.connect()

    def thread_end(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    def warm(self, n: int, timeout: float = 60.0) -> None:
        """Nothing to share: each worker opens its own in ``thread_start``."""


POOLS: dict[str, type[PoolAdapter]] = {
    cls.name: cls
    for cls in (
        OursAdapter,
        OursMySQLClientAdapter,
        PeeweeAdapter,
        SQLAlchemyAdapter,
        DBUtilsAdapter,
        DedicatedAdapter,
        DedicatedPeeweeAdapter,
    )
}


def availability(name: str) -> str | None:
    """None if the pool's code imports, else why not (so the harness can skip it)."""
    cls = POOLS[name]
    try:
        if issubclass(cls, _PeeweeStyle):
            cls.database_class()
        elif cls is SQLAlchemyAdapter:
            import sqlalchemy.pool  # noqa: F401
        elif cls is DBUtilsAdapter:
            import dbutils.pooled_db  # noqa: F401
    except Exception as exc:  # a half-written module can fail in any way
        return f"{type(exc).__name__}: {exc}"
    return None
