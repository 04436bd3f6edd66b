"""``pool.drain()`` under load on the real MariaDB server (issue 15 item 3).

A pool capped at 4, 8 threads each running ``SELECT CONNECTION_ID()`` in a loop; a
sampler reads the server's processlist for the pool account all along. Then ``drain()``:

* every request succeeds (0 errors);
* no checkout after the drain waits longer than one connect (measured in the same run:
  the worst of the pool's own connects and of direct connects) plus the worst wait
  before the drain plus generous slack for a noisy 2-core machine;
* the server never lists more than the cap for the account;
* within a bounded time every connection id requests get, and every id the server lists
  for the account, is new: none of the ids seen before the drain.

Nothing is killed and no password changes: the ids prove the replacement.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pymysql
import pytest

from flask_peewee_pool import PooledMySQLDatabase
from tests import dbutil

pytestmark = [pytest.mark.mysql]

CAP = 4
THREADS = 8
SLACK = 1.5  # seconds: generous, the machine is shared with other suites


def test_drain_under_load_replaces_every_connection(mysql_url: str,
                                                   mysql_pool_user: Any) -> None:
    user = mysql_pool_user
    if user.dedicated:
        user.wait_until(0, timeout=10)
    # One connect, measured now, directly (the pool's own connects are added below).
    direct = []
    for _ in range(3):
        t0 = time.monotonic()
        user.connect().close()
        direct.append(time.monotonic() - t0)

    db = PooledMySQLDatabase(user.database, host=user.host, port=user.port, user=user.user,
                             password=user.password, max_connections=CAP, timeout=20,
                             max_lifetime=None, idle_timeout=None, keepalive=None,
                             pool_name="drain_load")
    record = threading.Lock()
    results: list[tuple[float, float, int]] = []  # (start, checkout wait, connection id)
    errors: list[str] = []
    stop = threading.Event()
    server_max = [0]
    server_samples = [0]

    def load() -> None:
        while not stop.is_set():
            start = time.monotonic()
            try:
                db.connect()
                waited = time.monotonic() - start
                try:
                    (cid,) = db.execute_sql("SELECT CONNECTION_ID()").fetchone()
                finally:
                    db.close()
            except Exception as exc:
                with record:
                    errors.append(f"{type(exc).__name__}: {exc}")
            else:
                with record:
                    results.append((start, waited, int(cid)))

    admin = pymysql.connect(**dbutil.mysql_connect_kwargs(mysql_url, autocommit=True))

    def sample() -> None:  # back to back on its own admin session: ~1 ms a sample
        with admin.cursor() as cur:
            while not stop.is_set():
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                            "WHERE USER = %s", (user.user,))
                (n,) = cur.fetchone()
                server_max[0] = max(server_max[0], int(n))
                server_samples[0] += 1

    def wait_for(condition: Any, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
            assert not stop.wait(0.02)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(THREADS)]
    sampler = threading.Thread(target=sample, daemon=True)
    try:
        sampler.start()
        for t in threads:
            t.start()
        wait_for(lambda: len(results) >= 300 and db.pool.stats().size == CAP, 30,
                 "load warmed up")
        with record:
            before_ids = {cid for _, _, cid in results}
            worst_before = max(w for _, w, _ in results)
        before_ids |= set(user.connection_ids())
        samples_at_drain = server_samples[0]
        drained_at = time.monotonic()
        assert db.pool.drain() == CAP
        wait_for(lambda: db.pool.stats().stale == 0, 20, "no old connection left")
        clean_at = time.monotonic()
        wait_for(lambda: sum(1 for s, _, _ in results if s > clean_at) >= 300, 30,
                 "300 requests after the drain")
        wait_for(lambda: not set(user.connection_ids()) & before_ids, 10,
                 "the server lists no old session")
        wait_for(lambda: server_samples[0] >= samples_at_drain + 50, 10,
                 "50 processlist samples after the drain")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        sampler.join(30)
        admin.close()
        stats = db.pool.stats()
        db.close_pool()

    connect_worst = max(max(direct), stats.connect_time["max"])
    after = [(s, w, c) for s, w, c in results if s >= drained_at]
    worst_after = max(w for _, w, _ in after)
    late = {c for s, _, c in results if s > clean_at}
    assert errors == [], errors[:5]
    assert stats.counters.drains == 1 and stats.counters.retired_drained == CAP
    assert stats.counters.timeouts == 0
    assert worst_after <= worst_before + connect_worst + SLACK, (
        worst_after, worst_before, connect_worst)
    assert samples_at_drain > 0 and server_max[0] <= CAP
    assert late and not late & before_ids
    print(f"\ndrain under load: {len(results)} requests, {len(errors)} errors; "
          f"{len(after)} after drain(); worst checkout wait before {worst_before * 1000:.1f} "
          f"ms, after {worst_after * 1000:.1f} ms; one connect <= {connect_worst * 1000:.1f} "
          f"ms; drain complete (stale 0) in {(clean_at - drained_at) * 1000:.0f} ms; server "
          f"max {server_max[0]} sessions (cap {CAP}, {server_samples[0]} samples); "
          f"ids before {sorted(before_ids)}, after {sorted(late)}")
