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

Neither command ever prints a password: the database is shown by its redacted URL or the
driver's description, and error messages are scrubbed of the configured password.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
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
    """Rows of the live snapshots, without this process's own file for this pool (its
    numbers are read live instead, when it has any)."""
    own_pid, host, name = os.getpid(), socket.gethostname(), state.database.pool.name
    return [
        _process_row(snap, now, current=False)
        for snap in snapshots.read_snapshots(snapshots.stats_dir_of(state))
        if not (snap["pid"] == own_pid and snap.get("hostname") == host
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


@click.command("pool-stats")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document (one per line with --watch).")
@click.option("--watch", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Refresh every SECONDS until Ctrl-C.")
@click.option("--no-server", is_flag=True,
              help="Do not connect to the database to read its settings.")
@click.option("--count", type=click.IntRange(min=1), default=None, hidden=True,
              help="With --watch: stop after this many refreshes.")
@with_appcontext
def pool_stats_command(as_json: bool, watch: float | None, no_server: bool,
                       count: int | None) -> None:
    """Connections of every live process of this app on this host, with totals."""
    state = _state()
    _not_a_server(state)
    done = 0
    try:
        while True:
            doc = collect_stats(state, server=not no_server)
            if as_json:
                click.echo(json.dumps(doc, separators=(",", ":")) if watch
                           else json.dumps(doc, indent=2))
            else:
                if done and sys.stdout.isatty():
                    click.clear()
                elif done:
                    click.echo()
                click.echo(render_stats(doc))
            done += 1
            if watch is None or (count is not None and done >= count):
                return
            time.sleep(watch)
    except KeyboardInterrupt:  # the way out of --watch: not an error
        return


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
