"""``flask pool-drain`` reaches every process of the app (issue 15 item 3).

Two real server processes (:mod:`tests.drain.serve_child`) share a stats directory and
serve light load from pools on MariaDB; ``flask --app tests.drain.drain_app pool-drain``
runs as a third process. It exits 0 listing both pids as drained; afterwards the server
lists none of the account's sessions from before, each process's requests use new
connection ids, and no request failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flask_peewee_pool.ops import snapshots
from tests.drain.children import serving_children

pytestmark = [pytest.mark.mysql]

ROOT = Path(__file__).resolve().parents[2]


def _env(url: str, stats_dir: Path) -> dict[str, str]:
    return dict(os.environ, FPP_DRAIN_URL=url, FPP_DRAIN_STATS=str(stats_dir),
                FPP_DRAIN_INTERVAL="1", PYTHONPATH=str(ROOT))


def test_flask_pool_drain_drains_every_process(mysql_pool_user: Any, tmp_path: Path) -> None:
    user = mysql_pool_user
    stats_dir = tmp_path / "stats"
    env = _env(user.url, stats_dir)
    with serving_children(2, env, tmp_path) as ready:
        children = [child for child, _ in ready]
        pids = [pid for _, pid in ready]
        assert sorted(s["pid"] for s in snapshots.read_snapshots(stats_dir)) == sorted(pids)
        before = set(user.connection_ids())
        assert before  # both pools hold connections

        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "tests.drain.drain_app:create_app",
             "pool-drain", "--timeout", "30"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        for pid in pids:
            assert f"\n{pid}  drained " in out, out
        assert "All 2 live processes drained" in out
        assert user.password not in out + result.stderr

        # Retired sessions close asynchronously on the server: a bounded wait.
        deadline = time.monotonic() + 10
        while set(user.connection_ids()) & before:
            assert time.monotonic() < deadline, (before, user.connection_ids())
            time.sleep(0.05)

        done = []
        for child in children:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write("finish\n")
            child.stdin.flush()
            done.append(child.stdout.readline().split())
            assert child.wait(20) == 0
        for line in done:
            assert line[0] == "done" and int(line[1]) > 0, done
            assert line[2] == "0", (done, (tmp_path / "child-0.stderr").read_text())
            ids = {int(i) for i in line[3].split(",")}
            assert ids and not ids & before, (ids, before)
        print(f"\n{out}\nchildren (requests, errors, ids after): {done}; ids before "
              f"{sorted(before)}")
