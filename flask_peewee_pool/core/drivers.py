"""Drivers: the only code that talks to a database.

The pool calls a driver for exactly five things (connect, ping, rollback, close, and two
local state checks) and always with no pool lock held. ``is_usable`` and ``needs_rollback``
must not do I/O: they read state the DB-API connection already has (PyMySQL's server status
flags, psycopg's transaction status, sqlite3's ``in_transaction``), so returning a clean
connection costs no round trip.

Who owns a server connection (its label), which external pooler fronts the database and
rotating credentials live in :mod:`.attribution`, :mod:`.poolers` and :mod:`.credentials`;
the drivers call them at each connect.
"""

from __future__ import annotations

import contextlib
import select
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from .attribution import connection_label
from .credentials import check_credentials, resolve_credentials, static_params
from .errors import ConfigError
from .poolers import normalize_external_pooler

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

    # Optional: ``has_input(raw) -> bool``: True if the server sent something (data or EOF)
    # to an idle connection: a KILL, a restart, wait_timeout, a proxy's reset. A
    # zero-timeout poll of the socket, no round trip; the pool then pings before use.
    # Optional: ``checkin_status(raw) -> int``: CLEAN, DIRTY or BROKEN, the answers of
    # ``is_usable`` and ``needs_rollback`` in one call (see checkin_status_of).
    # Optional: ``connect(timeout=None)`` and ``ping(raw, timeout=None)`` bounding their
    # network waits, so that a checkout never outlives its own ``timeout``.


#: What a driver's optional ``checkin_status(raw)`` answers about a returned connection:
#: reusable as it is, reusable after a rollback, or known broken (to be closed). No I/O.
CLEAN, DIRTY, BROKEN = 0, 1, 2


def checkin_status_of(driver: Driver) -> Callable[[RawConnection], int]:
    """``driver.checkin_status`` if it has one (one call at every checkin instead of two),
    else the same answer from ``is_usable`` and ``needs_rollback`` (looked up at each call,
    so a driver patched later is honoured)."""
    own = getattr(driver, "checkin_status", None)
    if own is not None:  # a staticmethod where it can be: no shared object to read
        return own  # type: ignore[no-any-return]

    def checkin_status(raw: RawConnection) -> int:
        if not driver.is_usable(raw):
            return BROKEN
        return DIRTY if driver.needs_rollback(raw) else CLEAN

    return checkin_status


def socket_has_input(sock: Any) -> bool:
    """True if ``sock`` (a socket or a file descriptor) is readable right now.

    An idle connection has nothing to read: data or EOF waiting there means the server
    ended the session or the protocol is out of sync. A zero-timeout ``poll``: one system
    call, no round trip. An error counts as "has input" (the ping then decides).
    """
    try:
        if getattr(sock, "pending", None) is not None and sock.pending():  # TLS buffer
            return True
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError, TypeError):
        return True


def _bound(configured: Any, limit: float | None) -> float:
    """The smaller of a configured timeout (None/0: PyMySQL's default, 10 s) and ``limit``."""
    value = float(configured) if configured else 10.0
    return value if limit is None else max(0.001, min(value, limit))


@contextlib.contextmanager
def _io_timeout(raw: Any, seconds: float) -> Iterator[None]:
    """Bound PyMySQL's reads and writes on ``raw`` to ``seconds`` for a while (PyMySQL
    applies ``_read_timeout`` / ``_write_timeout`` lazily, at the next read or write)."""
    saved = raw._read_timeout, raw._write_timeout
    raw._read_timeout = seconds if saved[0] is None else min(saved[0], seconds)
    raw._write_timeout = seconds if saved[1] is None else min(saved[1], seconds)
    try:
        yield
    finally:
        raw._read_timeout, raw._write_timeout = saved


def _describe_params(kind: str, params: Mapping[str, Any]) -> str:
    host = params.get("host") or params.get("unix_socket") or "localhost"
    port = params.get("port")
    db = params.get("database") or params.get("db") or params.get("dbname") or ""
    user = params.get("user")
    where = f"{host}:{port}" if port else str(host)
    who = f"{user}@" if user else ""
    return f"{kind}://{who}{where}/{db}"


