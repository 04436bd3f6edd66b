"""Metrics are fresh at scrape time in a single process (issue 13): a scrape right after
traffic counts that traffic, without waiting for the maintainer's next tick."""

from __future__ import annotations

from pathlib import Path

import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from flask_peewee_pool import connect  # noqa: E402
from flask_peewee_pool.ops.metrics import instrument  # noqa: E402


def test_scrape_right_after_traffic(tmp_path: Path) -> None:
    registry = prometheus_client.CollectorRegistry()
    database = connect(f"sqlite:///{tmp_path / 'm.db'}", pool_name="fresh")
    try:
        # An hour between hook updates: only the scrape itself can bring the values.
        instrument(database, registry=registry, interval=3600)
        for _ in range(3):
            with database.connection_context():
                database.execute_sql("SELECT 1")
        value = registry.get_sample_value
        assert value("peewee_pool_checkouts_total", {"pool": "fresh"}) == 3
        with database.connection_context():
            assert value("peewee_pool_connections", {"pool": "fresh", "state": "in_use"}) == 1
            text = prometheus_client.generate_latest(registry).decode()
            assert 'peewee_pool_checkouts_total{pool="fresh"} 4.0' in text
    finally:
        database.close_pool()


def test_metrics_module_does_not_import_peewee() -> None:
    import ast
    import inspect

    from flask_peewee_pool.ops import metrics

    tree = ast.parse(inspect.getsource(metrics))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {str(node.module).split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert "peewee" not in imported and "playhouse" not in imported
