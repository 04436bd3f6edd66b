"""``flask pool-stats --server`` against real servers: two separate processes with
different application names, both visible, counted right.

PostgreSQL shows each connection's ``application_name`` (``<name>[<pid>]``), so
application and process come from the server itself. MariaDB here runs without
performance_schema, where connection attributes (``program_name``) live: the processlist
still gives client host and port, and this host's sockets map ports to processes. That main
path is tested whatever the server; the performance_schema path is tested when the server
has it on (skipped otherwise, with the reason).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from flask_peewee_pool import connect
from tests import dbutil


def _server_view(app: Any, *args: str) -> tuple[dict[str, Any], str]:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["pool-stats", "--server", "--json", *args])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    text = runner.invoke(args=["pool-stats", "--server"])
    assert text.exit_code == 0, text.output
    return doc, text.output


def _process(doc: dict[str, Any], pid: int) -> dict[str, Any]:
    rows = [r for r in doc["by_process"] if r["pid"] == pid]
    assert len(rows) == 1, doc["by_process"]
    return rows[0]


def _host_user(doc: dict[str, Any], user: str) -> list[dict[str, Any]]:
    return [r for r in doc["by_host"] if r["user"] == user]


def test_postgres_two_processes_by_application_and_process(
        postgres_pool_user: dbutil.PostgresPoolUser, postgres_kill_pool_connections: Any,
        spawn_holder: Any, cli_app: Any) -> None:
    url = postgres_pool_user.url
    # One through the Flask extension (the label defaults to the app's import name), one
    # named in the URL.
    alpha = spawn_holder(url, 3, "--flask", "fleet_alpha", "--in-transaction", "1")
    beta = spawn_holder(url + "?application_name=fleet_beta", 2)
    assert (alpha.application, beta.application) == ("fleet_alpha", "fleet_beta")
    app = cli_app(url, name="fleet_alpha")  # same app as alpha: "this app" = alpha's fleet

    doc, text = _server_view(app)

    assert doc["error"] is None
    a, b = _process(doc, alpha.pid), _process(doc, beta.pid)
    assert (a["application"], a["connections"], a["idle_in_transaction"], a["idle"]) == \
        ("fleet_alpha", 3, 1, 2)
    assert (b["application"], b["connections"], b["idle"]) == ("fleet_beta", 2, 2)
    assert a["pid_source"] == b["pid_source"] == "application_name"
    assert a["host"] == b["host"] == "127.0.0.1"
    apps = {r["application"]: r for r in doc["by_application"]}
    assert (apps["fleet_alpha"]["connections"], apps["fleet_alpha"]["processes"]) == (3, 1)
    assert (apps["fleet_beta"]["connections"], apps["fleet_beta"]["processes"]) == (2, 1)
    (mine,) = _host_user(doc, postgres_pool_user.user)
    assert mine["connections"] == 5  # the command's own connection is not listed
    assert doc["totals"]["this_app"] == {"matched_by": "application_name", "connections": 3,
                                         "hosts": 1, "processes": 1}
    with postgres_pool_user.connect() as conn:
        limit = int(conn.execute("SHOW max_connections").fetchone()[0])
    assert doc["totals"]["max_connections"] == limit
    assert doc["totals"]["connections"] >= 6  # the server's own count includes ours
    assert doc["sources"]["sessions"] == "pg_stat_activity"
    for needle in (f"fleet_alpha  127.0.0.1  {alpha.pid}", f"fleet_beta   127.0.0.1  {beta.pid}",
                   f"max_connections {limit}", "By application:", "By process:"):
        assert needle in text, text


def test_mysql_two_processes_by_host_and_process(
        mysql_url: str, mysql_pool_user: dbutil.MySQLPoolUser, mysql_kill_pool_connections: Any,
        spawn_holder: Any, cli_app: Any) -> None:
    url = mysql_pool_user.url
    alpha = spawn_holder(url, 3, "--flask", "fleet_alpha", "--in-transaction", "1")
    beta = spawn_holder(url + "?application_name=fleet_beta", 2)
    app = cli_app(url)

    doc, text = _server_view(app)

    assert doc["error"] is None
    assert doc["sources"]["sessions"] == "information_schema.processlist"
    (mine,) = _host_user(doc, mysql_pool_user.user)
    assert (mine["host"], mine["connections"]) == ("127.0.0.1", 5)
    a, b = _process(doc, alpha.pid), _process(doc, beta.pid)
    assert (a["connections"], b["connections"]) == (3, 2)
    if not doc["sources"]["transactions"]:  # the pool account has no PROCESS privilege
        assert mine["idle"] == 5
        assert any("needs the PROCESS privilege" in n for n in doc["notes"])
    if doc["sources"]["connect_attrs"]:  # performance_schema on: named by the server
        assert (a["application"], b["application"]) == ("fleet_alpha", "fleet_beta")
        assert a["pid_source"] == "program_name"
    else:  # found from this host's sockets
        assert a["pid_source"] == b["pid_source"] == "socket"
        assert "tests.attribution.holder 3" in a["command"]
        assert doc["totals"]["this_app"]["matched_by"] == "user"
        assert doc["totals"]["this_app"]["connections"] == 5
        assert any("performance_schema is OFF" in n for n in doc["notes"])
        assert "performance_schema is OFF" in text
    with mysql_pool_user.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@max_connections")
        (limit,) = cur.fetchone()
    assert doc["totals"]["max_connections"] == int(limit)
    assert f"127.0.0.1  {alpha.pid}" in text and f"127.0.0.1  {beta.pid}" in text

    # An account with PROCESS (the admin here) sees every account, and transactions.
    admin_doc, _ = _server_view(cli_app(mysql_url, name="fleet_admin"))
    assert admin_doc["sources"]["transactions"] is True
    (seen,) = _host_user(admin_doc, mysql_pool_user.user)
    assert (seen["connections"], seen["idle_in_transaction"], seen["idle"]) == (5, 1, 4)
    a = _process(admin_doc, alpha.pid)
    assert (a["connections"], a["idle_in_transaction"]) == (3, 1)


def test_mysql_program_name_via_performance_schema(request: pytest.FixtureRequest,
                                                   spawn_holder: Any, cli_app: Any) -> None:
    """Needs performance_schema (a server restart to switch on): skipped, with the reason,
    where it is off. The fixtures are taken at run time on purpose: the test carries no
    ``mysql`` marker, so a server without performance_schema does not count as a skipped
    database test under FPP_REQUIRE_DB=1 (the main path above always runs)."""
    pool_user: dbutil.MySQLPoolUser = request.getfixturevalue("mysql_pool_user")
    with pool_user.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@performance_schema")
        (enabled,) = cur.fetchone()
    if not int(enabled):
        pytest.skip("performance_schema is OFF on this server: MariaDB/MySQL expose "
                    "connection attributes (program_name) only there")
    request.getfixturevalue("mysql_kill_pool_connections")
    url = pool_user.url
    alpha = spawn_holder(url, 2, "--flask", "fleet_alpha")
    beta = spawn_holder(url + "?application_name=fleet_beta", 1)
    doc, _ = _server_view(cli_app(url, name="fleet_alpha"))
    if not doc["sources"]["connect_attrs"]:
        pytest.skip(f"connection attributes not readable by {pool_user.user}: {doc['notes']}")
    a, b = _process(doc, alpha.pid), _process(doc, beta.pid)
    assert (a["application"], a["connections"], a["pid_source"]) == \
        ("fleet_alpha", 2, "program_name")
    assert (b["application"], b["connections"]) == ("fleet_beta", 1)
    assert doc["totals"]["this_app"]["matched_by"] == "program_name"
    assert doc["totals"]["this_app"]["connections"] == 2


def test_label_carries_the_pid_of_a_forked_child(
        postgres_pool_user: dbutil.PostgresPoolUser) -> None:
    """Computed at each connect: a worker forked from a preloaded app labels its own
    connections with its own pid."""
    db = connect(postgres_pool_user.url, max_connections=2, pool_name="forked_app")
    try:
        with db.connection_context():
            parent = db.execute_sql("SELECT current_setting('application_name')").fetchone()[0]
        assert parent == f"forked_app[{os.getpid()}]"
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                with db.connection_context():
                    label = db.execute_sql(
                        "SELECT current_setting('application_name')").fetchone()[0]
                os.write(write, label.encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read) as pipe:
            label = pipe.read()
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert label == f"forked_app[{child}]"
    finally:
        db.close_pool()


def test_server_and_no_server_exclude_each_other(cli_app: Any, tmp_path: Any) -> None:
    app = cli_app(f"sqlite:///{tmp_path / 'x.db'}")
    result = app.test_cli_runner().invoke(args=["pool-stats", "--server", "--no-server"])
    assert result.exit_code == 2
    assert "exclude each other" in result.output


def test_server_view_of_sqlite_says_there_is_no_server(cli_app: Any, tmp_path: Any) -> None:
    app = cli_app(f"sqlite:///{tmp_path / 'x.db'}")
    result = app.test_cli_runner().invoke(args=["pool-stats", "--server", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == "no database server to ask (sqlite)"
