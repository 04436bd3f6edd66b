"""Suite-wide fixtures: where the databases are, and the dedicated pool account.

Database discovery (``mysql_url`` / ``postgres_url``, session scope), first match wins:

1. ``FPP_MYSQL_URL`` / ``FPP_POSTGRES_URL`` (e.g. ``mysql://root:pw@db:3306/test``,
   ``postgresql://postgres@db:5432/test``). If set but not answering, no fallback.
2. A local server on 127.0.0.1:3306 / :5432 (root / postgres, no password), probed
   with a 2 s connect timeout. Database ``test`` is created if missing.
3. A throw-away container (``mariadb:10.11`` / ``postgres:15``) via testcontainers,
   if a Docker engine answers.
4. Otherwise the test is skipped, or fails when ``FPP_REQUIRE_DB=1`` (CI).

With ``FPP_REQUIRE_DB=1`` the session also fails if any test marked ``mysql`` or
``postgres`` ended up skipped for whatever reason: CI is never green without the
databases. Tests using these fixtures get the marker automatically.

``mysql_pool_user`` / ``postgres_pool_user`` (session) create the ``fpp_pool``
account (password :data:`dbutil.POOL_PASSWORD`) and count its server sessions; see
:class:`dbutil.MySQLPoolUser`. If the admin may not create accounts (external
server), they fall back to the URL's own credentials (``.dedicated`` is False) and
count sessions by that user name instead. ``FPP_POOL_USER`` overrides the name.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import dbutil

DB_MARKERS = ("mysql", "postgres")
# Fixtures that imply a database marker (closure names, so indirect use counts too).
_FIXTURE_MARKERS = {"mysql_url": "mysql", "postgres_url": "postgres"}
_SKIPPED_DB_TESTS = pytest.StashKey[list[tuple[str, str]]]()

HOW_TO = {
    "mysql": (
        "set FPP_MYSQL_URL=mysql://user:pass@host:3306/test, or start a local MariaDB/MySQL "
        "on 127.0.0.1:3306 (root, no password), or run a Docker engine (testcontainers "
        "starts mariadb:10.11)"
    ),
    "postgres": (
        "set FPP_POSTGRES_URL=postgresql://user@host:5432/test, or start a local PostgreSQL "
        "on 127.0.0.1:5432 (user postgres, trust auth), or run a Docker engine "
        "(testcontainers starts postgres:15)"
    ),
}
ENV_VARS = {"mysql": "FPP_MYSQL_URL", "postgres": "FPP_POSTGRES_URL"}


def require_db() -> bool:
    return os.environ.get("FPP_REQUIRE_DB", "").strip().lower() in ("1", "true", "yes", "on")


def _no_database(kind: str, reasons: list[str]) -> None:
    msg = f"no {kind} database available ({'; '.join(reasons)}). To provide one: {HOW_TO[kind]}."
    if require_db():
        pytest.fail(f"FPP_REQUIRE_DB=1: {msg}", pytrace=False)
    pytest.skip(msg)


# ----------------------------------------------------------------------------------------
# Hooks: auto-markers and "no skipped database tests under FPP_REQUIRE_DB=1"
# ----------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SKIPPED_DB_TESTS] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixturenames = getattr(item, "fixturenames", ())
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in fixturenames and item.get_closest_marker(marker) is None:
                item.add_marker(marker)
        kinds = [m for m in DB_MARKERS if item.get_closest_marker(m) is not None]
        if kinds:
            # Lets .ci/run cross-check the JUnit XML independently of this hook.
            item.user_properties.append(("fpp_db", ",".join(kinds)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and any(item.get_closest_marker(m) is not None for m in DB_MARKERS)
    ):
        reason = ""
        if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
            reason = str(report.longrepr[2])
        item.config.stash[_SKIPPED_DB_TESTS].append((item.nodeid, reason))
    return report


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    skipped = session.config.stash.get(_SKIPPED_DB_TESTS, [])
    if (
        require_db()
        and skipped
        and session.exitstatus
        in (
            pytest.ExitCode.OK,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        )
    ):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    skipped = config.stash.get(_SKIPPED_DB_TESTS, [])
    if not (require_db() and skipped):
        return
    tr = terminalreporter
    tr.section("FPP_REQUIRE_DB=1: database tests were skipped", sep="=", red=True, bold=True)
    for nodeid, reason in skipped[:20]:
        tr.line(f"SKIPPED {nodeid}: {reason}", red=True)
    if len(skipped) > 20:
        tr.line(f"... and {len(skipped) - 20} more", red=True)
    tr.line(
        f"{len(skipped)} test(s) marked mysql/postgres were skipped; the session fails so CI "
        "is never green without its databases.",
        red=True,
        bold=True,
    )


# ----------------------------------------------------------------------------------------
# Discovery
# ----------------------------------------------------------------------------------------


def _docker_available() -> str | None:
    """None if a Docker engine answers, else why not."""
    try:
        from testcontainers.core.docker_client import DockerClient
    except Exception as exc:
        return f"testcontainers not importable: {exc}"
    try:
        client = DockerClient(timeout=3)
        client.client.ping()
    except Exception as exc:
        return f"no Docker engine: {type(exc).__name__}"
    with contextlib.suppress(Exception):
        client.client.close()
    return None


def _wait_for(url: str, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    error = dbutil.probe(url)
    while error is not None and time.monotonic() < deadline:
        time.sleep(0.5)
        error = dbutil.probe(url)
    return error


def _start_container(kind: str, request: pytest.FixtureRequest) -> str:
    password = secrets.token_hex(12)
    if kind == "mysql":
        try:
            from testcontainers.community.mysql import MySqlContainer
        except ImportError:  # testcontainers < 4.14
            from testcontainers.mysql import MySqlContainer

        container: Any = MySqlContainer(
            "mariadb:10.11", username="root", password=password, dbname="test"
        )
        internal_port = 3306
    else:
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:
            from testcontainers.postgres import PostgresContainer

        container = PostgresContainer(
            "postgres:15", username="postgres", password=password, dbname="test", driver=None
        )
        internal_port = 5432
    request.addfinalizer(container.stop)  # safe even if start() fails half-way
    container.start()
    url = dbutil.build_url(
        kind,
        container.get_container_host_ip(),
        int(container.get_exposed_port(internal_port)),
        "root" if kind == "mysql" else "postgres",
        password,
        "test",
    )
    error = _wait_for(url, 60)
    if error is not None:
        raise RuntimeError(f"{kind} container started but does not answer: {error}")
    return url


def _ensure_local_test_db(kind: str, url: str) -> str | None:
    """Connect to the local server's ``test`` database, creating it if missing."""
    error = dbutil.probe(url)
    if error is None:
        return None
    u = dbutil.parse_db_url(url)
    if kind == "mysql":
        if dbutil.probe(u.with_(database="")) is not None:
            return error
        import pymysql

        with contextlib.suppress(pymysql.MySQLError):
            kwargs = dbutil.mysql_connect_kwargs(u.with_(database=""), connect_timeout=2)
            conn = pymysql.connect(**kwargs)
            try:
                with conn.cursor() as cur:
                    cur.execute("CREATE DATABASE IF NOT EXISTS `test`")
            finally:
                conn.close()
    else:
        if dbutil.probe(u.with_(database="postgres")) is not None:
            return error
        import psycopg

        with contextlib.suppress(psycopg.Error):
            kwargs = dbutil.postgres_connect_kwargs(u.with_(database="postgres"), connect_timeout=2)
            with psycopg.connect(**kwargs, autocommit=True) as conn:
                conn.execute("CREATE DATABASE test")
    return dbutil.probe(url)


