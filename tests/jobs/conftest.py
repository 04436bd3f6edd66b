"""Fixtures for the background-job tests: a dedicated Redis database, a processlist sampler."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_db

REPO = Path(__file__).resolve().parents[2]
#: Redis database numbers owned by these tests (flushed before and after, nothing else).
CELERY_REDIS_DB = 7
RQ_REDIS_DB = 8


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def _flushed_redis(db: int) -> Iterator[str]:
    if not _redis_up():
        message = "no Redis at 127.0.0.1:6379 (the Celery and RQ tests need it as broker)"
        if require_db():
            pytest.fail(f"FPP_REQUIRE_DB=1: {message}", pytrace=False)
        pytest.skip(message)
    import redis

    url = f"redis://127.0.0.1:6379/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def celery_redis() -> Iterator[str]:
    yield from _flushed_redis(CELERY_REDIS_DB)


@pytest.fixture
def rq_redis() -> Iterator[str]:
    yield from _flushed_redis(RQ_REDIS_DB)


@pytest.fixture
def worker_env(mysql_pool_user: Any, mysql_kill_pool_connections: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FPP_JOBS_DB=mysql_pool_user.url, FPP_JOBS_CAP="4", FPP_JOBS_TIMEOUT="10",
               PYTHONPATH=str(REPO))
    return env


class ProcesslistSampler:
    """Counts the pool account's server sessions in a loop until stopped; keeps the max."""

    def __init__(self, pool_user: Any) -> None:
        self._user = pool_user
        self._stop = threading.Event()
        self.samples = 0
        self.max_seen = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            count = self._user.server_connections()
            self.samples += 1
            self.max_seen = max(self.max_seen, count)
            self._stop.wait(0.02)

    def __enter__(self) -> ProcesslistSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)
