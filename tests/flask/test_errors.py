"""An exhausted pool answers 503 with Retry-After, unless the app says otherwise."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import HTTPException

from flask_peewee_pool import (
    CheckoutRejected,
    CheckoutTimeout,
    PoolError,
    PoolExhausted,
    PoolTimeout,
)
from tests.flask.helpers import Harness, run_in_thread, wait_for

POOL_ERRORS = [PoolTimeout, PoolExhausted, CheckoutTimeout, CheckoutRejected]


def add_raising_view(app: Flask, exc_class: type[Exception]) -> None:
    def view() -> None:
        raise exc_class("pool 'x': no connection (size 1/1, in use 1, waiting 0)")

    app.add_url_rule("/raise", "raise", view)


@pytest.mark.parametrize("exc_class", POOL_ERRORS)
def test_pool_errors_become_503(harness: Harness, client: FlaskClient,
                                exc_class: type[Exception]) -> None:
    add_raising_view(harness.app, exc_class)
    response = client.get("/raise")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert b"retry" in response.data
    assert b"in use" not in response.data  # pool internals stay in the log


def test_timeout_under_real_exhaustion(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(PEEWEE_POOL_MAX_CONNECTIONS=1, PEEWEE_POOL_TIMEOUT=0.2)
    thread, out = run_in_thread(lambda: h.app.test_client().get("/hold").status_code)
    try:
        assert h.held.wait(10)
        response = h.app.test_client().get("/count")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert h.pool.stats(h.app).counters.timeouts == 1
    finally:
        h.release.set()
        thread.join(10)
    assert out == [200]
    assert h.in_use() == 0
    assert h.app.test_client().get("/count").status_code == 200


def test_exhausted_under_real_pressure(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(PEEWEE_POOL_MAX_CONNECTIONS=1, PEEWEE_POOL_MAX_WAITING=1,
                     PEEWEE_POOL_TIMEOUT=30)
    holder, held_out = run_in_thread(lambda: h.app.test_client().get("/hold").status_code)
    assert h.held.wait(10)
    waiter, waiter_out = run_in_thread(lambda: h.app.test_client().get("/count").status_code)
    try:
        wait_for(lambda: h.pool.stats(h.app).waiting == 1)
        response = h.app.test_client().get("/count")  # one waiter already: rejected at once
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
    finally:
        h.release.set()
        holder.join(10)
        waiter.join(10)
    assert held_out == [200] and waiter_out == [200]
    assert h.in_use() == 0


def _teapot(exc: Exception) -> tuple[str, int]:
    return f"app handler: {type(exc).__name__}", 418


@pytest.mark.parametrize("handled", [PoolTimeout, CheckoutTimeout, PoolError,
                                     MaxConnectionsExceeded])
def test_app_handler_registered_after_init_app_wins(harness: Harness, client: FlaskClient,
                                                    handled: type[Exception]) -> None:
    harness.app.register_error_handler(handled, _teapot)
    add_raising_view(harness.app, CheckoutTimeout)
    response = client.get("/raise")
    assert response.status_code == 418
    assert response.data == b"app handler: CheckoutTimeout"
    assert harness.in_use() == 0


def test_app_handler_registered_before_init_app_wins(make_harness: Callable[..., Harness]
                                                     ) -> None:
    h = make_harness(register=lambda app: app.register_error_handler(PoolTimeout, _teapot))
    assert h.app.error_handler_spec[None][None][PoolTimeout] is _teapot
    add_raising_view(h.app, CheckoutTimeout)
    h.app.add_url_rule("/rejected", "rejected", lambda: (_ for _ in ()).throw(
        CheckoutRejected("busy")))
    assert h.app.test_client().get("/raise").status_code == 418
    # The other class still gets the default answer.
    assert h.app.test_client().get("/rejected").status_code == 503


def test_blueprint_handler_wins(harness: Harness, client: FlaskClient) -> None:
    from flask import Blueprint

    bp = Blueprint("api", __name__)
    bp.register_error_handler(PoolError, _teapot)
    bp.add_url_rule("/raise", "raise", lambda: (_ for _ in ()).throw(PoolTimeout("x")))
    harness.app.register_blueprint(bp, url_prefix="/api")
    assert client.get("/api/raise").status_code == 418


def test_catch_all_handler_does_not_hide_the_503(harness: Harness, client: FlaskClient) -> None:
    """A catch-all is not a pool handler: it sees our 503, as it sees every HTTP error."""

    def catch_all(exc: Exception) -> object:
        if isinstance(exc, HTTPException):  # Flask's documented idiom
            return exc
        return "unexpected", 500

    harness.app.register_error_handler(Exception, catch_all)
    add_raising_view(harness.app, CheckoutTimeout)
    response = client.get("/raise")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"


def test_app_503_handler_formats_the_answer(harness: Harness, client: FlaskClient) -> None:
    harness.app.register_error_handler(503, lambda e: ({"error": "busy"}, 503))
    add_raising_view(harness.app, CheckoutRejected)
    response = client.get("/raise")
    assert response.status_code == 503
    assert response.json == {"error": "busy"}
    assert response.headers["Retry-After"] == "1"
