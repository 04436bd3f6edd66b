"""The pools under test, each behind the same small interface.

Why an adapter per pool: scenarios only say "do one unit of work from this thread"
and "fill the pool", so adding a pool (DBUtils, ...) means adding one class here and
one line in :data:`POOLS`.  Pools are imported lazily: a pool whose import or
construction fails is skipped with its error, so the harness keeps working while
``flask_peewee_pool`` is under construction.

Units of work (one checkout, one ``SELECT 1``, one checkin):

* peewee-style (``ours``, ``peewee``): ``db.connect(); db.execute_sql(...); db.close()``.
* ``sqlalchemy``: ``pool.connect()``, a cursor, ``close()`` (QueuePool with pre_ping and
  its default reset-on-return rollback: 3 round trips per unit, none under a lock).
* ``dedicated``: ``SELECT 1`` on the thread's own connection, the physical ceiling.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
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
    tls: bool = True  # False passes ssl_disabled=True (PyMySQL defaults to TLS "preferred")
    extra: Mapping[str, Any] = field(default_factory=dict)

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


class PoolAdapter:
    """One pool under test.  ``unit`` is called from many threads at once."""

    name: ClassVar[str]

    def __init__(self, target: Target, size: int, options: Mapping[str, Any]) -> None:
        self.target = target
        self.size = size

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

        threads = [threading.Thread(target=hold_one, daemon=True) for _ in range(n)]
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

    def __init__(self, target: Target, size: int, options: Mapping[str, Any]) -> None:
        super().__init__(target, size, options)
        self.db = self.database_class()(
            target.database,
            max_connections=size,
            timeout=30,
            stale_timeout=None,
            **target.driver_kwargs(),
            **options,
        )

    @staticmethod
    def database_class() -> type[Any]:
        raise NotImplementedError

    def unit(self) -> None:
        db = self.db
        db.connect()
        try:
            db.execute_sql(SQL).fetchone()
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
    name = "ours"

    @staticmethod
    def database_class() -> type[Any]:
        from flask_peewee_pool import PooledMySQLDatabase

        return PooledMySQLDatabase

    def close(self) -> None:
        close_pool = getattr(self.db, "close_pool", None)
        if close_pool is not None:
            close_pool()
        else:
            self.db.close_all()


class PeeweeAdapter(_PeeweeStyle):
    name = "peewee"

    @staticmethod
    def database_class() -> type[Any]:
        from playhouse.pool import PooledMySQLDatabase

        return PooledMySQLDatabase

    def close(self) -> None:
        self.db.close_all()


class SQLAlchemyAdapter(PoolAdapter):
    name = "sqlalchemy"

    def __init__(self, target: Target, size: int, options: Mapping[str, Any]) -> None:
        super().__init__(target, size, options)
        from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql
        from sqlalchemy.pool import QueuePool

        # Standalone, a 2.x pool needs a dialect for pre_ping (it pings with ping(False)).
        self.pool = QueuePool(
            target.connect,
            pool_size=size,
            max_overflow=0,
            timeout=30,
            pre_ping=True,
            recycle=options.get("recycle", -1),
            dialect=MySQLDialect_pymysql(dbapi=pymysql),
        )

    def unit(self) -> None:
        conn = self.pool.connect()
        try:
            cur = conn.cursor()
            cur.execute(SQL)
            cur.fetchone()
            cur.close()
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


class DedicatedAdapter(PoolAdapter):
    """No pool: each thread owns a connection; opened before the window when warm."""

    name = "dedicated"

    def __init__(self, target: Target, size: int, options: Mapping[str, Any]) -> None:
        super().__init__(target, size, options)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[pymysql.connections.Connection] = []

    def _conn(self) -> pymysql.connections.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:  # cold: the connect is part of the unit, with no pool in the way
            conn = self._local.conn = self.target.connect()
            with self._lock:
                self._all.append(conn)
        return conn

    def unit(self) -> None:
        with self._conn().cursor() as cur:
            cur.execute(SQL)
            cur.fetchone()

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


POOLS: dict[str, type[PoolAdapter]] = {
    cls.name: cls for cls in (OursAdapter, PeeweeAdapter, SQLAlchemyAdapter, DedicatedAdapter)
}


def availability(name: str) -> str | None:
    """None if the pool's code imports, else why not (so the harness can skip it)."""
    cls = POOLS[name]
    try:
        if issubclass(cls, _PeeweeStyle):
            cls.database_class()
        elif cls is SQLAlchemyAdapter:
            import sqlalchemy.pool  # noqa: F401
    except Exception as exc:  # a half-written module can fail in any way
        return f"{type(exc).__name__}: {exc}"
    return None
