"""Drivers: the only code that talks to a database.

The pool calls a driver for exactly five things (connect, ping, rollback, close, and two
local state checks) and always with no pool lock held. ``is_usable`` and ``needs_rollback``
must not do I/O: they read state the DB-API connection already has (PyMySQL's server status
flags, psycopg's transaction status, sqlite3's ``in_transaction``), so returning a clean
connection costs no round trip.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

RawConnection = Any


@runtime_checkable
class Driver(Protocol):
    """What the pool needs from a database client library."""

    #: Short name of the database kind, e.g. ``"mysql"``; shown in stats and errors.
    kind: str

    def connect(self) -> RawConnection:
        """Open a new connection (network I/O)."""

    def ping(self, raw: RawConnection) -> None:
        """One round trip proving the connection works; raise if it does not.

        Never reconnects: a silently reconnected session has lost its state.
        """

    def is_usable(self, raw: RawConnection) -> bool:
        """False if the connection is known broken or closed (no I/O)."""

    def needs_rollback(self, raw: RawConnection) -> bool:
        """True if a transaction is open or failed on this connection (no I/O)."""

    def rollback(self, raw: RawConnection) -> None:
        """End any open transaction (network I/O)."""

    def close(self, raw: RawConnection) -> None:
        """Close the connection (may do network I/O)."""

    def discard(self, raw: RawConnection) -> None:
        """Forget a connection inherited across ``fork()`` without sending anything on it."""

    def describe(self) -> str:
        """Where this driver connects, for messages: never includes a password."""


def _describe_params(kind: str, params: Mapping[str, Any]) -> str:
    host = params.get("host") or params.get("unix_socket") or "localhost"
    port = params.get("port")
    db = params.get("database") or params.get("db") or params.get("dbname") or ""
    user = params.get("user")
    where = f"{host}:{port}" if port else str(host)
    who = f"{user}@" if user else ""
    return f"{kind}://{who}{where}/{db}"


class PyMySQLDriver:
    """MySQL and MariaDB through PyMySQL.

    PyMySQL builds a fresh ``ssl.SSLContext`` on every connect in its default "SSL
    preferred" mode (loading the CA store: ~20 ms of CPU, more than the connect itself on a
    LAN). When the caller passes no SSL settings, this driver builds that context once and
    reuses it for every connection of the pool.
    """

    kind = "mysql"

    def __init__(self, **connect_params: Any) -> None:
        import pymysql
        from pymysql.constants import SERVER_STATUS

        self._params = dict(connect_params)
        self._params.setdefault("autocommit", True)
        self._in_trans = SERVER_STATUS.SERVER_STATUS_IN_TRANS
        self._connection_class = _shared_ssl_connection_class(pymysql.connections.Connection)

    @property
    def params(self) -> dict[str, Any]:
        return self._params

    def connect(self) -> RawConnection:
        return self._connection_class(**self._params)

    def ping(self, raw: RawConnection) -> None:
        raw.ping(reconnect=False)

    def is_usable(self, raw: RawConnection) -> bool:
        if not raw.open:
            return False
        result = getattr(raw, "_result", None)
        # An unbuffered result left half-read would hand the next user someone else's rows.
        return not (result is not None and getattr(result, "unbuffered_active", False))

    def needs_rollback(self, raw: RawConnection) -> bool:
        status = raw.server_status
        return status is None or bool(status & self._in_trans)

    def rollback(self, raw: RawConnection) -> None:
        raw.rollback()

    def close(self, raw: RawConnection) -> None:
        raw.close()

    def discard(self, raw: RawConnection) -> None:
        # Nothing to do: PyMySQL only closes the socket (no COM_QUIT) when collected, and
        # closing an inherited descriptor leaves the parent's session alone.
        pass

    def describe(self) -> str:
        return _describe_params("mysql", self._params)


def _shared_ssl_connection_class(base: type) -> type:
    """A PyMySQL Connection subclass whose "SSL preferred" context is built once."""
    shared: list[ssl.SSLContext] = []
    build_once = threading.Lock()  # a one-time initialisation guard, not a pool lock

    class PooledPyMySQLConnection(base):  # type: ignore[misc, valid-type]
        def _create_ssl_ctx(self, sslp: Any) -> Any:
            if sslp:  # explicit settings: honour them exactly
                return super()._create_ssl_ctx(sslp)
            if not shared:
                with build_once:
                    if not shared:
                        shared.append(super()._create_ssl_ctx(sslp))
            return shared[0]

    return PooledPyMySQLConnection


class PostgresDriver:
    """PostgreSQL through psycopg 3 (or psycopg2), connections in autocommit mode."""

    kind = "postgresql"

    def __init__(
        self,
        connect: Callable[[], RawConnection] | None = None,
        *,
        description: str = "postgresql://",
        **connect_params: Any,
    ) -> None:
        self._params = connect_params
        self._connect = connect or self._connect_psycopg
        self._description = (
            _describe_params("postgresql", connect_params) if connect is None else description
        )

    def _connect_psycopg(self) -> RawConnection:
        import psycopg

        params = dict(self._params)
        conninfo = params.pop("conninfo", "")
        return psycopg.connect(conninfo, autocommit=True, **params)

    def connect(self) -> RawConnection:
        return self._connect()

    def ping(self, raw: RawConnection) -> None:
        if hasattr(raw, "pgconn"):
            raw.execute("")
        else:  # psycopg2
            with raw.cursor() as cur:
                cur.execute("SELECT 1")

    def is_usable(self, raw: RawConnection) -> bool:
        if raw.closed or getattr(raw, "broken", False):
            return False
        status = _pg_status(raw)
        return status in (0, 2, 3)  # IDLE, INTRANS, INERROR; not ACTIVE (1) or UNKNOWN (4)

    def needs_rollback(self, raw: RawConnection) -> bool:
        return _pg_status(raw) != 0

    def rollback(self, raw: RawConnection) -> None:
        if hasattr(raw, "pgconn"):
            raw.rollback()
        else:  # psycopg2 in autocommit ignores rollback(); send the statement itself
            with raw.cursor() as cur:
                cur.execute("ROLLBACK")

    def close(self, raw: RawConnection) -> None:
        raw.close()

    def discard(self, raw: RawConnection) -> None:
        # psycopg's finalizer would send Terminate on the parent's session: keep it alive.
        _INHERITED.append(raw)

    def describe(self) -> str:
        return self._description


def _pg_status(raw: RawConnection) -> int:
    if hasattr(raw, "pgconn"):
        return int(raw.pgconn.transaction_status)
    return int(raw.get_transaction_status())


class SqliteDriver:
    """SQLite through the standard library; "connect" opens a file, so it is cheap."""

    kind = "sqlite"

    def __init__(
        self, connect: Callable[[], RawConnection] | None = None, *, database: str = ":memory:"
    ) -> None:
        self._database = database
        self._connect = connect or self._connect_sqlite3

    def _connect_sqlite3(self) -> RawConnection:
        import sqlite3

        return sqlite3.connect(self._database, check_same_thread=False, isolation_level=None)

    def connect(self) -> RawConnection:
        return self._connect()

    def ping(self, raw: RawConnection) -> None:
        raw.execute("SELECT 1").fetchone()

    def is_usable(self, raw: RawConnection) -> bool:
        try:
            raw.total_changes  # noqa: B018  raises once the connection is closed
        except Exception:
            return False
        return True

    def needs_rollback(self, raw: RawConnection) -> bool:
        return bool(raw.in_transaction)

    def rollback(self, raw: RawConnection) -> None:
        raw.rollback()

    def close(self, raw: RawConnection) -> None:
        raw.close()

    def discard(self, raw: RawConnection) -> None:
        _INHERITED.append(raw)

    def describe(self) -> str:
        return f"sqlite:///{self._database}"


#: Connections inherited across fork() that must never be finalized in the child.
_INHERITED: list[RawConnection] = []
