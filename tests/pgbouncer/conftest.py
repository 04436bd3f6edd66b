"""A real PgBouncer for the external-pooler tests, started and stopped by the test.

``pgbouncer`` (function scope) runs the Debian ``pgbouncer`` binary in front of the
PostgreSQL server of ``postgres_pool_user``: transaction pooling, ``default_pool_size``
:data:`SERVER_POOL_SIZE` (smaller than the pools the tests build, so PgBouncer really does
multiplex), listening on a free loopback port, its config, auth file, Unix socket, log and
pid file in a private temporary directory. PgBouncer refuses to run as root: under root it
is started with ``-u postgres`` and the directory is handed to that user.

The fixture stops it at the end within a bounded time (SIGTERM, then SIGKILL) and removes
the directory. Tests can ``kill()`` it and ``start()`` it again on the same port.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import dbutil

#: PgBouncer's server connections per (database, user): smaller than the tests' pools.
SERVER_POOL_SIZE = 4


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)),
        None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class PgBouncer:
    """One PgBouncer process (restartable on the same port) and its files."""

    def __init__(self, binary: str, upstream: dbutil.PostgresPoolUser, *,
                 pool_size: int = SERVER_POOL_SIZE, pool_mode: str = "transaction") -> None:
        self.binary = binary
        self.upstream = upstream
        self.pool_size = pool_size
        self.database = upstream.database
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = tempfile.mkdtemp(prefix="fpp-pgbouncer-")
        self.config = os.path.join(self.dir, "pgbouncer.ini")
        self.logfile = os.path.join(self.dir, "pgbouncer.log")
        self.pidfile = os.path.join(self.dir, "pgbouncer.pid")
        self._run_as: str | None = None
        if os.geteuid() == 0:  # PgBouncer will not run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to run "
                            "PgBouncer as (it refuses to run as root)")
            self._run_as = "postgres"
        upstream_params = f"host={upstream.host} port={upstream.port} dbname={self.database}"
        with open(os.path.join(self.dir, "userlist.txt"), "w") as handle:
            # The password lets PgBouncer log in to a server that asks for one.
            handle.write(f"{_quote(upstream.user)} {_quote(upstream.password)}\n")
        with open(self.config, "w") as handle:
            handle.write(
                "[databases]\n"
                f"{self.database} = {upstream_params}\n"
                "[pgbouncer]\n"
                "listen_addr = 127.0.0.1\n"
                f"listen_port = {self.port}\n"
                f"unix_socket_dir = {self.dir}\n"
                "auth_type = trust\n"
                f"auth_file = {self.dir}/userlist.txt\n"
                f"pool_mode = {pool_mode}\n"
                f"default_pool_size = {pool_size}\n"
                "reserve_pool_size = 0\n"
                "max_client_conn = 500\n"
                f"logfile = {self.logfile}\n"
                f"pidfile = {self.pidfile}\n"
                "server_login_retry = 1\n")
        os.chmod(self.dir, 0o700)
        if self._run_as is not None:
            entry = pwd.getpwnam(self._run_as)
            for path in [self.dir, *(os.path.join(self.dir, f) for f in os.listdir(self.dir))]:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def url(self, **query: Any) -> str:
        """The pool user's URL through PgBouncer, with ``query`` as URL parameters."""
        base = dbutil.build_url("postgres", "127.0.0.1", self.port, self.upstream.user,
                                self.upstream.password, self.database)
        if query:
            base += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return base

    def log(self) -> str:
        try:
            with open(self.logfile, errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def start(self, timeout: float = 10.0) -> None:
        """Start on ``self.port``; returns once it accepts connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pidfile)  # left by a killed instance
        command = [self.binary, *(["-u", self._run_as] if self._run_as else []), self.config]
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}:\n"
                                   f"{self.log()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"pgbouncer not listening on {self.port} after "
                                       f"{timeout} s:\n{self.log()[-3000:]}") from None
                time.sleep(0.02)  # polling a port that is not open yet

    def kill(self) -> None:
        """SIGKILL, as a crash would: clients see their connections drop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (PgBouncer's immediate shutdown), SIGKILL if it is still there."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def server_connections(self) -> int:
        """Sessions of the pool user on PostgreSQL: PgBouncer's server connections."""
        return self.upstream.server_connections()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pgbouncer(postgres_pool_user: dbutil.PostgresPoolUser,
              postgres_kill_pool_connections: Any) -> Iterator[PgBouncer]:
    """A running PgBouncer (transaction mode) in front of the pool user's PostgreSQL."""
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    bouncer = PgBouncer(binary, postgres_pool_user)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.cleanup()
        # Its server connections end with it; do not leave them to the next test.
        postgres_pool_user.wait_until(0, timeout=10, raise_=False)
