"""The maintainer against a real MariaDB: keepalive, fork safety, an expiry storm."""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any

import pytest

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


def _record_connect_threads(db: Any) -> collections.Counter[str]:
    """Count the connects of ``db``'s pool per thread name."""
    by_thread: collections.Counter[str] = collections.Counter()
    driver = db.pool.driver
    real_connect = driver.connect

    def connect(**kwargs: Any) -> Any:
        by_thread[threading.current_thread().name] += 1
        return real_connect(**kwargs)

    driver.connect = connect
    return by_thread


def test_keepalive_beats_the_server_wait_timeout(make_mysql_db: Any) -> None:
    """Session wait_timeout 2 s, pool idle 3 s: the next requests see zero errors."""
    db = make_mysql_db(
        max_connections=4, min_idle=4, keepalive=0.5, ping_after=None,
        init_command="SET SESSION wait_timeout=2",
    )
    conns = [db.pool.checkout() for _ in range(4)]
    for conn in conns:
        db.pool.checkin(conn)
    time.sleep(3)  # the scenario itself: idle longer than the server allows
    for _ in range(8):
        with db.connection_context():
            assert db.execute_sql("SELECT 1").fetchone()[0] == 1
    stats = db.pool.stats()
    assert stats.counters.keepalive_pings >= 4
    assert stats.counters.keepalive_failures == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_uses_its_own_connections(make_mysql_db: Any) -> None:
    db = make_mysql_db(max_connections=3)
    conns = [db.pool.checkout() for _ in range(3)]
    parent_ids = {c.raw.thread_id() for c in conns}
    for conn in conns:
        db.pool.checkin(conn)
    # This thread now keeps its home in the pool (peewee layer), whose segment holds an
    # idle parent connection on top: the child's connects through that home must not
    # reach it.
    with db.connection_context():
        assert db.execute_sql("SELECT CONNECTION_ID()").fetchone()[0] in parent_ids
    assert db._state.home is not None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            ids = set()
            for _ in range(3):
                with db.connection_context():
                    ids.add(db.execute_sql("SELECT CONNECTION_ID()").fetchone()[0])
            os.write(write_end, ",".join(map(str, sorted(ids))).encode())
            db.close_pool()
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child_ids = {int(x) for x in pipe.read().split(",") if x}
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_ids and not child_ids & parent_ids
    # The parent's sessions survived the child's start and exit.
    seen = set()
    held = [db.pool.checkout() for _ in range(3)]
    for conn in held:
        with conn.raw.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            seen.add(cur.fetchone()[0])
    for conn in held:
        db.pool.checkin(conn)
    assert seen == parent_ids


def test_expiry_storm_connects_only_on_the_maintainer(
    make_mysql_db: Any, mysql_proxy: Any, mysql_pool_user: Any
) -> None:
    """50 connections born together, lifetime 4 s, +20 ms connects, 50 busy threads."""
    threads_n = 50
    mysql_proxy.connect_delay = 0.02
    mysql_proxy.set_latency(0.0005)
    db = make_mysql_db(
        host=mysql_proxy.host, port=mysql_proxy.port, max_connections=threads_n,
        max_lifetime=4, lifetime_jitter=0.2, timeout=10,
    )
    warm = [db.pool.checkout() for _ in range(threads_n)]
    original = {c.raw.thread_id() for c in warm}
    for conn in warm:
        db.pool.checkin(conn)
    connects = _record_connect_threads(db)
    stop = threading.Event()
    errors: list[BaseException] = []
    worst = [0.0]
    barrier = threading.Barrier(threads_n + 1)

    def worker() -> None:
        barrier.wait()
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                with db.connection_context():
                    db.execute_sql("SELECT 1").fetchone()
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)
                return
            worst[0] = max(worst[0], time.monotonic() - t0)

    workers = [threading.Thread(target=worker, name=f"req-{i}") for i in range(threads_n)]
    for t in workers:
        t.start()
    barrier.wait()
    stop.wait(5.5)  # run across the whole expiry window (lifetimes 3.2..4 s)
    stop.set()
    for t in workers:
        t.join(30)
    assert not errors
    request_connects = {n: c for n, c in connects.items() if n.startswith("req-")}
    assert request_connects == {}, f"requests paid for expiry: {request_connects}"
    assert sum(connects.values()) >= threads_n
    current = set()
    held = [db.pool.checkout() for _ in range(db.pool.stats().size)]
    current = {c.raw.thread_id() for c in held}
    for conn in held:
        db.pool.checkin(conn)
    assert not current & original, "every connection was recycled"
    stats = db.pool.stats()
    assert stats.counters.retired_lifetime >= threads_n
    assert stats.size <= threads_n
    assert mysql_pool_user.server_connections() <= threads_n
