"""Prometheus multiprocess mode under gunicorn: a scrape of any worker sums every worker.

The example app with ``PEEWEE_POOL_METRICS=true``, ``PROMETHEUS_MULTIPROC_DIR`` set and
``/metrics`` mounted as docs/operations.md shows; gunicorn runs the documented
configuration (its ``child_exit`` calls ``mark_process_dead``). The counters must equal
the requests sent, the connection gauges the server's own count of the pool account's
sessions, and neither may lose or keep a worker killed with SIGKILL.
"""

from __future__ import annotations

import http.client
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.gunicorn.conftest import MAX_CONNECTIONS, WORKERS, Load

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

WORK = "/_fpp/work?ms=5"
POOL = "example_app"


def scrape(port: int) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], str]:
    """{(sample name, labels but pool): value} of the example app's pool, and the text."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", "/metrics", headers={"Connection": "close"})
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    assert response.status == 200, text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("pool") == POOL:
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pool"))
                values[(sample.name, labels)] = sample.value
    return values, text


def v(values: dict[Any, float], name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def connections(values: dict[Any, float]) -> float:
    return sum(v(values, "peewee_pool_connections", state=s)
               for s in ("idle", "in_use", "opening", "closing"))


def wait_metrics(port: int, check: Any, what: str, timeout: float = 15.0) -> dict[Any, float]:
    """Scrape until ``check(values)``: the workers publish on their maintainer's tick
    (~0.1 s), so the scrape is polled."""
    deadline = time.monotonic() + timeout
    while True:
        values, _ = scrape(port)
        if check(values):
            return values
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics: {what} not reached in {timeout} s: "
                                 f"{ {k: x for k, x in values.items() if 'bucket' not in k[0]} }")
        time.sleep(0.05)


def send(port: int, count: int) -> list[Any]:
    with Load(port, WORK, 4) as load:
        load.wait_until(lambda rs: len(rs) >= count, f"{count} requests")
    results = load.snapshot()
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    return results


@pytest.mark.parametrize(("worker_class", "preload"), [
    pytest.param("gthread", False, id="gthread"),
    pytest.param("sync", True, id="sync-preload"),
])
def test_a_scrape_sums_every_live_worker(start_gunicorn: Any, gunicorn_env: dict[str, str],
                                         mysql_pool_user: Any, tmp_path: Path,
                                         factory_checkouts: int, worker_class: str,
                                         preload: bool) -> None:
    mysql_pool_user.wait_until(0, timeout=10)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = dict(gunicorn_env, PEEWEE_POOL_METRICS="true",
               PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    server = start_gunicorn(worker_class, preload, env=env)
    workers = server.live_workers()
    # What the app factory did with the app's pool (create_tables) happened in the master
    # with preload (whose pool then publishes too), else in each worker.
    boot = factory_checkouts * (1 if preload else WORKERS)
    publishing = WORKERS + (1 if preload and factory_checkouts else 0)
    wait_metrics(server.port, lambda m: v(m, "peewee_pool_checkouts_total") == boot,
                 "the boot checkouts")

    results = send(server.port, 150)
    by_pid = {pid: sum(1 for r in results if r.body["pid"] == pid) for pid in workers}
    assert all(by_pid.values()), by_pid  # every worker served: only a sum can match
    total = boot + len(results)
    values = wait_metrics(
        server.port,
        # Counters, gauges and histograms are separate writes of each worker's update:
        # wait until the histograms too have published every checkin.
        lambda m: v(m, "peewee_pool_checkouts_total") >= total
        and v(m, "peewee_pool_usage_seconds_count") >= total
        and v(m, "peewee_pool_connections", state="in_use") == 0
        and connections(m) == mysql_pool_user.server_connections(),
        "every checkout published, the gauges matching the server")
    assert v(values, "peewee_pool_checkouts_total") == total
    assert v(values, "peewee_pool_usage_seconds_count") == total
    assert v(values, "peewee_pool_checkout_wait_seconds_count") == total
    assert v(values, "peewee_pool_checkout_wait_seconds_bucket", le="+Inf") == total
    assert v(values, "peewee_pool_max_connections") == publishing * MAX_CONNECTIONS
    assert v(values, "peewee_pool_connects_total") == v(
        values, "peewee_pool_connect_seconds_count")
    assert v(values, "peewee_pool_timeouts_total") == 0
    assert v(values, "peewee_pool_waiting") == 0
    assert 0 < connections(values) <= WORKERS * MAX_CONNECTIONS

    # A worker killed: its counts stay (counters never go back), its live gauges go
    # (child_exit -> mark_process_dead), its replacement's come in once it has served.
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    replacement = set(server.wait_ready(1, exclude=workers))
    server.wait_exited({victim})
    assert not list(metrics_dir.glob(f"gauge_live*_{victim}.db"))
    assert list(metrics_dir.glob(f"counter_{victim}.db"))
    more: list[Any] = []
    while not any(r.body["pid"] in replacement for r in more):
        more += send(server.port, 20)
        assert len(more) < 2000, "the replacement never served a request"
    total += len(more) + (0 if preload else factory_checkouts)  # + the replacement's boot
    values = wait_metrics(
        server.port,
        # Counters, gauges and histograms are separate writes of each worker's update:
        # wait until the histograms too have published every checkin.
        lambda m: v(m, "peewee_pool_checkouts_total") >= total
        and v(m, "peewee_pool_usage_seconds_count") >= total
        and v(m, "peewee_pool_connections", state="in_use") == 0
        and connections(m) == mysql_pool_user.server_connections(),
        "the replacement published, the gauges matching the server")
    assert v(values, "peewee_pool_checkouts_total") == total
    assert v(values, "peewee_pool_max_connections") == publishing * MAX_CONNECTIONS

    _, text = scrape(server.port)
    (tmp_path / "scrape.txt").write_text(text)
    print(f"\n{worker_class} preload={preload}: {total} checkouts summed over "
          f"{publishing} processes; scrape saved in {tmp_path / 'scrape.txt'}")