def _pymysql_checkin_status(in_trans: int, autocommit_flag: int,
                            autocommit: bool) -> Callable[[RawConnection], int]:
    """A PyMySQL connection's CLEAN / DIRTY / BROKEN, as a closure over the driver's flags
    (the pool calls it at every checkin without reading the driver object)."""

    def checkin_status(raw: RawConnection) -> int:
        if not raw.open:
            return BROKEN
        result = getattr(raw, "_result", None)
        # An unbuffered result left half-read would hand the next user someone else's rows.
        if result is not None and getattr(result, "unbuffered_active", False):
            return BROKEN
        status = raw.server_status
        if status is None or status & in_trans:
            return DIRTY
        # Autocommit switched off by the borrower (SET autocommit=0, conn.autocommit(False)):
        # handed on like that, the next borrower's writes would be rolled back at checkin.
        return DIRTY if autocommit and not status & autocommit_flag else CLEAN

    return checkin_status


class PyMySQLDriver:
    """MySQL and MariaDB through PyMySQL.

    PyMySQL builds a fresh ``ssl.SSLContext`` on every connect in its default "SSL
    preferred" mode (loading the CA store: ~20 ms of CPU, more than the connect itself on a
    LAN). When the caller passes no SSL settings, this driver builds that context once and
    reuses it for every connection of the pool.
    """

    kind = "mysql"

    def __init__(self, *, application_name: str | None = None,
                 external_pooler: str | None = None, **connect_params: Any) -> None:
        import pymysql
        from pymysql.constants import SERVER_STATUS

        check_credentials(connect_params)
        self._params = dict(connect_params)
        self._params.setdefault("autocommit", True)
        self._in_trans = SERVER_STATUS.SERVER_STATUS_IN_TRANS
        self._autocommit_flag = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
        self._autocommit = bool(self._params["autocommit"])
        #: is_usable and needs_rollback in one call (see _pymysql_checkin_status).
        self.checkin_status = _pymysql_checkin_status(
            self._in_trans, self._autocommit_flag, self._autocommit)
        self._connection_class = _shared_ssl_connection_class(pymysql.connections.Connection)
        try:  # PyMySQL validates its arguments in __init__; defer_connect: no I/O
            self._connection_class(**static_params(self._params), defer_connect=True)
        except (TypeError, ValueError, LookupError, AttributeError, OSError) as exc:
            raise ConfigError("connect_args", f"PyMySQL rejects them: {exc}") from None
        #: Name part of the ``program_name`` label; None or "" sends none. An explicit
        #: ``program_name`` connect parameter is sent as given instead.
        self.application_name = application_name or None
        self.external_pooler = normalize_external_pooler(external_pooler, kind=self.kind)

    @property
    def params(self) -> dict[str, Any]:
        return self._params

    def connect_params(self) -> dict[str, Any]:
        """The parameters of the next connect (the label carries the current pid; callable
        credentials are called now)."""
        params = resolve_credentials(self._params)
        if self.application_name and not params.get("program_name"):
            params["program_name"] = connection_label(self.application_name)
        return params

    def connect(self, timeout: float | None = None) -> RawConnection:
        # PyMySQL's connect sends SET NAMES, then SET sql_mode / init_command if given, then
        # SET AUTOCOMMIT only if the server's default differs: nothing ProxySQL cannot track.
        params = self.connect_params()
        if timeout is not None:  # what is left of a checkout's timeout
            params = {**params,
                      "connect_timeout": _bound(params.get("connect_timeout"), timeout)}
        return self._connection_class(**params)

    def ping(self, raw: RawConnection, timeout: float | None = None) -> None:
        # A health check must not wait for ever: PyMySQL reads the reply with read_timeout
        # (None by default). Bounded by connect_timeout, and by what is left of a checkout.
        with _io_timeout(raw, _bound(self._params.get("connect_timeout"), timeout)):
            raw.ping(reconnect=False)

    def has_input(self, raw: RawConnection) -> bool:
        sock = getattr(raw, "_sock", None)
        return sock is None or socket_has_input(sock)

    def is_usable(self, raw: RawConnection) -> bool:
        return self.checkin_status(raw) != BROKEN

    def needs_rollback(self, raw: RawConnection) -> bool:
        return self.checkin_status(raw) == DIRTY

    def rollback(self, raw: RawConnection) -> None:
        raw.rollback()
        if self._autocommit and not raw.server_status & self._autocommit_flag:
            raw.autocommit(True)

    def close(self, raw: RawConnection) -> None:
        raw.close()

    def discard(self, raw: RawConnection) -> None:
        # Nothing to do: PyMySQL only closes the socket (no COM_QUIT) when collected, and
        # closing an inherited descriptor leaves the parent's session alone.
        pass

    def describe(self) -> str:
        return _describe_params("mysql", self._params)


