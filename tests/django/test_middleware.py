"""flask_peewee_pool.django with Django's test client, on SQLite: every request returns its
connection (streamed ones when their body ends), settings are validated naming the key."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import Client, override_settings

from flask_peewee_pool import ConfigError, PooledSqliteDatabase
from flask_peewee_pool import django as fpp_django
from flask_peewee_pool.django import DjangoPoolState, PoolImproperlyConfigured, PoolMiddleware
from tests.django import urls
from tests.django.urls import Note

UsePool = Callable[..., DjangoPoolState]


def in_use() -> int:
    return fpp_django.get_state().stats().in_use


def checkouts() -> int:
    return fpp_django.get_state().stats().counters.checkouts


def rows() -> int:
    with fpp_django.database.connection_context():
        return Note.select().count()  # type: ignore[no-any-return]


@pytest.mark.parametrize("checkout", ["lazy", "eager"])
@pytest.mark.parametrize(("method", "url", "status"), [
    ("get", "/count", 200),
    ("post", "/insert", 200),
    ("get", "/noop", 200),
    ("get", "/error", 500),
    ("get", "/missing", 404),
    ("post", "/atomic-open", 200),
    ("post", "/begin-open", 200),
])
def test_request_outcomes(use_pool: UsePool, checkout: str, method: str, url: str,
                          status: int) -> None:
    use_pool(CHECKOUT=checkout)
    client = Client(raise_request_exception=False)
    response = getattr(client, method)(url)
    assert response.status_code == status
    assert in_use() == 0
    assert rows() == (1 if url == "/insert" else 0)  # open transactions were rolled back


def test_binds_the_proxy(use_pool: UsePool) -> None:
    state = use_pool(MAX_CONNECTIONS="3", NAME="web", CONNECT_ARGS={"cached_statements": 8})
    assert fpp_django.database.obj is state.database
    assert isinstance(state.database, PooledSqliteDatabase)
    assert (state.options.max_connections, state.options.name) == (3, "web")
    assert state.database.connect_params["cached_statements"] == 8
    assert Note._meta.database is fpp_django.database
    assert state.settings["max_connections"] == 3


def test_lazy_and_eager(use_pool: UsePool) -> None:
    use_pool()
    before = checkouts()
    Client().get("/noop")
    assert checkouts() == before  # lazy: no query, no checkout
    use_pool(CHECKOUT="eager", EXCLUDED_ENDPOINTS=["healthz"])
    before = checkouts()
    client = Client()
    client.get("/healthz")
    response = client.get("/static/app.css")
    assert response.status_code == 200
    response.close()
    assert checkouts() == before  # excluded and static views get no connection up front
    client.get("/noop")
    assert checkouts() == before + 1
    assert in_use() == 0


def test_streaming_response_keeps_its_connection(use_pool: UsePool) -> None:
    use_pool()
    response = Client().get("/stream")
    assert response.streaming
    assert in_use() == 1  # the body has not run yet: the view's connection waits for it
    assert b"".join(response.streaming_content) == b"rows=0;in_use=1"
    assert in_use() == 0


def test_streaming_body_that_checks_out(use_pool: UsePool) -> None:
    use_pool()
    response = Client().get("/stream-lazy")
    assert in_use() == 0
    assert b"".join(response.streaming_content) == b"rows=0"
    assert in_use() == 0


def test_streaming_response_closed_unread(use_pool: UsePool) -> None:
    use_pool()
    response = Client().get("/stream")
    assert in_use() == 1
    response.close()  # what a server does when the client goes away
    assert in_use() == 0


def test_streaming_response_abandoned(use_pool: UsePool) -> None:
    """Neither read nor closed (a test that ignores it): the next request ends it."""
    use_pool()
    client = Client()
    client.get("/stream")
    assert in_use() == 1
    assert client.get("/count").json() == {"count": 0}
    assert in_use() == 0


def test_streaming_body_read_in_another_thread(use_pool: UsePool) -> None:
    """What the body takes in the thread that reads it is returned there; the view's own
    connection, in the request's thread, by the next request of that thread."""
    use_pool()
    response = Client().get("/stream")
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(b"".join(response.streaming_content)))
    reader.start()
    reader.join(10)
    assert out == [b"rows=0;in_use=2"]
    assert in_use() == 1
    Client().get("/noop")
    assert in_use() == 0


