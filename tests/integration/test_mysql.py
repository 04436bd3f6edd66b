"""The pool against a real MariaDB/MySQL server (PyMySQL), as the dedicated pool user."""

from __future__ import annotations

import threading
import time
from typing import Any

import peewee
import pytest

from flask_peewee_pool import ConnectFailed, PooledMySQLDatabase
from tests.integration.conftest import ServerCountMonitor

pytestmark = pytest.mark.mysql


def _connection_id(db: PooledMySQLDatabase) -> int:
    return db.execute_sql("SELECT CONNECTION_ID()").fetchone()[0]


def test_models_and_transactions_through_the_pool(make_mysql_db: Any) -> None:
    db = make_mysql_db(max_connections=4)

    class Note(peewee.Model):
        text = peewee.CharField()

        class Meta:
            database = db
            table_name = "fpp_it_note"

    with db.connection_context():
        db.drop_tables([Note])
        db.create_tables([Note])
    try:
        with db.atomic():
            Note.create(text="kept")
        with pytest.raises(RuntimeError), db.atomic():
            Note.create(text="rolled back")
            raise RuntimeError("abort the transaction")
        db.close()
        with db.connection_context():
            assert [n.text for n in Note.select()] == ["kept"]
        assert db.pool.stats().in_use == 0
    finally:
        with db.connection_context():
            db.drop_tables([Note])


def test_open_transaction_is_rolled_back_on_return(make_mysql_db: Any) -> None:
    db = make_mysql_db(max_connections=1)
    with db.connection_context():
        db.execute_sql("DROP TABLE IF EXISTS fpp_it_txn")
        db.execute_sql("CREATE TABLE fpp_it_txn (id INT PRIMARY KEY) ENGINE=InnoDB")
    # BEGIN behind peewee's back: peewee lets close() through, the pool must notice.
    db.connect()
    db.execute_sql("BEGIN")
    db.execute_sql("INSERT INTO fpp_it_txn VALUES (1)")
    db.close()
    assert db.pool.stats().counters.rollbacks == 1
    with db.connection_context():
        assert db.execute_sql("SELECT COUNT(*) FROM fpp_it_txn").fetchone()[0] == 0
        db.execute_sql("DROP TABLE fpp_it_txn")
    # A clean connection costs no rollback round trip.
    assert db.pool.stats().counters.rollbacks == 1


