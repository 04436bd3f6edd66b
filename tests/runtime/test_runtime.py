"""PoolRuntime without any framework: one settings mapping in, start, close."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from flask_peewee_pool import ConfigError, PoolRuntime
from flask_peewee_pool.integration import config
from flask_peewee_pool.ops import snapshots


def test_start_use_close_leaves_no_thread_and_no_file(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    runtime = PoolRuntime.from_settings(
        {"DATABASE": f"sqlite:///{tmp_path / 'r.db'}", "STATS_DIR": str(tmp_path / "s"),
         "STATS_INTERVAL": "0.05", "TIMEOUT": "0"}, name="worker")
    assert runtime.options.timeout is None  # "0": wait forever
    runtime.start()
    runtime.start()  # idempotent
    with runtime.database.connection_context():
        runtime.database.execute_sql("SELECT 1")
    path = Path(snapshots.write_snapshot(runtime))
    assert path.exists() and snapshots.read_snapshots(tmp_path / "s")[0]["app"] == "worker"
    runtime.close()
    runtime.close()  # idempotent
    assert runtime.closed and not path.exists()
    assert {t for t in threading.enumerate() if t.is_alive()} - before == set()
    assert "closed" in repr(runtime)


def test_bad_settings_build_nothing() -> None:
    with pytest.raises(ConfigError) as info:
        PoolRuntime.from_settings({"DATABASE": "sqlite:///:memory:", "MIN_IDLE": 5,
                                   "MAX_CONNECTIONS": 2},
                                  name="w", label=config.dict_label("POOL"))
    assert info.value.setting == 'POOL["MIN_IDLE"]'
