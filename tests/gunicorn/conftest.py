"""gunicorn as a subprocess serving tests/gunicorn/wsgi.py (the example app) on MariaDB.

No sleeps as synchronisation: gunicorn's stderr is read line by line by a thread, and the
configuration's hooks print one line when a worker is ready to serve (``post_worker_init``)
and one when the master has reaped it (``child_exit``); tests wait for those lines. The
configuration is the one in docs/operations.md, read from the document itself, plus those
two hooks: the documented configuration is the one under test.

``FPP_POOL_USER`` names the MariaDB account (each test session kills that account's
sessions when it starts): run with ``FPP_POOL_USER=fpp_metrics`` beside other suites.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import dbutil

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "operations.md"
WORKERS = 2
MAX_CONNECTIONS = 2
THREADS = 4  # gthread: more threads than connections, so requests queue in the pool
DATABASE = "fpp_gunicorn"
#: Every wait in these tests ends by this many seconds, whatever happens.
DEADLINE = 30.0

READY = re.compile(r"fpp-test: worker ready pid=(\d+)")
EXITED = re.compile(r"fpp-test: child exit pid=(\d+)")
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")

_TEST_HOOKS = '''

# ---- added by tests/gunicorn/conftest.py ------------------------------------------------
import os as _fpp_os

control_socket_disable = True  # gunicorn >= 24: no ~/.gunicorn socket shared between runs


def _fpp_say(line):
    _fpp_os.write(2, (line + "\\n").encode())  # one write: lines of two workers never mix


def post_worker_init(worker):
    _fpp_say(f"fpp-test: worker ready pid={worker.pid}")


_fpp_documented_child_exit = child_exit


def child_exit(server, worker):
    _fpp_documented_child_exit(server, worker)
    _fpp_say(f"fpp-test: child exit pid={worker.pid}")
'''


def documented_config() -> str:
    """The ``gunicorn.conf.py`` block of docs/operations.md, for the example app."""
    text = DOCS.read_text()
    match = re.search(r"```python\n(# gunicorn\.conf\.py.*?)```", text, re.DOTALL)
    assert match, "docs/operations.md has no ```python block starting with # gunicorn.conf.py"
    return match.group(1).replace("myapp", "example_app")


@dataclass
class Result:
    start: float
    end: float
    status: int | None = None
    body: dict[str, Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


def get(port: int, path: str, timeout: float = 15.0) -> Result:
    """One request on its own connection (``Connection: close``)."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        data = response.read()
        body = json.loads(data) if data.startswith(b"{") else None
        return Result(start, time.monotonic(), response.status, body)
    except (OSError, http.client.HTTPException) as exc:
        return Result(start, time.monotonic(), error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


class Gunicorn:
    """A running gunicorn master and what it printed, with its arrival time."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="gunicorn-stderr",
                                        daemon=True)
        self._reader.start()
        self.port = int(self.wait_line(LISTENING).group(1))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self.lines.append((time.monotonic(), "<EOF>"))
            self._cond.notify_all()

    def log(self) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines)

    def wait_for(self, check: Callable[[list[tuple[float, str]]], Any], what: str,
                 timeout: float = DEADLINE) -> Any:
        """Wait until ``check(lines)`` returns something truthy; returns it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = check(self.lines)
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.lines and self.lines[-1][1] == "<EOF>"):
                    break
                self._cond.wait(remaining)
        raise AssertionError(f"gunicorn: no {what} within {timeout} s; its log:\n"
                             + self.log())

    def wait_line(self, pattern: re.Pattern[str]) -> re.Match[str]:
        def check(lines: list[tuple[float, str]]) -> re.Match[str] | None:
            for _, line in lines:
                match = pattern.search(line)
                if match:
                    return match
            return None

        return self.wait_for(check, f"line matching {pattern.pattern!r}")  # type: ignore[no-any-return]

    def pids(self, pattern: re.Pattern[str]) -> dict[int, float]:
        """{pid: time its line arrived} for every line matching ``pattern``."""
        with self._cond:
            return {int(m.group(1)): t for t, line in self.lines
                    if (m := pattern.search(line))}

    def wait_ready(self, count: int, exclude: frozenset[int] | set[int] = frozenset()
                   ) -> dict[int, float]:
        """Wait for ``count`` workers (pids not in ``exclude``) ready and not exited."""
        def check(_: Any) -> dict[int, float] | None:
            exited = self.pids(EXITED)
            ready = {p: t for p, t in self.pids(READY).items()
                     if p not in exclude and p not in exited}
            return ready if len(ready) >= count else None

        return self.wait_for(check, f"{count} ready workers")  # type: ignore[no-any-return]

    def wait_exited(self, pids: set[int]) -> float:
        """Wait until the master reaped every pid of ``pids``; when the last one was."""
        return self.wait_for(  # type: ignore[no-any-return]
            lambda _: (max(t for p, t in self.pids(EXITED).items() if p in pids)
                       if pids <= set(self.pids(EXITED)) else None),
            f"exit of workers {sorted(pids)}")

    def live_workers(self) -> set[int]:
        exited = self.pids(EXITED)
        return {p for p in self.pids(READY) if p not in exited}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)


