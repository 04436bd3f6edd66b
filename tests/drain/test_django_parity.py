"""``manage.py pool_drain`` prints what ``flask pool-drain`` prints, with the same exit code,
for the same pools (as tests/runtime/test_django_flask_parity.py does for pool_stats).

A real server process (:mod:`tests.drain.serve_child`) serves from a pool on MariaDB; a
Flask app and the Django project configured for the same database, stats directory and
pool name then each ask it to drain. Masked before comparing: the token, the elapsed time
and the table's counts (the second drain retires what the first opened). A process that
never applies the request gives both commands the same FAIL and exit code 1.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")

from django.test import override_settings

from flask_peewee_pool import django as fpp_django
from flask_peewee_pool.ops import snapshots
from tests.cli_parity import masked, run_django, run_flask
from tests.django import _setup  # noqa: F401  (configures Django)
from tests.drain.children import serving_children
from tests.drain.drain_app import create_app

ROOT = Path(__file__).resolve().parents[2]

_VOLATILE = [
    (re.compile(r"token [0-9a-f]{16}"), "token <t>"),
    (re.compile(r"in \d+\.\d s:"), "in <n> s:"),
    (re.compile(r"(?m)^(\d+  (?:drained|draining|not seen yet|new \(started after\)))"
                r"[ \d-]+$"), r"\1 <counts>"),
]


def _mask(text: str) -> str:
    return masked(text, _VOLATILE)


def _same(app: Any, args: list[str]) -> tuple[int, str]:
    f_code, f_out, f_err = run_flask(app, args)
    d_code, d_out, d_err = run_django(args)
    assert (f_code, _mask(f_out), _mask(f_err)) == (d_code, _mask(d_out), _mask(d_err)), (
        f_out, d_out)
    return f_code, f_out


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    def configure(url: str, stats_dir: Path) -> Any:
        monkeypatch.setenv("FPP_DRAIN_URL", url)
        monkeypatch.setenv("FPP_DRAIN_STATS", str(stats_dir))
        app = create_app()
        settings = {"DATABASE": url, "STATS_DIR": str(stats_dir), "NAME": "drain_app"}
        override = override_settings(PEEWEE_POOL=settings)
        override.enable()
        made.append((app, override))
        return app

    made: list[Any] = []
    yield configure
    for app, override in made:
        app.extensions["peewee_pool"].extension.close(app)
        fpp_django.close()
        override.disable()


@pytest.mark.mysql
def test_same_report_and_exit_code(mysql_pool_user: Any, configured: Any,
                                   tmp_path: Path) -> None:
    stats_dir = tmp_path / "stats"
    env = dict(os.environ, FPP_DRAIN_URL=mysql_pool_user.url, FPP_DRAIN_STATS=str(stats_dir),
               FPP_DRAIN_INTERVAL="1")
    with serving_children(1, env, tmp_path) as [(child, pid)]:
        assert child.stdout is not None and child.stdin is not None
        app = configured(mysql_pool_user.url, stats_dir)
        code, out = _same(app, ["pool-drain", "--timeout", "30"])
        assert code == 0 and f"\n{pid}  drained " in out, out
        code, out = _same(app, ["pool-drain", "--no-wait"])
        assert code == 0 and "Not waiting (--no-wait): 1 live process drain" in out
        child.stdin.write("finish\n")
        child.stdin.flush()
        done = child.stdout.readline().split()
        assert child.wait(20) == 0 and done[:1] == ["done"] and done[2] == "0", done


def test_same_failure_when_a_process_never_drains(configured: Any, tmp_path: Path) -> None:
    stats_dir = tmp_path / "stats"
    stats_dir.mkdir()
    # A live process (this one) that started before the request and never applies it.
    doc = {"format": snapshots.SNAPSHOT_FORMAT, "pid": os.getpid(),
           "hostname": os.uname()[1], "process_start": None, "app": "drain_app",
           "pool": "drain_app", "written_at": time.time(), "started_at": time.time() - 60,
           "interval": 1.0, "stats": {"stale": 1, "generation": 0, "in_use": 1, "idle": 0,
                                      "counters": {"retired_drained": 0}}, "drain": None}
    (stats_dir / f"{os.getpid()}-drain_app.json").write_text(json.dumps(doc))
    app = configured(f"sqlite:///{tmp_path / 'x.db'}", stats_dir)
    code, out = _same(app, ["pool-drain", "--timeout", "0.3"])
    assert code == 1
    assert f"\n{os.getpid()}  not seen yet" in out
    assert "FAIL: not drained within 0.3 s: 1 of 1 live process not done" in out
    f_code, f_out, _ = run_flask(app, ["pool-drain", "--json", "--timeout", "0.3"])
    d_code, d_out, _ = run_django(["pool-drain", "--json", "--timeout", "0.3"])
    volatile = ("token", "requested_at", "elapsed_s")
    f_doc, d_doc = ({k: v for k, v in json.loads(o).items() if k not in volatile}
                    for o in (f_out, d_out))
    assert (f_code, f_doc) == (d_code, d_doc)
    assert f_code == 1 and f_doc["done"] is False and f_doc["mode"] == "fleet"
