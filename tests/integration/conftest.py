"""Fixtures for the real-database tests: pooled databases as the dedicated pool user."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flask_peewee_pool import (
    PooledMySQLDatabase,
    PooledPostgresqlDatabase,
)
from tests.support.proxy import FaultProxy


def _database_factory(pool_user: Any, database_class: type[Any]) -> Iterator[Callable[..., Any]]:
    """Build pooled databases as the dedicated pool account; all closed after the test."""
    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        params = pool_user.as_dict()
        database = params.pop("database")
        params.update(kwargs)
        db = database_class(database, **params)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close_pool()
    pool_user.wait_until(0, timeout=10)


@pytest.fixture
def make_mysql_db(mysql_pool_user: Any) -> Iterator[Callable[..., PooledMySQLDatabase]]:
    """``make_mysql_db(**kwargs)``: a ``PooledMySQLDatabase`` as ``fpp_pool``."""
    yield from _database_factory(mysql_pool_user, PooledMySQLDatabase)


@pytest.fixture
def make_postgres_db(
    postgres_pool_user: Any,
) -> Iterator[Callable[..., PooledPostgresqlDatabase]]:
    """``make_postgres_db(**kwargs)``: a ``PooledPostgresqlDatabase`` as ``fpp_pool``."""
    yield from _database_factory(postgres_pool_user, PooledPostgresqlDatabase)


@pytest.fixture
def mysql_proxy(mysql_pool_user: Any) -> Iterator[FaultProxy]:
    """A latency/fault proxy on loopback in front of the MariaDB server."""
    with FaultProxy(mysql_pool_user.host, mysql_pool_user.port) as proxy:
        yield proxy


class ServerCountMonitor:
    """Samples the server-side session count of the pool user in a background thread."""

    def __init__(self, pool_user: Any) -> None:
        self._user = pool_user
        self._stop = threading.Event()
        self.maximum = 0
        self.samples = 0
        self._thread = threading.Thread(target=self._run, name="server-count-monitor")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.maximum = max(self.maximum, self._user.server_connections())
            self.samples += 1
            self._stop.wait(0.01)

    def __enter__(self) -> ServerCountMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
