"""Connection labels and the fleet view's parsing, without a server."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_peewee_pool import PeeweePool, connect, snapshots
from flask_peewee_pool.core.attribution import LABEL_MAX_BYTES, connection_label, parse_label
from flask_peewee_pool.core.drivers import PostgresDriver, PyMySQLDriver
from flask_peewee_pool.core.errors import ConfigError
from flask_peewee_pool.ops.fleet import render_fleet
from flask_peewee_pool.ops.processes import local_socket_owners
from flask_peewee_pool.ops.server import mysql_sessions as _mysql_sessions
from flask_peewee_pool.ops.server import split_host_port as _split_host_port

# ------------------------------------------------------------------ labels


def test_label_is_name_and_pid() -> None:
    assert connection_label("billing", 4242) == "billing[4242]"
    assert connection_label("billing") == f"billing[{os.getpid()}]"
    assert parse_label("billing[4242]") == ("billing", 4242)
    assert parse_label("a[b][7]") == ("a[b]", 7)


def test_label_fits_postgres_and_keeps_the_pid_whole() -> None:
    label = connection_label("x" * 200, 4194304)
    assert len(label.encode()) == LABEL_MAX_BYTES
    assert label.endswith("[4194304]")
    assert parse_label(label) == ("x" * (LABEL_MAX_BYTES - 9), 4194304)


def test_label_is_printable_ascii() -> None:
    assert connection_label("café\nüber", 1) == "caf???ber[1]"


@pytest.mark.parametrize("text", ["psql", "pgAdmin 4 - DB:test", "x[12a]"])
def test_other_clients_labels_are_names_without_pid(text: str) -> None:
    assert parse_label(text) == (text, None)


def test_empty_label() -> None:
    assert parse_label("") == (None, None)
    assert parse_label(None) == (None, None)


# ------------------------------------------------------------------ database defaults


def test_default_application_name_is_the_pool_name() -> None:
    db = connect("postgresql://u@127.0.0.1:1/shop", pool_name="shop-web")
    try:
        assert db.application_name == "shop-web"
        assert db.pool.driver.session_params() == {
            "application_name": f"shop-web[{os.getpid()}]"}
    finally:
        db.close_pool()


def test_a_url_as_pool_name_never_becomes_a_label() -> None:
    """peewee accepts a whole URL as the PostgreSQL database name; the pool is then named
    after it, but the label (readable by every user of the server) takes its path only."""
    from flask_peewee_pool import PooledPostgresqlDatabase

    db = PooledPostgresqlDatabase("postgresql://u:hunter2@db.example/shop")
    try:
        assert db.application_name == "shop"
    finally:
        db.close_pool()


def test_application_name_keyword_and_url_parameter() -> None:
    db = connect("mysql://u@127.0.0.1:1/shop?application_name=billing")
    try:
        assert db.application_name == "billing"
        params = db.pool.driver.connect_params()
        assert params["program_name"] == f"billing[{os.getpid()}]"
    finally:
        db.close_pool()
    db = connect("mysql://u@127.0.0.1:1/shop", application_name="")
    try:
        assert db.application_name is None
        assert "program_name" not in db.pool.driver.connect_params()
    finally:
        db.close_pool()


def test_explicit_driver_parameters_win() -> None:
    mysql = PyMySQLDriver(application_name="app", program_name="exactly this")
    assert mysql.connect_params()["program_name"] == "exactly this"
    seen: dict[str, Any] = {}
    pg = PostgresDriver(lambda **kw: seen.update(kw), application_name="app")
    pg.connect()
    assert seen == {"application_name": f"app[{os.getpid()}]"}


def test_application_name_must_be_text() -> None:
    with pytest.raises(ConfigError, match="application_name"):
        connect("sqlite:///:memory:", application_name=["a"])


def test_flask_default_is_the_app_import_name(tmp_path: Path) -> None:
    app = Flask("shop.web", instance_path=str(tmp_path))
    app.config.update(PEEWEE_POOL_DATABASE="postgresql://u@127.0.0.1:1/shop",
                      PEEWEE_POOL_STATS_INTERVAL=3600)
    PeeweePool(app)
    state = app.extensions["peewee_pool"]
    try:
        assert state.database.application_name == "shop.web"
    finally:
        snapshots.stop_snapshots(state)
        state.database.close_pool()


# ------------------------------------------------------------------ fleet view parsing


@pytest.mark.parametrize(("host", "expected"), [
    ("10.0.0.5:51234", ("10.0.0.5", 51234)),
    ("::1:40000", ("::1", 40000)),
    ("[::1]:40000", ("::1", 40000)),
    ("localhost", ("localhost", None)),
    ("web-3.example:51234", ("web-3.example", 51234)),
    ("", (None, None)),
])
def test_processlist_host_column(host: str, expected: tuple[Any, Any]) -> None:
    assert _split_host_port(host) == expected


class FakeCursor:
    """Answers the fleet view's MySQL queries from canned rows."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str) -> None:
        for needle, rows in self.answers.items():
            if needle in sql:
                if isinstance(rows, Exception):
                    raise rows
                self.rows = rows
                return
        raise AssertionError(sql)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def close(self) -> None:
        pass


class FakeRaw:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def cursor(self) -> FakeCursor:
        return FakeCursor(self.answers)


