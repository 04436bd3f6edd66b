"""Database helpers shared by the test suite (no pytest imports here).

* :func:`parse_db_url` and friends turn the URLs handed out by the ``mysql_url`` /
  ``postgres_url`` fixtures into keyword arguments for ``pymysql.connect`` /
  ``psycopg.connect`` / peewee.
* :class:`MySQLPoolUser` / :class:`PostgresPoolUser` describe the dedicated database
  account (``fpp_pool``) the pool under test logs in as, and count / kill that
  account's sessions on the server through a separate admin connection.

Nothing in here prints or reprs a password: ``repr()`` of every object masks it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

#: Name of the dedicated account the pool under test connects as.
POOL_USER = "fpp_pool"
#: Its password. Deliberately distinctive: security tests grep logs, reprs and
#: exception messages for it to prove it never leaks.
POOL_PASSWORD = "fpp-S3cr3t-pw-7Q"

MYSQL_SCHEMES = frozenset({"mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql"})
POSTGRES_SCHEMES = frozenset(
    {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2", "postgres+psycopg"}
)
DEFAULT_PORTS = {"mysql": 3306, "postgres": 5432}


class DBUrlError(ValueError):
    pass


@dataclass(frozen=True)
class DBUrl:
    """A parsed ``mysql://`` or ``postgresql://`` URL. ``kind`` is "mysql" or "postgres"."""

    kind: str
    host: str
    port: int
    user: str
    password: str = field(default="", repr=False)
    database: str = ""
    query: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return f"DBUrl({redact_url(self.to_url())!r})"

    def to_url(self) -> str:
        return build_url(self.kind, self.host, self.port, self.user, self.password, self.database)

    def with_(self, **changes: Any) -> DBUrl:
        values = {
            "kind": self.kind,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "query": self.query,
        }
        values.update(changes)
        return DBUrl(**values)


def parse_db_url(url: str) -> DBUrl:
    """Parse ``mysql://user:pass@host:port/db`` or ``postgresql://user@host:port/db``.

    Accepted schemes: mysql, mariadb (optionally ``+pymysql``), postgres, postgresql
    (optionally ``+psycopg``/``+psycopg2``). User, password and database are
    percent-decoded. The port defaults to 3306 / 5432, the host to 127.0.0.1.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in MYSQL_SCHEMES:
        kind = "mysql"
    elif scheme in POSTGRES_SCHEMES:
        kind = "postgres"
    else:
        raise DBUrlError(f"unsupported database URL scheme {parts.scheme!r}")
    try:
        port = parts.port or DEFAULT_PORTS[kind]
    except ValueError as exc:  # port out of range / not a number
        raise DBUrlError(f"invalid port in database URL: {exc}") from None
    return DBUrl(
        kind=kind,
        host=parts.hostname or "127.0.0.1",
        port=port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=unquote(parts.path.lstrip("/")),
        query=tuple(parse_qsl(parts.query)),
    )


def build_url(
    kind: str, host: str, port: int, user: str, password: str = "", database: str = ""
) -> str:
    scheme = {"mysql": "mysql", "postgres": "postgresql"}[kind]
    auth = quote(user, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    netloc_host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{auth}@{netloc_host}:{port}/{quote(database, safe='')}"


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{hostinfo}").geturl()


def _as_dburl(url: str | DBUrl, kind: str) -> DBUrl:
    parsed = parse_db_url(url) if isinstance(url, str) else url
    if parsed.kind != kind:
        raise DBUrlError(f"expected a {kind} URL, got a {parsed.kind} one")
    return parsed


def mysql_connect_kwargs(url: str | DBUrl, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``pymysql.connect(**kwargs)``.

    Query parameters ``unix_socket``, ``charset`` and ``connect_timeout`` are honoured.
    """
    u = _as_dburl(url, "mysql")
    kwargs: dict[str, Any] = {
        "host": u.host,
        "port": u.port,
        "user": u.user,
        "password": u.password,
        "charset": "utf8mb4",
    }
    if u.database:
        kwargs["database"] = u.database
    for key, value in u.query:
        if key == "connect_timeout":
            kwargs[key] = float(value)
        elif key in ("unix_socket", "charset"):
            kwargs[key] = value
    kwargs.update(overrides)
    return kwargs


