"""``flask pool-stats``: every live process of the app, totals, configuration, warnings."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_peewee_pool import snapshots

from .conftest import assert_no_password, mysql_server_settings
from .test_snapshots import _dead_pid, _fake_snapshot, _queries


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def backend_url(request: pytest.FixtureRequest) -> str:
    """The same tests on SQLite and on MariaDB (with a password in the URL)."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("mysql_cli_url")


def invoke(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def parse_tables(text: str) -> list[dict[str, dict[str, str]]]:
    """Each table of the report as {row id: {column: cell}}, cut at the header's columns.

    Cells are taken from where the previous column ends to where this header ends (numbers
    are right-aligned under their header), so a misaligned column shows up as a bad value.
    """
    lines = text.splitlines()
    tables = []
    for i, header in enumerate(lines):
        if not header.startswith("PID "):
            continue
        spans = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", header)]
        rows: dict[str, dict[str, str]] = {}
        for line in lines[i + 1:]:
            if not line.strip():
                break
            first = line.split()[0]  # the PID column is left-aligned
            cells = {"PID": first}
            for j, (_, end, name) in enumerate(spans[1:], 1):
                cells[name] = line[max(len(first), spans[j - 1][1]):end].strip()
            rows[cells["PID"]] = cells
        tables.append(rows)
    return tables


def test_table_after_queries(make_app, backend_url):
    app, state = make_app(backend_url)
    _queries(state.database, 5)
    result = invoke(app, "pool-stats")
    assert result.exit_code == 0, result.output
    counts, latency = parse_tables(result.stdout)
    me = f"{os.getpid()}*"
    assert set(counts) == {me, "TOTAL"}
    row = counts[me]
    assert row["CHECKOUTS"] == "5"
    assert row["CREATED"] == "1"
    assert (row["SIZE"], row["IDLE"], row["IN USE"], row["WAITING"]) == ("1", "1", "0", "0")
    assert row["MAX"] == str(state.database.pool.options.max_connections)
    assert {k: v for k, v in counts["TOTAL"].items() if k not in ("PID", "AGE")} == {
        k: v for k, v in row.items() if k not in ("PID", "AGE")}
    assert latency[me]["RETIRED: LIFETIME"] == "0"
    assert float(latency[me]["CONNECT p50 ms"]) > 0
    assert "* = this process (no other process has written a snapshot)." in result.stdout
    assert f"Pool {state.database.pool.name!r} of app 'cli_app'" in result.stdout
    assert "Configuration:" in result.stdout
    assert_no_password(result.output)


def test_json_after_queries(make_app, backend_url):
    app, state = make_app(backend_url)
    _queries(state.database, 4)
    result = invoke(app, "pool-stats", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (proc,) = doc["processes"]
    assert proc["pid"] == os.getpid() and proc["current"] is True
    assert (proc["checkouts"], proc["created"], proc["size"], proc["idle"]) == (4, 1, 1, 1)
    assert proc["connect_p99_ms"] >= proc["connect_p50_ms"] > 0
    assert doc["totals"]["processes"] == 1
    assert doc["totals"]["checkouts"] == 4
    assert doc["config"]["max_connections"] == state.database.pool.options.max_connections
    assert doc["stats_dir"] == state.stats_dir
    if backend_url.startswith("sqlite"):
        assert doc["server"] is None and doc["server_error"] is None
    else:
        server = mysql_server_settings(backend_url)
        assert doc["server"]["max_connections"] == server["max_connections"]
        assert doc["server"]["settings"]["wait_timeout"] == server["wait_timeout"]
        assert doc["server"]["connections"] >= 1
        assert doc["warnings"] == []  # defaults are sane against a stock server
    assert_no_password(result.output)


def test_an_unused_pool_shows_no_process_and_stays_unused(make_app, backend_url, tmp_path):
    app, state = make_app(backend_url)
    result = invoke(app, "pool-stats")
    assert result.exit_code == 0, result.output
    assert "No process has written a snapshot yet" in result.stdout
    assert json.loads(invoke(app, "pool-stats", "--json").stdout)["processes"] == []
    # The server was read over a dedicated connection: the command's own pool is untouched,
    # so this process writes no snapshot and starts no maintainer.
    stats = state.database.pool.stats()
    assert (stats.counters.checkouts, stats.size) == (0, 0)
    assert not state.database.pool.maintainer.running
    assert not (tmp_path / "stats").exists() or not list((tmp_path / "stats").iterdir())


def test_other_processes_are_included_and_totals_add_up(make_app, backend_url, tmp_path,
                                                       spawn_child):
    stats_dir = tmp_path / "stats"
    app, state = make_app(backend_url, stats_dir)
    _queries(state.database, 3)  # this process has used its pool too...
    first = spawn_child(backend_url, stats_dir, "--queries", "7")
    second = spawn_child(backend_url, stats_dir, "--queries", "4")

    doc = json.loads(invoke(app, "pool-stats", "--json").stdout)
    by_pid = {p["pid"]: p for p in doc["processes"]}
    # ...but beside server processes the one running the command is left out.
    assert set(by_pid) == {first.pid, second.pid}
    assert (by_pid[first.pid]["checkouts"], by_pid[second.pid]["checkouts"]) == (7, 4)
    assert not any(p["current"] for p in doc["processes"])
    totals = doc["totals"]
    assert totals["processes"] == 2
    for key in ("size", "max_connections", "idle", "in_use", "opening", "waiting",
                "checkouts", "created", "retired_lifetime", "retired_idle", "retired_broken",
                "ping_failures", "timeouts", "leaks"):
        assert totals[key] == sum(p[key] for p in doc["processes"]), key
    assert totals["checkouts"] == 11
    for key in ("wait_p99_ms", "connect_p99_ms"):
        assert totals[key] == max(p[key] for p in doc["processes"])

    result = invoke(app, "pool-stats")
    counts, latency = parse_tables(result.stdout)
    assert set(counts) == set(latency) == {str(first.pid), str(second.pid), "TOTAL"}
    assert counts[str(first.pid)]["CHECKOUTS"] == "7"
    assert counts["TOTAL"]["CHECKOUTS"] == "11"
    assert counts["TOTAL"]["SIZE"] == "2"
    assert counts["TOTAL"]["MAX"] == str(2 * state.database.pool.options.max_connections)
    assert "2 live processes" in result.stdout
    assert "* = this process" not in result.stdout
    assert_no_password(result.output, directory=stats_dir)

    # The command's own process published nothing; a child's file goes when it exits.
    assert {p.name.split("-")[0] for p in stats_dir.iterdir()} == {str(first.pid),
                                                                   str(second.pid)}
    assert first.finish() == 0
    assert second.finish() == 0
    doc = json.loads(invoke(app, "pool-stats", "--json").stdout)
    assert [(p["pid"], p["current"]) for p in doc["processes"]] == [(os.getpid(), True)]
    assert list(stats_dir.iterdir()) == []


def test_dead_process_is_ignored_and_removed(make_app, sqlite_url, tmp_path):
    stats_dir = tmp_path / "stats"
    app, _ = make_app(sqlite_url, stats_dir)
    dead_pid = _dead_pid()
    dead = _fake_snapshot(stats_dir, dead_pid)
    result = invoke(app, "pool-stats")
    assert result.exit_code == 0
    assert str(dead_pid) not in result.stdout
    assert not dead.exists()


def test_stale_and_foreign_config_processes_are_flagged(make_app, sqlite_url, tmp_path):
    stats_dir = tmp_path / "stats"
    app, _ = make_app(sqlite_url, stats_dir)
    parent = os.getppid()
    _fake_snapshot(stats_dir, parent, written_at=0.0,
                   options={"max_connections": 3, "max_lifetime": 60.0, "min_idle": 0})
    doc = json.loads(invoke(app, "pool-stats", "--json").stdout)
    (proc,) = doc["processes"]
    assert proc["pid"] == parent and proc["stale"] is True
    joined = "\n".join(doc["warnings"])
    assert f"pid {parent}: last snapshot" in joined
    assert f"pid {parent} runs with max_connections=3, max_lifetime=60 s, not the" in joined


def test_watch_refreshes_until_count(make_app, sqlite_url):
    app, state = make_app(sqlite_url)
    _queries(state.database, 1)
    result = invoke(app, "pool-stats", "--watch", "0.01", "--count", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("Pool '") == 3
    result = invoke(app, "pool-stats", "--json", "--watch", "0.01", "--count", "2")
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(docs) == 2 and all(d["totals"]["processes"] == 1 for d in docs)
    assert "--count" not in invoke(app, "pool-stats", "--help").stdout


def test_without_the_extension_the_error_says_what_to_do():
    from flask_peewee_pool.cli import register_commands

    app = Flask("bare")
    register_commands(app)
    result = app.test_cli_runner().invoke(args=["pool-stats"])
    assert result.exit_code == 1
    assert "not set up on app 'bare'" in result.output


@pytest.mark.mysql
def test_mysql_warnings_and_no_password_anywhere(make_app, mysql_cli_url, tmp_path):
    server = mysql_server_settings(mysql_cli_url)
    lifetime = max(30000, server["wait_timeout"] + 1000)
    max_connections = max(200, server["max_connections"] + 49)
    url = f"{mysql_cli_url}?max_lifetime={lifetime}&max_connections={max_connections}"
    stats_dir = tmp_path / "stats"
    app, state = make_app(url, stats_dir)
    _queries(state.database, 2)
    snapshots.write_snapshot(state)

    text = invoke(app, "pool-stats")
    doc = json.loads(invoke(app, "pool-stats", "--json").stdout)
    warnings = doc["warnings"]
    assert any(w.startswith(f"max_lifetime {lifetime} s >= server wait_timeout "
                            f"{server['wait_timeout']} s") for w in warnings), warnings
    assert any(f"1 process x max_connections {max_connections} = {max_connections} > server "
               f"max_connections {server['max_connections']}" in w for w in warnings), warnings
    assert "Warnings:" in text.stdout
    assert f"! max_lifetime {lifetime} s >= server wait_timeout" in text.stdout
    assert "fpp_cli:***@127.0.0.1" in text.stdout
    assert_no_password(text.output, json.dumps(doc), directory=stats_dir)


@pytest.mark.postgres
def test_postgres_server_view(make_app, postgres_url):
    app, state = make_app(postgres_url)
    _queries(state.database, 2)
    doc = json.loads(invoke(app, "pool-stats", "--json").stdout)
    server = doc["server"]
    assert server["kind"] == "postgresql"
    assert server["max_connections"] >= 1
    assert server["connections"] >= 1
    assert "idle_session_timeout" in server["settings"]
    assert doc["processes"][0]["checkouts"] == 2
    text = invoke(app, "pool-stats").stdout
    assert "Server (postgresql" in text and "pg_stat_activity=" in text


def test_default_stats_dir_is_used(make_app, sqlite_url, tmp_path):
    app, state = make_app(sqlite_url, None, instance_path=tmp_path / "instance")
    _queries(state.database, 1)
    path = Path(snapshots.write_snapshot(state))
    assert path.parent == tmp_path / "instance" / "peewee_pool_stats"
    doc = json.loads(invoke(app, "pool-stats", "--json").stdout)
    assert doc["stats_dir"] == str(path.parent)
