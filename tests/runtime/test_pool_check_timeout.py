"""``pool-check --timeout`` bounds the whole check (issue 13).

A database host that accepts the TCP connection and then says nothing (a silent listener
on loopback here: it accepts and never sends the server greeting) used to make the probe
hang with no output. Now it ends within the timeout with one clear FAIL line, exit 1,
from Flask and from Django alike.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from flask_peewee_pool import PeeweePool
from flask_peewee_pool.ops.check import DEFAULT_TIMEOUT, run_check

TIMEOUT = 1.0
BOUND = TIMEOUT + 3.0  # generous: a noisy 2-core machine


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never writes a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.parametrize("scheme", ["mysql", "postgresql"])
def test_flask_pool_check_against_a_silent_host(scheme: str, silent_port: int,
                                                tmp_path: Path) -> None:
    app = Flask("silent")
    app.config.update(PEEWEE_POOL_DATABASE=f"{scheme}://u:pw@127.0.0.1:{silent_port}/db",
                      PEEWEE_POOL_STATS_DIR=str(tmp_path))
    pool = PeeweePool(app)
    try:
        started = time.monotonic()
        result = app.test_cli_runner().invoke(args=["pool-check", "--timeout", str(TIMEOUT)])
        elapsed = time.monotonic() - started
        assert elapsed < BOUND, elapsed
        assert result.exit_code == 1
        fail = [line for line in result.stderr.splitlines() if line.startswith("FAIL:")]
        assert len(fail) == 1 and "within" in fail[0] and "--timeout 1" in fail[0], \
            result.stderr
        assert ":pw@" not in result.output
    finally:
        pool.close(app)


def test_the_default_timeout_is_bounded_and_the_option_documented() -> None:
    from flask_peewee_pool.adapters.flask_cli import pool_check_command

    assert 0 < DEFAULT_TIMEOUT <= 30
    option = next(p for p in pool_check_command.params if p.name == "timeout")
    assert option.default == DEFAULT_TIMEOUT


def test_run_check_stops_its_worker_after_the_timeout(silent_port: int,
                                                      tmp_path: Path) -> None:
    app = Flask("silent")
    app.config.update(PEEWEE_POOL_DATABASE=f"mysql://u:pw@127.0.0.1:{silent_port}/db"
                                           "?connect_timeout=2",
                      PEEWEE_POOL_STATS_DIR=str(tmp_path))
    pool = PeeweePool(app)
    try:
        doc = run_check(app.extensions["peewee_pool"], connections=3, timeout=0.3)
        assert doc["ok"] is False and doc["connections"] == []
        # The worker gives up with the driver's own connect timeout and opens nothing more.
        deadline = time.monotonic() + 10
        while any(t.name == "pool-check" for t in threading.enumerate()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        pool.close(app)


def test_django_pool_check_against_a_silent_host(silent_port: int) -> None:
    pytest.importorskip("django")
    from django.core.management import call_command
    from django.test import override_settings

    from flask_peewee_pool import django as fpp_django
    from tests.django import _setup  # noqa: F401  (configures Django)

    url = f"mysql://u:pw@127.0.0.1:{silent_port}/db"
    with override_settings(PEEWEE_POOL={"DATABASE": url}):
        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
        with pytest.raises(SystemExit) as info:
            call_command("pool_check", "--timeout", str(TIMEOUT), stdout=out, stderr=err)
        assert time.monotonic() - started < BOUND
        assert info.value.code == 1
        assert err.getvalue().count("FAIL:") == 1 and "within" in err.getvalue()
    fpp_django.close()