def postgres_connect_kwargs(url: str | DBUrl, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``psycopg.connect(**kwargs)`` (libpq names: dbname, ...).

    Other query parameters (``sslmode=...``, ...) are passed through to libpq.
    """
    u = _as_dburl(url, "postgres")
    kwargs: dict[str, Any] = {"host": u.host, "port": u.port, "user": u.user}
    if u.password:
        kwargs["password"] = u.password
    if u.database:
        kwargs["dbname"] = u.database
    kwargs.update(dict(u.query))
    kwargs.update(overrides)
    return kwargs


def connect_kwargs(url: str | DBUrl, **overrides: Any) -> dict[str, Any]:
    """Driver kwargs for either kind of URL."""
    u = parse_db_url(url) if isinstance(url, str) else url
    if u.kind == "mysql":
        return mysql_connect_kwargs(u, **overrides)
    return postgres_connect_kwargs(u, **overrides)


def peewee_kwargs(url: str | DBUrl) -> dict[str, Any]:
    """Connection kwargs for peewee, database name excluded.

    ``MySQLDatabase(u.database, **peewee_kwargs(u))``.
    """
    u = parse_db_url(url) if isinstance(url, str) else url
    kwargs: dict[str, Any] = {"host": u.host, "port": u.port, "user": u.user}
    if u.password:
        kwargs["password"] = u.password
    return kwargs


def probe(url: str | DBUrl, timeout: float = 2.0) -> str | None:
    """Try to connect once; ``None`` if the server answered, else a short error text."""
    u = parse_db_url(url) if isinstance(url, str) else url
    try:
        if u.kind == "mysql":
            import pymysql

            conn = pymysql.connect(
                **mysql_connect_kwargs(
                    u, connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout
                )
            )
        else:
            import psycopg

            # libpq rounds connect_timeout below 2 s up to 2 s.
            conn = psycopg.connect(
                **postgres_connect_kwargs(u, connect_timeout=max(2, round(timeout)))
            )
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}".strip()
        if u.password:
            text = text.replace(u.password, "***")
        return text.splitlines()[0] if text else type(exc).__name__
    with contextlib.suppress(Exception):
        conn.close()
    return None


# --------------------------------------------------------------------------------------
# Dedicated pool account
# --------------------------------------------------------------------------------------


class _PoolUserBase:
    """Credentials of the account the pool under test uses, plus server-side inspection.

    Attributes: ``host``, ``port``, ``user``, ``password``, ``database``, ``kind``
    ("mysql"/"postgres") and ``dedicated``: True when the ``fpp_pool`` account was
    created for the test session; False when the admin could not create accounts
    (external server given through ``FPP_*_URL``) and the URL's own credentials are
    used instead. In that fallback, :meth:`server_connections` counts *every*
    session of that user name except the admin connection itself, so other
    connections a test opens with the same credentials are counted (and killed by
    :meth:`kill_all`) too.
    """

    kind = ""

    def __init__(
        self,
        admin_url: str | DBUrl,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        database: str,
        dedicated: bool,
    ) -> None:
        self._admin_url = parse_db_url(admin_url) if isinstance(admin_url, str) else admin_url
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.dedicated = dedicated
        self._admin_conn: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(user={self.user!r}, host={self.host!r}, port={self.port}, "
            f"database={self.database!r}, dedicated={self.dedicated}, password='***')"
        )

    # -- credentials ------------------------------------------------------------------
    @property
    def dburl(self) -> DBUrl:
        return DBUrl(
            kind=self.kind,
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            query=self._admin_url.query,
        )

    @property
    def url(self) -> str:
        """URL with the password in it: ``mysql://fpp_pool:...@127.0.0.1:3306/test``."""
        return self.dburl.to_url()

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
        }

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        return connect_kwargs(self.dburl, **overrides)

    def peewee_kwargs(self) -> dict[str, Any]:
        return peewee_kwargs(self.dburl)

    def connect(self, **overrides: Any) -> Any:
        """A new raw driver connection as the pool user (caller closes it)."""
        raise NotImplementedError

    # -- server-side inspection -----------------------------------------------------------
    def server_connections(self) -> int:
        """Number of server sessions currently logged in as :attr:`user`."""
        return len(self.connection_ids())

    def connection_ids(self) -> list[int]:
        """Server thread ids / backend pids of the sessions logged in as :attr:`user`."""
        raise NotImplementedError

    def kill_all(self) -> int:
        """Kill every session of :attr:`user` on the server; returns how many were hit.

        The sessions disappear asynchronously: follow with ``wait_until(0)``.
        """
        raise NotImplementedError

    def wait_until(
        self, count: int, timeout: float = 10.0, *, interval: float = 0.05, raise_: bool = True
    ) -> int:
        """Poll :meth:`server_connections` until it equals ``count`` (bounded by ``timeout``).

        The server tears sessions down asynchronously (after a client disconnects or
        a KILL), so a short bounded poll is the only way to observe it. Returns the
        last count seen; raises ``AssertionError`` on timeout unless ``raise_=False``.
        """
        deadline = time.monotonic() + timeout
        while True:
            seen = self.server_connections()
            if seen == count:
                return seen
            if time.monotonic() >= deadline:
                if raise_:
                    raise AssertionError(
                        f"{self.kind} sessions of user {self.user!r}: expected {count}, "
                        f"still {seen} after {timeout:.1f}s"
                    )
                return seen
            time.sleep(interval)

    def close(self) -> None:
        with self._lock:
            conn, self._admin_conn = self._admin_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # -- admin connection -------------------------------------------------------------
    def _run_admin(self, fn: Any) -> Any:
        """Run ``fn(cursor)`` on the cached admin connection; reconnect once if it died."""
        with self._lock:
            for attempt in (1, 2):
                if self._admin_conn is None:
                    self._admin_conn = self._open_admin()
                try:
                    with self._admin_conn.cursor() as cur:
                        return fn(cur)
                except self._connection_errors():
                    with contextlib.suppress(Exception):
                        self._admin_conn.close()
                    self._admin_conn = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def _open_admin(self) -> Any:
        raise NotImplementedError

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError


