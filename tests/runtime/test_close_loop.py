"""An app factory run in a loop leaves nothing behind once each app is closed (issue 13).

50 Flask apps (PeeweePool and FlaskDB) on the real MariaDB server, each used by a request,
with snapshots and metrics on, then closed with ``close(app)``: afterwards this process
has the threads and open files it had before, the server lists no session of the pool's
account, and the stats directory holds no snapshot file.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_peewee_pool import FlaskDB, PeeweePool

APPS = 50


def _open_files() -> set[str]:
    return {f.path for f in psutil.Process().open_files()}


def _make(kind: str, url: str, stats_dir: Path, registry: CollectorRegistry,
          i: int) -> tuple[Flask, Any]:
    app = Flask(f"loop_app_{i}")
    app.config.update(PEEWEE_POOL_STATS_DIR=str(stats_dir), PEEWEE_POOL_STATS_INTERVAL=0.05,
                      PEEWEE_POOL_METRICS=registry, PEEWEE_POOL_MIN_IDLE=1)
    if kind == "flaskdb":
        ext: Any = FlaskDB(app, url)
    else:
        app.config["PEEWEE_POOL_DATABASE"] = url
        ext = PeeweePool(app)

    @app.route("/q")
    def query() -> str:
        return str(ext.database.execute_sql("SELECT 1").fetchone()[0])

    return app, ext


@pytest.mark.mysql
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["peeweepool", "flaskdb"])
def test_fifty_apps_created_and_closed_leave_nothing(kind: str, mysql_pool_user: Any,
                                                    tmp_path: Path) -> None:
    registry = CollectorRegistry()
    stats_dir = tmp_path / "stats"
    gc.collect()
    threads_before = {t.ident for t in threading.enumerate()}
    files_before = _open_files()
    sessions_before = mysql_pool_user.server_connections()
    for i in range(APPS):
        app, ext = _make(kind, mysql_pool_user.url, stats_dir, registry, i)
        assert app.test_client().get("/q").data == b"1"
        state = app.extensions["peewee_pool"]
        state.metrics.update()
        ext.close(app)
        assert state.closed
        ext.close(app)  # idempotent
    gc.collect()
    assert mysql_pool_user.wait_until(sessions_before, timeout=10.0) == sessions_before
    left = [t for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()]
    assert left == [], left
    assert _open_files() - files_before == set()
    assert not stats_dir.exists() or list(stats_dir.iterdir()) == []
    # Every pool's series left the registry with it.
    assert registry.get_sample_value("peewee_pool_max_connections",
                                     {"pool": f"loop_app_{APPS - 1}"}) is None
