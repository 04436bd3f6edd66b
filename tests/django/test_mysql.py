"""The Django middleware against MariaDB, as the dedicated pool account: the server's own
session count matches the pool after concurrent requests, errors and streamed responses."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.test import Client

from flask_peewee_pool import PooledMySQLDatabase
from flask_peewee_pool import django as fpp_django
from flask_peewee_pool.django import DjangoPoolState
from tests import dbutil

pytestmark = pytest.mark.mysql

UsePool = Callable[..., DjangoPoolState]


@pytest.fixture
def server(mysql_pool_user: dbutil.MySQLPoolUser,
           mysql_kill_pool_connections: Callable[[], int]) -> dbutil.MySQLPoolUser:
    return mysql_pool_user


def pool_size(state: DjangoPoolState) -> int:
    stats = state.stats()
    return stats.idle + stats.in_use  # type: ignore[no-any-return]


@pytest.mark.parametrize("checkout", ["lazy", "eager"])
def test_concurrent_requests(server: dbutil.MySQLPoolUser, use_pool: UsePool,
                             checkout: str) -> None:
    state = use_pool(DATABASE=server.url, MAX_CONNECTIONS=3, CHECKOUT=checkout)
    assert isinstance(state.database, PooledMySQLDatabase)
    errors: list[BaseException] = []
    peak: list[int] = []

    def run() -> None:
        try:
            client = Client(raise_request_exception=False)
            for i in range(12):
                url = ("/insert", "/count", "/error", "/atomic-open")[i % 4]
                method = client.post if url in ("/insert", "/atomic-open") else client.get
                assert method(url).status_code == (500 if url == "/error" else 200)
                if i == 6:
                    response = client.get("/stream")
                    assert b"".join(response.streaming_content).startswith(b"rows=")
                peak.append(server.server_connections())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert max(peak) <= 3
    assert state.stats().in_use == 0
    assert 1 <= pool_size(state) <= 3
    server.wait_until(pool_size(state))
    assert Client().get("/count").json() == {"count": 8 * 3}  # atomic-open rolled back
    fpp_django.close()
    server.wait_until(0)


def test_streamed_response_holds_until_closed(server: dbutil.MySQLPoolUser,
                                              use_pool: UsePool) -> None:
    state = use_pool(DATABASE=server.url, MAX_CONNECTIONS=2)
    response = Client().get("/stream")
    assert state.stats().in_use == 1
    assert b"".join(response.streaming_content) == b"rows=0;in_use=1"
    assert state.stats().in_use == 0
    server.wait_until(pool_size(state))


def test_lazy_noop_requests_never_connect(server: dbutil.MySQLPoolUser,
                                          use_pool: UsePool) -> None:
    use_pool(DATABASE=server.url, CHECKOUT="eager", EXCLUDED_ENDPOINTS="healthz")
    fpp_django.get_state().database.close_idle()  # the table set-up's connection
    server.wait_until(0)
    client = Client()
    for _ in range(5):
        client.get("/healthz")
        client.get("/static/app.css").close()
    assert server.server_connections() == 0
