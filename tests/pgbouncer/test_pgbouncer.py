"""Our pool behind a real PgBouncer in transaction mode, with psycopg 3.

In transaction mode each transaction of a client may run on a different server connection,
so nothing may live in the session between transactions. psycopg 3 prepares a query on
the server after ``prepare_threshold`` (5) executions; the next transaction of that client
can land on a server connection where the statement "does not exist". The first tests show
that failure without ``external_pooler="pgbouncer"`` (so these tests can fail) and its
absence with it; then 20 threads through a pool larger than PgBouncer's server pool; then
PgBouncer killed and restarted under load.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from flask_peewee_pool import connect
from tests import dbutil
from tests.pgbouncer.conftest import SERVER_POOL_SIZE, PgBouncer

pytestmark = [pytest.mark.postgres]

THREADS = 20
POOL_SIZE = 10  # > SERVER_POOL_SIZE: PgBouncer multiplexes our connections
QUERY = "SELECT %s::int + %s::int"


class Counters:
    """A table ``(id, n)`` with one row per thread, on PostgreSQL directly (admin)."""

    def __init__(self, admin: psycopg.Connection[Any], table: str) -> None:
        self.admin = admin
        self.table = table

    def values(self) -> dict[int, int]:
        return dict(self.admin.execute(f"SELECT id, n FROM {self.table}").fetchall())


@pytest.fixture
def counters(postgres_url: str,
             postgres_pool_user: dbutil.PostgresPoolUser) -> Iterator[Counters]:
    table = f"fpp_pgb_{secrets.token_hex(4)}"
    admin = psycopg.connect(**dbutil.postgres_connect_kwargs(postgres_url, connect_timeout=5),
                            autocommit=True)
    try:
        admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n int NOT NULL)")
        admin.execute(f"GRANT ALL ON {table} TO {postgres_pool_user.user}")
        admin.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(0, {THREADS - 1}) g")
        yield Counters(admin, table)
    finally:
        admin.execute(f"DROP TABLE IF EXISTS {table}")
        admin.close()


def _prepared_statement_error(exc: BaseException) -> bool:
    """``prepared statement "_pg3_0" does not exist`` / ``already exists`` / ``bind message
    supplies 2 parameters, but prepared statement "_pg3_1" requires 0``: the last one is
    another client's statement under the same name on that server connection."""
    return "prepared statement" in str(exc)


# ------------------------------------------------------------------ prepared statements


@pytest.mark.parametrize("mode", [None, "pgbouncer"], ids=["no-mode", "pgbouncer-mode"])
def test_prepared_statement_moves_to_another_server_connection(pgbouncer: PgBouncer,
                                                              mode: str | None) -> None:
    """Deterministic: A runs one query until psycopg prepares it (on server connection S1);
    B then holds S1 in a transaction, so A's next transaction runs on a new S2."""
    query = {"external_pooler": mode} if mode else {}
    db = connect(pgbouncer.url(**query), max_connections=2)
    try:
        a, b = db.pool.checkout(), db.pool.checkout()
        assert a.raw.prepare_threshold == (None if mode else 5)
        for i in range(10):  # > prepare_threshold: psycopg prepares it on S1
            assert a.raw.execute(QUERY, (i, 1)).fetchone() == (i + 1,)
        b.raw.execute("BEGIN")
        b.raw.execute("SELECT 1").fetchone()  # B now holds S1 until it ends its transaction
        if mode is None:
            with pytest.raises(psycopg.Error) as info:
                a.raw.execute(QUERY, (41, 1))
            assert _prepared_statement_error(info.value), info.value
        else:
            assert a.raw.execute(QUERY, (41, 1)).fetchone() == (42,)
        b.raw.execute("ROLLBACK")
        db.pool.checkin(a)
        db.pool.checkin(b)
    finally:
        db.close_pool()


# ------------------------------------------------------------------ 20 threads


def _load(db: Any, table: str, iterations: int) -> tuple[list[BaseException], list[int]]:
    """THREADS threads, each ``iterations`` times: checkout, a parameterized query or a
    transaction (UPDATE + SELECT on its own row), return. Errors are collected."""
    errors: list[BaseException] = []
    done = [0] * THREADS
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def work(tid: int) -> None:
        start.wait()
        for i in range(iterations):
            try:
                db.connect()
                try:
                    if i % 2 == 0:
                        row = db.execute_sql(QUERY, (i, tid)).fetchone()
                        assert row == (i + tid,), row
                    else:
                        with db.atomic():
                            db.execute_sql(f"UPDATE {table} SET n = n + 1 WHERE id = %s", (tid,))
                            (n,) = db.execute_sql(f"SELECT n FROM {table} WHERE id = %s",
                                                  (tid,)).fetchone()
                            assert n == done[tid] + 1, (n, done[tid])
                        done[tid] += 1
                finally:
                    db.close()
            except Exception as exc:
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)
    return errors, done


def test_twenty_threads_zero_errors_in_pgbouncer_mode(pgbouncer: PgBouncer, counters: Counters,
                                                      postgres_pool_user: Any) -> None:
    db = connect(pgbouncer.url(external_pooler="pgbouncer"), max_connections=POOL_SIZE,
                 timeout=30)
    peak = {"pool": 0, "server": 0}
    stop = threading.Event()

    def watch() -> None:  # our pool grows beyond PgBouncer's server pool; the server does not
        while not stop.is_set():
            peak["pool"] = max(peak["pool"], db.pool.stats().size)
            peak["server"] = max(peak["server"], postgres_pool_user.server_connections())
            stop.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        errors, done = _load(db, counters.table, iterations=40)
    finally:
        stop.set()
        watcher.join(10)
        stats = db.pool.stats()
        db.close_pool()
    assert errors == [], f"{len(errors)} errors, first: {errors[:3]!r}"
    assert done == [20] * THREADS
    assert counters.values() == dict(enumerate(done))
    assert stats.in_use == 0
    assert SERVER_POOL_SIZE < peak["pool"] <= POOL_SIZE, peak
    assert 0 < peak["server"] <= SERVER_POOL_SIZE, peak
    assert postgres_pool_user.server_connections() <= SERVER_POOL_SIZE