def _discover(kind: str, request: pytest.FixtureRequest) -> str:
    env_var = ENV_VARS[kind]
    env_url = os.environ.get(env_var, "").strip()
    if env_url:
        try:
            parsed = dbutil.parse_db_url(env_url)
        except dbutil.DBUrlError as exc:
            _no_database(kind, [f"{env_var} is invalid: {exc}"])
        if parsed.kind != kind:
            _no_database(kind, [f"{env_var} is not a {kind} URL"])
        error = dbutil.probe(env_url)
        if error is not None:
            _no_database(kind, [f"{env_var}={dbutil.redact_url(env_url)} does not answer: {error}"])
        return env_url

    reasons = []
    if kind == "mysql":
        candidates = ["mysql://root@127.0.0.1:3306/test"]
    else:
        users = dict.fromkeys(["postgres", getpass.getuser()])
        candidates = [f"postgresql://{user}@127.0.0.1:5432/test" for user in users]
    for url in candidates:
        error = _ensure_local_test_db(kind, url)
        if error is None:
            return url
        reasons.append(f"local {dbutil.redact_url(url)}: {error}")

    docker_error = _docker_available()
    if docker_error is None:
        try:
            return _start_container(kind, request)
        except Exception as exc:
            reasons.append(f"container failed: {type(exc).__name__}: {exc}")
    else:
        reasons.append(docker_error)
    _no_database(kind, reasons)
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mysql_url(request: pytest.FixtureRequest) -> str:
    """Admin URL of a MariaDB/MySQL server, e.g. ``mysql://root@127.0.0.1:3306/test``."""
    return _discover("mysql", request)


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> str:
    """Admin URL of a PostgreSQL server, e.g. ``postgresql://postgres@127.0.0.1:5432/test``."""
    return _discover("postgres", request)


