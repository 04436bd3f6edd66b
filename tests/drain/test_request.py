"""The drain request file and each process's watcher, without a database server (SQLite).

What is checked: the request is owner-only, atomic and never read as a snapshot; a
watcher costs one ``os.stat`` per tick when nothing changed, drains once per token, and
ignores a request older than its pool or than MAX_REQUEST_AGE, or for another app; the
snapshot writer records the token and writes at once; ``pool_drain`` decides "done" from
the snapshots (fake clock and sleep: no timing) and drains its own pool when snapshots
are off.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from flask_peewee_pool import PooledSqliteDatabase
from flask_peewee_pool.ops import commands, drain, snapshots


@pytest.fixture
def pool_db(tmp_path: Path) -> Any:
    db = PooledSqliteDatabase(str(tmp_path / "app.db"), max_connections=2,
                              pool_name="drain_app")
    yield db
    db.close_pool()


class State:
    """The smallest ExtensionState: a database, a stats dir, an interval, an app name."""

    def __init__(self, database: Any, stats_dir: Path | None, interval: float | None = 5.0,
                 name: str = "drain_app") -> None:
        self.database = database
        self.settings: dict[str, Any] = {}
        self.stats_dir = str(stats_dir) if stats_dir else None
        self.stats_interval = interval
        self.app = None
        self.name = name


def use(db: Any, n: int = 1) -> None:
    for _ in range(n):
        with db.connection_context():
            db.execute_sql("SELECT 1").fetchone()


def test_request_file_is_owner_only_atomic_and_not_a_snapshot(tmp_path: Path) -> None:
    request = drain.make_request("drain_app", "drain_app")
    path = drain.write_request(str(tmp_path / "stats"), request)
    assert os.path.basename(path) == "drain-drain_app.request"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "stats").st_mode) == 0o700
    assert drain.read_request(path) == request
    assert snapshots.read_snapshots(tmp_path / "stats") == []
    assert [p.name for p in (tmp_path / "stats").iterdir()] == ["drain-drain_app.request"]
    other = drain.make_request("drain_app", "drain_app")
    assert other["token"] != request["token"]
    # A URL as pool name never puts its password into the file name.
    assert "pw" not in drain.request_path("/d", "mysql://u:pw@db/x")


def test_watcher_stats_once_per_tick_and_drains_once_per_token(
        tmp_path: Path, pool_db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    use(pool_db)
    watcher = drain.DrainWatcher(str(tmp_path), "drain_app", "drain_app",
                                 started_at=time.time() - 1)
    assert not watcher.poll(pool_db.pool)  # no file: no request
    drain.write_request(str(tmp_path), drain.make_request("drain_app", "drain_app"))
    reads = []
    real_read = drain.read_request
    monkeypatch.setattr(drain, "read_request", lambda p: (
        reads.append(p) if p == watcher.path else None) or real_read(p))
    stats_calls = []
    real_stat = os.stat
    monkeypatch.setattr(drain.os, "stat", lambda p, *a, **k: (
        stats_calls.append(p) if p == watcher.path else None) or real_stat(p, *a, **k))
    assert watcher.poll(pool_db.pool)
    assert pool_db.pool.stats().generation == 1
    for _ in range(5):
        assert not watcher.poll(pool_db.pool)
    assert len(reads) == 1 and len(stats_calls) == 6
    # Rewritten with the same token (a copy, a touch): read again, not applied again.
    os.utime(watcher.path, ns=(1, time.time_ns() + 10**9))
    assert not watcher.poll(pool_db.pool) and pool_db.pool.stats().generation == 1
    # A new token drains again.
    drain.write_request(str(tmp_path), drain.make_request("drain_app", "drain_app"))
    assert watcher.poll(pool_db.pool) and pool_db.pool.stats().generation == 2
    assert watcher.applied is not None and watcher.applied["generation"] == 2


def test_watcher_ignores_requests_older_than_its_pool_too_old_or_for_another_app(
        tmp_path: Path, pool_db: Any) -> None:
    now = time.time()
    watcher = drain.DrainWatcher(str(tmp_path), "drain_app", "drain_app", started_at=now)
    drain.write_request(str(tmp_path), drain.make_request("drain_app", "drain_app",
                                                          now=now - 1))
    assert not watcher.poll(pool_db.pool, now)  # the process started after the request
    old = drain.DrainWatcher(str(tmp_path), "drain_app", "drain_app", started_at=0.0)
    drain.write_request(str(tmp_path), drain.make_request(
        "drain_app", "drain_app", now=now - drain.MAX_REQUEST_AGE - 1))
    assert not old.poll(pool_db.pool, now)  # too old
    drain.write_request(str(tmp_path), drain.make_request("drain_app", "other_app", now=now))
    assert not old.poll(pool_db.pool, now)  # another app sharing the directory
    (Path(watcher.path)).write_text("{not json")
    assert not old.poll(pool_db.pool, now)  # garbage is no request
    assert pool_db.pool.stats().generation == 0
    drain.write_request(str(tmp_path), drain.make_request("drain_app", "drain_app", now=now))
    assert old.poll(pool_db.pool, now) and pool_db.pool.stats().generation == 1


def test_snapshot_writer_applies_the_request_and_writes_at_once(
        tmp_path: Path, pool_db: Any) -> None:
    state = State(pool_db, tmp_path / "stats", interval=3600.0)
    writer = snapshots.start_snapshots(state)
    assert writer is not None
    try:
        use(pool_db)
        writer(0.0)  # the first tick writes
        writer(1.0)  # within the interval: nothing
        request = drain.make_request("drain_app", "drain_app")
        drain.write_request(str(tmp_path / "stats"), request)
        writer(2.0)  # the request is seen: drained and written although the interval is 1 h
        [snap] = snapshots.read_snapshots(tmp_path / "stats")
        assert snap["drain"]["token"] == request["token"]
        assert snap["stats"]["generation"] == 1
        assert snap["drain"]["connections"] == 1
        row = drain.process_status(snap, request)
        assert row["status"] in ("done", "draining")
    finally:
        snapshots.stop_snapshots(state)


def test_finished_means_no_old_connection_open_or_closing() -> None:
    applied = {"token": "t", "connections": 2, "generation": 1, "retired_drained": 3}

    def stats(stale: int = 0, generation: int = 1, retired: int = 5, closing: int = 0) -> Any:
        return {"stale": stale, "generation": generation, "closing": closing,
                "counters": {"retired_drained": retired}}

    assert drain.finished(stats(), applied)
    assert not drain.finished(stats(stale=1), applied)
    assert not drain.finished(stats(generation=0), applied)
    # Withdrawn for replacement but still closing (not counted yet): not finished ...
    assert not drain.finished(stats(retired=4, closing=1), applied)
    # ... unless both old ones are counted as replaced (the closing one is another's).
    assert drain.finished(stats(retired=5, closing=1), applied)
    # One retired for another reason (lifetime): finished once nothing is closing.
    assert drain.finished(stats(retired=4, closing=0), applied)


def _fake_snapshot(stats_dir: Path, request: dict[str, Any], *, token: str | None,
                   stale: int, started_at: float) -> None:
    """A snapshot of this (live) process, as a server process would write it."""
    stats_dir.mkdir(exist_ok=True)
    doc = {"format": snapshots.SNAPSHOT_FORMAT, "pid": os.getpid(), "hostname": os.uname()[1],
           "process_start": None, "app": "drain_app", "pool": "drain_app",
           "written_at": time.time(), "started_at": started_at, "interval": 5.0,
           "stats": {"stale": stale, "generation": 1 if token else 0, "in_use": stale,
                     "idle": 0, "counters": {"retired_drained": 0}},
           "drain": {"token": token, "connections": 2, "generation": 1} if token else None}
    (stats_dir / f"{os.getpid()}-drain_app.json").write_text(json.dumps(doc))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_pool_drain_times_out_with_a_table_and_exit_1(tmp_path: Path, pool_db: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    stats_dir = tmp_path / "stats"
    state = State(pool_db, stats_dir)
    _fake_snapshot(stats_dir, {}, token=None, stale=0, started_at=time.time() - 60)
    out: list[str] = []
    clock = FakeClock()
    code = commands.pool_drain(state, lambda t, e: out.append(t), timeout=2.0,
                               clock=clock, sleep=clock.sleep)
    assert code == 1
    text = out[-1]
    assert f"\n{os.getpid()}  not seen yet" in text
    assert "FAIL: not drained within 2 s: 1 of 1 live process not done" in text
    assert 2.0 <= clock.now < 2.5


def test_pool_drain_done_when_token_applied_and_no_old_connection(
        tmp_path: Path, pool_db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stats_dir = tmp_path / "stats"
    state = State(pool_db, stats_dir)
    _fake_snapshot(stats_dir, {}, token=None, stale=0, started_at=time.time() - 60)
    clock = FakeClock()
    seen: list[dict[str, Any]] = []

    def sleep(seconds: float) -> None:  # the "server process" applies, then finishes
        clock.sleep(seconds)
        request = drain.read_request(drain.request_path(str(stats_dir), "drain_app"))
        assert request is not None
        seen.append(request)
        stale = 1 if len(seen) == 1 else 0
        _fake_snapshot(stats_dir, request, token=request["token"], stale=stale,
                       started_at=time.time() - 60)

    out: list[str] = []
    code = commands.pool_drain(state, lambda t, e: out.append(t), clock=clock, sleep=sleep)
    assert code == 0 and len(seen) == 2  # "draining" once, then done
    assert f"\n{os.getpid()}  drained" in out[-1]
    assert "All 1 live process drained" in out[-1]
    # A process that started after the request counts as done without applying it.
    _fake_snapshot(stats_dir, {}, token=None, stale=0, started_at=time.time() + 60)
    out.clear()
    assert commands.pool_drain(state, lambda t, e: out.append(t), clock=clock,
                               sleep=clock.sleep) == 0
    assert "new (started after)" in out[-1]


def test_pool_drain_no_wait_and_no_process(tmp_path: Path, pool_db: Any) -> None:
    state = State(pool_db, tmp_path / "stats")
    out: list[str] = []
    assert commands.pool_drain(state, lambda t, e: out.append(t)) == 0
    assert "No live process of this app has written a snapshot" in out[-1]
    assert commands.pool_drain(state, lambda t, e: out.append(t), wait=False) == 0
    assert "Not waiting (--no-wait)" in out[-1]
    doc_out: list[str] = []
    assert commands.pool_drain(state, lambda t, e: doc_out.append(t), as_json=True) == 0
    doc = json.loads(doc_out[-1])
    assert doc["mode"] == "fleet" and doc["done"] and doc["processes"] == []


def test_pool_drain_with_snapshots_off_drains_this_process(pool_db: Any) -> None:
    use(pool_db)
    state = State(pool_db, None, interval=None)
    out: list[str] = []
    assert commands.pool_drain(state, lambda t, e: out.append(t)) == 0
    assert "no other process can be reached" in out[-1]
    assert f"pid {os.getpid()}, 1 connection(s) to replace" in out[-1]
    assert pool_db.pool.stats().generation == 1
