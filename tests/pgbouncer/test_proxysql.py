"""Our pool through a real ProxySQL, when one is given: ``FPP_PROXYSQL_URL``.

ProxySQL is not packaged by Debian, so nothing here starts one; point
``FPP_PROXYSQL_URL=mysql://user:password@host:6033/db`` at a ProxySQL whose backends are
MariaDB/MySQL (optionally ``FPP_PROXYSQL_ADMIN_URL=mysql://admin:admin@host:6032/main`` for
the connection-pool check). Without it these tests are skipped with that reason.

Deliberately unmarked (not ``mysql``): the skip must not count as a skipped database test
under ``FPP_REQUIRE_DB=1``, since CI has no ProxySQL to offer.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from flask_peewee_pool import connect
from tests import dbutil

URL = os.environ.get("FPP_PROXYSQL_URL", "").strip()
ADMIN_URL = os.environ.get("FPP_PROXYSQL_ADMIN_URL", "").strip()

pytestmark = pytest.mark.skipif(
    not URL, reason="no ProxySQL: set FPP_PROXYSQL_URL=mysql://user:pw@host:6033/db to run")

THREADS = 20
CLIENTS = 20


@pytest.fixture
def db() -> Any:
    database = connect(URL, external_pooler="proxysql", max_connections=CLIENTS, timeout=30)
    yield database
    database.close_pool()


def test_twenty_threads_zero_errors(db: Any) -> None:
    table = "fpp_proxysql_counters"
    with db.connection_context():
        db.execute_sql(f"CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY, n INT NOT NULL)"
                       " ENGINE=InnoDB")
        db.execute_sql(f"DELETE FROM {table}")
        for tid in range(THREADS):
            db.execute_sql(f"INSERT INTO {table} VALUES (%s, 0)", (tid,))
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(tid: int) -> None:
        for i in range(30):
            try:
                with db.connection_context():
                    if i % 2:
                        assert db.execute_sql("SELECT %s + %s", (i, tid)).fetchone()[0] == i + tid
                    else:
                        with db.atomic():
                            db.execute_sql(f"UPDATE {table} SET n = n + 1 WHERE id = %s", (tid,))
            except Exception as exc:
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [], errors[:3]
    assert db.pool.stats().in_use == 0
    with db.connection_context():
        counts = dict(db.execute_sql(f"SELECT id, n FROM {table}").fetchall())
        db.execute_sql(f"DROP TABLE {table}")
    assert counts == dict.fromkeys(range(THREADS), 15)


def test_our_connect_sequence_keeps_multiplexing(db: Any) -> None:
    """PyMySQL's connect (SET NAMES, autocommit; no user variables, no untracked SET) must
    leave each client connection multiplexable: CLIENTS connections held open at once,
    queried one after the other, share far fewer backend connections than CLIENTS (a
    session whose multiplexing is off keeps its own backend: CLIENTS distinct ids)."""
    held = [db.pool.checkout() for _ in range(CLIENTS)]
    try:
        ids = set()
        for conn in held:
            with conn.raw.cursor() as cursor:
                cursor.execute("SELECT CONNECTION_ID()")
                ids.add(cursor.fetchone()[0])
        assert len(ids) < CLIENTS, ids
        if ADMIN_URL:
            admin = dbutil.parse_db_url(ADMIN_URL)
            import pymysql

            conn = pymysql.connect(host=admin.host, port=admin.port, user=admin.user,
                                   password=admin.password, database=admin.database or "main")
            try:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT SUM(ConnUsed) FROM stats_mysql_connection_pool")
                    (used,) = cursor.fetchone()
            finally:
                conn.close()
            assert int(used or 0) < CLIENTS, used
    finally:
        for conn in held:
            db.pool.checkin(conn)