def _pool_user_name() -> str:
    name = os.environ.get("FPP_POOL_USER", "").strip() or dbutil.POOL_USER
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return f"{name}_{worker}" if worker else name


def _fresh_start(pool_user: dbutil._PoolUserBase) -> None:
    pool_user.kill_all()
    pool_user.wait_until(0, timeout=10)


@pytest.fixture(scope="session")
def mysql_pool_user(mysql_url: str) -> Iterator[dbutil.MySQLPoolUser]:
    """The ``fpp_pool`` MariaDB account: ``.host/.port/.user/.password/.database``,
    ``.url``, ``.connect_kwargs()``, ``.connect()``, ``.server_connections()``,
    ``.connection_ids()``, ``.kill_all()``, ``.wait_until(count, timeout)``.
    Stray sessions of the account are killed at session start.
    """
    user = dbutil.setup_mysql_pool_user(mysql_url, user=_pool_user_name())
    try:
        if user.dedicated:
            _fresh_start(user)
        yield user
    finally:
        user.close()


@pytest.fixture(scope="session")
def postgres_pool_user(postgres_url: str) -> Iterator[dbutil.PostgresPoolUser]:
    """The ``fpp_pool`` PostgreSQL role; same API as :func:`mysql_pool_user`."""
    user = dbutil.setup_postgres_pool_user(postgres_url, user=_pool_user_name())
    try:
        if user.dedicated:
            _fresh_start(user)
        yield user
    finally:
        user.close()


@pytest.fixture
def mysql_kill_pool_connections(mysql_pool_user: dbutil.MySQLPoolUser) -> Callable[[], int]:
    """Start the test with zero ``fpp_pool`` sessions; returns ``kill_all`` for mid-test use."""
    _fresh_start(mysql_pool_user)
    return mysql_pool_user.kill_all


@pytest.fixture
def postgres_kill_pool_connections(
    postgres_pool_user: dbutil.PostgresPoolUser,
) -> Callable[[], int]:
    """Start the test with zero ``fpp_pool`` sessions; returns ``kill_all`` for mid-test use."""
    _fresh_start(postgres_pool_user)
    return postgres_pool_user.kill_all
