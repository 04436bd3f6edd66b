"""``flask pool-stats`` and ``flask pool-check``: the pool seen from a shell.

``pool-stats`` answers "what are my server processes doing with their connections?". It
reads the snapshot every live process of the app writes (see :mod:`.snapshots`), one row per
process plus a TOTAL row, and sets the configuration beside what the database server itself
reports, with warnings for the classic mistakes (``max_lifetime`` longer than the server's
idle timeout; more connections across processes than the server accepts).

``pool-check`` answers "can this process reach the database right now, and how fast?". It
opens connections through the pool's driver (not through the pool: it measures a real
connect), pings them, and exits 0 or 1, so it fits a container readiness probe.

Which processes ``pool-stats`` shows: the ones with a live snapshot, i.e. the ones whose
pool has been used. The process running the command is not a server: it stops its own
snapshot writer (an app factory that queries at startup would have started it) and is left
out of the rows, the totals and the ``processes x max_connections`` check. Only when no
other process has a snapshot and its own pool has been used (development, tests, the command
run in-process) does it show its own live numbers, marked ``*``. The server's view is read
over one dedicated connection made by the pool's driver and closed at once: the command
starts no maintainer thread and leaves nothing open.

``pool-stats --server`` answers "who holds connections to this database server, from
every host?". It reads the server's own session table (``pg_stat_activity``;
``information_schema.processlist``, plus ``performance_schema`` where enabled) and groups
the sessions by client host and account, and by application and process from the label
``<name>[<pid>]`` every connection of this library carries (see
:func:`~flask_peewee_pool.core.drivers.connection_label`); where the server shows no label,
sessions from this host are matched to processes through their sockets (``/proc``). Totals
are set against the server's ``max_connections``.

Neither command ever prints a password: the database is shown by its redacted URL or the
driver's description, and error messages are scrubbed of the configured password.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from . import snapshots
from .snapshots import ExtensionState

#: Where the extension keeps its state in ``app.extensions``.
EXTENSION_KEY = "peewee_pool"

_SUMMED = (
    "size", "max_connections", "idle", "in_use", "opening", "closing", "waiting",
    "checkouts", "created", "connect_failures", "retired_lifetime", "retired_idle",
    "retired_broken", "ping_failures", "timeouts", "rejected", "leaks",
)
_LATENCIES = ("wait_p50_ms", "wait_p99_ms", "connect_p50_ms", "connect_p99_ms")
_DURATIONS = frozenset({"max_lifetime", "idle_timeout", "ping_after", "keepalive", "timeout",
                        "leak_threshold", "max_backoff"})
_NONE_LABELS = {"segments": "auto", "timeout": "none (waits forever)", "ping_after": "never"}


# ----------------------------------------------------------------------------- registration


def register_commands(app: Flask) -> None:
    """Add ``pool-stats`` and ``pool-check`` to ``app.cli`` (called by ``init_app``)."""
    app.cli.add_command(pool_stats_command)
    app.cli.add_command(pool_check_command)


def _state() -> ExtensionState:
    state = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise click.ClickException(
            f"flask-peewee-pool is not set up on app {current_app.name!r}: "
            "call PeeweePool(app) or pool.init_app(app) in the app factory")
    return state


def _not_a_server(state: ExtensionState) -> None:
    """The process running pool-stats / pool-check serves nothing: it must not publish a
    snapshot (its app factory may have used the pool, which started the writer), or other
    invocations would count it as a server process."""
    snapshots.stop_snapshots(state)


# ----------------------------------------------------------------------------- helpers


def _ms(seconds: Any) -> float:
    return round(float(seconds or 0.0) * 1000.0, 3)


def _one_line(exc: BaseException, secrets: Sequence[str]) -> str:
    """``Type: first line of the message``, scrubbed of passwords: no traceback, ever."""
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return str(snapshots.scrub(message, secrets))


def _where(database: dict[str, Any]) -> str:
    return str(database.get("url") or database.get("description") or "?")


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _rows(cursor: Any) -> list[tuple[Any, ...]]:
    """Rows as tuples whatever the cursor class (PyMySQL's DictCursor returns dicts)."""
    return [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in cursor.fetchall()]


# ----------------------------------------------------------------------------- server view


def _mysql_server(raw: Any) -> dict[str, Any]:
    cursor = raw.cursor()
    try:
        # Session values: what a connection made with the pool's settings actually gets
        # (an init_command may have changed wait_timeout for it).
        cursor.execute("SHOW VARIABLES WHERE Variable_name IN "
                       "('max_connections', 'max_user_connections', 'wait_timeout', 'version')")
        variables = {str(k): v for k, v in _rows(cursor)}
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        status = {str(k): v for k, v in _rows(cursor)}
    finally:
        cursor.close()
    wait_timeout = _int(variables.get("wait_timeout"))
    settings = {
        "max_connections": _int(variables.get("max_connections")),
        "max_user_connections": _int(variables.get("max_user_connections")),
        "wait_timeout": wait_timeout,
        "Threads_connected": _int(status.get("Threads_connected")),
    }
    return {
        "kind": "mysql",
        "version": variables.get("version"),
        "max_connections": settings["max_connections"],
        "max_user_connections": settings["max_user_connections"] or None,
        "connections": settings["Threads_connected"],
        "idle_timeout": wait_timeout or None,
        "idle_timeout_setting": "wait_timeout",
        "settings": settings,
    }


def _postgres_server(raw: Any) -> dict[str, Any]:
    cursor = raw.cursor()
    try:
        cursor.execute("SELECT name, setting, unit FROM pg_settings WHERE name IN "
                       "('max_connections', 'idle_session_timeout', "
                       "'superuser_reserved_connections', 'server_version')")
        found = {str(name): (setting, unit) for name, setting, unit in _rows(cursor)}
        cursor.execute("SELECT count(*) FROM pg_stat_activity "
                       "WHERE backend_type = 'client backend'")
        row = cursor.fetchone()
    finally:
        cursor.close()
    idle_ms = None
    if "idle_session_timeout" in found:  # PostgreSQL 14+; 0 means off
        setting, unit = found["idle_session_timeout"]
        factor = {"ms": 1, "s": 1000, "min": 60000}.get(str(unit), 1)
        idle_ms = (_int(setting) or 0) * factor
    settings = {
        "max_connections": _int(found.get("max_connections", (None, None))[0]),
        "superuser_reserved_connections": _int(
            found.get("superuser_reserved_connections", (None, None))[0]),
        "idle_session_timeout": None if idle_ms is None else idle_ms / 1000.0,
        "pg_stat_activity": _int(row[0]) if row else None,
    }
    return {
        "kind": "postgresql",
        "version": found.get("server_version", (None, None))[0],
        "max_connections": settings["max_connections"],
        "max_user_connections": None,
        "connections": settings["pg_stat_activity"],
        "idle_timeout": (idle_ms / 1000.0) if idle_ms else None,
        "idle_timeout_setting": "idle_session_timeout",
        "settings": settings,
    }


_SERVER_QUERIES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "mysql": _mysql_server,
    "postgresql": _postgres_server,
}


