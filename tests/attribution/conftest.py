"""Fixtures of the attribution tests: holder processes and a CLI app.

``spawn_holder(url, count, *args)`` starts ``python -m tests.attribution.holder`` (see
that module), returns once it printed ``ready <pid> <application name>``, and ends it at
the end of the test (its stdin closed: it returns its connections and exits).
``cli_app(url)`` is a Flask app with the extension, to invoke ``pool-stats --server``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_peewee_pool import PeeweePool, snapshots

ROOT = Path(__file__).resolve().parents[2]


class Holder:
    def __init__(self, proc: subprocess.Popen[str], pid: int, application: str) -> None:
        self.proc = proc
        self.pid = pid
        self.application = application

    def finish(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def spawn_holder(tmp_path: Path) -> Iterator[Callable[..., Holder]]:
    holders: list[Holder] = []

    def spawn(url: str, count: int, *args: str) -> Holder:
        stderr_path = tmp_path / f"holder-{len(holders)}.stderr"
        env = dict(os.environ, FPP_HOLDER_URL=url)
        with open(stderr_path, "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.attribution.holder", str(count), *args],
                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if not line or line[0] != "ready":
            proc.kill()
            proc.wait(10)
            pytest.fail(f"holder exited ({proc.returncode}): {stderr_path.read_text()}")
        holder = Holder(proc, int(line[1]), line[2])
        holders.append(holder)
        return holder

    yield spawn
    for holder in holders:
        holder.finish()


@pytest.fixture
def cli_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """``cli_app(url, name="fleet_cli")``: an app whose ``pool-stats`` the test invokes."""
    made: list[Any] = []

    def make(url: str, name: str = "fleet_cli", **config: Any) -> Flask:
        app = Flask(name, instance_path=str(tmp_path / f"instance-{len(made)}"))
        app.config.update(PEEWEE_POOL_DATABASE=url,
                          PEEWEE_POOL_STATS_DIR=str(tmp_path / "stats"), **config)
        PeeweePool(app)
        made.append(app.extensions["peewee_pool"])
        return app

    yield make
    for state in made:
        with contextlib.suppress(Exception):
            snapshots.stop_snapshots(state)
        state.database.close_pool()
