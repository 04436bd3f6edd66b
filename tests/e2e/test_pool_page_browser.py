"""The pool page in a real headless browser (Debian's chromium + chromedriver, selenium),
served by gunicorn with two worker processes on MariaDB.

The page renders its chart, one row and one small chart per worker process, and the chart
follows the load: the pool, empty before any request, is drawn non-empty once load has run.
``FPP_SCREENSHOT=docs/img/pool-page.png`` also saves the screenshot shown in the README
(``FPP_SCREENSHOT_SECONDS`` of varying load first, for a fuller chart).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str, method: str = "GET", body: Any = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture
def server(tmp_path: Path, mysql_pool_user: Any,
           mysql_kill_pool_connections: Any) -> Iterator[int]:
    port = _free_port()
    config = tmp_path / "gunicorn.conf.py"
    config.write_text("control_socket_disable = True\n")
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "PEEWEE_POOL_DATABASE": mysql_pool_user.url, "PEEWEE_POOL_MAX_CONNECTIONS": "4",
           "PEEWEE_POOL_STATS_DIR": str(tmp_path / "stats"),
           "PEEWEE_POOL_STATS_INTERVAL": "0.5", "FLASK_POOL_PAGE_POLL": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(config), "-w", "2", "--threads", "6",
         "-b", f"127.0.0.1:{port}", "example_app:app"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "gunicorn exited"
            try:
                if _get(port, "/healthz") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not answer"
            time.sleep(0.1)  # polling a port that is not ready yet: nothing to wait on
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1040,1180", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Load:
    """``threads`` clients writing and reading notes until stopped (bounded in time)."""

    def __init__(self, port: int, threads: int, limit: float = 60.0) -> None:
        self.port, self.threads, self.limit = port, threads, limit
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self._workers = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        end = time.monotonic() + self.limit
        while not self.stop.is_set() and time.monotonic() < end:
            status = _get(self.port, "/api/notes", "POST", {"text": "load"})
            self.statuses.append(status)
            self.statuses.append(_get(self.port, "/api/notes?limit=1"))

    def __enter__(self) -> Load:
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for w in self._workers:
            w.join(30)


def _chart(driver: Any) -> dict[str, int]:
    chart = driver.find_element("id", "chart")
    return {k: int(chart.get_attribute(f"data-{k}") or 0)
            for k in ("samples", "last-size", "max-size", "processes")}


def test_the_page_renders_and_follows_the_load(server: int, browser: Any,
                                               tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30, poll_frequency=0.2)
    browser.get(f"http://127.0.0.1:{server}/pool")
    assert "Connection pool" in browser.find_element("tag name", "h1").text
    assert "pool-stats" in browser.find_element("tag name", "pre").text
    wait.until(lambda d: _chart(d)["samples"] >= 2)
    before = _chart(browser)
    # 6 threads per worker over a pool of 4: under load some requests wait.
    # The health checks above left one idle connection at most in one worker.
    assert before["max-size"] <= 1

    with Load(server, threads=8) as load:
        wait.until(lambda d: _chart(d)["max-size"] >= 2 and _chart(d)["processes"] == 2)
        extra = float(os.environ.get("FPP_SCREENSHOT_SECONDS", "0"))
        if extra:
            _vary_load(server, extra)
    assert load.statuses and set(load.statuses) <= {200, 201}

    after = _chart(browser)
    assert after["samples"] > before["samples"]
    assert after["max-size"] >= 2
    # One row and one small chart per worker process, each with the states drawn.
    assert len(browser.find_elements("css selector", "#procs tbody tr")) == 2
    assert len(browser.find_elements("css selector", "svg.proc-chart")) == 2
    states = {p.get_attribute("data-state")
              for p in browser.find_elements("css selector", "#chart path[data-state]")}
    assert states == {"in_use", "idle", "opening", "waiting"}
    cards = browser.find_element("id", "cards").text
    assert "checkout wait p99" in cards and "connects" in cards

    shot = tmp_path / "pool-page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    target = os.environ.get("FPP_SCREENSHOT")
    if target:
        shutil.copyfile(shot, REPO / target)


def _vary_load(port: int, seconds: float) -> None:
    """For the README screenshot: bursts of 2 to 12 clients, so the chart has a shape."""
    end = time.monotonic() + seconds
    for threads in (2, 12, 4, 10, 1, 6):
        left = end - time.monotonic()
        if left <= 0:
            break
        with Load(port, threads) as load:
            load.stop.wait(min(seconds / 6, left))