class MySQLClientDriver:
    """MySQL and MariaDB through mysqlclient (``MySQLdb``, the C driver).

    mysqlclient exposes no transaction status, so the driver tracks it from the statements
    that pass through ``Connection.query()``, which every cursor uses: ``BEGIN``, ``START
    TRANSACTION`` and ``XA`` open one, ``COMMIT`` and ``ROLLBACK`` end it, and with
    autocommit off every statement may have opened one. Unsure cases (``SET autocommit``)
    count as open: the price of a wrong guess is one unneeded ``ROLLBACK`` at checkin, never
    a dirty connection handed out. ``ping()`` never reconnects (mysqlclient >= 2.2 default).
    mysqlclient sends no connection attributes, so there is no ``program_name`` label.
    """

    kind = "mysql"

    def __init__(self, *, application_name: str | None = None,
                 external_pooler: str | None = None, **connect_params: Any) -> None:
        import MySQLdb.connections

        check_credentials(connect_params)
        params = dict(connect_params)
        params.pop("program_name", None)  # PyMySQL-only
        params.setdefault("autocommit", True)
        self._params = params
        self._autocommit = bool(params["autocommit"])
        self._connection_class = _transaction_tracking_class(MySQLdb.connections.Connection)
        self.application_name = None  # no connection attributes in mysqlclient
        self.external_pooler = normalize_external_pooler(external_pooler, kind=self.kind)

    @property
    def params(self) -> dict[str, Any]:
        return self._params

    def connect(self) -> RawConnection:
        return self._connection_class(**resolve_credentials(self._params))

    def ping(self, raw: RawConnection) -> None:
        raw.ping()

    def has_input(self, raw: RawConnection) -> bool:
        try:
            fd = raw.fileno()
        except Exception:
            return True
        return socket_has_input(fd)

    def is_usable(self, raw: RawConnection) -> bool:
        return bool(raw.open)

    def needs_rollback(self, raw: RawConnection) -> bool:
        return bool(raw.fpp_in_transaction) or (
            self._autocommit and not raw.get_autocommit())

    def rollback(self, raw: RawConnection) -> None:
        raw.rollback()
        if self._autocommit and not raw.get_autocommit():  # switched off by the borrower
            raw.autocommit(True)

    def close(self, raw: RawConnection) -> None:
        raw.close()

    def discard(self, raw: RawConnection) -> None:
        # The C object's finalizer would send COM_QUIT on the parent's session: keep it.
        _INHERITED.append(raw)

    def describe(self) -> str:
        return _describe_params("mysql+mysqlclient", self._params)


_TRANSACTION_OPENERS = (b"BEGIN", b"START", b"XA")
_TRANSACTION_ENDERS = (b"COMMIT", b"ROLLBACK")


def _transaction_tracking_class(base: type) -> type:
    """A MySQLdb Connection subclass that knows whether a transaction may be open."""

    class TrackedMySQLdbConnection(base):  # type: ignore[misc, valid-type]
        fpp_in_transaction = False

        def query(self, query: Any) -> Any:
            head = bytes(query[:40]) if not isinstance(query, str) else query[:40].encode()
            words = head.upper().split(None, 2)
            verb = words[0] if words else b""
            if verb.startswith(_TRANSACTION_OPENERS) or (
                    verb == b"SET" and b"AUTOCOMMIT" in head.upper()):
                self.fpp_in_transaction = True
            elif verb.startswith(_TRANSACTION_ENDERS) and b" TO " not in head.upper():
                self.fpp_in_transaction = False
            return super().query(query)

        def commit(self) -> None:
            super().commit()
            self.fpp_in_transaction = False

        def rollback(self) -> None:
            super().rollback()
            self.fpp_in_transaction = False

    return TrackedMySQLdbConnection


