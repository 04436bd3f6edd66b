"""No password in log records or exception chains, on every failure path that logs or raises.

Connect refused, authentication failure (with a wrong, equally distinctive password), the
maintainer's backoff while the database is down, failed pre-checkout pings, failed
keepalive pings, leak warnings, checkout timeouts and rejections. Every logger is captured
at DEBUG (the ``debug_logs`` fixture checks every record at teardown).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from flask_peewee_pool import (
    CheckoutRejected,
    CheckoutTimeout,
    ConnectFailed,
    PooledMySQLDatabase,
    PoolExhausted,
    PoolTimeout,
    connect,
)
from tests.security.conftest import SECRET, WRONG_PASSWORD, assert_exception_clean


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def _refused_databases() -> list[Any]:
    """The password given every way a user can give it, to a port where nothing listens."""
    return [
        PooledMySQLDatabase("test", host="127.0.0.1", port=1, user="fpp_faults",
                            password=SECRET, connect_timeout=2),
        PooledMySQLDatabase("test", host="127.0.0.1", port=1, user="fpp_faults",
                            passwd=SECRET, connect_timeout=2),
        connect(f"mysql://fpp_faults:{SECRET}@127.0.0.1:1/test?connect_timeout=2"),
        connect(f"mysql://fpp_faults@127.0.0.1:1/test?password={SECRET}&connect_timeout=2"),
        connect(f"postgresql://fpp_faults:{SECRET}@127.0.0.1:1/test?connect_timeout=2"),
    ]


@pytest.mark.filterwarnings("ignore:'passwd' is deprecated:DeprecationWarning")
def test_connect_refused(debug_logs: Any) -> None:
    for db in _refused_databases():
        try:
            with pytest.raises(ConnectFailed) as info:
                db.connect()
            assert_exception_clean(info.value)
            with pytest.raises(Exception) as raw_info:  # the pool's own API too
                db.pool.checkout()
            assert_exception_clean(raw_info.value)
        finally:
            db.close_pool()


def test_backoff_while_the_database_is_down(debug_logs: Any) -> None:
    db = PooledMySQLDatabase("test", host="127.0.0.1", port=1, user="fpp_faults",
                             password=SECRET, min_idle=2, max_backoff=0.2, connect_timeout=2)
    try:
        with pytest.raises(ConnectFailed) as info:
            db.connect()  # starts the maintainer, which keeps retrying with backoff
        assert_exception_clean(info.value)
        _wait(lambda: db.pool.stats().counters.connect_failures >= 4)
        assert db.pool.stats().database_down
    finally:
        db.close_pool()
    assert any("database unreachable" in r.getMessage() for r in debug_logs.records)


@pytest.mark.mysql
def test_authentication_failure_with_a_wrong_password(make_mysql: Any, debug_logs: Any) -> None:
    db = make_mysql(password=WRONG_PASSWORD, min_idle=1, max_backoff=0.2)
    with pytest.raises(ConnectFailed) as info:
        db.connect()
    assert "Access denied" in str(info.value)
    assert_exception_clean(info.value)
    _wait(lambda: db.pool.stats().counters.connect_failures >= 3)  # the maintainer's too


@pytest.mark.mysql
def test_failed_pings_at_checkout_and_keepalive(make_mysql: Any, mysql_pool_user: Any,
                                                debug_logs: Any) -> None:
    at_checkout = make_mysql(max_connections=2, ping_after=0)
    keepalive = make_mysql(max_connections=2, ping_after=None, keepalive=0.2)
    for db in (at_checkout, keepalive):
        conn = db.pool.checkout()
        db.pool.checkin(conn)
    mysql_pool_user.kill_all()
    mysql_pool_user.wait_until(0, timeout=10)
    with at_checkout.connection_context():
        assert at_checkout.execute_sql("SELECT 1").fetchone() == (1,)
    assert at_checkout.pool.stats().counters.ping_failures >= 1
    _wait(lambda: keepalive.pool.stats().counters.keepalive_failures >= 1)
    messages = " ".join(r.getMessage() for r in debug_logs.records)
    assert "failed its ping" in messages and "keepalive ping failed" in messages


@pytest.mark.mysql
def test_leak_warning(make_mysql: Any, debug_logs: Any) -> None:
    db = make_mysql(leak_threshold=0.2)
    db.connect()
    try:
        _wait(lambda: db.pool.stats().counters.leaks >= 1)
    finally:
        db.close()
    assert any("leak_threshold" in r.getMessage() for r in debug_logs.records)


@pytest.mark.mysql
def test_timeout_and_rejection_messages(make_mysql: Any, debug_logs: Any) -> None:
    db = make_mysql(max_connections=1, timeout=0.2, max_waiting=1)
    held = db.pool.checkout()
    try:
        with pytest.raises(CheckoutTimeout) as timeout_info:
            db.connect()
        assert_exception_clean(timeout_info.value)
        with pytest.raises(PoolTimeout) as pool_info:
            db.pool.checkout()
        assert_exception_clean(pool_info.value)
        def wait_for_one() -> None:
            conn = db.pool.checkout(timeout=5)  # gets it once the test gives it back
            db.pool.checkin(conn)

        waiter = threading.Thread(target=wait_for_one)
        waiter.start()
        _wait(lambda: db.pool.stats().waiting == 1)
        with pytest.raises(CheckoutRejected) as rejected:
            db.connect()
        assert isinstance(rejected.value, PoolExhausted)
        assert_exception_clean(rejected.value)
    finally:
        db.pool.checkin(held)
    waiter.join(10)
    assert not waiter.is_alive() and db.pool.stats().in_use == 0
