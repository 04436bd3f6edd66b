"""gevent against a real MariaDB (issue 12 items 1, 4, 7; issue 17 item 2), in subprocesses.

See :mod:`tests.integration.gevent_child` for the scenarios; this side runs them, watches
the server's session count of the pool user meanwhile, and checks nothing is left open.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.integration.conftest import ServerCountMonitor

pytest.importorskip("gevent")
pytestmark = pytest.mark.mysql

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(mode: str, pool_user: Any) -> dict[str, Any]:
    params = pool_user.as_dict()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.gevent_child", mode, json.dumps(params)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n{mode}: {json.dumps(report)}")
    return report


def test_gevent_timeouts_and_kills_lose_nothing(mysql_pool_user: Any) -> None:
    with ServerCountMonitor(mysql_pool_user) as monitor:
        report = _run("interrupts", mysql_pool_user)
    assert report["timeout_waiting_raised"] and report["timeout_connecting_raised"]
    for label in ("timeout_waiting", "kill_waiting", "timeout_query", "kill_query",
                  "greenlets_ended_holding"):
        step = report[label]
        # Held by ended greenlets until a checkout (or the maintainer) takes them back.
        in_use = 3 if label == "greenlets_ended_holding" else 0
        assert step == {"in_use_after": in_use, "waiting_after": 0, "opening_after": 0,
                        "ten_distinct": True, "errors": [], "in_use_end": 0}, (label, step)
    for label in ("timeout_connecting", "kill_connecting"):
        assert report[label] == {"size": 0, "opening": 0, "in_use": 0}, (label, report[label])
    assert report["query_connections_retired"] >= 2  # interrupted mid-query: never reused
    assert report["reclaimed_abandoned"] == 3
    assert report["size_after_close"] == 0
    # The pool never holds more than 10. A connection closed mid-query leaves its server
    # session alive until the server finishes that query (SELECT SLEEP(2)): those two may
    # overlap with the ten opened right after.
    assert monitor.maximum <= 10 + report["query_connections_retired"]
    mysql_pool_user.wait_until(0, timeout=10)


def test_preload_then_patch_serves_every_greenlet_its_own_session(
        mysql_pool_user: Any) -> None:
    with ServerCountMonitor(mysql_pool_user) as monitor:
        report = _run("preload", mysql_pool_user)
    assert "crash" not in report, report
    assert report["child_exit"] == 0
    assert report["served"] == 20 and report["own_value"] == 20, report["mismatched"]
    assert report["greenlet_local_state"] and report["maintainer_running"]
    assert report["in_use"] == 0 and report["size"] <= 4
    assert report["size_after_close"] == 0
    # Two processes (the "master" and its forked "worker"), each within its cap of 4.
    assert monitor.maximum <= 2 * 4
    mysql_pool_user.wait_until(0, timeout=10)


def test_used_before_patching_in_the_same_process_fails_with_the_fix(
        mysql_pool_user: Any) -> None:
    report = _run("used_before_patch", mysql_pool_user)
    assert report["error"] is not None
    assert "patch_all()" in report["error"] and "before the first query" in report["error"]
