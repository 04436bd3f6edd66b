"""flask-peewee-pool: a connection pool for peewee and Flask that does not stall.

No network I/O happens under a pool lock, locks are split into segments, connection
lifetimes are jittered and recycled in the background, and pings are skipped for
connections used a moment ago.
"""

from .adapters.wsgi import PoolMiddleware
from .core.errors import (
    CheckinError,
    ConfigError,
    ConnectError,
    HolderError,
    PoolClosed,
    PoolError,
    PoolExhausted,
    PoolTimeout,
)
from .core.options import PoolOptions
from .core.pool import ConnectionPool, PooledConnection
from .core.stats import PoolStats
from .integration.runtime import PoolRuntime
from .orm.database import (
    CheckoutRejected,
    CheckoutTimeout,
    ConnectFailed,
    PooledDatabase,
    PooledMySQLDatabase,
    PooledPostgresqlDatabase,
    PooledSqliteDatabase,
    WrongHolder,
)
from .orm.urls import connect

__all__ = [
    "CheckinError",
    "CheckoutRejected",
    "CheckoutTimeout",
    "ConfigError",
    "ConnectError",
    "ConnectFailed",
    "ConnectionPool",
    "FlaskDB",
    "HolderError",
    "PeeweePool",
    "PoolClosed",
    "PoolError",
    "PoolExhausted",
    "PoolMiddleware",
    "PoolOptions",
    "PoolRuntime",
    "PoolStats",
    "PoolTimeout",
    "PooledConnection",
    "PooledDatabase",
    "PooledMySQLDatabase",
    "PooledPostgresqlDatabase",
    "PooledSqliteDatabase",
    "WrongHolder",
    "connect",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Flask is an optional dependency: import the extension only when it is asked for.
    if name == "PeeweePool":
        from .adapters.flask_ext import PeeweePool

        return PeeweePool
    if name == "FlaskDB":
        from .adapters.flaskdb import FlaskDB

        return FlaskDB
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
