"""prometheus_client's multiprocess mode, with fork() but without a server: counters sum
over every process that ever ran, live* gauges over live ones once ``mark_process_dead``
has been told (see multiprocess_child.py for the scenario)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")

ROOT = Path(__file__).resolve().parents[2]


def test_multiprocess_sums_over_processes(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    result = subprocess.run(
        [sys.executable, "-m", "tests.metrics.multiprocess_child", str(tmp_path / "mp.db")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout.splitlines()[-1])
    before, after = doc["before"], doc["after"]

    # Counters and histograms: every process, the dead one included (1 + 4 + 6 queries).
    for scrape in (before, after):
        assert scrape["checkouts"] == 11
        assert scrape["usage_count"] == 11
        assert scrape["in_use"] == 0
    # Gauges (livesum): the parent, B, and A until mark_process_dead(A).
    assert before["idle"] == 3 and before["max_connections"] == 9
    assert after["idle"] == 2 and after["max_connections"] == 6
