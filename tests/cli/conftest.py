"""Fixtures of the CLI tests: apps with the extension, a second process, a password account.

``make_app`` builds a Flask app with :class:`~flask_peewee_pool.PeeweePool`, whose
``init_app`` registers ``pool-stats`` / ``pool-check`` and starts the snapshot writer.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_peewee_pool import PeeweePool, snapshots
from tests import dbutil

#: The CLI tests' MariaDB account; its password must never appear in any output or file.
CLI_USER = "fpp_cli"
CLI_PASSWORD = dbutil.POOL_PASSWORD  # "fpp-S3cr3t-pw-7Q"
_TMP: Any = object()


def build_app(url: str, stats_dir: Path | None, *, interval: float | None = 5.0,
              instance_path: Path | None = None, name: str = "cli_app") -> tuple[Flask, Any]:
    """A Flask app with :class:`PeeweePool` on ``url`` (pool settings in the URL query).

    ``init_app`` registers the CLI commands and starts the snapshot writer; ``stats_dir``
    None keeps the default (``<instance_path>/peewee_pool_stats``). The pool is named
    after the app (``name``).
    """
    app = Flask(name, instance_path=str(instance_path) if instance_path else None)
    app.config["PEEWEE_POOL_DATABASE"] = url
    if stats_dir is not None:
        app.config["PEEWEE_POOL_STATS_DIR"] = str(stats_dir)
    if interval is not None:
        app.config["PEEWEE_POOL_STATS_INTERVAL"] = interval
    PeeweePool(app)
    return app, app.extensions["peewee_pool"]


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., tuple[Flask, Any]]]:
    """``make_app(url, stats_dir=tmp_path/"stats", interval=5.0)``; pools closed afterwards.

    ``stats_dir=None`` leaves the extension's default (``<instance_path>/peewee_pool_stats``).
    """
    made: list[Any] = []

    def make(url: str, stats_dir: Any = _TMP, **kwargs: Any) -> tuple[Flask, Any]:
        if stats_dir is _TMP:
            stats_dir = tmp_path / "stats"
        app, state = build_app(url, stats_dir, **kwargs)
        made.append(state)
        return app, state

    yield make
    for state in made:
        with contextlib.suppress(Exception):
            snapshots.stop_snapshots(state)
        state.database.close_pool()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


@pytest.fixture(scope="session")
def mysql_cli_url(mysql_url: str) -> str:
    """``mysql://fpp_cli:<password>@host:port/test``: an account with a password, so tests
    can prove the password never leaks. Created (or its password reset) through the admin
    URL; left in place afterwards, like ``fpp_pool``, so concurrent test runs sharing the
    server never lose it under their feet."""
    import pymysql

    admin = dbutil.parse_db_url(mysql_url)
    database = admin.database or "test"
    conn = pymysql.connect(**dbutil.mysql_connect_kwargs(admin, connect_timeout=5,
                                                         autocommit=True))
    try:
        with conn.cursor() as cur:
            for host in ("%", "localhost", "127.0.0.1"):
                cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s",
                            (CLI_USER, host, CLI_PASSWORD))
                cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (CLI_USER, host, CLI_PASSWORD))
                cur.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO %s@%s", (CLI_USER, host))
    except pymysql.MySQLError as exc:
        pytest.skip(f"cannot create the {CLI_USER} account on {dbutil.redact_url(mysql_url)}: "
                    f"{exc}")
    finally:
        conn.close()
    return dbutil.build_url("mysql", admin.host, admin.port, CLI_USER, CLI_PASSWORD, database)


def mysql_server_settings(url: str) -> dict[str, int]:
    """``max_connections`` and ``wait_timeout`` as a new session of ``url`` sees them."""
    import pymysql

    conn = pymysql.connect(**dbutil.mysql_connect_kwargs(url, connect_timeout=5))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@max_connections, @@session.wait_timeout")
            max_connections, wait_timeout = cur.fetchone()
    finally:
        conn.close()
    return {"max_connections": int(max_connections), "wait_timeout": int(wait_timeout)}


def assert_no_password(*texts: str, directory: Path | None = None) -> None:
    """The CLI account's password appears in none of ``texts`` nor any file of ``directory``."""
    for text in texts:
        assert CLI_PASSWORD not in text
    if directory is not None and directory.exists():
        for path in directory.rglob("*"):
            if path.is_file():
                assert CLI_PASSWORD.encode() not in path.read_bytes(), path


ROOT = Path(__file__).resolve().parents[2]


class Child:
    """A running ``tests.cli.snapshot_child`` process and the lines it printed."""

    def __init__(self, proc: subprocess.Popen[str], stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        self.lines: list[list[str]] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_line(self) -> list[str]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            pytest.fail(f"snapshot child exited ({self.proc.returncode}) before printing: "
                        f"{self.stderr_path.read_text()}")
        self.lines.append(line.split())
        return self.lines[-1]

    def finish(self) -> int:
        """Close its stdin (it exits normally) and wait for it."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def spawn_child(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """``spawn_child(url, stats_dir, *args, lines=1)``: start a second process with a pool;
    returns once it printed ``lines`` lines (no sleeps: its stdout is the signal)."""
    children: list[Child] = []

    def spawn(url: str, stats_dir: Path, *args: str, lines: int = 1) -> Child:
        stderr_path = tmp_path / f"child-{len(children)}.stderr"
        env = dict(os.environ, FPP_CHILD_URL=url)
        with open(stderr_path, "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.cli.snapshot_child", str(stats_dir), *args],
                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr, text=True)
        child = Child(proc, stderr_path)
        children.append(child)
        for _ in range(lines):
            child.read_line()
        return child

    yield spawn
    for child in children:
        if child.proc.poll() is None:
            child.finish()
        if child.proc.stdout is not None:
            child.proc.stdout.close()