def test_server_side_count_never_exceeds_max_connections(
    make_mysql_db: Any, mysql_pool_user: Any
) -> None:
    db = make_mysql_db(max_connections=10, timeout=20)
    errors: list[BaseException] = []
    start = threading.Barrier(50)

    def worker() -> None:
        start.wait()
        try:
            for _ in range(20):
                with db.connection_context():
                    db.execute_sql("SELECT SLEEP(0.001)").fetchone()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with ServerCountMonitor(mysql_pool_user) as monitor:
        threads = [threading.Thread(target=worker) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors
    assert monitor.samples > 0
    assert monitor.maximum <= 10
    stats = db.pool.stats()
    assert stats.in_use == 0
    assert stats.size <= 10
    assert stats.counters.checkouts == 50 * 20
    assert mysql_pool_user.server_connections() == stats.size


def test_killed_connections_are_replaced_by_the_pre_checkout_ping(
    make_mysql_db: Any, mysql_pool_user: Any
) -> None:
    db = make_mysql_db(max_connections=5, ping_after=0)
    held = [db.pool.checkout() for _ in range(5)]
    before = {c.raw.thread_id() for c in held}
    for conn in held:
        db.pool.checkin(conn)
    assert mysql_pool_user.kill_all() == 5
    mysql_pool_user.wait_until(0, timeout=10)
    for _ in range(10):  # every request after the kill succeeds
        with db.connection_context():
            assert _connection_id(db) not in before
    assert db.pool.stats().counters.ping_failures >= 1


def test_concurrent_slow_connects_are_not_serialized(
    make_mysql_db: Any, mysql_proxy: Any
) -> None:
    """30 connects of 200 ms each: serialized they take 6 s; here about one connect."""
    mysql_proxy.connect_delay = 0.2
    db = make_mysql_db(host=mysql_proxy.host, port=mysql_proxy.port, max_connections=30)
    barrier = threading.Barrier(30)
    done: list[float] = []

    def worker() -> None:
        barrier.wait()
        with db.connection_context():
            db.execute_sql("SELECT 1").fetchone()
        done.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(30)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(done) == 30
    assert max(done) - t0 < 2.5, "connects were serialized"
    assert db.pool.stats().counters.connects <= 30


def test_connect_error_is_raised_at_once_with_the_pool_name(mysql_pool_user: Any) -> None:
    params = mysql_pool_user.as_dict()
    database = params.pop("database")
    params.update(port=1, timeout=30, connect_timeout=2)
    db = PooledMySQLDatabase(database, pool_name="unreachable", **params)
    t0 = time.monotonic()
    with pytest.raises(ConnectFailed) as info:
        db.connect()
    assert time.monotonic() - t0 < 5  # not the 30 s checkout timeout
    assert "unreachable" in str(info.value)
    assert mysql_pool_user.password not in str(info.value)
    assert isinstance(info.value, peewee.OperationalError)
    db.close_pool()


def test_ssl_context_is_built_once_per_pool(make_mysql_db: Any) -> None:
    db = make_mysql_db(max_connections=3)
    conns = [db.pool.checkout() for _ in range(3)]
    contexts = {id(getattr(c.raw, "ctx", None)) for c in conns}
    for conn in conns:
        db.pool.checkin(conn)
    assert len(contexts) == 1


def test_ping_does_not_reconnect(make_mysql_db: Any, mysql_pool_user: Any) -> None:
    db = make_mysql_db(max_connections=1, ping_after=0)
    conn = db.pool.checkout()
    db.pool.checkin(conn)
    mysql_pool_user.kill_all()
    mysql_pool_user.wait_until(0, timeout=10)
    with pytest.raises(Exception):  # noqa: B017 - any driver error: no silent reconnect
        db.pool.driver.ping(conn.raw)


def test_init_sql_and_configure_run_on_every_new_connection(make_mysql_db: Any) -> None:
    configured: list[int] = []
    db = make_mysql_db(
        max_connections=2,
        init_sql=["SET SESSION time_zone = '+03:00'", "SET @fpp_tag = 'pooled'"],
        configure=lambda raw: configured.append(raw.thread_id()),
    )
    conns = [db.pool.checkout() for _ in range(2)]
    for conn in conns:
        with conn.raw.cursor() as cur:
            cur.execute("SELECT @@session.time_zone, @fpp_tag")
            assert cur.fetchone() == ("+03:00", "pooled")
    assert sorted(configured) == sorted(c.raw.thread_id() for c in conns)
    for conn in conns:
        db.pool.checkin(conn)


def test_resize_under_load_keeps_the_server_count_within_the_caps(
    make_mysql_db: Any, mysql_pool_user: Any
) -> None:
    db = make_mysql_db(max_connections=8, timeout=20)
    stop = threading.Event()
    errors: list[BaseException] = []
    started = threading.Barrier(17)

    def worker() -> None:
        started.wait()
        try:
            while not stop.is_set():
                with db.connection_context():
                    db.execute_sql("SELECT SLEEP(0.002)").fetchone()
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    with ServerCountMonitor(mysql_pool_user) as monitor:
        for t in threads:
            t.start()
        started.wait()
        stop.wait(0.5)
        db.resize(max_connections=3)
        stop.wait(1.0)  # the load drains the in-use surplus
        drained = db.pool.stats().size
        db.resize(max_connections=12)
        stop.wait(0.5)
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors
    assert monitor.maximum <= 12
    assert drained <= 3
    assert db.pool.options.max_connections == 12
    assert db.pool.stats().size <= 12
