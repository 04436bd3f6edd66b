"""No password in stats snapshots (content and file names) nor CLI output; snapshot files
and their folder are owner-only (0o600 / 0o700) whatever the umask.

The Flask app logs in as the pool account with its password given in the URL, as a query
parameter, or in ``PEEWEE_POOL_CONNECT_ARGS``; ``flask pool-stats`` and ``flask pool-check``
run with and without ``--json`` through ``app.test_cli_runner()``, against the live server
and against a port where nothing listens.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_peewee_pool import PeeweePool, snapshots
from tests.security.conftest import SECRET, assert_clean

COMMANDS = [["pool-stats"], ["pool-stats", "--json"], ["pool-stats", "--no-server"],
            ["pool-check"], ["pool-check", "--json"]]


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., tuple[Flask, Any]]]:
    made: list[Any] = []

    def make(url: str, connect_args: dict[str, Any] | None = None,
             stats_dir: Path | None = None) -> tuple[Flask, Any]:
        app = Flask("secure_cli_app")
        app.config.update(PEEWEE_POOL_DATABASE=url,
                          PEEWEE_POOL_STATS_DIR=str(stats_dir or tmp_path / "stats"),
                          PEEWEE_POOL_STATS_INTERVAL=0.1)
        if connect_args:
            app.config["PEEWEE_POOL_CONNECT_ARGS"] = connect_args
        PeeweePool(app)
        state = app.extensions["peewee_pool"]
        made.append(state)

        @app.route("/q")
        def query() -> str:
            return str(state.database.execute_sql("SELECT 1").fetchone()[0])

        return app, state

    yield make
    for state in made:
        snapshots.stop_snapshots(state)
        state.database.close_pool()


def _placements(mysql_pool_user: Any) -> dict[str, tuple[str, dict[str, Any] | None]]:
    u = mysql_pool_user
    base = f"mysql://{u.user}@{u.host}:{u.port}/{u.database}"
    return {
        "userinfo": (u.url, None),
        "query": (f"{base}?password={SECRET}", None),
        "connect_args": (base, {"password": SECRET}),
    }


def _files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*")] if directory.exists() else []


def assert_directory_clean(directory: Path) -> None:
    for path in _files(directory):
        assert_clean(path.name, where=f"file name {path}")
        if path.is_file():
            assert_clean(path.read_bytes().decode("utf-8", "replace"), where=str(path))


def run_cli(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    out = result.output + (getattr(result, "stderr", "") or "")
    return result.exit_code, out


@pytest.mark.mysql
@pytest.mark.parametrize("placement", ["userinfo", "query", "connect_args"])
def test_snapshots_and_cli_against_the_live_server(
        make_app: Any, mysql_pool_user: Any, tmp_path: Path, debug_logs: Any,
        placement: str) -> None:
    url, connect_args = _placements(mysql_pool_user)[placement]
    stats_dir = tmp_path / "stats"
    app, state = make_app(url, connect_args, stats_dir)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/q").get_data(as_text=True) == "1"
    old = os.umask(0)  # owner-only whatever the umask
    try:
        path = Path(snapshots.write_snapshot(state))
    finally:
        os.umask(old)
    assert stat.S_IMODE(stats_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert_directory_clean(stats_dir)
    outputs = []
    for args in COMMANDS:
        code, out = run_cli(app, *args)
        assert code == 0, (args, out)
        outputs.append(out)
        assert_clean(out, where=f"flask {' '.join(args)}")
    assert "mysql://" in outputs[0]
    if placement != "connect_args":  # the URL held the password: it is shown masked
        assert "***" in outputs[0]
    assert_directory_clean(stats_dir)


@pytest.mark.parametrize("placement", ["userinfo", "query", "connect_args"])
def test_cli_and_snapshots_when_the_database_is_unreachable(
        make_app: Any, tmp_path: Path, debug_logs: Any, placement: str) -> None:
    base = "mysql://fpp_faults@127.0.0.1:1/test"
    url, connect_args = {
        "userinfo": (f"mysql://fpp_faults:{SECRET}@127.0.0.1:1/test", None),
        "query": (f"{base}?password={SECRET}", None),
        "connect_args": (base, {"password": SECRET}),
    }[placement]
    stats_dir = tmp_path / "stats"
    app, state = make_app(url + ("&" if "?" in url else "?") + "connect_timeout=1",
                          connect_args, stats_dir)
    assert app.test_client().get("/q").status_code == 500  # ConnectFailed: an ordinary 500
    path = Path(snapshots.write_snapshot(state))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert_directory_clean(stats_dir)
    for args in COMMANDS:
        code, out = run_cli(app, *args)
        assert code == (1 if args[0] == "pool-check" else 0), (args, out)
        assert_clean(out, where=f"flask {' '.join(args)}")
    assert_directory_clean(stats_dir)


def test_existing_open_stats_folder_is_tightened(make_app: Any, tmp_path: Path) -> None:
    stats_dir = tmp_path / "open"
    stats_dir.mkdir(mode=0o777)
    stats_dir.chmod(0o777)
    _, state = make_app(f"sqlite:///{tmp_path / 'x.db'}", None, stats_dir)
    old = os.umask(0)
    try:
        path = Path(snapshots.write_snapshot(state))
    finally:
        os.umask(old)
    assert stat.S_IMODE(stats_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
