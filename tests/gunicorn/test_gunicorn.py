"""The example app under gunicorn on MariaDB: one pool per worker, nothing across a fork.

Six set-ups (``sync`` / ``gthread`` / ``gevent`` workers, with and without ``--preload``), WORKERS
workers of MAX_CONNECTIONS connections each, load from threads with http.client. What is
checked, from outside the workers: the server-side ``CONNECTION_ID()`` each request used
and the pid that served it (never shared), the server's own count of the pool account's
sessions (sampled throughout), ``flask pool-stats --json`` run as a separate process, and
what a graceful restart (HUP) or a SIGKILLed worker does to requests and to the server.
"""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from typing import Any

import pytest

from tests.gunicorn.conftest import (
    EXITED,
    MAX_CONNECTIONS,
    WORKERS,
    Load,
    Result,
    Sampler,
    pool_stats,
    wait_server,
)

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

VARIANTS = [
    pytest.param("sync", False, id="sync"),
    pytest.param("sync", True, id="sync-preload"),
    pytest.param("gthread", False, id="gthread"),
    pytest.param("gthread", True, id="gthread-preload"),
    pytest.param("gevent", False, id="gevent"),
    pytest.param("gevent", True, id="gevent-preload"),
]
WORK = "/_fpp/work?ms=15"  # holds its connection 15 ms
LOAD_THREADS = 8  # more than WORKERS x MAX_CONNECTIONS: gthread workers queue in their pools
CAP = WORKERS * MAX_CONNECTIONS


@pytest.fixture(autouse=True)
def no_sessions_left(mysql_pool_user: Any) -> None:
    """Each test starts with no session of the pool account (the previous test's gunicorn
    has exited, and the server ends its sessions asynchronously)."""
    mysql_pool_user.wait_until(0, timeout=10)


def ok(results: list[Result]) -> list[Result]:
    return [r for r in results if r.ok]


def served_by(results: list[Result]) -> dict[int, set[int]]:
    """{worker pid: server-side connection ids its requests used}."""
    found: dict[int, set[int]] = defaultdict(set)
    for r in ok(results):
        assert r.body is not None
        found[r.body["pid"]].add(r.body["connection_id"])
    return found


def failures(results: list[Result]) -> list[str]:
    return [f"{r.status or r.error} at {r.start:.3f}" for r in results if not r.ok]


@pytest.mark.parametrize(("worker_class", "preload"), VARIANTS)
def test_each_worker_has_its_own_pool_and_stays_under_the_cap(
        start_gunicorn: Any, gunicorn_env: dict[str, str], mysql_pool_user: Any,
        worker_class: str, preload: bool) -> None:
    server = start_gunicorn(worker_class, preload)
    workers = server.live_workers()
    assert len(workers) == WORKERS and server.pid not in workers
    # Sessions before any request: the master's, from the app factory's create_tables
    # (preload; the documented when_ready closes it), or each worker's own (no preload).
    before = set(mysql_pool_user.connection_ids())

    with Sampler(mysql_pool_user) as sampler, Load(server.port, WORK, LOAD_THREADS) as load:
        results = load.wait_until(
            lambda rs: len(ok(rs)) >= 200 and set(served_by(rs)) >= workers,
            "200 requests served by every worker")
    results = load.snapshot()

    assert failures(results) == []
    by_pid = served_by(results)
    assert set(by_pid) == workers  # the master serves nothing
    owners: dict[int, set[int]] = defaultdict(set)
    for pid, ids in by_pid.items():
        assert len(ids) <= MAX_CONNECTIONS, (pid, ids)
        for connection_id in ids:
            owners[connection_id].add(pid)
    shared = {cid: pids for cid, pids in owners.items() if len(pids) > 1}
    assert shared == {}, f"server connections used by several workers: {shared}"
    if preload:
        assert not before & set(owners), "a worker used the master's connection"
    for r in ok(results):
        assert r.body is not None
        assert r.body["pool_pid"] == r.body["pid"]  # the pool was rebuilt in this worker
        assert r.body["maintainer_running"]
        assert "fpp-maintainer-example_app" in r.body["threads"]

    assert sampler.max_between() <= CAP, f"server saw {sampler.max_between()} > {CAP}"
    assert len(sampler.samples) >= 20
    # Afterwards every session on the server belongs to a worker that reported it.
    wait_server(mysql_pool_user, lambda ids: set(ids) <= set(owners),
                "only the workers' connections")

    # flask pool-stats, from a third process, lists every worker with its requests.
    served = {pid: sum(1 for r in ok(results) if r.body and r.body["pid"] == pid)
              for pid in workers}
    deadline = time.monotonic() + 20
    while True:
        doc = pool_stats(gunicorn_env)
        rows = {row["pid"]: row for row in doc["processes"]}
        complete = all(rows.get(pid, {}).get("checkouts", -1) >= n for pid, n in served.items())
        master = rows.get(server.pid)
        if complete and (master is None or master["size"] == 0):
            break
        assert time.monotonic() < deadline, f"pool-stats never showed every worker: {doc}"
    assert set(rows) - workers <= {server.pid}  # the master, only if its pool was used
    if not preload:
        assert server.pid not in rows
    for pid in workers:
        assert rows[pid]["max_connections"] == MAX_CONNECTIONS
        assert rows[pid]["size"] <= MAX_CONNECTIONS
        assert rows[pid]["in_use"] == 0
    assert doc["totals"]["size"] <= CAP
    assert not [w for w in doc["warnings"] if "max_connections" in w]
    assert mysql_pool_user.password not in str(doc)
    print(f"\n{worker_class} preload={preload}: {len(results)} requests, server max "
          f"{sampler.max_between()} sessions (cap {CAP}), pool-stats pids {sorted(rows)}, "
          f"master {server.pid}")


