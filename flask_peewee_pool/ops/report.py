"""``pool-stats``: every live process of an app on this host, with totals and warnings.

Reads the snapshot each live process writes (:mod:`.snapshots`), one row per process plus a
TOTAL row, and sets the configuration beside what the database server reports, with
warnings for the classic mistakes (``max_lifetime`` longer than the server's idle timeout;
more connections across processes than the server accepts). Warnings name each setting
the way the user writes it (``PEEWEE_POOL_MAX_LIFETIME``, ``PEEWEE_POOL["MAX_LIFETIME"]``).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import snapshots
from .format import age, fmt_ms, format_option, ms, table, where, wrap
from .server import server_view
from .snapshots import ExtensionState

_SUMMED = (
    "size", "max_connections", "idle", "in_use", "opening", "closing", "waiting",
    "checkouts", "created", "connect_failures", "retired_lifetime", "retired_idle",
    "retired_broken", "ping_failures", "timeouts", "rejected", "leaks",
)
_LATENCIES = ("wait_p50_ms", "wait_p99_ms", "connect_p50_ms", "connect_p99_ms")


def setting_label(state: Any) -> Callable[[str], str]:
    """How the user of ``state`` spells a setting: its ``label``, else the Flask way."""
    label = getattr(state, "label", None)
    return label if callable(label) else (lambda key: "PEEWEE_POOL_" + key)


def config_warnings(options: dict[str, Any], server: dict[str, Any] | None,
                    processes: Sequence[dict[str, Any]],
                    label: Callable[[str], str] | None = None) -> list[str]:
    """The configuration checked against the server and the running processes.

    ``options`` are this app's PoolOptions fields; ``processes`` the rows of the live
    processes (their own options and stats); ``label`` spells a setting as the user writes
    it. Each warning is one self-explanatory line.
    """
    label = label or setting_label(None)
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
                    "close connections before the pool retires them; set "
                    f"{label('MAX_LIFETIME')} below {idle:g}")
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
                f"refuse connections; lower {label('MAX_CONNECTIONS')} or raise the server's "
                "limit")
        user_limit = server.get("max_user_connections")
        if user_limit and total > user_limit:
            warnings.append(f"{what} > server max_user_connections {user_limit}")
    for proc in processes:
        label = f"pid {proc['pid']}" + (
            f" on {proc['hostname']}" if proc.get("hostname") != socket.gethostname() else "")
        if proc.get("stale"):
            warnings.append(
                f"{label}: last snapshot {age(proc.get('age_s'))} ago (written every "
                f"{proc.get('interval', '?')} s): its maintainer is stalled or its pool closed")
        if proc.get("database_down"):
            warnings.append(f"{label}: database unreachable, reconnecting with backoff")
        theirs = proc.get("options") or {}
        differs = [k for k in ("max_connections", "max_lifetime", "min_idle")
                   if k in theirs and k in options and theirs[k] != options[k]]
        if differs:
            shown = ", ".join(f"{k}={format_option(k, theirs[k])}" for k in differs)
            warnings.append(f"{label} runs with {shown}, not the current configuration "
                            "(not restarted since the change?)")
    return warnings



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
        "wait_p50_ms": ms(wait.get("p50")),
        "wait_p99_ms": ms(wait.get("p99")),
        "connect_p50_ms": ms(connect.get("p50")),
        "connect_p99_ms": ms(connect.get("p99")),
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


def other_processes(state: ExtensionState, now: float) -> list[dict[str, Any]]:
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
    rows = other_processes(state, now)
    own = snapshots.build_snapshot(state)
    used = bool(own["stats"]["counters"]["checkouts"] or own["stats"]["size"])
    if include_self or (include_self is None and used and not rows):
        rows.append(_process_row(own, now, current=True))
        rows.sort(key=lambda r: (str(r["hostname"]), r["pid"]))
    options = dict(own["options"])
    info, error = server_view(state) if server else (None, None)
    warnings = config_warnings(options, info, rows, setting_label(state))
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



def server_lines(server: dict[str, Any] | None, error: str | None, kind: Any) -> list[str]:
    if server:
        items = []
        for key, value in server.get("settings", {}).items():
            if value is None:
                continue
            unit = " s" if key in ("wait_timeout", "idle_session_timeout") else ""
            shown = "off" if key == "idle_session_timeout" and not value else f"{value:g}{unit}"
            items.append(f"{key}={shown}")
        return [f"Server ({server.get('kind')} {server.get('version') or ''}".rstrip() + "):",
                *wrap(items)]
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
        f"Pool {doc['pool']!r} of app {doc['app']!r}: {where(doc['database'])}",
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
        table1 = [ident(r) + [age(r["age_s"])] + [str(r[k]) for k in gauges] for r in rows]
        table1.append(["TOTAL", *blank, ""] + [str(total[k]) for k in gauges])
        heads1 = ["AGE", "SIZE", "MAX", "IDLE", "IN USE", "OPENING", "WAITING", "CHECKOUTS",
                  "CREATED", "TIMEOUTS", "LEAKS"]
        out += table([*id_heads, *heads1], table1, left)
        out.append("")
        counts = ("retired_lifetime", "retired_idle", "retired_broken", "ping_failures",
                  "connect_failures")
        table2 = [ident(r) + [str(r[k]) for k in counts] + [fmt_ms(r[k]) for k in _LATENCIES]
                  for r in rows]
        table2.append(["TOTAL", *blank] + [str(total[k]) for k in counts]
                      + [fmt_ms(total[k]) for k in _LATENCIES])
        heads2 = ["RETIRED: LIFETIME", "IDLE", "BROKEN", "PING FAILS", "CONNECT FAILS",
                  "WAIT p50 ms", "WAIT p99 ms", "CONNECT p50 ms", "CONNECT p99 ms"]
        out += table([*id_heads, *heads2], table2, left)
        notes = ["TOTAL latency = the worst process."]
        if any(r["current"] for r in rows):
            notes.insert(0, "* = this process (no other process has written a snapshot).")
        out += ["  ".join(notes), ""]
    out.append("Configuration:")
    out += wrap([f"{k}={format_option(k, v)}" for k, v in doc["config"].items()])
    out += server_lines(doc["server"], doc["server_error"], doc["database"].get("kind"))
    if doc["warnings"]:
        out.append("Warnings:")
        out += [f"  ! {w}" for w in doc["warnings"]]
    return "\n".join(out)

