"""docs/grafana/flask-peewee-pool.json queries only metrics (and labels) that the metrics
module really exports: every name, label and label value is checked against a scrape."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flask_peewee_pool import connect
from flask_peewee_pool.metrics import instrument

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "flask-peewee-pool.json"
#: Labels Prometheus adds to every series when it scrapes a target.
TARGET_LABELS = {"instance", "job"}
SELECTOR = re.compile(r"\b(peewee_pool_\w+)(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[dict[str, list[dict[str, str]]]]:
    """sample name -> the label sets it was exported with, after some real traffic."""
    db = connect(f"sqlite:///{tmp_path / 'm.db'}", max_connections=2, pool_name="dash")
    registry = CollectorRegistry()
    metrics = instrument(db, registry=registry)
    try:
        for _ in range(3):
            with db.connection_context():
                db.execute_sql("SELECT 1")
        metrics.update()
        samples: dict[str, list[dict[str, str]]] = {}
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append(dict(sample.labels))
        yield samples
    finally:
        metrics.close()
        db.close_pool()


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    found += [v["query"] for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    return found


def test_the_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["targets"] and p["gridPos"] for p in dashboard["panels"])


def test_every_queried_metric_and_label_exists(scraped: dict[str, list[dict[str, str]]]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    checked = set()
    for expr in _expressions(dashboard):
        selectors = SELECTOR.findall(expr)
        assert selectors, f"no peewee_pool metric in {expr!r}"
        for name, matchers in selectors:
            assert name in scraped, f"{name} (in {expr!r}) is not exported"
            label_sets = scraped[name]
            for label, op, value in MATCHER.findall(matchers or ""):
                if label in TARGET_LABELS:
                    continue
                assert any(label in ls for ls in label_sets), f"{name} has no label {label}"
                if op == "=":
                    assert any(ls.get(label) == value for ls in label_sets), (
                        f"{name}{{{label}={value!r}}} is never exported")
            for group in GROUPING.findall(expr):
                for label in (g.strip() for g in group.split(",")):
                    if label and label not in TARGET_LABELS:
                        assert any(label in ls for ls in label_sets), (
                            f"{expr!r} groups by {label}, which {name} does not have")
            checked.add(name)
    # The dashboard covers the gauges, the churn counters and the three histograms.
    for name in ("peewee_pool_connections", "peewee_pool_waiting",
                 "peewee_pool_max_connections", "peewee_pool_connects_total",
                 "peewee_pool_retired_total", "peewee_pool_checkout_wait_seconds_bucket",
                 "peewee_pool_connect_seconds_bucket", "peewee_pool_usage_seconds_bucket"):
        assert name in checked