def query_server(kind: str, raw: Any) -> dict[str, Any] | None:
    """The server's limits and current load over the open connection ``raw``.

    MySQL/MariaDB: ``max_connections``, ``max_user_connections``, ``wait_timeout`` (SHOW
    VARIABLES) and ``Threads_connected`` (SHOW GLOBAL STATUS). PostgreSQL:
    ``max_connections``, ``idle_session_timeout`` and the client backends in
    ``pg_stat_activity``. SQLite (and unknown kinds): None, there is no server.
    Normalised keys (``max_connections``, ``connections``, ``idle_timeout`` in seconds or
    None when off) sit beside the server's own names in ``settings``.
    """
    query = _SERVER_QUERIES.get(kind)
    return query(raw) if query else None


def server_view(state: ExtensionState) -> tuple[dict[str, Any] | None, str | None]:
    """``(server info, error)`` over one dedicated connection, closed at once.

    The connection is made by the pool's driver (same parameters, same TLS context as the
    pool's connections) rather than checked out, so this command never starts the pool's
    maintainer, never refills ``min_idle`` and leaves no connection behind.
    """
    database = state.database
    driver = database.pool.driver
    if driver.kind not in _SERVER_QUERIES:
        return None, None
    secrets = snapshots.database_secrets(database)
    try:
        raw = driver.connect()
    except Exception as exc:
        return None, _one_line(exc, secrets)
    try:
        return query_server(driver.kind, raw), None
    except Exception as exc:
        return None, _one_line(exc, secrets)
    finally:
        with contextlib.suppress(Exception):
            driver.close(raw)


# ----------------------------------------------------------------------------- warnings


def config_warnings(options: dict[str, Any], server: dict[str, Any] | None,
                    processes: Sequence[dict[str, Any]]) -> list[str]:
    """The configuration checked against the server and the running processes.

    ``options`` are this app's PoolOptions fields; ``processes`` the rows of the live
    processes (their own options and stats). Each warning is one self-explanatory line.
    """
    warnings: list[str] = []
    if server:
        idle = server.get("idle_timeout")
        name = server.get("idle_timeout_setting", "idle timeout")
        lifetime = options.get("max_lifetime")
        if idle:
            if lifetime is None or lifetime >= idle:
                shown = "none (unlimited)" if lifetime is None else f"{lifetime:g} s"
                warnings.append(
                    f"max_lifetime {shown} >= server {name} {idle:g} s: the server can "
                    f"close connections before the pool retires them; set MAX_LIFETIME "
                    f"below {idle:g}")
            keepalive = options.get("keepalive")
            if keepalive is not None and keepalive >= idle:
                warnings.append(
                    f"keepalive {keepalive:g} s >= server {name} {idle:g} s: idle "
                    f"connections are pinged only after the server has dropped them")
        limit = server.get("max_connections")
        if processes:
            caps = [int(p.get("max_connections") or 0) for p in processes]
        else:  # nothing running yet: the configuration of one process
            caps = [int(options.get("max_connections") or 0)]
        total = sum(caps)
        if len(set(caps)) == 1:
            what = (f"{len(caps)} process{'es' if len(caps) != 1 else ''} x "
                    f"max_connections {caps[0]} = {total}")
        else:
            what = f"max_connections summed over {len(caps)} processes = {total}"
        if limit and total > limit:
            warnings.append(
                f"{what} > server max_connections {limit}: under load the server will "
                f"refuse connections; lower MAX_CONNECTIONS or raise the server's limit")
        user_limit = server.get("max_user_connections")
        if user_limit and total > user_limit:
            warnings.append(f"{what} > server max_user_connections {user_limit}")
    for proc in processes:
        label = f"pid {proc['pid']}" + (
            f" on {proc['hostname']}" if proc.get("hostname") != socket.gethostname() else "")
        if proc.get("stale"):
            warnings.append(
                f"{label}: last snapshot {_age(proc.get('age_s'))} ago (written every "
                f"{proc.get('interval', '?')} s): its maintainer is stalled or its pool closed")
        if proc.get("database_down"):
            warnings.append(f"{label}: database unreachable, reconnecting with backoff")
        theirs = proc.get("options") or {}
        differs = [k for k in ("max_connections", "max_lifetime", "min_idle")
                   if k in theirs and k in options and theirs[k] != options[k]]
        if differs:
            shown = ", ".join(f"{k}={_format_option(k, theirs[k])}" for k in differs)
            warnings.append(f"{label} runs with {shown}, not the current configuration "
                            "(not restarted since the change?)")
    return warnings


# ----------------------------------------------------------------------------- pool-stats


