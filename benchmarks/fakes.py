"""S1: each pool's own bookkeeping, with a fake zero-latency driver (no proxy, no server).

What is measured is checkout + checkin per second, nothing else: the "connection" is an
object whose ``ping``, ``rollback`` and ``close`` return at once.  Each pool runs its real
code path for MySQL/PyMySQL, so every call it would make on a real connection is made
here too, only free:

* ``ours-pool``: ``ConnectionPool.checkout()`` / ``checkin()`` with a fake Driver (the
  pool alone, no peewee).
* ``ours``: ``db.connect(); db.close()`` on ``flask_peewee_pool.orm.database.PooledDatabase``
  + ``peewee.Database`` whose ``_make_driver`` returns the fake driver.  At checkin it
  asks the driver ``is_usable`` / ``needs_rollback`` (local state, no round trip) and
  pings only a connection idle >= ``ping_after`` (1 s): in a busy loop, never.
* ``peewee``: ``db.connect(); db.close()`` on ``playhouse.pool._PooledMySQLDatabase`` +
  ``peewee.Database`` with ``_connect`` returning the fake connection: playhouse's MySQL
  class itself, so ``_is_closed`` calls ``ping(False)`` on every checkout and
  ``_can_reuse`` calls ``rollback()`` on every checkin (PyMySQL has no
  ``in_transaction``), both free here.
* ``sqlalchemy``: ``QueuePool(pre_ping=True)`` ``connect()`` / ``close()``; the fake
  dialect's ping returns True and its reset-on-return rollback is free.
* ``dbutils``: ``PooledDB(ping=1, reset=True)`` ``connection()`` / ``close()``: ping on
  every checkout, rollback on every return, free.

Same thread counts, same pool size, same loop (``runner.run_workers``) for all.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, ClassVar


class FakeConnection:
    """A DB-API connection that answers everything at once."""

    open = True
    server_status = 2  # SERVER_STATUS_AUTOCOMMIT, not in a transaction
    _result = None

    def ping(self, reconnect: bool = True) -> None:
        return None

    def rollback(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def close(self) -> None:
        self.open = False

    def cursor(self) -> Any:
        raise NotImplementedError("S1 runs no queries")


class FakeDriver:
    """A :class:`flask_peewee_pool.core.drivers.Driver` over :class:`FakeConnection`."""

    kind = "fake"

    def connect(self) -> FakeConnection:
        return FakeConnection()

    def ping(self, raw: FakeConnection) -> None:
        raw.ping(False)

    def is_usable(self, raw: FakeConnection) -> bool:
        return raw.open

    def needs_rollback(self, raw: FakeConnection) -> bool:
        return False

    @staticmethod
    def checkin_status(raw: FakeConnection) -> int:
        # Both answers in one call, as PyMySQLDriver gives them (a function, no driver
        # object read): BROKEN (2) when closed, else CLEAN (0).
        return 0 if raw.open else 2

    def rollback(self, raw: FakeConnection) -> None:
        raw.rollback()

    def close(self, raw: FakeConnection) -> None:
        raw.close()

    def discard(self, raw: FakeConnection) -> None:
        pass

    def describe(self) -> str:
        return "fake://"


class FakeAdapter:
    """The :mod:`benchmarks.runner` interface (unit/thread_start/thread_end/close)."""

    name: ClassVar[str]

    def __init__(self, size: int) -> None:
        self.size = size

    @property
    def unit(self) -> Callable[[], None]:
        """One unit of work as a function of the calling thread's own (the runner reads it
        once per thread): the threads share the pool or the database, as an application's
        threads share its module's ``db``, and nothing of the harness. On free-threaded
        CPython a shared adapter read at every unit is a contended reference count,
        measured as if it were the pool's."""
        return self.thread_unit()

    def thread_unit(self) -> Callable[[], None]:
        raise NotImplementedError

    def thread_start(self, warm: bool) -> None:
        pass

    def thread_end(self) -> None:
        pass

    def warm(self, n: int) -> None:
        """Open ``n`` connections (all pools here open on demand)."""

    def close(self) -> None:
        pass


