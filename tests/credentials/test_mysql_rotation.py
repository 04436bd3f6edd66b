"""A MariaDB password rotated under load: the pool follows a password callable.

8 threads query through a pool capped at 4 whose connections live about a second
(``max_lifetime=1``), so the maintainer keeps opening new ones. Mid-run the account's
password changes (``ALTER USER ... IDENTIFIED BY``) and the callable starts returning the
new one. A connection opened before the change keeps working (the server does not
re-authenticate a session); every new connection after it uses the new password; no
request that starts after the callable switched fails.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from flask_peewee_pool import PooledMySQLDatabase
from tests import dbutil

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

OLD = "fpp-rot-old-1Zq"
NEW = "fpp-rot-new-8Xw"
CAP = 4
THREADS = 8


@pytest.fixture
def rotating_user(mysql_url: str, mysql_pool_user: Any) -> Iterator[Any]:
    name = (os.environ.get("FPP_POOL_USER", "").strip() or dbutil.POOL_USER) + "_rot"
    user = dbutil.setup_mysql_pool_user(mysql_url, user=name, password=OLD)
    if not user.dedicated:
        user.close()
        pytest.skip("no CREATE USER privilege: cannot rotate a dedicated account")
    user.kill_all()
    user.wait_until(0, timeout=10)
    try:
        yield user
    finally:
        user.kill_all()
        user.close()


def _set_password(mysql_url: str, user: str, password: str) -> None:
    admin = pymysql.connect(**dbutil.mysql_connect_kwargs(mysql_url, autocommit=True))
    try:
        with admin.cursor() as cur:
            for host in ("%", "localhost", "127.0.0.1"):
                cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
    finally:
        admin.close()


def _can_log_in(user: Any, password: str) -> bool:
    try:
        pymysql.connect(host=user.host, port=user.port, user=user.user, password=password,
                        database=user.database, connect_timeout=5).close()
    except pymysql.err.OperationalError:
        return False
    return True


def test_password_rotated_mid_load(mysql_url: str, rotating_user: Any) -> None:
    current = [OLD]
    calls = [0]

    def password() -> str:
        calls[0] += 1
        return current[0]

    db = PooledMySQLDatabase(rotating_user.database, host=rotating_user.host,
                             port=rotating_user.port, user=rotating_user.user,
                             password=password, max_connections=CAP, max_lifetime=1.0,
                             timeout=10, pool_name="rotation")
    switched_at = [float("inf")]
    done: list[tuple[float, float]] = []  # (start, end) of every request that succeeded
    failed: list[tuple[float, str]] = []  # (start, error) of every request that failed
    stop = threading.Event()
    record = threading.Lock()

    def load() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                with db.connection_context():
                    db.execute_sql("SELECT 1").fetchone()
            except Exception as exc:
                with record:
                    failed.append((started, f"{type(exc).__name__}: {exc}"))
            else:
                with record:
                    done.append((started, time.monotonic()))

    def wait_for(condition: Any, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, "load made no progress"
            assert not stop.wait(0.05)

    threads = [threading.Thread(target=load) for _ in range(THREADS)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(done) >= 200 and db.pool.stats().counters.connects >= CAP, 30)
        held = db.pool.checkout()  # an "existing connection", opened with the old password
        _set_password(mysql_url, rotating_user.user, NEW)
        current[0] = NEW  # the secret store now hands out the new password
        switched_at[0] = time.monotonic()
        connects_at_switch = db.pool.stats().counters.connects
        calls_at_switch = calls[0]
        with held.raw.cursor() as cur:  # still valid after the change
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        db.pool.checkin(held)
        # Run on until every connection has been replaced twice over (lifetime ~1 s).
        wait_for(lambda: db.pool.stats().counters.connects >= connects_at_switch + 2 * CAP
                 and sum(1 for s, _ in done if s > switched_at[0]) >= 200, 40)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        stats = db.pool.stats()
        db.close_pool()

    after = [f for f in failed if f[0] >= switched_at[0]]
    before = [f for f in failed if f[0] < switched_at[0]]
    assert after == [], after[:5]
    assert calls[0] - calls_at_switch >= 2 * CAP  # every new connection asked again
    assert stats.counters.connects - connects_at_switch >= 2 * CAP
    assert stats.in_use == 0
    assert _can_log_in(rotating_user, NEW) and not _can_log_in(rotating_user, OLD)
    for _, error in failed:
        assert OLD not in error and NEW not in error
    print(f"\nrotation: {len(done)} requests ok, {len(before)} failed before the switch "
          f"(in the window between ALTER USER and the callable), {len(after)} after; "
          f"{stats.counters.connects - connects_at_switch} connects after the switch, "
          f"{calls[0]} callable calls")
