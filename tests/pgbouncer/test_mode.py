"""``external_pooler``: validation, what each mode changes, start-up warnings (no server)."""

from __future__ import annotations

import logging
from typing import Any

import peewee
import pytest

from flask_peewee_pool import connect
from flask_peewee_pool.core.errors import ConfigError
from flask_peewee_pool.core.poolers import external_pooler_warnings, normalize_external_pooler

PG = "postgresql://u@127.0.0.1:1/shop"
MY = "mysql://u@127.0.0.1:1/shop"


@pytest.mark.parametrize(("value", "expected"), [
    ("pgbouncer", "pgbouncer"), ("PgBouncer ", "pgbouncer"), ("proxysql", "proxysql"),
    (None, None), ("", None), ("none", None), (False, None),
])
def test_values(value: Any, expected: str | None) -> None:
    assert normalize_external_pooler(value) == expected


@pytest.mark.parametrize(("url", "value", "message"), [
    (MY, "pgbouncer", "'pgbouncer' fronts postgresql, not mysql; for mysql use 'proxysql'"),
    (PG, "proxysql", "'proxysql' fronts mysql, not postgresql; for postgresql use 'pgbouncer'"),
    ("sqlite:///:memory:", "pgbouncer", "fronts postgresql, not sqlite"),
    (PG, "odyssey", "expected 'pgbouncer', 'proxysql' or none, got 'odyssey'"),
    (PG, 1, "expected 'pgbouncer', 'proxysql' or none, got 1"),
])
def test_a_pooler_that_does_not_front_the_database_fails_at_start_up(
        url: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        connect(url, external_pooler=value)
    assert info.value.setting == "external_pooler"
    assert message in str(info.value)


def test_url_parameter() -> None:
    db = connect(PG + "?external_pooler=pgbouncer&max_connections=3")
    try:
        assert db.external_pooler == "pgbouncer"
        assert db.pool.options.max_connections == 3
    finally:
        db.close_pool()


def _captured_connect(monkeypatch: pytest.MonkeyPatch, db: Any) -> dict[str, Any]:
    """What the database passes to psycopg.connect for one new connection."""
    import psycopg

    seen: dict[str, Any] = {}

    class Raw:
        autocommit = False

        def set_isolation_level(self, level: Any) -> None:
            pass

    def fake_connect(*args: Any, **kwargs: Any) -> Raw:
        seen.update(kwargs)
        return Raw()

    monkeypatch.setattr(psycopg, "connect", fake_connect)
    db.pool.driver.connect()
    return seen


@pytest.mark.parametrize(("query", "expected"), [
    ("", "absent"), ("?external_pooler=pgbouncer", None),
    ("?external_pooler=pgbouncer&prepare_threshold=0", 0),  # explicit: kept (and warned)
])
def test_pgbouncer_mode_turns_prepared_statements_off(
        monkeypatch: pytest.MonkeyPatch, query: str, expected: Any) -> None:
    if type(getattr(peewee.PostgresqlDatabase(None), "_adapter", None)).__name__ \
            != "Psycopg3Adapter":
        pytest.skip("peewee does not use psycopg 3 here")
    db = connect(PG + query, pool_name="shop")
    try:
        seen = _captured_connect(monkeypatch, db)
    finally:
        db.close_pool()
    assert seen.get("prepare_threshold", "absent") == expected
    assert seen["application_name"].startswith("shop[")
    assert seen["dbname"] == "shop"


def test_no_warning_for_a_clean_configuration(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "flask_peewee_pool"):
        for url in (PG + "?external_pooler=pgbouncer", MY + "?external_pooler=proxysql"):
            connect(url, init_sql="SET LOCAL x = 1" if "postgres" in url else
                    "SET sql_mode='ANSI'").close_pool()
    assert caplog.records == []


def test_warnings_are_logged_once_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "flask_peewee_pool"):
        db = connect(PG + "?external_pooler=pgbouncer&prepare_threshold=5",
                     init_sql=["SET search_path = app", "SET LOCAL work_mem = '64MB'"],
                     options="-c statement_timeout=5000", pool_name="shop")
        try:
            with pytest.raises(peewee.OperationalError):  # port 1: nothing listens
                db.connect()
        finally:
            db.close_pool()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    mode = [m for m in messages if "external_pooler=pgbouncer" in m]
    assert len(mode) == 3, messages
    assert all(m.startswith("pool 'shop' (external_pooler=pgbouncer): ") for m in mode)
    assert any("prepare_threshold=5" in m for m in mode)
    assert any("options (startup -c settings)" in m for m in mode)
    assert any("init_sql 'SET search_path = app'" in m for m in mode)
    assert not any("work_mem" in m for m in mode)  # SET LOCAL: transaction-scoped, fine


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"prepare_threshold": None}, []),
    ({"prepare_threshold": 5}, ["prepare_threshold=5"]),
    ({"options": "-c search_path=app"}, ["options (startup -c settings)"]),
    ({"init_sql": ["SET TIME ZONE 'UTC'"]}, ["SET TIME ZONE 'UTC'"]),
    ({"init_sql": ["select pg_advisory_lock(1)"]}, ["select pg_advisory_lock(1)"]),
    ({"init_sql": ["LISTEN jobs"]}, ["LISTEN jobs"]),
    ({"init_sql": ["CREATE TEMP TABLE t (x int)"]}, ["CREATE TEMP TABLE"]),
    ({"init_sql": ["SET LOCAL lock_timeout = '1s'", "SELECT 1"]}, []),
    ({"configure": print}, ["configure hook"]),
    ({"reset": print}, ["reset hook"]),
])
def test_pgbouncer_warnings(kwargs: dict[str, Any], expected: list[str]) -> None:
    params = {k: v for k, v in kwargs.items() if k in ("prepare_threshold", "options")}
    found = external_pooler_warnings(
        "pgbouncer", params, init_sql=kwargs.get("init_sql", ()),
        configure=kwargs.get("configure"), reset=kwargs.get("reset"))
    assert len(found) == len(expected), found
    for text, needle in zip(found, expected, strict=True):
        assert needle in text


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"init_command": "SET sql_mode='STRICT_ALL_TABLES'"}, []),
    ({"init_command": "SET NAMES utf8mb4"}, []),
    ({"init_command": "SET SESSION time_zone = '+00:00'"}, []),
    ({"init_command": "SET @@session.autocommit = 1"}, []),
    ({"init_command": "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"}, []),
    ({"init_command": "SET @tenant = 7"}, ["uses a user variable"]),
    ({"init_command": "SET foreign_key_checks = 0"}, ["pins every connection"]),
    ({"init_sql": ["SET group_concat_max_len = 65536"]}, ["init_sql"]),
    ({"autocommit": False}, ["autocommit=False"]),
    ({"autocommit": True, "charset": "utf8mb4", "sql_mode": "ANSI"}, []),
])
def test_proxysql_warnings(kwargs: dict[str, Any], expected: list[str]) -> None:
    init_sql = kwargs.pop("init_sql", ())
    found = external_pooler_warnings("proxysql", kwargs, init_sql=init_sql)
    assert len(found) == len(expected), found
    for text, needle in zip(found, expected, strict=True):
        assert needle in text


def test_no_mode_no_warnings() -> None:
    assert external_pooler_warnings(None, {"prepare_threshold": 5, "init_command": "SET @a=1"},
                                    init_sql=["SET x = 1"]) == []
