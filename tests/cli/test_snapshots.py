"""Snapshot files: atomic, owner-only, password-free, pruned when their process is gone."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from flask import Flask

from flask_peewee_pool import connect
from flask_peewee_pool.core.redaction import redact_fields
from flask_peewee_pool.ops import snapshots

from .conftest import assert_no_password


def _queries(database: object, n: int) -> None:
    for _ in range(n):
        database.connect()  # type: ignore[attr-defined]
        database.execute_sql("SELECT 1").fetchone()  # type: ignore[attr-defined]
        database.close()  # type: ignore[attr-defined]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not snapshots.pid_alive(proc.pid)
    return proc.pid


def _fake_snapshot(stats_dir: Path, pid: int, **changes: object) -> Path:
    doc = {"format": snapshots.SNAPSHOT_FORMAT, "pid": pid, "hostname": socket.gethostname(),
           "app": "cli_app", "pool": "fake", "written_at": time.time(), "interval": 5.0,
           "stats": {"size": 1, "counters": {"checkouts": 1}}, "options": {}}
    doc.update(changes)
    stats_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = stats_dir / snapshots.snapshot_filename(pid, "fake")
    path.write_text(json.dumps(doc))
    return path


def test_files_are_owner_only_whatever_the_umask(make_app, sqlite_url, tmp_path):
    stats_dir = tmp_path / "deep" / "stats"
    _, state = make_app(sqlite_url, stats_dir)
    _queries(state.database, 2)
    old = os.umask(0)
    try:
        path = Path(snapshots.write_snapshot(state))
    finally:
        os.umask(old)
    assert path.parent == stats_dir
    assert path.name == snapshots.snapshot_filename(os.getpid(), state.database.pool.name)
    assert stat.S_IMODE(stats_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in stats_dir.iterdir()] == [path.name]  # no temporary file left


def test_an_existing_open_directory_is_tightened(make_app, sqlite_url, tmp_path):
    stats_dir = tmp_path / "stats"
    stats_dir.mkdir()
    stats_dir.chmod(0o755)
    _, state = make_app(sqlite_url, stats_dir)
    snapshots.write_snapshot(state)
    assert stat.S_IMODE(stats_dir.stat().st_mode) == 0o700


def test_default_directory_is_in_the_instance_folder(make_app, sqlite_url, tmp_path):
    _, state = make_app(sqlite_url, None, instance_path=tmp_path / "instance")
    assert snapshots.stats_dir_of(state) == str(tmp_path / "instance" / "peewee_pool_stats")


def test_snapshot_content(make_app, sqlite_url, tmp_path):
    _, state = make_app(sqlite_url, tmp_path / "stats")
    _queries(state.database, 3)
    snap = json.loads(Path(snapshots.write_snapshot(state)).read_text())
    assert snap["pid"] == os.getpid()
    assert snap["hostname"] == socket.gethostname()
    assert snap["app"] == "cli_app"
    assert snap["pool"] == state.database.pool.name
    assert abs(snap["written_at"] - time.time()) < 60
    assert snap["stats"]["counters"]["checkouts"] == 3
    assert snap["options"]["max_connections"] == state.database.pool.options.max_connections
    assert snap["database"] == {"kind": "sqlite", "description": f"sqlite:///{tmp_path}/app.db",
                                "url": sqlite_url}


def test_pool_names_are_sanitized():
    name = snapshots.snapshot_filename(12, "/srv/app/../db.sqlite")
    assert name == "12-srv_app_.._db.sqlite.json"
    assert snapshots.snapshot_filename(12, "...") == "12-pool.json"


def test_hook_writes_at_most_every_interval(make_app, sqlite_url, tmp_path):
    _, state = make_app(sqlite_url, tmp_path / "stats", interval=5.0)
    pool = state.database.pool
    writer = snapshots.start_snapshots(state)  # idempotent: the same writer, hooked once
    assert writer is not None
    assert pool.tick_hooks.count(writer) == 1
    path = Path(writer.path)
    writer(100.0)  # first tick: writes at once
    assert path.exists()
    path.unlink()
    writer(104.9)
    assert not path.exists()
    writer(105.0)
    assert path.exists()


def test_the_maintainer_thread_writes_the_snapshot(make_app, sqlite_url, tmp_path):
    _, state = make_app(sqlite_url, tmp_path / "stats", interval=0.1)
    path = tmp_path / "stats" / snapshots.snapshot_filename(os.getpid(),
                                                            state.database.pool.name)
    assert not path.exists()  # nothing until the pool is used
    _queries(state.database, 1)  # the first checkout starts the maintainer
    # Its first tick may come before the checkout is counted; the next one, 0.1 s later,
    # must show it. A bounded poll on the file is the only way to observe another thread.
    assert _wait_for_checkouts(path, 1) == 1


def _wait_for_checkouts(path: Path, expected: int, timeout: float = 10.0) -> int | None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        snap = snapshots._load(str(path))
        seen = None if snap is None else snap["stats"]["counters"]["checkouts"]
        if seen == expected:
            break
        time.sleep(0.02)
    return seen


def test_snapshots_can_be_switched_off(sqlite_url, tmp_path):
    # The extension insists on an interval > 0; a state of one's own may say None or 0.
    database = connect(sqlite_url)
    try:
        for interval in (None, 0):
            state = types.SimpleNamespace(database=database, settings={}, stats_dir=None,
                                          stats_interval=interval, app=Flask("off"))
            assert snapshots.start_snapshots(state) is None
        assert database.pool.tick_hooks == []
    finally:
        database.close_pool()


def test_stop_snapshots_removes_hook_and_file(make_app, sqlite_url, tmp_path):
    _, state = make_app(sqlite_url, tmp_path / "stats")
    writer = snapshots.start_snapshots(state)
    assert writer in state.database.pool.tick_hooks
    path = Path(snapshots.write_snapshot(state))
    snapshots.stop_snapshots(state)
    assert not path.exists()
    assert writer not in state.database.pool.tick_hooks


def test_a_dead_process_is_ignored_and_its_file_removed(tmp_path):
    stats_dir = tmp_path / "stats"
    dead = _fake_snapshot(stats_dir, _dead_pid())
    live = _fake_snapshot(stats_dir, os.getppid())
    found = snapshots.read_snapshots(stats_dir)
    assert [s["pid"] for s in found] == [os.getppid()]
    assert not dead.exists()
    assert live.exists()


def test_a_reused_pid_counts_as_dead(tmp_path):
    if not Path(f"/proc/{os.getpid()}/stat").exists():
        pytest.skip("needs /proc")
    stats_dir = tmp_path / "stats"
    path = _fake_snapshot(stats_dir, os.getpid(), process_start="1")
    assert snapshots.read_snapshots(stats_dir) == []
    assert not path.exists()


def test_other_hosts_are_kept(tmp_path):
    stats_dir = tmp_path / "stats"
    _fake_snapshot(stats_dir, _dead_pid(), hostname="another-host.invalid")
    assert [s["hostname"] for s in snapshots.read_snapshots(stats_dir)] == [
        "another-host.invalid"]


def test_corrupt_partial_and_foreign_files_are_ignored(tmp_path):
    stats_dir = tmp_path / "stats"
    stats_dir.mkdir()
    (stats_dir / f"{os.getpid()}-partial.json").write_text('{"format": 1, "pid": ')
    (stats_dir / f"{os.getppid()}-list.json").write_text("[1, 2]")
    (stats_dir / f"{os.getppid()}-old.json").write_text(json.dumps({"format": 999, "pid": 1}))
    (stats_dir / "notes.txt").write_text("hello")
    (stats_dir / f".{os.getpid()}-abc.tmp").write_text("{")
    assert snapshots.read_snapshots(stats_dir) == []
    assert len(list(stats_dir.iterdir())) == 5  # a live writer may own them: left alone


def test_leftovers_of_dead_writers_are_removed_once_old(tmp_path):
    stats_dir = tmp_path / "stats"
    stats_dir.mkdir()
    pid = _dead_pid()
    tmp = stats_dir / f".{pid}-abc.tmp"
    corrupt = stats_dir / f"{pid}-x.json"
    fresh = stats_dir / f".{pid}-def.tmp"
    for path in (tmp, corrupt, fresh):
        path.write_text("{")
    old = time.time() - 120
    for path in (tmp, corrupt):
        os.utime(path, (old, old))
    assert snapshots.read_snapshots(stats_dir) == []
    assert sorted(p.name for p in stats_dir.iterdir()) == [fresh.name]


def test_missing_directory_reads_as_empty(tmp_path):
    assert snapshots.read_snapshots(tmp_path / "nowhere") == []


def test_second_process_snapshot_is_read_and_removed_at_its_exit(
        sqlite_url, tmp_path, spawn_child):
    stats_dir = tmp_path / "stats"
    child = spawn_child(sqlite_url, stats_dir, "--queries", "4")
    word, pid, path = child.lines[0]
    assert (word, int(pid)) == ("ready", child.pid)
    (snap,) = snapshots.read_snapshots(stats_dir)
    assert snap["pid"] == child.pid
    assert snap["app"] == "cli_app"
    assert snap["stats"]["counters"]["checkouts"] == 4
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert child.finish() == 0
    assert not os.path.exists(path)  # removed by the process itself at exit


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_snapshots_survive_fork(sqlite_url, tmp_path, spawn_child):
    stats_dir = tmp_path / "stats"
    child = spawn_child(sqlite_url, stats_dir, "--queries", "2", "--fork", lines=2)
    lines = {line[0]: line for line in child.lines}
    parent_pid = int(lines["ready"][1])
    forked_pid, forked_path, attached = int(lines["child"][1]), lines["child"][2], lines["child"][3]
    assert attached == "True"  # the new maintainer got the writer back
    assert os.path.exists(forked_path)
    found = {s["pid"]: s for s in snapshots.read_snapshots(stats_dir)}
    assert set(found) == {parent_pid, forked_pid}
    assert found[parent_pid]["stats"]["counters"]["checkouts"] == 2
    # The forked process has its own pool and counters: only its own 3 checkouts.
    assert found[forked_pid]["stats"]["counters"]["checkouts"] == 3
    assert child.finish() == 0
    assert snapshots.read_snapshots(stats_dir) == []
    assert list(stats_dir.iterdir()) == []


@pytest.mark.mysql
def test_no_password_in_snapshot(make_app, mysql_cli_url, tmp_path):
    stats_dir = tmp_path / "stats"
    _, state = make_app(mysql_cli_url, stats_dir)
    _queries(state.database, 2)
    path = Path(snapshots.write_snapshot(state))
    snap = json.loads(path.read_text())
    assert snap["database"]["url"] == mysql_cli_url.replace(
        ":fpp-S3cr3t-pw-7Q@", ":***@")
    assert snap["database"]["description"] == "mysql://fpp_cli@127.0.0.1:3306/test"
    assert_no_password(path.read_text(), directory=stats_dir)


def test_redaction_masks_password_fields_and_urls_only():
    # Issue 13: masking by substring turned keys and messages containing a short password
    # into "***" (KeyError: '***'); redaction now works on fields and URLs only.
    doc = {"a": "x-pw-y", "pw": ["pw", 1, None], "n": 2.5, "password": "pw",
           "url": "mysql://u:pw@h/db", "nested": {"passwd": "pw", "keep": "pw"}}
    assert redact_fields(doc) == {
        "a": "x-pw-y", "pw": ["pw", 1, None], "n": 2.5, "password": "***",
        "url": "mysql://u:***@h/db", "nested": {"passwd": "***", "keep": "pw"}}


def test_pid_alive():
    assert snapshots.pid_alive(os.getpid())
    assert not snapshots.pid_alive(0)
    assert not snapshots.pid_alive(-5)
    assert not snapshots.pid_alive(_dead_pid())
    assert sys.platform == "win32" or snapshots.pid_alive(1)
