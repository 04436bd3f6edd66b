"""``manage.py pool_stats`` / ``pool_check`` print what ``flask pool-stats`` / ``pool-check``
print, and exit with the same codes, for the same pools (issue 13).

A second process (``tests.cli.snapshot_child``, app ``cli_app``) serves from a pool on the
real MariaDB server and writes its snapshot; a Flask app and the Django project, both
configured for that database, stats directory and pool name, then run each command.
Only what changes from one second to the next is masked before comparing: the clock,
snapshot ages, latencies and the server's global connection count (other test suites
share the server).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

pytest.importorskip("django")

from django.test import override_settings

from flask_peewee_pool import PeeweePool
from flask_peewee_pool import django as fpp_django
from tests.cli.conftest import spawn_child  # noqa: F401  (fixture)
from tests.cli_parity import masked, run_django, run_flask
from tests.django import _setup  # noqa: F401  (configures Django)

_VOLATILE = [
    (re.compile(r"at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "at <time>"),
    (re.compile(r"\b\d+(?:\.\d+)? ms\b"), "<n> ms"),
    (re.compile(r"Threads_connected=\d+|pg_stat_activity=\d+"), "<connections>"),
    (re.compile(r"(?m)^(\d+\*?\s+)\d+(?:m\d\d)?s\b"), r"\1<age>"),
]


def _mask(text: str) -> str:
    return masked(text, _VOLATILE)


def _same(app: Flask, args: list[str], *, json_drop: Callable[[Any], Any] | None = None
          ) -> tuple[int, str]:
    f_code, f_out, f_err = run_flask(app, args)
    d_code, d_out, d_err = run_django(args)
    assert (f_code, _mask(f_err)) == (d_code, _mask(d_err)), args
    if json_drop is not None:
        assert json_drop(json.loads(f_out)) == json_drop(json.loads(d_out)), args
    else:
        assert _mask(f_out) == _mask(d_out), args
    return f_code, f_out


def _stats_doc(doc: dict[str, Any]) -> dict[str, Any]:
    drop = {"generated_at", "server"}
    rows = [{k: v for k, v in row.items() if k not in ("age_s", "stats")}
            for row in doc["processes"]]
    return {**{k: v for k, v in doc.items() if k not in drop}, "processes": rows}


def _check_doc(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("connections", "server")}


@pytest.mark.mysql
def test_same_reports_and_exit_codes(mysql_pool_user: Any, spawn_child: Any,  # noqa: F811
                                     tmp_path: Path) -> None:
    url = mysql_pool_user.url
    stats_dir = tmp_path / "stats"
    child = spawn_child(url, stats_dir)
    app = Flask("cli_app")
    app.config.update(PEEWEE_POOL_DATABASE=url, PEEWEE_POOL_STATS_DIR=str(stats_dir))
    pool = PeeweePool(app)
    settings = {"DATABASE": url, "STATS_DIR": str(stats_dir), "NAME": "cli_app"}
    try:
        with override_settings(PEEWEE_POOL=settings):
            code, out = _same(app, ["pool-stats"])
            assert code == 0 and f"\n{child.pid} " in out and "1 live process" in out
            _same(app, ["pool-stats", "--no-server"])
            _same(app, ["pool-stats", "--json"], json_drop=_stats_doc)
            code, out = _same(app, ["pool-check"])
            assert code == 0 and "OK: 2 connections opened and pinged" in out
            _same(app, ["pool-check", "--connections", "1", "--json"], json_drop=_check_doc)
    finally:
        pool.close(app)
        fpp_django.close()


def test_same_failure_for_an_unreachable_database(tmp_path: Path) -> None:
    url = "mysql://u:pw@127.0.0.1:1/db"
    app = Flask("cli_app")
    app.config.update(PEEWEE_POOL_DATABASE=url, PEEWEE_POOL_STATS_DIR=str(tmp_path))
    pool = PeeweePool(app)
    try:
        with override_settings(PEEWEE_POOL={"DATABASE": url, "STATS_DIR": str(tmp_path),
                                            "NAME": "cli_app"}):
            code, _ = _same(app, ["pool-check"])
            assert code == 1
            code, out = _same(app, ["pool-stats"])
            assert code == 0 and "Server: unreachable" in out
            code, _ = _same(app, ["pool-stats", "--server"])
            assert code == 1
    finally:
        pool.close(app)
        fpp_django.close()
