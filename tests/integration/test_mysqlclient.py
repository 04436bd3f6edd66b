"""The pool over mysqlclient (MySQLdb, the C driver) against the real MariaDB."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flask_peewee_pool import ConfigError, connect
from tests.integration.conftest import ServerCountMonitor

pytest.importorskip("MySQLdb", reason="mysqlclient not installed (CI installs it)")
import MySQLdb.connections  # after the skip check

pytestmark = pytest.mark.mysql


def _db(make_mysql_db: Any, **kwargs: Any) -> Any:
    return make_mysql_db(driver="mysqlclient", **kwargs)


def test_uses_the_c_driver_and_models_work(make_mysql_db: Any) -> None:
    db = _db(make_mysql_db, max_connections=2)
    with db.connection_context():
        assert isinstance(db.connection(), MySQLdb.connections.Connection)
        assert db.execute_sql("SELECT 1 + 1").fetchone()[0] == 2
    assert "mysqlclient" in db.pool.driver.describe()


def test_transaction_state_is_tracked(make_mysql_db: Any) -> None:
    db = _db(make_mysql_db, max_connections=1)
    with db.connection_context():
        db.execute_sql("DROP TABLE IF EXISTS fpp_it_mc")
        db.execute_sql("CREATE TABLE fpp_it_mc (id INT PRIMARY KEY) ENGINE=InnoDB")
    with db.connection_context():  # clean: no rollback round trip
        db.execute_sql("SELECT 1")
    assert db.pool.stats().counters.rollbacks == 0
    db.connect()
    db.execute_sql("START TRANSACTION")
    db.execute_sql("INSERT INTO fpp_it_mc VALUES (1)")
    db.close()  # peewee does not know about it; the pool does
    assert db.pool.stats().counters.rollbacks == 1
    with db.connection_context():
        assert db.execute_sql("SELECT COUNT(*) FROM fpp_it_mc").fetchone()[0] == 0
        with db.atomic():
            db.execute_sql("INSERT INTO fpp_it_mc VALUES (2)")
    assert db.pool.stats().counters.rollbacks == 1  # committed: nothing to roll back
    with db.connection_context():
        assert db.execute_sql("SELECT COUNT(*) FROM fpp_it_mc").fetchone()[0] == 1
        db.execute_sql("DROP TABLE fpp_it_mc")


def test_killed_connections_replaced_and_ping_does_not_reconnect(
    make_mysql_db: Any, mysql_pool_user: Any
) -> None:
    db = _db(make_mysql_db, max_connections=3, ping_after=0)
    conns = [db.pool.checkout() for _ in range(3)]
    ids = {c.raw.thread_id() for c in conns}
    for conn in conns:
        db.pool.checkin(conn)
    mysql_pool_user.kill_all()
    mysql_pool_user.wait_until(0, timeout=10)
    with pytest.raises(MySQLdb.OperationalError):
        db.pool.driver.ping(conns[0].raw)  # no silent reconnect
    for _ in range(5):
        with db.connection_context():
            assert db.execute_sql("SELECT CONNECTION_ID()").fetchone()[0] not in ids


def test_server_count_within_cap_under_threads(
    make_mysql_db: Any, mysql_pool_user: Any
) -> None:
    db = _db(make_mysql_db, max_connections=5, timeout=20)
    barrier = threading.Barrier(20)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            for _ in range(20):
                with db.connection_context():
                    db.execute_sql("SELECT 1").fetchone()
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    with ServerCountMonitor(mysql_pool_user) as monitor:
        threads = [threading.Thread(target=worker) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors and monitor.maximum <= 5
    assert db.pool.stats().in_use == 0


def test_url_scheme_and_bad_driver(mysql_pool_user: Any) -> None:
    url = mysql_pool_user.url.replace("mysql://", "mysql+mysqlclient://", 1)
    db = connect(url + "?max_connections=1")
    try:
        with db.connection_context():
            assert isinstance(db.connection(), MySQLdb.connections.Connection)
    finally:
        db.close_pool()
    with pytest.raises(ConfigError, match="driver"):
        connect(mysql_pool_user.url + "?driver=oracle")


def test_autocommit_switched_off_is_restored_and_kill_seen_without_ping(
    make_mysql_db: Any, mysql_pool_user: Any
) -> None:
    db = _db(make_mysql_db, max_connections=1)  # default ping_after: no ping on reuse
    with db.connection_context():
        db.connection().autocommit(False)
        db.execute_sql("SELECT 1")
    with db.connection_context():
        assert db.connection().get_autocommit()  # restored at checkin
        first = db.execute_sql("SELECT CONNECTION_ID()").fetchone()[0]
    mysql_pool_user.kill_all()
    mysql_pool_user.wait_until(0, timeout=10)
    with db.connection_context():  # the socket poll sees the server's EOF
        assert db.execute_sql("SELECT CONNECTION_ID()").fetchone()[0] != first