def _process_row(snap: dict[str, Any], now: float, *, current: bool) -> dict[str, Any]:
    stats = snap.get("stats") or {}
    counters = stats.get("counters") or {}
    options = snap.get("options") or {}
    wait = stats.get("checkout_wait") or {}
    connect = stats.get("connect_time") or {}
    interval = float(snap.get("interval") or snapshots.DEFAULT_INTERVAL)
    written_at = snap.get("written_at")
    age = max(0.0, now - float(now if written_at is None else written_at))
    return {
        "pid": snap["pid"],
        "hostname": snap.get("hostname"),
        "app": snap.get("app"),
        "pool": snap.get("pool"),
        "current": current,
        "age_s": round(age, 3),
        "interval": interval,
        "stale": not current and age > max(3 * interval, interval + 10.0),
        "size": int(stats.get("size", 0)),
        "max_connections": int(options.get("max_connections")
                               or stats.get("max_connections") or 0),
        "idle": int(stats.get("idle", 0)),
        "in_use": int(stats.get("in_use", 0)),
        "opening": int(stats.get("opening", 0)),
        "closing": int(stats.get("closing", 0)),
        "waiting": int(stats.get("waiting", 0)),
        "checkouts": int(counters.get("checkouts", 0)),
        "created": int(counters.get("connects", 0)),
        "connect_failures": int(counters.get("connect_failures", 0)),
        "retired_lifetime": int(counters.get("retired_lifetime", 0)),
        "retired_idle": int(counters.get("retired_idle", 0)),
        "retired_broken": int(counters.get("retired_broken", 0)),
        "ping_failures": int(counters.get("ping_failures", 0))
        + int(counters.get("keepalive_failures", 0)),
        "timeouts": int(counters.get("timeouts", 0)),
        "rejected": int(counters.get("rejected", 0)),
        "leaks": int(counters.get("leaks", 0)),
        "wait_p50_ms": _ms(wait.get("p50")),
        "wait_p99_ms": _ms(wait.get("p99")),
        "connect_p50_ms": _ms(connect.get("p50")),
        "connect_p99_ms": _ms(connect.get("p99")),
        "database_down": bool(stats.get("database_down")),
        "options": options,
        "stats": stats,
    }


def _totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {"processes": len(rows)}
    for key in _SUMMED:
        totals[key] = sum(int(r[key]) for r in rows)
    # Percentiles do not add up; the snapshots carry summaries, not histograms, so the
    # TOTAL row shows the worst process.
    for key in _LATENCIES:
        totals[key] = max((float(r[key]) for r in rows), default=0.0)
    return totals


def _other_processes(state: ExtensionState, now: float) -> list[dict[str, Any]]:
    """Rows of the live snapshots of this app, without this process's own file for this
    pool (its numbers are read live instead, when it has any). Snapshots of other apps in
    the same directory (two apps of one project share its instance folder) are skipped."""
    own_pid, host, name = os.getpid(), socket.gethostname(), state.database.pool.name
    app_name = snapshots.build_snapshot(state)["app"]
    return [
        _process_row(snap, now, current=False)
        for snap in snapshots.read_snapshots(snapshots.stats_dir_of(state))
        if snap.get("app") == app_name
        and not (snap["pid"] == own_pid and snap.get("hostname") == host
                 and snap.get("pool") == name)
    ]


def collect_stats(state: ExtensionState, *, server: bool = True,
                  include_self: bool | None = None) -> dict[str, Any]:
    """The ``pool-stats --json`` document: processes, totals, configuration, server, warnings.

    ``include_self``: add this process's live numbers as a row (marked ``current``). The
    default (None) adds them only when no other process has a snapshot and this pool has
    been used: a lone process (development, tests) still sees its numbers, while beside
    real server processes a CLI's own startup queries would be noise in the rows, the
    totals and the ``processes x max_connections`` check.
    """
    database = state.database
    pool = database.pool
    stats_dir = snapshots.stats_dir_of(state)
    now = time.time()
    rows = _other_processes(state, now)
    own = snapshots.build_snapshot(state)
    used = bool(own["stats"]["counters"]["checkouts"] or own["stats"]["size"])
    if include_self or (include_self is None and used and not rows):
        rows.append(_process_row(own, now, current=True))
        rows.sort(key=lambda r: (str(r["hostname"]), r["pid"]))
    options = dict(own["options"])
    info, error = server_view(state) if server else (None, None)
    warnings = config_warnings(options, info, rows)
    return {
        "app": own["app"],
        "pool": pool.name,
        "database": own["database"],
        "stats_dir": stats_dir,
        "stats_interval": snapshots.stats_interval_of(state),
        "generated_at": now,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "config": options,
        "processes": rows,
        "totals": _totals(rows),
        "server": info,
        "server_error": error,
        "warnings": warnings,
    }


def _age(seconds: Any) -> str:
    s = int(float(seconds or 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _fmt_ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]],
           left: frozenset[int] = frozenset({0})) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def _format_option(key: str, value: Any) -> str:
    if value is None:
        return _NONE_LABELS.get(key, "off")
    if isinstance(value, float):
        value = f"{value:g}"
    return f"{value} s" if key in _DURATIONS else str(value)


def _wrap(items: Sequence[str], indent: str = "  ") -> list[str]:
    return textwrap.wrap("  ".join(items), width=100, initial_indent=indent,
                         subsequent_indent=indent, break_on_hyphens=False) or [indent]


def _server_lines(server: dict[str, Any] | None, error: str | None, kind: Any) -> list[str]:
    if server:
        items = []
        for key, value in server.get("settings", {}).items():
            if value is None:
                continue
            unit = " s" if key in ("wait_timeout", "idle_session_timeout") else ""
            shown = "off" if key == "idle_session_timeout" and not value else f"{value:g}{unit}"
            items.append(f"{key}={shown}")
        return [f"Server ({server.get('kind')} {server.get('version') or ''}".rstrip() + "):",
                *_wrap(items)]
    if error:
        return ["Server: unreachable", f"  {error}"]
    if kind == "sqlite":
        return ["Server: none (SQLite)"]
    return []


