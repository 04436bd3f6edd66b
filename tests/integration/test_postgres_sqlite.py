"""The pool against real PostgreSQL (psycopg 3) and SQLite."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import peewee
import pytest

from flask_peewee_pool import PooledSqliteDatabase, connect
from tests.integration.conftest import ServerCountMonitor


def _exercise_models(db: peewee.Database) -> None:
    class Item(peewee.Model):
        name = peewee.CharField()

        class Meta:
            database = db
            table_name = "fpp_it_item"

    with db.connection_context():
        db.drop_tables([Item])
        db.create_tables([Item])
    try:
        with db.atomic():
            Item.create(name="kept")
        with pytest.raises(RuntimeError), db.atomic():
            Item.create(name="dropped")
            raise RuntimeError
        with db.connection_context():
            assert [i.name for i in Item.select()] == ["kept"]
    finally:
        with db.connection_context():
            db.drop_tables([Item])
    db.close()
    assert db.pool.stats().in_use == 0


@pytest.mark.postgres
def test_postgres_models_and_transactions(make_postgres_db: Any) -> None:
    _exercise_models(make_postgres_db(max_connections=3))


@pytest.mark.postgres
def test_postgres_open_transaction_rolled_back_on_return(make_postgres_db: Any) -> None:
    db = make_postgres_db(max_connections=1)
    with db.connection_context():
        db.execute_sql("DROP TABLE IF EXISTS fpp_it_pg_txn")
        db.execute_sql("CREATE TABLE fpp_it_pg_txn (id int primary key)")
    db.connect()
    db.execute_sql("BEGIN")
    db.execute_sql("INSERT INTO fpp_it_pg_txn VALUES (1)")
    db.close()
    with db.connection_context():
        assert db.execute_sql("SELECT count(*) FROM fpp_it_pg_txn").fetchone()[0] == 0
        db.execute_sql("DROP TABLE fpp_it_pg_txn")
    assert db.pool.stats().counters.rollbacks == 1


@pytest.mark.postgres
def test_postgres_failed_transaction_is_cleaned_on_return(make_postgres_db: Any) -> None:
    db = make_postgres_db(max_connections=1)
    db.connect()
    db.execute_sql("BEGIN")
    with pytest.raises(peewee.ProgrammingError):
        db.execute_sql("SELECT * FROM fpp_no_such_table")
    db.close()  # in error state: the pool rolls back
    with db.connection_context():
        assert db.execute_sql("SELECT 1").fetchone()[0] == 1


@pytest.mark.postgres
def test_postgres_server_count_within_cap(make_postgres_db: Any, postgres_pool_user: Any) -> None:
    db = make_postgres_db(max_connections=6, timeout=20)
    barrier = threading.Barrier(30)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            for _ in range(10):
                with db.connection_context():
                    db.execute_sql("SELECT pg_sleep(0.001)")
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    with ServerCountMonitor(postgres_pool_user) as monitor:
        threads = [threading.Thread(target=worker) for _ in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors
    assert monitor.maximum <= 6
    assert db.pool.stats().in_use == 0


@pytest.mark.postgres
def test_postgres_killed_connections_replaced(
    make_postgres_db: Any, postgres_pool_user: Any
) -> None:
    db = make_postgres_db(max_connections=3, ping_after=0)
    conns = [db.pool.checkout() for _ in range(3)]
    for c in conns:
        db.pool.checkin(c)
    assert postgres_pool_user.kill_all() == 3
    postgres_pool_user.wait_until(0, timeout=10)
    for _ in range(5):
        with db.connection_context():
            assert db.execute_sql("SELECT 1").fetchone()[0] == 1


def test_sqlite_models_and_transactions(tmp_path: Path) -> None:
    db = PooledSqliteDatabase(str(tmp_path / "t.db"), max_connections=3,
                              pragmas={"journal_mode": "wal"})
    try:
        _exercise_models(db)
        with db.connection_context():  # peewee's pragmas applied to pooled connections
            assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close_pool()


def test_sqlite_open_transaction_rolled_back(tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'txn.db'}?max_connections=1")
    try:
        with db.connection_context():
            db.execute_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        db.connect()
        db.execute_sql("BEGIN")
        db.execute_sql("INSERT INTO t VALUES (1)")
        db.close()
        with db.connection_context():
            assert db.execute_sql("SELECT count(*) FROM t").fetchone()[0] == 0
    finally:
        db.close_pool()


def test_deferred_init_and_proxy(tmp_path: Path) -> None:
    db = PooledSqliteDatabase(None)
    proxy = peewee.DatabaseProxy()
    with pytest.raises(peewee.InterfaceError):
        db.connect()
    db.init(str(tmp_path / "d.db"), max_connections=2, stale_timeout=60)
    proxy.initialize(db)
    assert db.pool_options.max_lifetime == 60
    with proxy.connection_context():
        assert proxy.execute_sql("SELECT 1").fetchone()[0] == 1
    db.close_pool()


def test_playhouse_compatible_methods(tmp_path: Path) -> None:
    db = PooledSqliteDatabase(str(tmp_path / "c.db"), 4, 300, 0)  # positional, as playhouse
    assert db.pool_options.max_connections == 4
    assert db.pool_options.max_lifetime == 300
    assert db.pool_options.timeout is None  # 0 waits forever, as in playhouse
    try:
        db.connect()
        assert db.connect(reuse_if_open=True) is False
        with pytest.raises(peewee.OperationalError):
            db.connect()
        db.close()
        db.connect()
        db.manual_close()
        assert db.is_closed()
        with db.connection_context():
            pass
        assert db.close_idle() >= 1
        leaked = db.pool.checkout()
        assert db.close_stale(age=0) == 1
        assert leaked.reclaimed
        db.close_all()
        assert db.pool.stats().in_use == 0
    finally:
        db.close_pool()
