"""The example app's pool page and health check, in process (fast; SQLite, and a real
unreachable MariaDB address for the outage)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from example_app import create_app

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    return {"PEEWEE_POOL_DATABASE": f"sqlite:///{tmp_path / 'notes.db'}",
            "PEEWEE_POOL_STATS_DIR": str(tmp_path / "stats"),
            "PEEWEE_POOL_STATS_INTERVAL": 0.2}


@pytest.fixture
def app(config: dict[str, Any]) -> Iterator[Flask]:
    application = create_app(config)
    yield application
    application.extensions["peewee_pool"].database.close_pool()


def test_page_renders_with_its_own_chart_script_and_the_cli_hint(app: Flask,
                                                                  config: dict[str, Any]) -> None:
    page = app.test_client().get("/pool")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<svg id="chart"' in html
    assert "flask --app example_app pool-stats --watch 2" in html
    assert config["PEEWEE_POOL_STATS_DIR"] in html
    # Nothing from a CDN or any other host: inline script and style only.
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|@import", html)


def test_data_reads_the_stats_api_without_taking_a_connection(app: Flask) -> None:
    client = app.test_client()
    for i in range(3):
        assert client.post("/api/notes", json={"text": f"n{i}"}).status_code == 201
    first = client.get("/pool/data")
    assert first.headers["Cache-Control"] == "no-store"
    doc = first.get_json()
    me = doc["processes"][0]
    assert me["this"] and me["pid"] == os.getpid()
    assert me["checkouts"] == 3 and me["in_use"] == 0 and me["connects"] >= 1
    assert doc["total"]["checkouts"] == 3
    assert set(me["retired"]) == {"lifetime", "idle", "broken"}
    again = client.get("/pool/data").get_json()
    assert again["total"]["checkouts"] == 3  # polling the page costs no checkout
    assert app.extensions["peewee_pool"].stats().in_use == 0


def test_the_page_takes_no_connection_even_with_eager_checkout(config: dict[str, Any]) -> None:
    application = create_app({**config, "PEEWEE_POOL_CHECKOUT": "eager"})
    try:
        client = application.test_client()
        assert client.get("/pool").status_code == 200
        assert client.get("/pool/data").get_json()["total"]["checkouts"] == 0
        client.get("/api/notes")  # an ordinary view does check out before it runs
        assert client.get("/pool/data").get_json()["total"]["checkouts"] == 1
    finally:
        application.extensions["peewee_pool"].database.close_pool()


@pytest.mark.parametrize(("value", "expected"), [(0.1, 1.0), ("5", 5.0), ("junk", 2.0)])
def test_polling_is_never_faster_than_a_second(config: dict[str, Any], value: Any,
                                               expected: float) -> None:
    application = create_app({**config, "POOL_PAGE_POLL": value})
    try:
        client = application.test_client()
        assert client.get("/pool/data").get_json()["poll_seconds"] == expected
        assert f"Math.max(1000, {int(expected * 1000)})" in client.get("/pool").get_data(
            as_text=True)
    finally:
        application.extensions["peewee_pool"].database.close_pool()


def test_every_worker_process_is_shown_and_summed(app: Flask, config: dict[str, Any]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FPP_CHILD_REQUESTS": "4",
           **{k: str(v) for k, v in config.items()}}
    child = subprocess.Popen([sys.executable, "-m", "tests.e2e.page_child"], env=env, cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.startswith("ready "), line
        child_pid = int(line.split()[1])
        client = app.test_client()
        assert client.post("/api/notes", json={"text": "parent"}).status_code == 201
        doc = client.get("/pool/data").get_json()
    finally:
        child.communicate("\n", timeout=30)
    by_pid = {p["pid"]: p for p in doc["processes"]}
    assert set(by_pid) == {os.getpid(), child_pid}
    assert by_pid[child_pid]["checkouts"] == 4 and not by_pid[child_pid]["this"]
    assert by_pid[os.getpid()]["checkouts"] == 1
    assert doc["total"]["checkouts"] == 5
    assert doc["total"]["max_connections"] == sum(p["max_connections"] for p in by_pid.values())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("checkout", ["lazy", "eager"])
def test_healthz_is_json_503_when_the_database_is_unreachable(tmp_path: Path,
                                                              checkout: str) -> None:
    secret = "hz-S3cret-pw"
    application = create_app({
        "PEEWEE_POOL_DATABASE": f"mysql://app:{secret}@127.0.0.1:{_closed_port()}/test",
        "PEEWEE_POOL_STATS_DIR": str(tmp_path / "stats"), "PEEWEE_POOL_CHECKOUT": checkout})
    try:
        client = application.test_client()
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.is_json and response.headers["Retry-After"] == "5"
        body = response.get_json()
        assert body["status"] == "unavailable"
        assert "ConnectFailed" in body["error"] and "example_app" in body["error"]
        assert secret not in response.get_data(as_text=True)
        page = client.get("/pool/data")  # the page keeps working through the outage
        assert page.status_code == 200
        assert page.get_json()["total"]["connect_failures"] >= 1
    finally:
        application.extensions["peewee_pool"].database.close_pool()


def test_healthz_ok(app: Flask) -> None:
    body = app.test_client().get("/healthz").get_json()
    assert body["status"] == "ok" and body["pool"]["in_use"] == 1