def _shared_ssl_connection_class(base: type) -> type:
    """A PyMySQL Connection subclass whose "SSL preferred" context is built once."""
    shared: list[ssl.SSLContext] = []
    build_once = threading.Lock()  # a one-time initialisation guard, not a pool lock

    class PooledPyMySQLConnection(base):  # type: ignore[misc, valid-type]
        def connect(self, sock: Any = None) -> None:
            # PyMySQL bounds only the TCP connect by connect_timeout and reads the server's
            # greeting and the authentication with read_timeout (None: for ever): a server,
            # proxy or load balancer that accepts and never answers would hold the caller for
            # good. Bound the whole handshake by connect_timeout too.
            configured = self._read_timeout
            limit = self.connect_timeout
            if limit and (configured is None or configured > limit):
                self._read_timeout = limit
            try:
                super().connect(sock)
            finally:
                self._read_timeout = configured

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
    """PostgreSQL through psycopg 3 (or psycopg2), connections in autocommit mode.

    ``connect``, when given, opens a connection with extra libpq/psycopg parameters passed
    as keyword arguments (``application_name``, ``prepare_threshold``); without it the
    driver calls ``psycopg.connect`` with ``connect_params`` itself. ``psycopg3`` says
    whether that callable uses psycopg 3 (only it knows ``prepare_threshold``).
    """

    kind = "postgresql"

    def __init__(
        self,
        connect: Callable[..., RawConnection] | None = None,
        *,
        description: str = "postgresql://",
        application_name: str | None = None,
        external_pooler: str | None = None,
        psycopg3: bool = True,
        **connect_params: Any,
    ) -> None:
        check_credentials(connect_params)
        self._params = connect_params
        self._connect = connect or self._connect_psycopg
        self._description = (
            _describe_params("postgresql", static_params(connect_params))
            if connect is None else description
        )
        self.application_name = application_name or None
        self.external_pooler = normalize_external_pooler(external_pooler, kind=self.kind)
        self._psycopg3 = psycopg3

    def _connect_psycopg(self, **extra: Any) -> RawConnection:
        import psycopg

        # What the caller set explicitly wins; callable credentials are called now.
        params = resolve_credentials({**extra, **self._params})
        conninfo = params.pop("conninfo", "")
        return psycopg.connect(conninfo, autocommit=True, **params)

    def session_params(self) -> dict[str, Any]:
        """What this driver adds to every connect: the label, and with PgBouncer no
        server-side prepared statements. Defaults: a parameter the caller set explicitly
        (in ``connect_params`` or the ``connect`` callable's own) is sent as given."""
        extra: dict[str, Any] = {}
        if self.application_name:
            extra["application_name"] = connection_label(self.application_name)
        if self.external_pooler == "pgbouncer" and self._psycopg3:
            extra["prepare_threshold"] = None
        return extra

    def connect(self) -> RawConnection:
        return self._connect(**self.session_params())

    def ping(self, raw: RawConnection) -> None:
        if hasattr(raw, "pgconn"):
            raw.execute("")
        else:  # psycopg2
            with raw.cursor() as cur:
                cur.execute("SELECT 1")

    def has_input(self, raw: RawConnection) -> bool:
        try:
            fd = raw.pgconn.socket if hasattr(raw, "pgconn") else raw.fileno()
        except Exception:
            return True
        return socket_has_input(fd)

    def is_usable(self, raw: RawConnection) -> bool:
        if raw.closed or getattr(raw, "broken", False):
            return False
        status = _pg_status(raw)
        return status in (0, 2, 3)  # IDLE, INTRANS, INERROR; not ACTIVE (1) or UNKNOWN (4)

    def needs_rollback(self, raw: RawConnection) -> bool:
        # Autocommit switched off by the borrower counts too: handed on like that, the next
        # borrower's writes would be rolled back at its checkin.
        return _pg_status(raw) != 0 or not raw.autocommit

    @staticmethod
    def checkin_status(raw: RawConnection) -> int:
        if raw.closed or getattr(raw, "broken", False):
            return BROKEN
        status = _pg_status(raw)  # read once for both answers
        if status not in (0, 2, 3):
            return BROKEN
        return DIRTY if status != 0 or not raw.autocommit else CLEAN

    def rollback(self, raw: RawConnection) -> None:
        if not raw.autocommit:
            raw.rollback()
            raw.autocommit = True
        elif hasattr(raw, "pgconn"):
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

    @staticmethod
    def checkin_status(raw: RawConnection) -> int:
        try:
            in_transaction = raw.in_transaction  # raises once the connection is closed
        except Exception:
            return BROKEN
        return DIRTY if in_transaction else CLEAN

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