@pytest.mark.parametrize(("worker_class", "preload"), VARIANTS)
def test_graceful_restart_loses_no_request_and_leaks_no_connection(
        start_gunicorn: Any, mysql_pool_user: Any, worker_class: str, preload: bool) -> None:
    server = start_gunicorn(worker_class, preload)
    old = server.live_workers()

    with Sampler(mysql_pool_user) as sampler, Load(server.port, WORK, LOAD_THREADS) as load:
        load.wait_until(lambda rs: len(ok(rs)) >= 30 and set(served_by(rs)) >= old,
                        "30 requests before the restart")
        hup = time.monotonic()
        os.kill(server.pid, signal.SIGHUP)
        new = server.wait_ready(WORKERS, exclude=old)
        new_up = max(new.values())
        old_gone = server.wait_exited(old)
        # Without preload the old workers may be gone before the new ones have loaded the
        # app: requests then wait in the listen backlog, they are not refused.
        done = max(new_up, old_gone)
        load.wait_until(lambda rs: len([r for r in ok(rs) if r.start > done]) >= 30,
                        "30 requests once the restart is over")
    results = load.snapshot()

    assert not set(new) & old
    after_up = [r for r in results if r.start >= new_up]
    assert len(after_up) >= 30
    assert failures(after_up) == []
    assert failures(results) == []  # graceful: not one request lost, even before
    late = {r.body["pid"] for r in ok(results) if r.start > done and r.body}
    assert late <= set(new)

    old_ids = {cid for pid, ids in served_by(results).items() if pid in old for cid in ids}
    new_ids = {cid for pid, ids in served_by(results).items() if pid in new for cid in ids}
    assert old_ids and new_ids and not old_ids & new_ids
    # Old and new workers overlap while the old ones finish: up to twice the cap.
    overlap = sampler.max_between(hup, done + 1.0)
    assert overlap <= 2 * CAP
    ids, took = wait_server(mysql_pool_user, lambda ids: not set(ids) & old_ids,
                            "the old workers' connections gone", timeout=5)
    assert len(ids) <= CAP
    assert sampler.max_between(done + took + 0.5) <= CAP
    print(f"\nHUP {worker_class} preload={preload}: {len(results)} requests, 0 lost; server "
          f"max {overlap} during the overlap (cap {CAP}); old sessions gone "
          f"{took * 1000:.0f} ms after the last old worker was reaped; old workers "
          f"reaped {(old_gone - hup) * 1000:.0f} ms, new ones ready "
          f"{(new_up - hup) * 1000:.0f} ms after HUP")


@pytest.mark.parametrize(("worker_class", "preload"), VARIANTS)
def test_killed_worker_loses_no_later_request_and_leaks_no_connection(
        start_gunicorn: Any, mysql_pool_user: Any, worker_class: str, preload: bool) -> None:
    server = start_gunicorn(worker_class, preload)
    workers = server.live_workers()

    with Sampler(mysql_pool_user) as sampler, Load(server.port, WORK, LOAD_THREADS) as load:
        before = load.wait_until(lambda rs: len(ok(rs)) >= 30 and set(served_by(rs)) >= workers,
                                 "30 requests served by every worker")
        victim = min(workers)
        victim_ids = served_by(before)[victim]
        assert set(mysql_pool_user.connection_ids()) & victim_ids  # still open: pooled
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        _, gone_after = wait_server(mysql_pool_user, lambda ids: not set(ids) & victim_ids,
                                    "the killed worker's connections gone", timeout=5)
        replacement = server.wait_ready(1, exclude=workers)
        new_up = max(replacement.values())
        load.wait_until(lambda rs: len([r for r in ok(rs) if r.start > new_up]) >= 30,
                        "30 requests after the replacement is up")
    results = load.snapshot()

    after_up = [r for r in results if r.start >= new_up]
    assert failures(after_up) == []
    assert all(r.body and r.body["pid"] != victim for r in ok(after_up))
    assert victim in server.pids(EXITED)  # reaped, through child_exit
    # Nothing leaked: the server's count comes back under the cap, for good.
    ids, _ = wait_server(mysql_pool_user, lambda ids: len(ids) <= CAP, "count under the cap")
    assert not set(ids) & victim_ids
    lost = failures([r for r in results if r.start < new_up])
    print(f"\nKILL {worker_class} preload={preload}: {len(results)} requests, {len(lost)} "
          f"failed before the replacement was up (in flight at the victim); its "
          f"{len(victim_ids)} sessions gone {gone_after * 1000:.0f} ms after SIGKILL; "
          f"server max {sampler.max_between()} (cap {CAP}); replacement up "
          f"{(new_up - killed) * 1000:.0f} ms after the kill")
