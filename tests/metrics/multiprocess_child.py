"""prometheus_client multiprocess mode without a server (``python -m`` this, in a fresh
interpreter with ``PROMETHEUS_MULTIPROC_DIR`` set before prometheus_client is imported).

The parent opens a SQLite pool, instruments it (registry None: the files are the metrics),
runs one query (which starts its maintainer thread, whose hook then publishes every tick)
and forks two children while that thread runs: A runs 4 queries and exits, B runs 6 and
stays alive. The parent prints one JSON line of what a MultiProcessCollector reads, before
and after ``mark_process_dead(A)``, then lets B exit.
"""

from __future__ import annotations

import json
import os
import sys

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from flask_peewee_pool import connect
from flask_peewee_pool.metrics import instrument

NAMES = {
    ("peewee_pool_checkouts_total", ()): "checkouts",
    ("peewee_pool_usage_seconds_count", ()): "usage_count",
    ("peewee_pool_connections", (("state", "idle"),)): "idle",
    ("peewee_pool_connections", (("state", "in_use"),)): "in_use",
    ("peewee_pool_max_connections", ()): "max_connections",
}


def scrape(path: str) -> dict[str, float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    found = {}
    for metric in registry.collect():
        for sample in metric.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pool"))
            key = NAMES.get((sample.name, labels))
            if key is not None and sample.labels.get("pool") == "mp":
                found[key] = sample.value
    return found


def queries(database: object, n: int) -> None:
    for _ in range(n):
        with database.connection_context():  # type: ignore[attr-defined]
            database.execute_sql("SELECT 1")  # type: ignore[attr-defined]


def child(database: object, metrics: object, n: int, ready: int, stay: int | None) -> None:
    try:
        queries(database, n)
        metrics.update()  # type: ignore[attr-defined]  # not waiting for a tick
        os.write(ready, b"x")
        if stay is not None:
            os.read(stay, 1)
    finally:
        os._exit(0)


def main() -> int:
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    database = connect(f"sqlite:///{sys.argv[1]}", max_connections=3, pool_name="mp")
    metrics = instrument(database, registry=None)
    queries(database, 1)
    assert database.pool.maintainer.running

    ready_r, ready_w = os.pipe()
    stay_r, stay_w = os.pipe()
    a = os.fork()
    if a == 0:
        child(database, metrics, 4, ready_w, None)
    b = os.fork()
    if b == 0:
        child(database, metrics, 6, ready_w, stay_r)
    os.read(ready_r, 1)
    os.read(ready_r, 1)
    os.waitpid(a, 0)
    metrics.update()
    before = scrape(path)
    mark_process_dead(a, path)
    after = scrape(path)
    os.write(stay_w, b"x")
    os.waitpid(b, 0)
    database.close_pool()
    print(json.dumps({"before": before, "after": after}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
