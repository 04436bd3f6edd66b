"""The benchmark report path: a failed scenario is reported as failed, never a crash.

``python -m benchmarks --from FILE`` re-renders a saved run through the same
``output()`` as a live run (tables, Markdown, plots, exit status), so these tests
exercise what ``--quick`` and CI's ``--smoke`` print, without a server.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report
from benchmarks.__main__ import main
from benchmarks.scenarios import Settings


@pytest.fixture(autouse=True)
def _logging_untouched() -> Any:
    """Re-rendering must leave the process's loggers as they were (later tests read logs)."""
    names = ("sqlalchemy.pool", "flask_peewee_pool", "peewee.pool", "dbutils")
    before = {n: logging.getLogger(n).level for n in names}
    yield
    after = {n: logging.getLogger(n).level for n in names}
    for n, level in before.items():
        logging.getLogger(n).setLevel(level)
    assert after == before


def _meta(scenarios: list[str]) -> dict[str, Any]:
    return {
        "started": "2026-01-01T00:00:00+00:00",
        "argv": ["--smoke"],
        "settings": dataclasses.asdict(Settings.preset("smoke")),
        "scenarios": scenarios,
        "proxy_mode": "process",
        "server": "test",
        "cpus": 2,
        "cpu_model": "test",
        "versions": {"python": "3"},
        "library": {"head": "abc", "flask_peewee_pool_sha256": "def"},
        "total_s": 1.0,
        "loadavg": ["0 0 0", "0 0 0"],
        "server_sessions": [1, 1],
    }


def _s1_ok(case: str, pool: str) -> dict[str, Any]:
    return {
        "scenario": "s1",
        "case": case,
        "pool": pool,
        "repeat": 0,
        "units": 1000,
        "units_per_s": 100_000.0,
        "elapsed_s": 0.01,
        "cpu_us_per_op": 10.0,
        "counters": {"cpu_client_s": 0.01},
    }


def _render(tmp_path: Path, scenarios: list[str], records: list[dict[str, Any]]) -> int:
    path = report.write_json(tmp_path, "run.json", {"meta": _meta(scenarios), "records": records})
    return main(["--from", str(path), "--out", str(tmp_path), "--markdown", str(tmp_path / "r.md")])


def test_table_without_rows_is_a_header() -> None:
    assert report.table(["pool", "ops/s"], []).splitlines()[0].split() == ["pool", "ops/s"]


def test_every_run_of_a_scenario_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    error = "RuntimeError: server exited\nTraceback ...\nModuleNotFoundError: No module named 'w'"
    records = [
        {"scenario": "s6", "case": c, "pool": p, "repeat": 0, "error": error}
        for c in ("waitress 2 threads, 2 keep-alive clients, 0 ms one-way",)
        for p in ("ours", "peewee")
    ]
    assert _render(tmp_path, ["s6"], records) == 1
    out = capsys.readouterr().out
    assert "s6: FAILED for ours, peewee" in out
    assert report.NO_ROWS in out
    assert "No module named 'w'" in out  # the cause, on the problems line
    assert "status: FAILED" in out
    md = (tmp_path / "r.md").read_text()
    assert report.NO_ROWS in md and "s6: FAILED" in md


def test_a_good_run_exits_zero_and_a_skipped_pool_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = ["1 thread", "4 threads"]
    good = [_s1_ok(c, p) for c in cases for p in ("ours", "peewee")]
    assert _render(tmp_path, ["s1"], good) == 0
    assert "status: ok" in capsys.readouterr().out

    skipped = {"scenario": "-", "case": "-", "pool": "dbutils", "skipped": "No module named x"}
    assert _render(tmp_path, ["s1"], [*good, skipped]) == 1
    out = capsys.readouterr().out
    assert "skipped pool 'dbutils'" in out and "status: FAILED" in out


def test_one_failed_repeat_keeps_the_figures(tmp_path: Path) -> None:
    """A case with one good and one failed repeat still has figures: the failed repeat
    is a problem (exit 1) but not a failed scenario."""
    records = [_s1_ok(c, "ours") for c in ("1 thread", "4 threads")]
    records.append(
        {
            "scenario": "s1",
            "case": "1 thread",
            "pool": "ours",
            "repeat": 1,
            "error": "OSError: boom",
        }
    )
    assert report.failed_scenarios(records) == {}
    assert report.exit_status(records, []) == 1
    assert _render(tmp_path, ["s1"], records) == 1