class DedicatedFake(FakeAdapter):
    """The ceiling: each thread keeps a connection of its own (no pool) and a unit pings
    it. Nothing is shared between the threads: on free-threaded CPython its speed-up is
    what the machine gives two threads at that moment, the control for every pool's
    figure in the same run."""

    name = "dedicated"

    def thread_unit(self) -> Callable[[], None]:
        conn = FakeConnection()

        def unit() -> None:
            conn.ping()

        return unit


class _DatabaseFake(FakeAdapter):
    """A pool behind a peewee database (``self.db``): a unit is what an application's
    request does, ``db.connect(); db.close()``."""

    db: Any

    def thread_unit(self) -> Callable[[], None]:
        db = self.db

        def unit() -> None:
            db.connect()
            db.close()

        return unit


class OursPoolFake(FakeAdapter):
    name = "ours-pool"

    def __init__(self, size: int) -> None:
        super().__init__(size)
        from flask_peewee_pool.core.pool import ConnectionPool

        self.pool = ConnectionPool(FakeDriver(), max_connections=size, max_lifetime=None)

    def thread_unit(self) -> Callable[[], None]:
        pool = self.pool

        def unit() -> None:
            pool.checkin(pool.checkout())

        return unit

    def close(self) -> None:
        self.pool.close()


class OursPeeweeFake(_DatabaseFake):
    name = "ours"

    def __init__(self, size: int) -> None:
        super().__init__(size)
        import peewee

        from flask_peewee_pool.orm.database import PooledDatabase

        class FakePooledDatabase(PooledDatabase, peewee.Database):
            def _make_driver(self) -> FakeDriver:
                return FakeDriver()

        self.db = FakePooledDatabase("fake", max_connections=size, stale_timeout=None)

    def close(self) -> None:
        self.db.close_pool()


class PeeweeFake(_DatabaseFake):
    name = "peewee"

    def __init__(self, size: int) -> None:
        super().__init__(size)
        import peewee
        from playhouse.pool import _PooledMySQLDatabase

        class FakeDatabase(peewee.Database):
            def _connect(self) -> FakeConnection:
                return FakeConnection()

        class FakePooledMySQL(_PooledMySQLDatabase, FakeDatabase):
            pass

        self.db = FakePooledMySQL("fake", max_connections=size, timeout=30)

    def close(self) -> None:
        self.db.close_all()


class SQLAlchemyFake(FakeAdapter):
    name = "sqlalchemy"

    def __init__(self, size: int) -> None:
        super().__init__(size)
        from sqlalchemy.pool import QueuePool
        from sqlalchemy.pool.base import _ConnDialect

        class PingDialect(_ConnDialect):
            def _do_ping_w_event(self, dbapi_connection: Any) -> bool:
                return True  # MySQLDialect_pymysql would call ping(False): free here

        self.pool = QueuePool(
            FakeConnection,
            pool_size=size,
            max_overflow=0,
            timeout=30,
            pre_ping=True,
            dialect=PingDialect(),
        )

    def thread_unit(self) -> Callable[[], None]:
        pool = self.pool

        def unit() -> None:
            pool.connect().close()

        return unit

    def close(self) -> None:
        self.pool.dispose()


class DBUtilsFake(FakeAdapter):
    name = "dbutils"

    def __init__(self, size: int) -> None:
        super().__init__(size)
        from dbutils.pooled_db import PooledDB

        module = types.SimpleNamespace(
            connect=FakeConnection,
            threadsafety=1,
            OperationalError=OSError,
            InterfaceError=OSError,
            InternalError=OSError,
        )
        self.pool = PooledDB(
            module, maxcached=size, maxconnections=size, blocking=True, ping=1, reset=True
        )

    def thread_unit(self) -> Callable[[], None]:
        pool = self.pool

        def unit() -> None:
            pool.connection().close()

        return unit

    def close(self) -> None:
        self.pool.close()


#: S1 variants per pool name of :data:`benchmarks.pools.POOLS` (dedicated has none).
FAKES: dict[str, tuple[type[FakeAdapter], ...]] = {
    "ours": (OursPoolFake, OursPeeweeFake),
    "peewee": (PeeweeFake,),
    "sqlalchemy": (SQLAlchemyFake,),
    "dbutils": (DBUtilsFake,),
}