def test_mysql_sessions_with_performance_schema() -> None:
    raw = FakeRaw({
        "information_schema.PROCESSLIST": [
            (11, "app", "10.0.0.5:50001", "shop", "Sleep"),
            (12, "app", "10.0.0.5:50002", "shop", "Query"),
            (13, "app", "10.0.0.6:50003", "shop", "Sleep"),
            (14, "other", "10.0.0.7:50004", None, "Sleep"),
            (5, "system user", "", None, "Daemon"),
        ],
        "@@port": [(3306, 1)],
        "INNODB_TRX": [(13,)],
        "performance_schema.session_connect_attrs": [
            (11, "program_name", "shop.web[101]"), (11, "_pid", "101"),
            (12, "program_name", "shop.web[101]"), (12, "_pid", "101"),
            (13, "program_name", "shop.web[202]"),
            (14, "_pid", "303"),
        ],
    })
    sessions, facts = _mysql_sessions(raw)
    assert facts["performance_schema"] is True
    assert facts["connect_attrs"] == "session_connect_attrs"
    assert facts["ports"] == {3306}
    by_id = {s["id"]: s for s in sessions}
    assert set(by_id) == {11, 12, 13, 14}  # the server's own threads are left out
    assert (by_id[11]["application"], by_id[11]["pid"], by_id[11]["state"]) == \
        ("shop.web", 101, "idle")
    assert by_id[12]["state"] == "active"
    assert (by_id[13]["host"], by_id[13]["pid"], by_id[13]["state"]) == \
        ("10.0.0.6", 202, "idle_in_transaction")
    assert (by_id[14]["application"], by_id[14]["pid"], by_id[14]["pid_source"]) == \
        (None, 303, "_pid")


def test_mysql_sessions_without_performance_schema_or_process_privilege() -> None:
    raw = FakeRaw({
        "information_schema.PROCESSLIST": [(11, "app", "127.0.0.1:50001", "shop", "Sleep")],
        "@@port": [(3306, 0)],
        "INNODB_TRX": RuntimeError("1227 Access denied; you need the PROCESS privilege"),
    })
    sessions, facts = _mysql_sessions(raw)
    assert facts["performance_schema"] is False and facts["transactions"] is False
    assert sessions[0]["state"] == "idle" and sessions[0]["pid"] is None
    assert any("performance_schema is OFF" in n for n in facts["notes"])
    assert any("needs the PROCESS privilege" in n for n in facts["notes"])


def test_local_socket_owners_from_real_sockets() -> None:
    """Established TCP sockets of this host -> their owner's pid (psutil), only for the
    wanted local addresses and only towards the given remote ports."""
    with contextlib.ExitStack() as stack:
        servers = []
        for _ in range(2):
            server = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
            servers.append(server)
        port, other_port = (s.getsockname()[1] for s in servers)
        clients = []
        for target in (port, port, other_port):
            client = stack.enter_context(socket.create_connection(("127.0.0.1", target)))
            clients.append(client.getsockname())
        for server in servers:  # accept, so every pair is ESTABLISHED on both ends
            stack.enter_context(server.accept()[0])
        stack.enter_context(servers[0].accept()[0])
        wanted = {*(tuple(c) for c in clients), ("10.0.0.9", clients[0][1])}
        owners = local_socket_owners(wanted, {port})
    assert owners == {tuple(clients[0]): os.getpid(), tuple(clients[1]): os.getpid()}


def test_render_fleet_with_applications() -> None:
    doc = {
        "pool": "shop.web", "app": "shop.web", "generated_at": 0.0,
        "database": {"kind": "postgresql", "description": "postgresql://app@db/shop"},
        "application_name": "shop.web", "user": "app", "error": None,
        "server": {"kind": "postgresql", "version": "15.4"},
        "totals": {"connections": 9, "listed": 8, "max_connections": 100, "reserved": 3,
                   "available": 88, "active": 1, "idle": 6, "idle_in_transaction": 1,
                   "other": 0, "this_app": {"matched_by": "application_name",
                                            "connections": 5, "hosts": 2, "processes": 3}},
        "by_host": [{"host": "10.0.0.5", "user": "app", "connections": 8, "active": 1,
                     "idle": 6, "idle_in_transaction": 1, "other": 0}],
        "by_application": [{"application": "shop.web", "hosts": 2, "processes": 3,
                            "connections": 5, "active": 1, "idle": 3,
                            "idle_in_transaction": 1, "other": 0}],
        "by_process": [{"application": "shop.web", "host": "10.0.0.5", "pid": 101,
                        "connections": 2, "active": 1, "idle": 1, "idle_in_transaction": 0,
                        "other": 0, "pid_source": "application_name"}],
        "sources": {"sessions": "pg_stat_activity", "connect_attrs": "application_name",
                    "local_sockets": False},
        "notes": [], "warnings": ["the server has 95 connections of 97 it accepts (97%)"],
    }
    text = render_fleet(doc)
    assert "9 connections of max_connections 100 (3 reserved for superusers), 88 available" \
        in text
    assert "This app (application_name 'shop.web[<pid>]'): 5 connections from 3 process(es)" \
        " on 2 host(s)" in text
    assert "shop.web     10.0.0.5  101" in text
    assert "  ! the server has 95" in text