def render_stats(doc: dict[str, Any]) -> str:
    """The human-readable ``pool-stats`` report for a :func:`collect_stats` document."""
    rows = doc["processes"]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(doc["generated_at"]))
    out = [
        f"Pool {doc['pool']!r} of app {doc['app']!r}: {_where(doc['database'])}",
        f"Snapshots in {doc['stats_dir']} (every {doc['stats_interval'] or 'off'} s), "
        f"{len(rows)} live process{'es' if len(rows) != 1 else ''}, at {stamp}",
        "",
    ]
    if not rows:
        out += ["No process has written a snapshot yet: a process appears once its pool has "
                "been used", "(then every STATS_INTERVAL seconds).", ""]
    else:
        hosts = len({r["hostname"] for r in rows}) > 1
        pools = len({r["pool"] for r in rows}) > 1
        total = doc["totals"]

        def ident(r: dict[str, Any]) -> list[str]:
            cells = [f"{r['pid']}{'*' if r['current'] else ''}"]
            if hosts:
                cells.append(str(r["hostname"]))
            if pools:
                cells.append(str(r["pool"]))
            return cells

        blank = [""] * (int(hosts) + int(pools))
        id_heads = ["PID"] + (["HOST"] if hosts else []) + (["POOL"] if pools else [])
        left = frozenset(range(len(id_heads)))
        gauges = ("size", "max_connections", "idle", "in_use", "opening", "waiting",
                  "checkouts", "created", "timeouts", "leaks")
        table1 = [ident(r) + [_age(r["age_s"])] + [str(r[k]) for k in gauges] for r in rows]
        table1.append(["TOTAL", *blank, ""] + [str(total[k]) for k in gauges])
        heads1 = ["AGE", "SIZE", "MAX", "IDLE", "IN USE", "OPENING", "WAITING", "CHECKOUTS",
                  "CREATED", "TIMEOUTS", "LEAKS"]
        out += _table([*id_heads, *heads1], table1, left)
        out.append("")
        counts = ("retired_lifetime", "retired_idle", "retired_broken", "ping_failures",
                  "connect_failures")
        table2 = [ident(r) + [str(r[k]) for k in counts] + [_fmt_ms(r[k]) for k in _LATENCIES]
                  for r in rows]
        table2.append(["TOTAL", *blank] + [str(total[k]) for k in counts]
                      + [_fmt_ms(total[k]) for k in _LATENCIES])
        heads2 = ["RETIRED: LIFETIME", "IDLE", "BROKEN", "PING FAILS", "CONNECT FAILS",
                  "WAIT p50 ms", "WAIT p99 ms", "CONNECT p50 ms", "CONNECT p99 ms"]
        out += _table([*id_heads, *heads2], table2, left)
        notes = ["TOTAL latency = the worst process."]
        if any(r["current"] for r in rows):
            notes.insert(0, "* = this process (no other process has written a snapshot).")
        out += ["  ".join(notes), ""]
    out.append("Configuration:")
    out += _wrap([f"{k}={_format_option(k, v)}" for k, v in doc["config"].items()])
    out += _server_lines(doc["server"], doc["server_error"], doc["database"].get("kind"))
    if doc["warnings"]:
        out.append("Warnings:")
        out += [f"  ! {w}" for w in doc["warnings"]]
    return "\n".join(out)


# ----------------------------------------------------------------------------- fleet view
#
# `pool-stats --server`: the database server's own view of its client connections, so one
# command run anywhere sees every host of the fleet. Each connection of this library
# carries the label "<application name>[<pid>]" (PostgreSQL application_name, MySQL
# program_name connection attribute), which gives application and process. MariaDB/MySQL
# expose connection attributes only in performance_schema; without it the processlist
# still gives the client host and port, and the sockets of this host (/proc/net/tcp,
# /proc/<pid>/fd) turn the ports of local clients into processes.


_FLEET_STATES = ("active", "idle", "idle_in_transaction", "other")


