"""A connection left dirty by code that raised is never handed to the next user dirty.

Each case runs code that leaves the connection in some state and then raises, inside
``connection_context()`` (or a Flask request), on a pool of one connection, so the next
checkout gets the same connection back if the pool kept it. The next user must see:
autocommit on, no open transaction, none of the failed code's rows, exactly the result of
its own query, and its own writes durable once it returns the connection.

Autocommit switched off (``SET autocommit=0``, PyMySQL ``conn.autocommit(False)``,
psycopg ``conn.autocommit = False``) is undone at checkin: before finding F2 in
docs/reliability.md was fixed, the next user's writes were silently rolled back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_peewee_pool import PooledPostgresqlDatabase

TABLE = "fpp_faults_dirty"

class Boom(Exception):
    """What the application code raises after leaving the connection dirty."""


# ----------------------------------------------------------------------------- MySQL


def _mysql_open_transaction(db: Any) -> None:
    db.execute_sql("BEGIN")
    db.execute_sql(f"INSERT INTO {TABLE} (id) VALUES (1)")


def _mysql_failed_statement_in_transaction(db: Any) -> None:
    db.execute_sql("BEGIN")
    db.execute_sql(f"INSERT INTO {TABLE} (id) VALUES (1)")
    db.execute_sql(f"INSERT INTO {TABLE} (id) VALUES (1)")  # duplicate key: raises


def _mysql_unbuffered_result_half_read(db: Any) -> None:
    import pymysql

    cursor = db.connection().cursor(pymysql.cursors.SSCursor)
    cursor.execute("SELECT seq FROM seq_1_to_100000")
    assert cursor.fetchone() == (1,)
    _keep.append(cursor)  # the application still references it


def _mysql_second_result_set_unread(db: Any) -> None:
    cursor = db.execute_sql("SELECT 1; SELECT 2")  # needs CLIENT.MULTI_STATEMENTS
    assert cursor.fetchall() == ((1,),)


def _mysql_autocommit_off_method(db: Any) -> None:
    db.connection().autocommit(False)


def _mysql_autocommit_off_sql(db: Any) -> None:
    db.execute_sql("SET autocommit = 0")


_keep: list[Any] = []

MYSQL_CASES: list[Any] = [
    pytest.param(_mysql_open_transaction, {}, id="open-transaction"),
    pytest.param(_mysql_failed_statement_in_transaction, {}, id="failed-statement-in-txn"),
    pytest.param(_mysql_unbuffered_result_half_read, {}, id="sscursor-half-read"),
    pytest.param(_mysql_second_result_set_unread, {"multi_statements": True},
                 id="second-result-set-unread"),
    pytest.param(_mysql_autocommit_off_method, {}, id="autocommit-off-method"),
    pytest.param(_mysql_autocommit_off_sql, {}, id="autocommit-off-sql"),
]


@pytest.fixture
def mysql_table(mysql_pool_user: Any) -> Iterator[None]:
    conn = mysql_pool_user.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
            cur.execute(f"CREATE TABLE {TABLE} (id INT PRIMARY KEY) ENGINE=InnoDB")
        yield
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
    finally:
        conn.close()


def _mysql_rows(mysql_pool_user: Any) -> list[int]:
    """The table's rows as a fresh session sees them (committed data only)."""
    conn = mysql_pool_user.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id FROM {TABLE} ORDER BY id")
            return [int(r[0]) for r in cur.fetchall()]
    finally:
        conn.close()


def check_next_user_mysql(db: Any, mysql_pool_user: Any) -> dict[str, Any]:
    with db.connection_context():
        autocommit, in_txn = db.execute_sql("SELECT @@autocommit, @@in_transaction").fetchone()
        assert (autocommit, in_txn) == (1, 0), "handed out with autocommit off or in a txn"
        assert db.execute_sql("SELECT 4242").fetchall() == ((4242,),), "leftover rows"
        assert db.execute_sql(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0] == 0
        db.execute_sql(f"INSERT INTO {TABLE} (id) VALUES (7)")
    # The next user's write is durable once it has returned the connection.
    assert _mysql_rows(mysql_pool_user) == [7]
    return {"autocommit": autocommit, "in_transaction": in_txn}