class MySQLPoolUser(_PoolUserBase):
    kind = "mysql"

    def connect(self, **overrides: Any) -> Any:
        import pymysql

        return pymysql.connect(**self.connect_kwargs(**overrides))

    def _open_admin(self) -> Any:
        import pymysql

        return pymysql.connect(
            **mysql_connect_kwargs(self._admin_url, connect_timeout=5, autocommit=True)
        )

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        import pymysql

        return (pymysql.err.OperationalError, pymysql.err.InterfaceError)

    def connection_ids(self) -> list[int]:
        def query(cur: Any) -> list[int]:
            cur.execute(
                "SELECT ID FROM information_schema.PROCESSLIST"
                " WHERE USER = %s AND ID <> CONNECTION_ID() ORDER BY ID",
                (self.user,),
            )
            return [int(row[0]) for row in cur.fetchall()]

        return self._run_admin(query)

    def kill_all(self) -> int:
        import pymysql

        def kill(cur: Any) -> int:
            cur.execute(
                "SELECT ID FROM information_schema.PROCESSLIST"
                " WHERE USER = %s AND ID <> CONNECTION_ID()"
                " AND COALESCE(COMMAND, '') <> 'Killed'",
                (self.user,),
            )
            killed = 0
            for (thread_id,) in cur.fetchall():
                try:
                    cur.execute(f"KILL CONNECTION {int(thread_id)}")
                    killed += 1
                except pymysql.err.InternalError as exc:  # 1094: unknown thread id (gone)
                    if exc.args and exc.args[0] != 1094:
                        raise
                except pymysql.err.OperationalError as exc:
                    if exc.args and exc.args[0] != 1094:
                        raise
            return killed

        return self._run_admin(kill)