def test_middleware_outside_queries_after(use_pool: UsePool) -> None:
    """Returned again when the server closes the response (PoolMiddleware not first)."""
    use_pool()
    with override_settings(MIDDLEWARE=["tests.django.urls.QueryingMiddleware",
                                       "flask_peewee_pool.django.PoolMiddleware"]):
        response = Client().get("/count")
    assert response["X-Rows"] == "0"
    assert in_use() == 0


def test_callers_connection_is_left_alone(use_pool: UsePool) -> None:
    """A test holding a transaction calls the app in-process: the connection is its own."""
    use_pool()
    db = fpp_django.database
    with db.atomic() as txn:
        Note.create(text="mine")
        assert Client().get("/count").json() == {"count": 1}
        assert db.in_transaction() and in_use() == 1
        txn.rollback()
    db.close()
    assert in_use() == 0 and rows() == 0


@pytest.mark.parametrize("checkout", ["lazy", "eager"])
def test_pool_exhausted_answers_503(use_pool: UsePool, checkout: str) -> None:
    use_pool(CHECKOUT=checkout, MAX_CONNECTIONS=1, TIMEOUT=0.2)
    urls.held.clear()
    urls.release.clear()
    holder = threading.Thread(target=lambda: Client().get("/hold"))
    holder.start()
    try:
        assert urls.held.wait(10)
        response = Client().get("/count")
        assert response.status_code == 503
        assert response["Retry-After"] == "1"
    finally:
        urls.release.set()
        holder.join(10)
    assert in_use() == 0
    assert Client().get("/count").status_code == 200


def test_settings_change_rebuilds_the_pool(use_pool: UsePool, tmp_path: Any) -> None:
    first = use_pool()
    second = use_pool(DATABASE=f"sqlite:///{tmp_path / 'other.db'}")
    assert second is not first and fpp_django.database.obj is second.database
    assert Client().get("/count").json() == {"count": 0}
    with pytest.raises(Exception, match="closed"):
        first.database.connect()


def test_stats_snapshots_when_stats_dir_is_set(use_pool: UsePool, tmp_path: Any) -> None:
    from flask_peewee_pool import snapshots

    state = use_pool(STATS_DIR=str(tmp_path / "stats"), NAME="web")
    path = snapshots.write_snapshot(state)
    (snap,) = snapshots.read_snapshots(tmp_path / "stats")
    assert snap["app"] == "web" and path.endswith(".json")


def asgi_request(method: str, path: str) -> tuple[int, bytes]:
    """One request through Django's real ASGIHandler (what uvicorn/daphne call)."""
    from django.core.handlers.asgi import ASGIHandler

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [(b"host", b"testserver")],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    sent: list[dict[str, Any]] = []
    received: list[None] = []
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not received:
            received.append(None)
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()  # the client stays until the whole response is sent
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    async def run() -> None:
        await ASGIHandler()(scope, receive, send)

    asyncio.run(run())
    status = sent[0]["status"]
    return status, b"".join(m.get("body", b"") for m in sent[1:])


def test_metrics(use_pool: UsePool) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    state = use_pool(METRICS=registry, NAME="djmetrics", MAX_CONNECTIONS=4)
    assert state.settings["metrics"] is True
    Client().get("/count")
    state.metrics.update()
    assert registry.get_sample_value("peewee_pool_max_connections", {"pool": "djmetrics"}) == 4
    fpp_django.close()
    assert registry.get_sample_value("peewee_pool_max_connections", {"pool": "djmetrics"}) is None