def _mysql_sessions(raw: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Client sessions from information_schema.PROCESSLIST (+ INNODB_TRX, and
    performance_schema.session_connect_attrs when enabled), without this one."""
    cursor = raw.cursor()
    facts: dict[str, Any] = {"performance_schema": None, "connect_attrs": False,
                             "transactions": False, "notes": []}
    try:
        cursor.execute("SELECT ID, USER, HOST, DB, COMMAND FROM information_schema.PROCESSLIST"
                       " WHERE ID <> CONNECTION_ID()")
        rows = _rows(cursor)
        cursor.execute("SELECT @@port, @@performance_schema")
        port, perf = _rows(cursor)[0]
        facts["ports"] = {p for p in (_int(port),) if p}
        facts["performance_schema"] = bool(_int(perf))
        in_trx: set[int] | None = None
        try:  # needs PROCESS, like the other accounts' rows of the processlist
            cursor.execute("SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX")
            in_trx = {int(r[0]) for r in _rows(cursor)}
            facts["transactions"] = True
        except Exception:
            in_trx = None
            facts["notes"].append(
                "sessions idle in a transaction are counted as IDLE: telling them apart "
                "(information_schema.INNODB_TRX) needs the PROCESS privilege")
        attrs: dict[int, dict[str, str]] = {}
        if facts["performance_schema"]:
            for table in ("session_connect_attrs", "session_account_connect_attrs"):
                try:
                    cursor.execute(
                        f"SELECT PROCESSLIST_ID, ATTR_NAME, ATTR_VALUE FROM performance_schema."
                        f"{table} WHERE ATTR_NAME IN ('program_name', '_pid')")
                except Exception:
                    continue
                for thread_id, name, value in _rows(cursor):
                    attrs.setdefault(int(thread_id), {})[str(name)] = str(value)
                facts["connect_attrs"] = table
                break
            if not facts["connect_attrs"]:
                facts["notes"].append("performance_schema is on but its connection attributes "
                                      "are not readable by this account: grant SELECT on "
                                      "performance_schema.session_connect_attrs")
        else:
            facts["notes"].append(
                "performance_schema is OFF: connection attributes (program_name) are not "
                "visible; connections are shown by client host, and those of this host by "
                "process (from its sockets)")
    finally:
        cursor.close()
    sessions = []
    for thread_id, user, host, db, command in rows:
        command = str(command or "")
        if command == "Daemon" or user in ("system user", "event_scheduler"):
            continue  # server threads, not client connections
        address, client_port = _split_host_port(str(host or ""))
        if command == "Sleep":
            state = "idle" if in_trx is None or int(thread_id) not in in_trx \
                else "idle_in_transaction"
        elif command in ("Killed",):
            state = "other"
        else:
            state = "active"
        session_attrs = attrs.get(int(thread_id), {})
        application, pid = _labelled(session_attrs.get("program_name"))
        source = "program_name" if pid is not None else None
        if pid is None and _int(session_attrs.get("_pid")):
            pid, source = _int(session_attrs.get("_pid")), "_pid"
        sessions.append({
            "id": int(thread_id), "user": user, "host": address, "port": client_port,
            "database": db, "state": state, "application": application, "pid": pid,
            "pid_source": source,
        })
    return sessions, facts


def _postgres_sessions(raw: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Client backends from pg_stat_activity, without this one."""
    cursor = raw.cursor()
    try:
        cursor.execute("SELECT pid, usename, datname, application_name, host(client_addr), "
                       "client_port, state FROM pg_stat_activity "
                       "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        rows = _rows(cursor)
        cursor.execute("SELECT current_setting('port')")
        port = _rows(cursor)[0][0]
    finally:
        cursor.close()
    facts: dict[str, Any] = {"ports": {p for p in (_int(port),) if p}, "notes": [],
                             "performance_schema": None, "connect_attrs": "application_name",
                             "transactions": True}
    sessions = []
    hidden = 0
    for backend_pid, user, db, app_name, address, client_port, state in rows:
        text = str(state or "")
        if state is None:
            hidden += 1
            kind = "other"
        elif text == "active":
            kind = "active"
        elif text == "idle":
            kind = "idle"
        elif text.startswith("idle in transaction"):
            kind = "idle_in_transaction"
        else:
            kind = "other"
        if address is None:
            address = "[local]" if client_port == -1 else None
        application, pid = _labelled(app_name)
        sessions.append({
            "id": int(backend_pid), "user": user, "host": address,
            "port": client_port if client_port and client_port > 0 else None,
            "database": db, "state": kind, "application": application, "pid": pid,
            "pid_source": "application_name" if pid is not None else None,
        })
    if hidden:
        facts["notes"].append(
            f"{hidden} session(s) of other roles show no state or client address: "
            "grant pg_read_all_stats to this role to see them whole")
    return sessions, facts


_FLEET_QUERIES: dict[str, Callable[[Any], tuple[list[dict[str, Any]], dict[str, Any]]]] = {
    "mysql": _mysql_sessions,
    "postgresql": _postgres_sessions,
}


def _labelled(label: Any) -> tuple[str | None, int | None]:
    from .core.drivers import parse_label

    return parse_label(str(label) if label else None)


def _split_host_port(host: str) -> tuple[str | None, int | None]:
    """``"10.0.0.5:51234"`` / ``"::1:51234"`` -> (address, port); ``"localhost"`` (a Unix
    socket) -> ("localhost", None); ``""`` -> (None, None)."""
    if not host:
        return None, None
    address, sep, port = host.rpartition(":")
    if sep and port.isdigit() and address:
        return address.strip("[]"), int(port)
    return host, None


# --- sockets of this host -> processes (Linux /proc; nothing elsewhere) ---------------------


def _proc_address(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    if sys.byteorder == "little":  # /proc/net/tcp* prints each 32-bit word in host order
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def _normal_address(host: str | None) -> set[str]:
    """The addresses a host column may stand for: an IP, or this machine's own name (a
    server without skip_name_resolve shows names). Other names are not resolved: no DNS."""
    if not host:
        return set()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost":
            return {"127.0.0.1", "::1"}
        if host == socket.gethostname():
            with contextlib.suppress(OSError):
                return {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
        return set()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return {str(address)}


def local_socket_owners(wanted: set[tuple[str, int]], remote_ports: set[int],
                        proc: str = "/proc") -> dict[tuple[str, int], int]:
    """``{(local address, local port): pid}`` for the established TCP sockets of this host
    among ``wanted`` whose remote port is one of ``remote_ports`` (the server's).

    Reads /proc/net/tcp{,6} for the sockets' inodes, then /proc/<pid>/fd for their owners:
    processes this user may not inspect are skipped. Empty where there is no /proc.
    """
    inodes: dict[str, tuple[str, int]] = {}
    if not wanted:
        return {}
    for fields in _proc_tcp_rows(proc):
        if len(fields) < 10 or fields[3] != "01":  # 01: ESTABLISHED
            continue
        local, remote = fields[1].rpartition(":"), fields[2].rpartition(":")
        if remote_ports and int(remote[2], 16) not in remote_ports:
            continue
        with contextlib.suppress(ValueError):
            key = (_proc_address(local[0]), int(local[2], 16))
            if key in wanted:
                inodes[f"socket:[{fields[9]}]"] = key
    found: dict[tuple[str, int], int] = {}
    if not inodes:
        return found
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                key = inodes.get(os.readlink(os.path.join(fd_dir, fd)))
            except OSError:
                continue
            if key is not None:
                found[key] = int(pid)
        if len(found) == len(inodes):
            break
    return found


def _proc_tcp_rows(proc: str) -> Iterator[list[str]]:
    """The rows of /proc/net/tcp and tcp6, split into fields (none where unreadable)."""
    for table in ("net/tcp", "net/tcp6"):
        try:
            with open(os.path.join(proc, table)) as handle:
                lines = handle.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            yield line.split()


def _local_addresses(proc: str = "/proc") -> set[str]:
    """Addresses this host's TCP sockets are bound to, plus loopback."""
    found = {"127.0.0.1", "::1"}
    for fields in _proc_tcp_rows(proc):
        if len(fields) > 1:
            with contextlib.suppress(ValueError):
                found.add(_proc_address(fields[1].rpartition(":")[0]))
    found.discard("0.0.0.0")
    found.discard("::")
    return found


def _command_line(pid: int, proc: str = "/proc") -> str | None:
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as handle:
            parts = handle.read().split(b"\0")
    except OSError:
        return None
    text = " ".join(p.decode(errors="replace") for p in parts if p)
    return text if len(text) <= 80 else text[:77] + "..."


def _attribute_local(sessions: list[dict[str, Any]], ports: set[int]) -> bool:
    """Give a pid to the sessions of this host that have none, from their sockets; add
    the command line of every local process. True if /proc could be read."""
    if not os.path.isdir("/proc/self/fd"):
        return False
    local = _local_addresses()
    resolved: dict[str | None, set[str]] = {}
    wanted: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for session in sessions:
        host = session["host"]
        if host not in resolved:
            resolved[host] = _normal_address(host) & local
        addresses = resolved[host]
        session["local"] = bool(addresses)
        if session["pid"] is None and session["port"] and addresses:
            for address in addresses:
                wanted.setdefault((address, int(session["port"])), []).append(session)
    owners = local_socket_owners(set(wanted), ports)
    for key, pid in owners.items():
        for session in wanted[key]:
            session["pid"], session["pid_source"] = pid, "socket"
    commands: dict[int, str | None] = {}
    for session in sessions:
        if session.get("local") and session["pid"] is not None:
            pid = int(session["pid"])
            if pid not in commands:
                commands[pid] = _command_line(pid)
            session["command"] = commands[pid]
    return True


def _group(sessions: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for session in sessions:
        key = tuple(session.get(k) for k in keys)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {k: session.get(k) for k in keys}
            group.update({"connections": 0, **dict.fromkeys(_FLEET_STATES, 0)})
        group["connections"] += 1
        group[session["state"]] += 1
        for extra in ("pid_source", "command"):
            if session.get(extra) and not group.get(extra):
                group[extra] = session[extra]
    return sorted(groups.values(), key=lambda g: (-g["connections"],
                                                  tuple(str(g[k]) for k in keys)))


def fleet_view(state: ExtensionState) -> dict[str, Any]:
    """The ``pool-stats --server`` document: every client connection the database server
    lists, by client host and user, by application and process, with totals against the
    server's ``max_connections``.

    Read over one dedicated connection made by the pool's driver (closed at once, and left
    out of the lists). ``error`` is set, and the lists empty, when the server cannot be read.
    """
    database = state.database
    driver = database.pool.driver
    own = snapshots.build_snapshot(state)
    application = getattr(database, "application_name", None)
    user = (getattr(database, "connect_params", None) or {}).get("user")
    doc: dict[str, Any] = {
        "view": "server",
        "app": own["app"],
        "pool": database.pool.name,
        "database": own["database"],
        "application_name": application,
        "user": user,
        "external_pooler": getattr(database, "external_pooler", None),
        "generated_at": time.time(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "max_connections_per_process": database.pool.options.max_connections,
        "server": None,
        "sources": {},
        "by_host": [],
        "by_application": [],
        "by_process": [],
        "totals": {},
        "notes": [],
        "warnings": [],
        "error": None,
    }
    query = _FLEET_QUERIES.get(driver.kind)
    if query is None:
        doc["error"] = f"no database server to ask ({driver.kind})"
        return doc
    secrets = snapshots.database_secrets(database)
    try:
        raw = driver.connect()
    except Exception as exc:
        doc["error"] = _one_line(exc, secrets)
        return doc
    try:
        server = query_server(driver.kind, raw)
        sessions, facts = query(raw)
    except Exception as exc:
        doc["error"] = _one_line(exc, secrets)
        return doc
    finally:
        with contextlib.suppress(Exception):
            driver.close(raw)
    ports = set(facts.get("ports") or ())
    configured_port = _int((getattr(database, "connect_params", None) or {}).get("port"))
    if configured_port:
        ports.add(configured_port)
    sockets = _attribute_local(sessions, ports)
    # This command's own pool may hold a connection its app factory used (to create tables,
    # say): like the query connection, it is not one of the fleet's.
    listed = len(sessions)
    sessions = [s for s in sessions if not (s.get("local") and s["pid"] == os.getpid())]
    doc["own_connections"] = listed - len(sessions)
    doc["server"] = server
    doc["sources"] = {
        "sessions": "pg_stat_activity" if driver.kind == "postgresql"
        else "information_schema.processlist",
        "performance_schema": facts.get("performance_schema"),
        "connect_attrs": facts.get("connect_attrs") or None,
        "transactions": facts.get("transactions"),
        "local_sockets": sockets,
    }
    doc["notes"] = list(facts.get("notes", []))
    doc["by_host"] = _group(sessions, ("host", "user"))
    attributed = [s for s in sessions if s["application"] or s["pid"] is not None]
    doc["by_process"] = _group(attributed, ("application", "host", "pid"))
    named = [s for s in sessions if s["application"]]
    by_app = _group(named, ("application",))
    for group in by_app:
        mine = [s for s in named if s["application"] == group["application"]]
        group["hosts"] = len({s["host"] for s in mine})
        group["processes"] = len({(s["host"], s["pid"]) for s in mine if s["pid"] is not None})
    doc["by_application"] = by_app
    doc["sessions"] = sessions
    doc["totals"] = _fleet_totals(doc, sessions, server, application, user, driver.kind)
    doc["warnings"] = _fleet_warnings(doc)
    return doc


def _fleet_totals(doc: dict[str, Any], sessions: Sequence[dict[str, Any]],
                  server: dict[str, Any] | None, application: str | None, user: Any,
                  kind: str) -> dict[str, Any]:
    server = server or {}
    settings = server.get("settings") or {}
    limit = server.get("max_connections")
    reserved = settings.get("superuser_reserved_connections") or 0
    in_use = server.get("connections")
    available = None if limit is None or in_use is None else max(0, limit - reserved - in_use)
    labelled = doc["sources"].get("connect_attrs") is not None
    if application and labelled:
        mine = [s for s in sessions if s["application"] == application]
        matched_by = "application_name" if kind == "postgresql" else "program_name"
    else:
        mine = [s for s in sessions if user is not None and s["user"] == user]
        matched_by = "user"
    totals: dict[str, Any] = {
        "connections": in_use,  # the server's own count, this command's session included
        "listed": len(sessions),
        "max_connections": limit,
        "reserved": reserved,
        "available": available,
        "hosts": len({s["host"] for s in sessions}),
        "this_app": {
            "matched_by": matched_by,
            "connections": len(mine),
            "hosts": len({s["host"] for s in mine}),
            "processes": len({(s["host"], s["pid"]) for s in mine if s["pid"] is not None}),
        },
        **{state: sum(1 for s in sessions if s["state"] == state) for state in _FLEET_STATES},
    }
    unlisted = None if in_use is None else in_use - len(sessions) - 1 - doc["own_connections"]
    if kind == "mysql" and unlisted is not None and unlisted > 0:
        doc["notes"].append(
            f"{unlisted} connection(s) of other accounts are not listed: "
            "the processlist shows them only to an account with the PROCESS privilege")
    pooler = doc.get("external_pooler")
    if pooler == "pgbouncer":
        doc["notes"].append(
            "through PgBouncer: these are PgBouncer's server connections; each shows the "
            "application_name of the last client that used it. PgBouncer's own SHOW CLIENTS "
            "lists the clients")
    elif pooler == "proxysql":
        doc["notes"].append(
            "through ProxySQL: these are ProxySQL's backend connections (client host = "
            "ProxySQL), without the clients' program_name; ProxySQL's "
            "stats_mysql_processlist lists the clients")
    return totals


def _fleet_warnings(doc: dict[str, Any]) -> list[str]:
    warnings = []
    totals = doc["totals"]
    limit, in_use = totals.get("max_connections"), totals.get("connections")
    usable = (limit or 0) - int(totals.get("reserved") or 0)
    if limit and in_use is not None and usable > 0 and in_use >= 0.9 * usable:
        warnings.append(f"the server has {in_use} connections of {usable} it accepts "
                        f"({100 * in_use // usable}%): new connections will soon be refused")
    mine = totals.get("this_app") or {}
    processes = int(mine.get("processes") or 0)
    per_process = int(doc.get("max_connections_per_process") or 0)
    if usable > 0 and processes and processes * per_process > usable \
            and not doc.get("external_pooler"):
        warnings.append(
            f"{processes} processes of this app seen on the server x max_connections "
            f"{per_process} = {processes * per_process} > the {usable} connections the "
            "server accepts: under load some will be refused (lower MAX_CONNECTIONS, or put "
            "an external pooler in front)")
    return warnings


def _opt(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def render_fleet(doc: dict[str, Any]) -> str:
    """The human-readable ``pool-stats --server`` report for a :func:`fleet_view` document."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(doc["generated_at"]))
    out = [f"Server view for pool {doc['pool']!r} of app {doc['app']!r}: "
           f"{_where(doc['database'])}, at {stamp}"]
    if doc["error"]:
        if doc["database"].get("kind") == "sqlite":
            out.append("Server: none (SQLite): there is no server to ask")
        else:
            out.append(f"Server: unreachable: {doc['error']}")
        return "\n".join(out)
    server, totals = doc["server"] or {}, doc["totals"]
    reserved = int(totals.get("reserved") or 0)
    limit = totals.get("max_connections")
    line = (f"Server ({server.get('kind')} {server.get('version') or ''}".rstrip()
            + f"): {_opt(totals.get('connections'))} connections of max_connections "
            f"{_opt(limit)}")
    if reserved:
        line += f" ({reserved} reserved for superusers)"
    if totals.get("available") is not None:
        line += f", {totals['available']} available"
    out.append(line)
    mine = totals.get("this_app") or {}
    if mine.get("matched_by") in ("application_name", "program_name"):
        out.append(f"This app ({mine['matched_by']} '{doc['application_name']}[<pid>]'): "
                   f"{mine.get('connections', 0)} connections from {mine.get('processes', 0)} "
                   f"process(es) on {mine.get('hosts', 0)} host(s)")
    else:
        out.append(f"This app's account {doc.get('user')!r}: {mine.get('connections', 0)} "
                   f"connections on {mine.get('hosts', 0)} host(s) (the server shows no "
                   "connection labels here)")
    out.append("")

    states = ("active", "idle", "idle_in_transaction", "other")
    heads = ["CONNECTIONS", "ACTIVE", "IDLE", "IDLE IN TXN", "OTHER"]

    def counts(group: dict[str, Any]) -> list[str]:
        return [str(group["connections"])] + [str(group[s]) for s in states]

    out.append("By client host:")
    rows = [[_opt(g["host"]), _opt(g["user"]), *counts(g)] for g in doc["by_host"]]
    rows.append(["TOTAL", ""] + [str(totals["listed"])] + [str(totals[s]) for s in states])
    out += _table(["HOST", "USER", *heads], rows, frozenset({0, 1}))
    out.append("")
    if doc["by_application"]:
        out.append("By application:")
        rows = [[_opt(g["application"]), str(g["hosts"]), str(g["processes"]), *counts(g)]
                for g in doc["by_application"]]
        out += _table(["APPLICATION", "HOSTS", "PROCESSES", *heads], rows, frozenset({0}))
        out.append("")
    if doc["by_process"]:
        out.append("By process:")
        rows = [[_opt(g["application"]), _opt(g["host"]), _opt(g["pid"]), *counts(g),
                 _opt(g.get("pid_source")), _opt(g.get("command"))]
                for g in doc["by_process"]]
        out += _table(["APPLICATION", "HOST", "PID", *heads, "FROM", "COMMAND"], rows,
                      frozenset({0, 1, 2, 9, 10}))
        out.append("")
    sources = doc["sources"]
    used = [sources.get("sessions") or "?"]
    if sources.get("connect_attrs"):
        used.append(str(sources["connect_attrs"]))
    if sources.get("local_sockets"):
        used.append("this host's sockets")
    out.append(f"Sources: {', '.join(used)}. This command's own connection is not listed.")
    for note in doc["notes"]:
        out.append(f"Note: {note}")
    if doc["warnings"]:
        out.append("Warnings:")
        out += [f"  ! {w}" for w in doc["warnings"]]
    return "\n".join(out)


@click.command("pool-stats")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document (one per line with --watch).")
@click.option("--watch", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Refresh every SECONDS until Ctrl-C.")
@click.option("--server", "server_view_", is_flag=True,
              help="The database server's view instead: every client connection it lists "
                   "(every host of the fleet), by host, application and process, against "
                   "its max_connections.")
@click.option("--no-server", is_flag=True,
              help="Do not connect to the database to read its settings.")
@click.option("--count", type=click.IntRange(min=1), default=None, hidden=True,
              help="With --watch: stop after this many refreshes.")
@with_appcontext
def pool_stats_command(as_json: bool, watch: float | None, server_view_: bool,
                       no_server: bool, count: int | None) -> None:
    """Connections of every live process of this app on this host, with totals.

    With --server: the connections as the database server lists them, from every host.
    """
    if server_view_ and no_server:
        raise click.UsageError("--server and --no-server exclude each other")
    state = _state()
    _not_a_server(state)
    done = 0
    failed = False
    try:
        while True:
            if server_view_:
                doc = fleet_view(state)
                failed = bool(doc["error"])
                text = render_fleet
            else:
                doc = collect_stats(state, server=not no_server)
                text = render_stats
            if as_json:
                click.echo(json.dumps(doc, separators=(",", ":"), default=str) if watch
                           else json.dumps(doc, indent=2, default=str))
            else:
                if done and sys.stdout.isatty():
                    click.clear()
                elif done:
                    click.echo()
                click.echo(text(doc))
            done += 1
            if watch is None or (count is not None and done >= count):
                break
            time.sleep(watch)
    except KeyboardInterrupt:  # the way out of --watch: not an error
        return
    if failed and watch is None:
        raise click.exceptions.Exit(1)


# ----------------------------------------------------------------------------- pool-check


def run_check(state: ExtensionState, connections: int = 2) -> dict[str, Any]:
    """The ``pool-check --json`` document: connect and ping latency, server, warnings.

    Opens ``connections`` connections at once through the pool's driver (a real connect,
    not a checkout), pings each, reads the server's settings over the first, closes them
    all. ``ok`` is False when a connect or ping failed; warnings do not make it False.
    """
    database = state.database
    pool = database.pool
    driver = pool.driver
    secrets = snapshots.database_secrets(database)
    described = snapshots.describe_database(database, getattr(state, "settings", None))
    errors: list[str] = []
    results: list[dict[str, Any]] = []
    server: dict[str, Any] | None = None
    warnings: list[str] = []
    opened: list[Any] = []
    try:
        for _ in range(connections):
            t0 = time.perf_counter()
            try:
                raw = driver.connect()
            except Exception as exc:
                errors.append(f"cannot connect to {_where(described)}: {_one_line(exc, secrets)}")
                break
            t1 = time.perf_counter()
            opened.append(raw)
            try:
                driver.ping(raw)
            except Exception as exc:
                errors.append(f"ping failed on {_where(described)}: {_one_line(exc, secrets)}")
                break
            t2 = time.perf_counter()
            results.append({"connect_ms": round((t1 - t0) * 1000, 3),
                            "ping_ms": round((t2 - t1) * 1000, 3)})
        if opened and not errors:
            try:
                server = query_server(driver.kind, opened[0])
            except Exception as exc:
                warnings.append(f"cannot read the server's settings: {_one_line(exc, secrets)}")
    finally:
        for raw in opened:
            with contextlib.suppress(Exception):
                driver.close(raw)
    rows = _other_processes(state, time.time())
    options = snapshots.build_snapshot(state)["options"]
    warnings += config_warnings(options, server, rows)
    return {
        "ok": not errors,
        "pool": pool.name,
        "database": described,
        "connections": results,
        "server": server,
        "config": options,
        "processes": len(rows),
        "errors": errors,
        "warnings": warnings,
    }


def render_check(doc: dict[str, Any]) -> str:
    """The human-readable ``pool-check`` report (errors are printed separately)."""
    out = [f"pool-check {_where(doc['database'])} (pool {doc['pool']!r})"]
    for i, c in enumerate(doc["connections"], 1):
        out.append(f"  connection {i}: connect {_fmt_ms(c['connect_ms'])} ms, "
                   f"ping {_fmt_ms(c['ping_ms'])} ms")
    if doc["ok"]:  # a probe that failed says why in one line (stderr), nothing more
        out += _server_lines(doc["server"], None, doc["database"].get("kind"))
        out.append("Configuration:")
        out += _wrap([f"{k}={_format_option(k, v)}" for k, v in doc["config"].items()])
    out += [f"WARNING: {w}" for w in doc["warnings"]]
    if doc["ok"]:
        n = len(doc["connections"])
        out.append(f"OK: {n} connection{'s' if n != 1 else ''} opened and pinged"
                   + (f", {len(doc['warnings'])} warning(s)" if doc["warnings"] else ""))
    return "\n".join(out)


@click.command("pool-check")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--connections", type=click.IntRange(min=1, max=100), default=2,
              show_default=True, help="Connections to open and ping at once.")
@click.option("--strict", is_flag=True, help="Exit 1 on configuration warnings too.")
@with_appcontext
def pool_check_command(as_json: bool, connections: int, strict: bool) -> None:
    """Connect, ping, read the server's limits; exit 0 if healthy, 1 if not.

    Fit for a readiness probe: a connect error is one line on stderr, without a traceback
    or a password. Configuration warnings are reported but only fail with --strict.
    """
    state = _state()
    _not_a_server(state)
    try:
        doc = run_check(state, connections)
    except Exception as exc:  # a bug or an odd driver: still one line, still exit 1
        secrets = snapshots.database_secrets(state.database)
        click.echo(f"FAIL: pool-check could not run: {_one_line(exc, secrets)}", err=True)
        raise click.exceptions.Exit(1) from None
    failed = not doc["ok"] or (strict and bool(doc["warnings"]))
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(render_check(doc))
        for error in doc["errors"]:
            click.echo(f"FAIL: {error}", err=True)
        if doc["ok"] and failed:
            click.echo("FAIL: warnings with --strict", err=True)
    if failed:
        raise click.exceptions.Exit(1)
