"""Fault scenarios on a real MariaDB: a load harness, server-side counting, figures.

Every scenario runs threads that query through a pooled peewee database whose connections
go through a :class:`~tests.support.proxy.FaultProxy`, injects a fault (KILL, a database
"restart", a network blackhole, a stall, ...) and then checks the invariants of the design
(section 5):

1. the server never sees more live sessions of the pool account than ``max_connections``
   (sampled every 10 ms by :class:`ServerMonitor` on its own admin connection);
2. no connection is ever held by two threads at once (:class:`Load` wraps the pool's
   checkout/checkin and records a violation if a raw connection is handed out twice);
3. once the maintainer has settled, nothing is in use and idle + in use + opening equals
   the server-side count (:func:`settle`).

Every query is ``SELECT <number unique to the request>``, so a wrong result (a reply meant
for someone else, a half-read result handed over) cannot go unnoticed.

Each scenario reports its figures through the ``figures`` fixture: they are printed (run
with ``-s`` to see them as they come), listed in the terminal summary, and written as JSON
to ``$FPP_FAULTS_FIGURES`` if that is set. docs/reliability.md quotes them.

Run with a pool account of your own, e.g.::

    FPP_POOL_USER=fpp_faults .venv/bin/python -m pytest tests/faults -q -p no:cacheprovider
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from flask_peewee_pool import PooledMySQLDatabase
from tests import dbutil
from tests.support.proxy import FaultProxy

#: Every figure recorded in this session, in order.
FIGURES: list[dict[str, Any]] = []

clock = time.monotonic


# ----------------------------------------------------------------------------- figures


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., dict[str, Any]]:
    """``figures(**values)``: record (and print) the measured figures of this scenario."""

    def record(**values: Any) -> dict[str, Any]:
        entry = {"scenario": request.node.name, **values}
        FIGURES.append(entry)
        print(f"\n[figures] {json.dumps(entry, default=str, sort_keys=False)}")
        return entry

    return record


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section("fault scenario figures")
    for entry in FIGURES:
        values = {k: v for k, v in entry.items() if k != "scenario"}
        tr.line(f"{entry['scenario']}: {json.dumps(values, default=str)}")
    path = os.environ.get("FPP_FAULTS_FIGURES", "").strip()
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(FIGURES, f, indent=2, default=str)
        tr.line(f"figures written to {path}")


# ----------------------------------------------------------------------------- one run at a time


@pytest.fixture(scope="session", autouse=True)
def _one_run_per_account() -> Iterator[None]:
    """Serialize concurrent runs of these scenarios that use the same pool account.

    Each scenario kills and counts every session of the account: two runs at once would
    kill each other's connections and count each other's sessions. Autouse and session
    scoped, so it is taken before ``mysql_pool_user`` kills the account's sessions.
    """
    import fcntl
    import tempfile

    user = os.environ.get("FPP_POOL_USER", "").strip() or dbutil.POOL_USER
    path = os.path.join(tempfile.gettempdir(), f"fpp-faults-{user}.lock")
    with open(path, "w") as lock:
        deadline = clock() + 900
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() > deadline:
                    pytest.fail(f"another run holds {path} since 15 min", pytrace=False)
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- server side


class Admin:
    """An admin connection to MariaDB: counts and kills the sessions of one account.

    Not shared between threads (each monitor opens its own).
    """

    def __init__(self, admin_url: str, user: str) -> None:
        import pymysql

        self._pymysql = pymysql
        self._kwargs = dbutil.mysql_connect_kwargs(admin_url, connect_timeout=5,
                                                   autocommit=True)
        self.user = user
        self._conn: Any = None

    def _cursor_do(self, fn: Callable[[Any], Any]) -> Any:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._pymysql.connect(**self._kwargs)
            try:
                with self._conn.cursor() as cur:
                    return fn(cur)
            except (self._pymysql.err.OperationalError, self._pymysql.err.InterfaceError):
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def sessions(self) -> list[tuple[int, str]]:
        """(id, command) of every session of the account (killed ones included)."""

        def query(cur: Any) -> list[tuple[int, str]]:
            cur.execute("SELECT ID, COALESCE(COMMAND, '') FROM information_schema.PROCESSLIST"
                        " WHERE USER = %s AND ID <> CONNECTION_ID()", (self.user,))
            return [(int(i), str(c)) for i, c in cur.fetchall()]

        return self._cursor_do(query)  # type: ignore[no-any-return]

    def live(self) -> int:
        """Sessions of the account that are not already being torn down after a KILL."""
        return sum(1 for _, command in self.sessions() if command != "Killed")

    def kill_all(self) -> list[int]:
        """KILL every session of the account; returns their ids."""
        import pymysql

        def kill(cur: Any) -> list[int]:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s"
                        " AND ID <> CONNECTION_ID() AND COALESCE(COMMAND, '') <> 'Killed'",
                        (self.user,))
            killed = []
            for (thread_id,) in cur.fetchall():
                try:
                    cur.execute(f"KILL CONNECTION {int(thread_id)}")
                    killed.append(int(thread_id))
                except (pymysql.err.InternalError, pymysql.err.OperationalError) as exc:
                    if not exc.args or exc.args[0] != 1094:  # unknown thread: gone already
                        raise
            return killed

        return self._cursor_do(kill)  # type: ignore[no-any-return]

    def wait_gone(self, ids: list[int], timeout: float = 10.0) -> float:
        """Wait until none of ``ids`` is in the processlist; returns the seconds it took."""
        start = clock()
        wanted = set(ids)
        while wanted & {i for i, _ in self.sessions()}:
            if clock() - start > timeout:
                raise AssertionError(f"sessions {sorted(wanted)} still there after {timeout} s")
            time.sleep(0.002)
        return clock() - start

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


@pytest.fixture
def admin(mysql_url: str, mysql_pool_user: Any) -> Iterator[Admin]:
    a = Admin(mysql_url, mysql_pool_user.user)
    yield a
    a.close()


class ServerMonitor:
    """Samples the pool account's server-side sessions every 10 ms (own admin connection).

    ``max_live`` ignores sessions already marked ``Killed`` (the server tears those down
    asynchronously after a KILL: the pool cannot see them and does not count them);
    ``max_all`` counts them too.
    """

    def __init__(self, admin_url: str, user: str) -> None:
        self._admin = Admin(admin_url, user)
        self._stop = threading.Event()
        self.max_live = 0
        self.max_all = 0
        self.samples = 0
        self.timeline: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._run, name="fpp-faults-monitor",
                                        daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sessions = self._admin.sessions()
            live = sum(1 for _, command in sessions if command != "Killed")
            self.max_live = max(self.max_live, live)
            self.max_all = max(self.max_all, len(sessions))
            self.samples += 1
            self.timeline.append((clock(), live))
            self._stop.wait(0.01)

    def __enter__(self) -> ServerMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._admin.close()


@pytest.fixture
def monitor(mysql_url: str, mysql_pool_user: Any) -> Iterator[ServerMonitor]:
    with ServerMonitor(mysql_url, mysql_pool_user.user) as m:
        yield m


# ----------------------------------------------------------------------------- databases


@pytest.fixture
def proxy(mysql_pool_user: Any) -> Iterator[FaultProxy]:
    """A fault proxy on loopback in front of MariaDB."""
    with FaultProxy(mysql_pool_user.host, mysql_pool_user.port) as p:
        yield p


@pytest.fixture
def make_db(mysql_pool_user: Any, proxy: FaultProxy) -> Iterator[Callable[..., Any]]:
    """``make_db(direct=False, **kwargs)``: a PooledMySQLDatabase as the pool account,
    through the proxy unless ``direct``. Every pool is closed after the test (the proxy
    healed first) and the test waits for the server to see zero sessions of the account.
    """
    made: list[PooledMySQLDatabase] = []

    def make(*, direct: bool = False, **kwargs: Any) -> PooledMySQLDatabase:
        params = mysql_pool_user.as_dict()
        database = params.pop("database")
        if not direct:
            params.update(host=proxy.host, port=proxy.port)
        params.setdefault("connect_timeout", 5)
        params.update(kwargs)
        db = PooledMySQLDatabase(database, **params)
        made.append(db)
        return db

    yield make
    proxy.refuse = False
    proxy.cut_after(None)
    proxy.set_latency(0)
    proxy.connect_delay = 0
    if proxy.blackholed:
        proxy.restore()
    for db in made:
        db.close_pool()
    mysql_pool_user.wait_until(0, timeout=15)


# ----------------------------------------------------------------------------- load


@dataclass
class Request:
    """One request of a load thread: checkout, ``SELECT <n>``, return."""

    thread: int
    start: float
    end: float
    outcome: str  # "ok" or the exception's class name
    phase: str  # where it ended: "checkout", "query" or "done"
    checkout_time: float | None = None  # seconds spent in checkout (None: did not finish)
    error: str = ""
    exc_type: type | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class LoadReport:
    requests: list[Request]
    violations: list[str]
    wrong_results: list[str]
    close_errors: list[str]

    def ok(self) -> list[Request]:
        return [r for r in self.requests if r.outcome == "ok"]

    def errors(self) -> list[Request]:
        return [r for r in self.requests if r.outcome != "ok"]

    def error_types(self, requests: list[Request] | None = None) -> dict[str, int]:
        reqs = self.errors() if requests is None else [r for r in requests if r.outcome != "ok"]
        return dict(collections.Counter(r.outcome for r in reqs))

    def started_between(self, t0: float, t1: float = float("inf")) -> list[Request]:
        return [r for r in self.requests if t0 <= r.start < t1]

    def longest(self, requests: list[Request] | None = None) -> float:
        reqs = self.requests if requests is None else requests
        return max((r.duration for r in reqs), default=0.0)

    def last_error_end(self) -> float | None:
        return max((r.end for r in self.errors()), default=None)


class Load:
    """``threads`` threads, each looping: checkout, ``SELECT <unique n>``, return, think.

    Checks invariant 2 (no raw connection handed to two threads at once) by wrapping the
    pool's checkout/checkin, and that every query returns its own number.
    """

    def __init__(self, db: Any, threads: int, *, think: float = 0.001,
                 sql: str = "SELECT %s", on_error_sleep: float = 0.01) -> None:
        self.db = db
        self.n_threads = threads
        self.think = think
        self.sql = sql
        self.on_error_sleep = on_error_sleep
        self._stop = threading.Event()
        self._gate = threading.Event()  # cleared by pause(): workers wait before a request
        self._gate.set()
        self._in_flight = 0
        self._idle_cond = threading.Condition()
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.violations: list[str] = []
        self.wrong_results: list[str] = []
        self.close_errors: list[str] = []
        self._holders: dict[int, tuple[int, Any]] = {}
        self._started = threading.Barrier(threads + 1)
        self._threads = [threading.Thread(target=self._worker, args=(i,),
                                          name=f"load-{i}", daemon=True)
                         for i in range(threads)]
        self._wrap_pool(db.pool)

    def _wrap_pool(self, pool: Any) -> None:
        real_checkout, real_checkin = pool.checkout, pool.checkin

        def checkout(*args: Any, **kwargs: Any) -> Any:
            conn = real_checkout(*args, **kwargs)
            me = threading.get_ident()
            with self._lock:
                held = self._holders.get(id(conn.raw))
                if held is not None and held[0] != me:
                    self.violations.append(
                        f"{conn!r} handed to {threading.current_thread().name} while held by "
                        f"thread {held[0]}")
                self._holders[id(conn.raw)] = (me, conn.raw)
            return conn

        def checkin(conn: Any, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self._holders.pop(id(conn.raw), None)
            return real_checkin(conn, *args, **kwargs)

        pool.checkout = checkout
        pool.checkin = checkin

    def _worker(self, index: int) -> None:
        numbers = itertools.count(index * 10_000_000 + 1)
        self._started.wait()
        while not self._stop.is_set():
            if not self._gate.is_set():
                self._gate.wait()
                continue
            with self._idle_cond:
                self._in_flight += 1
            try:
                ok = self._request(index, next(numbers))
            finally:
                with self._idle_cond:
                    self._in_flight -= 1
                    self._idle_cond.notify_all()
            if not ok and self.on_error_sleep:
                self._stop.wait(self.on_error_sleep)  # a client backing off a little
            elif self.think:
                self._stop.wait(self.think)

    def _request(self, index: int, n: int) -> bool:
        db = self.db
        t0 = clock()
        phase, checkout_time, outcome, error, exc_type = "checkout", None, "ok", "", None
        try:
            db.connect()
            checkout_time = clock() - t0
            phase = "query"
            row = db.execute_sql(self.sql, (n,)).fetchone()
            if row is None or int(row[0]) != n:
                self.wrong_results.append(f"thread {index}: SELECT {n} returned {row!r}")
            phase = "done"
        except Exception as exc:
            outcome, error, exc_type = type(exc).__name__, str(exc)[:300], type(exc)
        finally:
            if not db.is_closed():
                try:
                    db.close()
                except Exception as exc:  # returning a connection must never raise
                    self.close_errors.append(f"{type(exc).__name__}: {exc}")
        self.requests.append(
            Request(index, t0, clock(), outcome, phase, checkout_time, error, exc_type))
        return outcome == "ok"

    def pause(self, timeout: float = 10.0) -> None:
        """A lull: no new request starts; returns once none is running."""
        self._gate.clear()
        with self._idle_cond:
            if not self._idle_cond.wait_for(lambda: self._in_flight == 0, timeout):
                raise AssertionError(f"{self._in_flight} requests still running")

    def resume(self) -> None:
        self._gate.set()

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        self._started.wait()
        return self

    def stop(self, timeout: float = 30.0) -> LoadReport:
        self._stop.set()
        self._gate.set()
        deadline = clock() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - clock()))
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"load threads still blocked after {timeout} s: {alive}"
        return LoadReport(sorted(self.requests, key=lambda r: r.start), self.violations,
                          self.wrong_results, self.close_errors)


def settle(db: Any, admin: Admin, timeout: float = 15.0) -> dict[str, Any]:
    """Wait for the maintainer to settle, then return the end-state figures.

    Settled: nothing in use, opening, closing or waiting, and the server sees exactly the
    pool's open connections (``stats().size``). Asserts it within ``timeout``.
    """
    start = clock()
    while True:
        stats = db.pool.stats()
        server = admin.live()
        settled = (stats.in_use == 0 and stats.opening == 0 and stats.closing == 0
                   and stats.waiting == 0 and server == stats.size)
        if settled or clock() - start > timeout:
            break
        time.sleep(0.02)
    sessions = admin.sessions()
    assert stats.in_use == 0, f"connections still in use at the end: {stats}"
    assert stats.idle + stats.in_use + stats.opening == stats.size, stats
    assert server == stats.size, (
        f"server sees {server} sessions, the pool {stats.size} (idle {stats.idle}): {sessions}")
    assert stats.size <= stats.max_connections
    return {"settle_s": round(clock() - start, 3), "end_size": stats.size,
            "end_idle": stats.idle, "end_in_use": stats.in_use, "end_server": server,
            "connections_lost": stats.size - server}


def check_load(report: LoadReport) -> None:
    """Invariant 2 and result integrity, for every scenario."""
    assert report.violations == [], report.violations[:5]
    assert report.wrong_results == [], report.wrong_results[:5]
    assert report.close_errors == [], report.close_errors[:5]
    assert report.ok(), "no request succeeded at all"


def summary(report: LoadReport) -> dict[str, Any]:
    """Common figures of a load run."""
    checkouts = [r.checkout_time for r in report.requests if r.checkout_time is not None]
    return {
        "requests": len(report.requests),
        "ok": len(report.ok()),
        "errors": report.error_types(),
        "longest_request_s": round(report.longest(), 3),
        "longest_checkout_s": round(max(checkouts, default=0.0), 3),
    }


def r3(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


@dataclass
class Timeline:
    """Named instants of a scenario (monotonic clock)."""

    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        self.marks[name] = clock()
        return self.marks[name]

    def __getitem__(self, name: str) -> float:
        return self.marks[name]