class PostgresPoolUser(_PoolUserBase):
    kind = "postgres"

    def connect(self, **overrides: Any) -> Any:
        import psycopg

        return psycopg.connect(**self.connect_kwargs(**overrides))

    def _open_admin(self) -> Any:
        import psycopg

        return psycopg.connect(
            **postgres_connect_kwargs(self._admin_url, connect_timeout=5), autocommit=True
        )

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.OperationalError, psycopg.InterfaceError)

    def connection_ids(self) -> list[int]:
        def query(cur: Any) -> list[int]:
            cur.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE usename = %s AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend' ORDER BY pid",
                (self.user,),
            )
            return [int(row[0]) for row in cur.fetchall()]

        return self._run_admin(query)

    def kill_all(self) -> int:
        def kill(cur: Any) -> int:
            cur.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE usename = %s AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'",
                (self.user,),
            )
            row = cur.fetchone()
            return int(row[0]) if row else 0

        return self._run_admin(kill)


# --------------------------------------------------------------------------------------
# Account provisioning (called from tests/conftest.py)
# --------------------------------------------------------------------------------------


def setup_mysql_pool_user(
    admin_url: str, user: str = POOL_USER, password: str = POOL_PASSWORD
) -> MySQLPoolUser:
    """Create/refresh the dedicated MariaDB/MySQL account; fall back to the admin's own.

    Creates ``user``@'%', @'localhost' and @'127.0.0.1' with ``password`` and grants
    ALL on the URL's database and on every ``fpp\\_%`` database.
    """
    import pymysql

    admin = parse_db_url(admin_url)
    database = admin.database or "test"
    conn = pymysql.connect(**mysql_connect_kwargs(admin, connect_timeout=5, autocommit=True))
    # PyMySQL interpolates client-side with %-formatting: literal % must be doubled.
    db_ident = "`" + database.replace("`", "``").replace("%", "%%") + "`"
    try:
        with conn.cursor() as cur:
            for host in ("%", "localhost", "127.0.0.1"):
                cur.execute(
                    "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password)
                )
                # The account may predate this run with another password.
                cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
                cur.execute(f"GRANT ALL PRIVILEGES ON {db_ident}.* TO %s@%s", (user, host))
                cur.execute("GRANT ALL PRIVILEGES ON `fpp\\_%%`.* TO %s@%s", (user, host))
    except pymysql.MySQLError:
        # No CREATE USER / GRANT OPTION privilege (e.g. an external server given via
        # FPP_MYSQL_URL): use the URL's own credentials and count sessions by that name.
        return MySQLPoolUser(
            admin,
            host=admin.host,
            port=admin.port,
            user=admin.user,
            password=admin.password,
            database=database,
            dedicated=False,
        )
    finally:
        conn.close()
    return MySQLPoolUser(
        admin,
        host=admin.host,
        port=admin.port,
        user=user,
        password=password,
        database=database,
        dedicated=True,
    )


def setup_postgres_pool_user(
    admin_url: str, user: str = POOL_USER, password: str = POOL_PASSWORD
) -> PostgresPoolUser:
    """Create/refresh the dedicated PostgreSQL role; fall back to the admin's own.

    ``CREATE ROLE user LOGIN PASSWORD ...`` (or ALTER if it exists), then
    ``GRANT CONNECT, CREATE, TEMPORARY ON DATABASE <db>`` and ``GRANT ALL ON SCHEMA public``.
    """
    import psycopg
    from psycopg import sql

    admin = parse_db_url(admin_url)
    database = admin.database or "postgres"
    conn = psycopg.connect(**postgres_connect_kwargs(admin, connect_timeout=5), autocommit=True)
    try:
        with conn.cursor() as cur:
            role = sql.Identifier(user)
            pw = sql.Literal(password)
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
            if cur.fetchone() is None:
                # DuplicateObject: created concurrently by another session.
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, pw))
            cur.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(role, pw))
            cur.execute(
                sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(
                    sql.Identifier(database), role
                )
            )
            cur.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(role))
    except psycopg.Error:
        # No CREATEROLE / not the owner (external server via FPP_POSTGRES_URL).
        return PostgresPoolUser(
            admin,
            host=admin.host,
            port=admin.port,
            user=admin.user,
            password=admin.password,
            database=database,
            dedicated=False,
        )
    finally:
        conn.close()
    return PostgresPoolUser(
        admin,
        host=admin.host,
        port=admin.port,
        user=user,
        password=password,
        database=database,
        dedicated=True,
    )