def test_asgi(use_pool: UsePool) -> None:
    """Under ASGI, Django runs the sync middleware, views and body in one thread."""
    use_pool()
    assert asgi_request("POST", "/insert")[0] == 200
    assert in_use() == 0
    assert asgi_request("GET", "/count") == (200, b'{"count": 1}')
    assert in_use() == 0
    with pytest.warns(Warning, match="synchronous iterators"):
        assert asgi_request("GET", "/stream") == (200, b"rows=1;in_use=1")
    assert in_use() == 0
    assert asgi_request("GET", "/error")[0] == 500
    assert in_use() == 0


# --------------------------------------------------------------------------- settings

SECRET = "pa55-Secret-xyz"
BAD = [
    # (PEEWEE_POOL, setting named, words)
    (None, "PEEWEE_POOL", "required"),
    ("sqlite:///x.db", "PEEWEE_POOL", "expected a dict"),
    ({}, 'PEEWEE_POOL["DATABASE"]', "required"),
    ({"DATABASE": f"oracle://u:{SECRET}@h/x"}, 'PEEWEE_POOL["DATABASE"]', "unsupported"),
    ({"DATABASE": "sqlite:///x.db", "MAX_CONNECTIONS": 0},
     'PEEWEE_POOL["MAX_CONNECTIONS"]', "integer >= 1"),
    ({"DATABASE": "sqlite:///x.db", "MIN_IDLE": 50}, 'PEEWEE_POOL["MIN_IDLE"]', "at most"),
    ({"DATABASE": "sqlite:///x.db", "TIMEOUT": "soon"}, 'PEEWEE_POOL["TIMEOUT"]', "seconds"),
    ({"DATABASE": "sqlite:///x.db", "CHECKOUT": "later"}, 'PEEWEE_POOL["CHECKOUT"]', "'lazy'"),
    ({"DATABASE": "sqlite:///x.db", "CONNECT_ARGS": {"max_connections": 3}},
     'PEEWEE_POOL["CONNECT_ARGS"]', 'PEEWEE_POOL["MAX_CONNECTIONS"]'),
    ({"DATABASE": "sqlite:///x.db", "EXCLUDED_ENDPOINTS": 3},
     'PEEWEE_POOL["EXCLUDED_ENDPOINTS"]', "list of endpoint names"),
    ({"DATABASE": "sqlite:///x.db", "database": "x"}, 'PEEWEE_POOL["database"]',
     "unknown setting"),
]


@pytest.mark.parametrize(("value", "setting", "words"), BAD,
                         ids=[f"{i}-{s}" for i, (_, s, _) in enumerate(BAD)])
def test_bad_settings_stop_the_middleware(value: Any, setting: str, words: str) -> None:
    fpp_django.close()
    with override_settings(PEEWEE_POOL=value):
        if value is None:
            from django.conf import settings

            del settings.PEEWEE_POOL
        with pytest.raises(PoolImproperlyConfigured) as info:
            PoolMiddleware(lambda request: HttpResponse())
    assert isinstance(info.value, ImproperlyConfigured)
    assert isinstance(info.value, ConfigError)
    assert info.value.setting == setting
    assert str(info.value).startswith(f"{setting}: ")
    assert words in str(info.value)
    assert SECRET not in str(info.value)
    with pytest.raises(AttributeError):
        fpp_django.database.connect()  # never bound


def test_app_config_binds_at_setup() -> None:
    """INSTALLED_APPS' PeeweePoolConfig: bound for commands and shells, which load no
    middleware."""
    from django.apps import apps

    config = apps.get_app_config("flask_peewee_pool")
    fpp_django.close()
    assert fpp_django.database.obj is None
    config.ready()
    assert fpp_django.database.obj is fpp_django.get_state().database
    fpp_django.close()


def test_middleware_flags() -> None:
    assert PoolMiddleware.sync_capable is True
    assert PoolMiddleware.async_capable is False