def test_twenty_threads_without_the_mode_hit_prepared_statement_errors(
        pgbouncer: PgBouncer, counters: Counters) -> None:
    """The same load without external_pooler: psycopg's prepared statements break (this is
    what makes the test above meaningful)."""
    db = connect(pgbouncer.url(), max_connections=POOL_SIZE, timeout=30)
    try:
        errors, _ = _load(db, counters.table, iterations=40)
        assert db.pool.stats().in_use == 0
    finally:
        db.close_pool()
    # Mostly "does not exist" / "already exists"; also "bind message supplies 2 parameters,
    # but prepared statement "_pg3_1" requires 0": the server connection holds another
    # client's statement under that name. When the parameter counts match, it runs, with
    # this client's parameters: wrong results, or a wrong row updated (the counter checks
    # of _load then fail too). PgBouncer may also drop a client in the middle of it.
    prepared = [e for e in errors if _prepared_statement_error(e)]
    assert prepared, f"expected prepared-statement errors without the mode, got {errors[:3]!r}"


# ------------------------------------------------------------------ restart under load


@pytest.mark.slow
@pytest.mark.parametrize(("ping_after", "outage"), [(0.0, 0.0), (None, 1.5)],
                         ids=["ping_after=0-fast-restart", "default-ping_after-1.5s-outage"])
def test_pgbouncer_restart_under_load(pgbouncer: PgBouncer, postgres_pool_user: Any,
                                      ping_after: float | None, outage: float) -> None:
    """Kill PgBouncer (SIGKILL) under load, start it again on the same port: requests that
    start once it listens again see no error; nothing leaks.

    A connection idle in the pool across the restart is dead; the pre-checkout ping finds
    it when it sat idle at least ``ping_after``. ``ping_after=0`` covers any restart; with
    the default (1 s), a restart slower than that is covered too."""
    extra = {} if ping_after is None else {"ping_after": ping_after}
    db = connect(pgbouncer.url(external_pooler="pgbouncer"), max_connections=POOL_SIZE,
                 timeout=10, **extra)
    stop = threading.Event()
    outcomes: list[tuple[float, float, BaseException | None]] = []
    lock = threading.Lock()

    def work(tid: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            began = time.monotonic()
            error: BaseException | None = None
            try:
                db.connect()
                try:
                    if i % 2:
                        assert db.execute_sql(QUERY, (i, tid)).fetchone() == (i + tid,)
                    else:
                        with db.atomic():
                            db.execute_sql(QUERY, (i, 1)).fetchone()
                            db.execute_sql("SELECT %s::text", (str(i),)).fetchone()
                finally:
                    db.close()
            except Exception as exc:
                error = exc
            with lock:
                outcomes.append((began, time.monotonic(), error))
            if error is not None:
                time.sleep(0.01)  # the pooler is down: do not spin

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        killed_at = time.monotonic()
        pgbouncer.kill()
        time.sleep(outage)
        pgbouncer.start()
        back_at = time.monotonic()
        time.sleep(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    try:
        assert not any(t.is_alive() for t in threads)
        before = [error for _, ended, error in outcomes if ended < killed_at]
        after = [error for began, _, error in outcomes if began >= back_at]
        assert before and not any(before), [e for e in before if e][:3]
        failed_after = [e for e in after if e is not None]
        assert len(after) > THREADS, len(after)
        assert failed_after == [], f"{len(failed_after)} errors after restart: {failed_after[:3]!r}"
        stats = db.pool.stats()
        assert stats.in_use == 0
        assert stats.size <= POOL_SIZE
    finally:
        db.close_pool()
    # The killed PgBouncer's server sessions are gone; the new one stays within its pool.
    deadline = time.monotonic() + 10
    while postgres_pool_user.server_connections() > SERVER_POOL_SIZE:
        assert time.monotonic() < deadline, postgres_pool_user.server_connections()
        time.sleep(0.05)


@pytest.mark.parametrize("ping_after", [30.0, 0.0], ids=["ping_after=30", "ping_after=0"])
def test_restart_faster_than_ping_after(pgbouncer: PgBouncer, ping_after: float) -> None:
    """What the restart test above relies on: a connection idle in the pool across a
    PgBouncer restart is dead. Even used less than ``ping_after`` ago it is not handed out:
    the restart left EOF on its socket, which the checkout sees without a round trip
    (``has_input``), so it pings, discards it and hands out a good one."""
    idle = 3
    db = connect(pgbouncer.url(external_pooler="pgbouncer"), max_connections=idle + 1,
                 ping_after=ping_after)
    try:
        held = [db.pool.checkout() for _ in range(idle)]
        for conn in held:
            conn.raw.execute("SELECT 1").fetchone()
        for conn in held:
            db.pool.checkin(conn)
        pgbouncer.kill()
        pgbouncer.start()
        failures = 0
        for i in range(idle + 1):
            try:
                with db.connection_context():
                    assert db.execute_sql(QUERY, (i, 1)).fetchone() == (i + 1,)
            except Exception as exc:
                assert "closed" in str(exc) or "terminated" in str(exc), exc
                failures += 1
        assert failures == 0
        stats = db.pool.stats()
        assert stats.in_use == 0
        assert stats.counters.ping_failures == idle
    finally:
        db.close_pool()