@pytest.fixture(scope="session")
def gunicorn_database_url(mysql_url: str, mysql_pool_user: Any) -> str:
    """The pool account on a database of these tests' own (``fpp_gunicorn``: the account
    may use every ``fpp_*`` database), so the example app's ``note`` table is not the one
    other suites lock, alter or drop on a shared server."""
    import pymysql

    admin = dbutil.parse_db_url(mysql_url)
    conn = pymysql.connect(**dbutil.mysql_connect_kwargs(admin, connect_timeout=5,
                                                         autocommit=True))
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`")
    finally:
        conn.close()
    return dbutil.build_url("mysql", mysql_pool_user.host, mysql_pool_user.port,
                            mysql_pool_user.user, mysql_pool_user.password, DATABASE)


@pytest.fixture(scope="session")
def factory_checkouts(tmp_path_factory: pytest.TempPathFactory) -> int:
    """Checkouts the example app's factory makes on the app's pool (its create_tables):
    what each worker (or, with --preload, the master) has counted before any request."""
    import example_app

    path = tmp_path_factory.mktemp("factory")
    app = example_app.create_app({"PEEWEE_POOL_DATABASE": f"sqlite:///{path / 'f.db'}",
                                  "PEEWEE_POOL_STATS_DIR": str(path / "stats")})
    try:
        return int(example_app.pool.stats(app).counters.checkouts)
    finally:
        app.extensions["peewee_pool"].database.close_pool()


@pytest.fixture
def gunicorn_env(tmp_path: Path, gunicorn_database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PEEWEE_POOL_", "FLASK_PEEWEE_POOL_", "PROMETHEUS_"))}
    env.update(
        PEEWEE_POOL_DATABASE=gunicorn_database_url,
        PEEWEE_POOL_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        PEEWEE_POOL_STATS_DIR=str(tmp_path / "stats"),
        PEEWEE_POOL_STATS_INTERVAL="0.2",
        PEEWEE_POOL_TIMEOUT="20",
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture
def start_gunicorn(tmp_path: Path, gunicorn_env: dict[str, str]
                   ) -> Iterator[Callable[..., Gunicorn]]:
    """``start_gunicorn(worker_class, preload, env=...)``: a master on a free loopback port
    (``--bind 127.0.0.1:0``), returned once WORKERS workers are ready."""
    started: list[Gunicorn] = []
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(documented_config() + _TEST_HOOKS)

    def start(worker_class: str, preload: bool, env: dict[str, str] | None = None) -> Gunicorn:
        args = [sys.executable, "-m", "gunicorn", "--config", str(config),
                "--bind", "127.0.0.1:0", "--workers", str(WORKERS),
                "--worker-class", worker_class, "--timeout", "30",
                "--graceful-timeout", "10", "--chdir", str(ROOT),
                # threads > 1 turns "sync" into "gthread": give it only to gthread
                "--threads", str(THREADS if worker_class == "gthread" else 1)]
        if preload:
            args.append("--preload")
        proc = subprocess.Popen([*args, "tests.gunicorn.wsgi:app"], cwd=ROOT,
                                env=env or gunicorn_env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        server = Gunicorn(proc)
        started.append(server)
        server.wait_line(re.compile(rf"Using worker: {worker_class}$"))
        server.wait_ready(WORKERS)
        return server

    yield start
    for server in started:
        server.stop()


class Load:
    """Threads sending ``GET path`` one connection at a time until stopped."""

    def __init__(self, port: int, path: str, threads: int) -> None:
        self.port = port
        self.path = path
        self.results: list[Result] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
                         for i in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            result = get(self.port, self.path)
            with self._lock:
                self.results.append(result)

    def stop(self) -> list[Result]:
        self._stop.set()
        for thread in self._threads:
            thread.join(DEADLINE)
        return self.snapshot()

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    def wait_until(self, check: Callable[[list[Result]], bool], what: str,
                   timeout: float = DEADLINE) -> list[Result]:
        """Poll the results (they arrive every few ms) until ``check`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            results = self.snapshot()
            if check(results):
                return results
            if time.monotonic() > deadline:
                raise AssertionError(f"load: {what} not reached in {timeout} s "
                                     f"({len(results)} results)")
            self._stop.wait(0.01)


@dataclass
class Sampler:
    """Samples the server-side sessions of the pool account until stopped."""

    pool_user: Any
    samples: list[tuple[float, list[int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)

    def _run(self) -> None:
        while not self._stop.is_set():
            ids = self.pool_user.connection_ids()
            self.samples.append((time.monotonic(), ids))
            self._stop.wait(0.005)  # pacing of a sampler, not a synchronisation

    def max_between(self, start: float = 0.0, end: float = float("inf")) -> int:
        return max((len(ids) for t, ids in self.samples if start <= t <= end), default=0)


def wait_server(pool_user: Any, check: Callable[[list[int]], bool], what: str,
                timeout: float = 10.0) -> tuple[list[int], float]:
    """Poll the server's sessions of the pool account until ``check(ids)``; returns them
    and how long it took. The server ends sessions asynchronously: polling is the only way
    to see it."""
    start = time.monotonic()
    while True:
        ids = pool_user.connection_ids()
        if check(ids):
            return ids, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"server: {what} not reached in {timeout} s: {ids}")
        time.sleep(0.01)


def pool_stats(env: dict[str, str]) -> dict[str, Any]:
    """``flask --app example_app pool-stats --json`` in a separate process."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "example_app", "pool-stats", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]
