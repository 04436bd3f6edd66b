"""The example app in a real server process, watched by `flask pool-stats` from a third.

Process 1 is pytest; process 2 runs example_app under waitress on MariaDB; process 3 is
`flask --app example_app pool-stats --json`, which must see process 2's pool through the
snapshot it writes, with the requests we sent counted.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.mysql, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling a port that is not open yet: nothing to wait on
    raise AssertionError(f"server not listening on {port} after {timeout} s")


@pytest.fixture
def app_env(tmp_path: Path, mysql_pool_user: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PEEWEE_POOL_DATABASE=mysql_pool_user.url,
        PEEWEE_POOL_MAX_CONNECTIONS="4",
        PEEWEE_POOL_STATS_DIR=str(tmp_path / "stats"),
        PEEWEE_POOL_STATS_INTERVAL="0.2",
        PYTHONPATH=str(REPO),
    )
    return env


@pytest.fixture
def server(app_env: dict[str, str]) -> Iterator[tuple[int, int]]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "waitress", "--listen", f"127.0.0.1:{port}", "--threads", "4",
         "example_app:app"],
        env=app_env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(port, proc, timeout=30)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _request(port: int, method: str, path: str, body: dict[str, Any] | None = None
             ) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data.startswith((b"{", b"[")) else data
    finally:
        conn.close()


def _pool_stats(env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "example_app", "pool-stats", "--json"],
        env=env, cwd=REPO, capture_output=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_pool_stats_from_a_third_process_sees_the_server(
    server: tuple[int, int], app_env: dict[str, str], mysql_pool_user: Any
) -> None:
    port, server_pid = server
    created = []
    for i in range(10):
        status, note = _request(port, "POST", "/api/notes", {"text": f"note {i}"})
        assert status == 201
        created.append(note["id"])
    for note_id in created:
        assert _request(port, "GET", f"/api/notes/{note_id}")[0] == 200
        assert _request(port, "DELETE", f"/api/notes/{note_id}")[0] == 204
    status, health = _request(port, "GET", "/healthz")
    assert status == 200 and health["pool"]["in_use"] == 1  # the health check's own
    requests_sent = 10 + 2 * len(created) + 1

    deadline = time.monotonic() + 20
    row = None
    while time.monotonic() < deadline:  # the snapshot is written every 0.2 s
        doc = _pool_stats(app_env)
        rows = [r for r in doc["processes"] if r["pid"] == server_pid]
        if rows and rows[0]["checkouts"] >= requests_sent:
            row = rows[0]
            break
    assert row is not None, "pool-stats never showed the server's requests"
    assert row["in_use"] == 0
    assert row["size"] <= 4
    assert mysql_pool_user.password not in json.dumps(doc)
    assert mysql_pool_user.server_connections() <= 4