@pytest.mark.mysql
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(("dirty", "extra"), MYSQL_CASES)
def test_mysql_dirty_connection_is_never_handed_out_dirty(
        make_db: Any, mysql_pool_user: Any, mysql_table: None, figures: Any,
        dirty: Callable[[Any], None], extra: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {}
    if extra.get("multi_statements"):
        from pymysql.constants import CLIENT

        kwargs["client_flag"] = CLIENT.MULTI_STATEMENTS
    db = make_db(direct=True, max_connections=1, **kwargs)
    with pytest.raises(Exception) as info, db.connection_context():
        dirty(db)
        raise Boom
    assert isinstance(info.value, Boom) or "Duplicate" in str(info.value)
    seen = check_next_user_mysql(db, mysql_pool_user)
    stats = db.pool.stats()
    assert stats.in_use == 0
    figures(case=dirty.__name__.lstrip("_"), rollbacks=stats.counters.rollbacks,
            discarded=stats.counters.retired_broken, connects=stats.counters.connects, **seen)
    _keep.clear()


@pytest.mark.mysql
@pytest.mark.slow
def test_flask_request_that_leaves_a_transaction_open_and_raises(
        mysql_pool_user: Any, mysql_table: None, tmp_path: Path) -> None:
    """A view enters ``db.atomic()`` without leaving it and raises: peewee's ``close()``
    would refuse ("transaction is open"); the request teardown rolls it back and returns it."""
    from flask import Flask

    from flask_peewee_pool import PeeweePool

    app = Flask(__name__)
    app.config.update(PEEWEE_POOL_DATABASE=mysql_pool_user.url + "?max_connections=1",
                      PEEWEE_POOL_STATS_DIR=str(tmp_path / "stats"))
    ext = PeeweePool(app)
    db = app.extensions["peewee_pool"].database

    @app.route("/fail")
    def fail() -> str:
        db.atomic().__enter__()
        db.execute_sql(f"INSERT INTO {TABLE} (id) VALUES (1)")
        raise Boom

    @app.route("/check")
    def check() -> str:
        autocommit, in_txn = db.execute_sql("SELECT @@autocommit, @@in_transaction").fetchone()
        count = db.execute_sql(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0]
        db.execute_sql(f"INSERT INTO {TABLE} (id) VALUES (7)")
        return f"{autocommit} {in_txn} {count}"

    try:
        client = app.test_client()
        assert client.get("/fail").status_code == 500
        assert client.get("/check").get_data(as_text=True) == "1 0 0"
        assert ext.stats(app).in_use == 0
        assert _mysql_rows(mysql_pool_user) == [7]
    finally:
        db.close_pool()


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def make_pg_db(postgres_pool_user: Any) -> Iterator[Callable[..., PooledPostgresqlDatabase]]:
    made: list[PooledPostgresqlDatabase] = []

    def make(**kwargs: Any) -> PooledPostgresqlDatabase:
        params = postgres_pool_user.as_dict()
        database = params.pop("database")
        params.update(kwargs)
        db = PooledPostgresqlDatabase(database, **params)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close_pool()
    postgres_pool_user.wait_until(0, timeout=15)


@pytest.fixture
def pg_table(postgres_pool_user: Any) -> Iterator[None]:
    conn = postgres_pool_user.connect(autocommit=True)
    try:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id INT PRIMARY KEY)")
        yield
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    finally:
        conn.close()


def _pg_open_transaction(db: Any) -> None:
    db.execute_sql("BEGIN")
    db.execute_sql(f"INSERT INTO {TABLE} (id) VALUES (1)")


def _pg_failed_statement_in_transaction(db: Any) -> None:
    db.execute_sql("BEGIN")
    db.execute_sql(f"INSERT INTO {TABLE} (id) VALUES (1)")
    with contextlib.suppress(Exception):
        db.execute_sql("SELECT 1 / 0")  # the transaction is now aborted (INERROR)


def _pg_autocommit_off(db: Any) -> None:
    db.connection().autocommit = False


PG_CASES: list[Any] = [
    pytest.param(_pg_open_transaction, id="open-transaction"),
    pytest.param(_pg_failed_statement_in_transaction, id="aborted-transaction"),
    pytest.param(_pg_autocommit_off, id="autocommit-off"),
]


@pytest.mark.postgres
@pytest.mark.parametrize("dirty", PG_CASES)
def test_postgres_dirty_connection_is_never_handed_out_dirty(
        make_pg_db: Any, postgres_pool_user: Any, pg_table: None,
        dirty: Callable[[Any], None]) -> None:
    db = make_pg_db(max_connections=1)
    with pytest.raises(Boom), db.connection_context():
        dirty(db)
        raise Boom
    with db.connection_context():
        raw = db.connection()
        assert raw.autocommit is True, "handed out with autocommit off"
        assert raw.info.transaction_status == 0, "handed out inside a transaction"
        assert db.execute_sql("SELECT 4242").fetchall() == [(4242,)]
        assert db.execute_sql(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0] == 0
        db.execute_sql(f"INSERT INTO {TABLE} (id) VALUES (7)")
    conn = postgres_pool_user.connect(autocommit=True)
    try:
        rows = conn.execute(f"SELECT id FROM {TABLE}").fetchall()
    finally:
        conn.close()
    assert rows == [(7,)], "the next user's write was lost"
