"""Callable credentials without a server: evaluated per connect, outside every pool lock,
and a failing one never leaks its secret (messages, reprs, tracebacks, logs)."""

from __future__ import annotations

import logging
import socket
import traceback
from typing import Any

import pytest

from flask_peewee_pool import ConfigError, ConnectFailed, PooledMySQLDatabase
from flask_peewee_pool.core.credentials import (
    CredentialsError,
    resolve_credentials,
    static_params,
)
from flask_peewee_pool.core.drivers import PyMySQLDriver
from flask_peewee_pool.core.pool import ConnectionPool
from tests.unit.fakes import LockWatch, instrument

SECRET = "tok-9f3Kq-SECRET-never-shown"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when we return: refused


def test_resolve_calls_every_callable_each_time() -> None:
    calls = []

    def password() -> str:
        calls.append(1)
        return f"pw{len(calls)}"

    params = {"user": "u", "password": password}
    assert resolve_credentials(params)["password"] == "pw1"
    assert resolve_credentials(params)["password"] == "pw2"
    assert params["password"] is password  # the configured parameters are never changed
    assert static_params(params) == {"user": "u", "password": ""}


def test_credentials_mapping_overrides_and_wins_over_password() -> None:
    params = {"user": "old", "host": "a", "password": lambda: "unused",
              "credentials": lambda: {"user": "new", "password": "p", "host": "b"}}
    assert resolve_credentials(params) == {"user": "new", "password": "p", "host": "b"}


def test_plain_parameters_pass_through() -> None:
    assert resolve_credentials({"password": "x", "port": 1}) == {"password": "x", "port": 1}


@pytest.mark.parametrize(("params", "expected"), [
    ({"password": lambda: None}, "'password' callable returned NoneType, expected str"),
    ({"credentials": lambda: ["x"]}, "'credentials' callable returned list, expected a mapping"),
])
def test_wrong_types_are_named(params: dict[str, Any], expected: str) -> None:
    with pytest.raises(CredentialsError, match=expected):
        resolve_credentials(params)


def test_a_raising_callable_loses_its_message_and_chain() -> None:
    def password() -> str:
        raise RuntimeError(f"vault said: {SECRET}")

    with pytest.raises(CredentialsError) as info:
        resolve_credentials({"password": password})
    assert "RuntimeError" in str(info.value) and SECRET not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_unchanged(exc: type) -> None:
    raised = exc()

    def password() -> str:
        raise raised

    with pytest.raises(exc) as info:
        resolve_credentials({"password": password})
    assert info.value is raised


def test_credentials_must_be_callable_at_startup() -> None:
    with pytest.raises(ConfigError, match="credentials: expected a callable"):
        PooledMySQLDatabase("test", host="127.0.0.1", credentials={"password": "x"})


def test_failing_callable_is_connect_failed_naming_the_pool_and_no_secret(
        caplog: pytest.LogCaptureFixture) -> None:
    def password() -> str:
        raise RuntimeError(f"token endpoint refused, last token was {SECRET}")

    caplog.set_level(logging.DEBUG)
    db = PooledMySQLDatabase("test", host="127.0.0.1", port=_closed_port(), user="app",
                             password=password, pool_name="billing", min_idle=0)
    try:
        with pytest.raises(ConnectFailed) as info:
            db.connect()
        text = "".join(traceback.format_exception(info.value))
        assert "'billing'" in str(info.value)
        assert "password' callable raised RuntimeError" in str(info.value)
        for shown in (str(info.value), repr(info.value), text, caplog.text, repr(db.pool),
                      str(db.pool.stats().as_dict())):
            assert SECRET not in shown
        assert db.pool.stats().in_use == 0 and db.pool.stats().opening == 0
    finally:
        db.close_pool()


def test_called_per_new_connection_and_outside_every_lock() -> None:
    watch = LockWatch()
    calls: list[int] = []

    def password() -> str:
        watch.assert_unlocked("password callable")
        calls.append(1)
        return "whatever"

    port = _closed_port()
    pool = ConnectionPool(PyMySQLDriver(host="127.0.0.1", port=port, user="app",
                                        password=password, connect_timeout=2),
                          name="rotating", start_maintainer=False, max_connections=2)
    instrument(pool, watch)
    try:
        for _ in range(3):
            with pytest.raises(Exception, match="rotating"):
                pool.checkout()
    finally:
        pool.close()
    assert len(calls) == 3  # one per connect, nothing cached
    assert watch.violations == []
