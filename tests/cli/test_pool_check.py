"""``flask pool-check``: connect, ping, server limits; exit 0 healthy, 1 not."""

from __future__ import annotations

import json

import pytest

from .conftest import CLI_PASSWORD, assert_no_password, mysql_server_settings
from .test_pool_stats import invoke

UNREACHABLE = f"mysql://fpp_cli:{CLI_PASSWORD}@127.0.0.1:1/test"


@pytest.mark.mysql
def test_healthy_mariadb(make_app, mysql_cli_url):
    app, _ = make_app(mysql_cli_url)
    result = invoke(app, "pool-check")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "pool-check mysql://fpp_cli:***@127.0.0.1:3306/test (pool 'cli_app')"
    assert lines[1].startswith("  connection 1: connect ") and " ms, ping " in lines[1]
    assert lines[2].startswith("  connection 2: connect ")
    assert "max_connections=" in result.stdout and "wait_timeout=" in result.stdout
    assert lines[-1] == "OK: 2 connections opened and pinged"
    assert result.stderr == ""
    assert_no_password(result.output)


@pytest.mark.mysql
def test_json_measures_real_connects(make_app, mysql_cli_url):
    app, state = make_app(mysql_cli_url)
    result = invoke(app, "pool-check", "--json", "--connections", "3")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["errors"] == [] and doc["warnings"] == []
    assert len(doc["connections"]) == 3
    assert all(c["connect_ms"] > 0 and c["ping_ms"] > 0 for c in doc["connections"])
    server = mysql_server_settings(mysql_cli_url)
    assert doc["server"]["max_connections"] == server["max_connections"]
    assert doc["server"]["idle_timeout"] == server["wait_timeout"]
    assert doc["database"]["url"] == "mysql://fpp_cli:***@127.0.0.1:3306/test"
    # Through the driver, not the pool: nothing checked out, nothing left open.
    stats = state.database.pool.stats()
    assert (stats.counters.checkouts, stats.size) == (0, 0)
    assert_no_password(result.output)


def test_unreachable_database_is_one_line_and_exit_1(make_app, tmp_path):
    app, _ = make_app(UNREACHABLE)
    result = invoke(app, "pool-check")
    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(
        "FAIL: cannot connect to mysql://fpp_cli:***@127.0.0.1:1/test: OperationalError: ")
    assert "Can't connect" in errors[0]
    assert "Traceback" not in result.output
    assert result.stdout == "pool-check mysql://fpp_cli:***@127.0.0.1:1/test (pool 'cli_app')\n"
    assert_no_password(result.output, directory=tmp_path)

    result = invoke(app, "pool-check", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["connections"] == [] and doc["server"] is None
    assert len(doc["errors"]) == 1 and "127.0.0.1:1" in doc["errors"][0]
    assert_no_password(result.output)


def test_unreachable_database_in_pool_stats_is_reported(make_app, tmp_path):
    app, _ = make_app(UNREACHABLE)
    result = invoke(app, "pool-stats")
    assert result.exit_code == 0
    assert "Server: unreachable\n  OperationalError: (2003, " in result.stdout
    doc = json.loads(invoke(app, "pool-stats", "--json").stdout)
    assert doc["server"] is None and doc["server_error"].startswith("OperationalError: ")
    assert "Traceback" not in result.output
    assert_no_password(result.output, directory=tmp_path)


@pytest.mark.mysql
def test_warnings_fail_only_with_strict(make_app, mysql_cli_url):
    server = mysql_server_settings(mysql_cli_url)
    lifetime = max(30000, server["wait_timeout"] + 1000)
    max_connections = max(200, server["max_connections"] + 49)
    app, _ = make_app(f"{mysql_cli_url}?max_lifetime={lifetime}"
                      f"&max_connections={max_connections}")
    result = invoke(app, "pool-check")
    assert result.exit_code == 0, result.output
    assert (f"WARNING: max_lifetime {lifetime} s >= server wait_timeout "
            f"{server['wait_timeout']} s") in result.stdout
    assert (f"WARNING: 1 process x max_connections {max_connections} = {max_connections} > "
            f"server max_connections {server['max_connections']}") in result.stdout
    assert result.stdout.splitlines()[-1] == ("OK: 2 connections opened and pinged, "
                                              "2 warning(s)")
    strict = invoke(app, "pool-check", "--strict")
    assert strict.exit_code == 1
    assert strict.stderr == "FAIL: warnings with --strict\n"
    doc = json.loads(invoke(app, "pool-check", "--json").stdout)
    assert len(doc["warnings"]) == 2
    assert_no_password(result.output, strict.output, json.dumps(doc))


def test_sqlite(make_app, sqlite_url):
    app, _ = make_app(sqlite_url)
    result = invoke(app, "pool-check", "--connections", "1")
    assert result.exit_code == 0, result.output
    assert "Server: none (SQLite)" in result.stdout
    assert result.stdout.splitlines()[-1] == "OK: 1 connection opened and pinged"


def test_failed_ping_fails_the_check(make_app, sqlite_url, monkeypatch):
    app, state = make_app(sqlite_url)

    def broken_ping(raw: object) -> None:
        raise ConnectionError("server has gone away\nsecond line")

    monkeypatch.setattr(state.database.pool.driver, "ping", broken_ping)
    result = invoke(app, "pool-check")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"FAIL: ping failed on {sqlite_url}: ConnectionError: server has gone away"]


@pytest.mark.postgres
def test_healthy_postgres(make_app, postgres_url):
    app, _ = make_app(postgres_url)
    result = invoke(app, "pool-check", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["server"]["kind"] == "postgresql"
    assert doc["server"]["connections"] >= 2  # ours, at least
    assert len(doc["connections"]) == 2
