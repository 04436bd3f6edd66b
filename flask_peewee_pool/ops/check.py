"""``pool-check``: can this process reach the database right now, and how fast?

Opens connections through the pool's driver (a real connect, not a checkout), pings them,
reads the server's limits, and says OK or FAIL, so it fits a container readiness probe.
The whole check is bounded by ``timeout``: a database host that accepts the TCP connection
and then says nothing (or a firewall that drops packets) gives a clear FAIL within the
timeout, never a probe that hangs. The work runs in a helper thread; on timeout it is told
to stop, and closes whatever it opened when the driver finally returns.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from . import snapshots
from .format import fmt_ms, format_option, one_line, where, wrap
from .report import config_warnings, other_processes, server_lines, setting_label
from .server import query_server
from .snapshots import ExtensionState

__all__ = ["DEFAULT_TIMEOUT", "render_check", "run_check"]

#: Seconds the whole check may take unless told otherwise (``--timeout``).
DEFAULT_TIMEOUT = 10.0


def run_check(state: ExtensionState, connections: int = 2,
              timeout: float | None = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """The ``pool-check --json`` document: connect and ping latency, server, warnings.

    Opens ``connections`` connections at once through the pool's driver (a real connect,
    not a checkout), pings each, reads the server's settings over the first, closes them
    all. ``ok`` is False when a connect or ping failed, or when it all took longer than
    ``timeout`` seconds (None: no bound); warnings do not make it False.
    """
    database = state.database
    described = snapshots.describe_database(database, getattr(state, "settings", None))
    options = snapshots.build_snapshot(state)["options"]
    stop = threading.Event()
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["probe"] = _probe(database.pool.driver, connections, described, stop)
        except BaseException as exc:  # reported by the caller, whatever it was
            outcome["error"] = exc
        finally:
            done.set()

    started = time.monotonic()
    worker = threading.Thread(target=work, name="pool-check", daemon=True)
    worker.start()
    try:
        finished = done.wait(timeout)
    finally:
        if not done.is_set():
            stop.set()  # interrupted or timed out: the worker closes what it opens
    if "error" in outcome:
        raise outcome["error"]
    if finished:
        results, server, errors, warnings = outcome["probe"]
    else:
        elapsed = time.monotonic() - started
        results, server, warnings = [], None, []
        errors = [f"no answer from {where(described)} within {elapsed:.1f} s "
                  f"(--timeout {timeout:g}): the host accepts no connection or never "
                  "replies"]
    rows = other_processes(state, time.time())
    warnings += config_warnings(options, server, rows, setting_label(state))
    return {
        "ok": not errors,
        "pool": database.pool.name,
        "database": described,
        "connections": results,
        "server": server,
        "config": options,
        "processes": len(rows),
        "errors": errors,
        "warnings": warnings,
    }


def _probe(driver: Any, connections: int, described: dict[str, Any], stop: threading.Event
           ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str], list[str]]:
    errors: list[str] = []
    results: list[dict[str, Any]] = []
    server: dict[str, Any] | None = None
    warnings: list[str] = []
    opened: list[Any] = []
    try:
        for _ in range(connections):
            if stop.is_set():
                return results, server, errors, warnings
            t0 = time.perf_counter()
            try:
                raw = driver.connect()
            except Exception as exc:
                errors.append(f"cannot connect to {where(described)}: {one_line(exc)}")
                break
            t1 = time.perf_counter()
            opened.append(raw)
            try:
                driver.ping(raw)
            except Exception as exc:
                errors.append(f"ping failed on {where(described)}: {one_line(exc)}")
                break
            t2 = time.perf_counter()
            results.append({"connect_ms": round((t1 - t0) * 1000, 3),
                            "ping_ms": round((t2 - t1) * 1000, 3)})
        if opened and not errors and not stop.is_set():
            try:
                server = query_server(driver.kind, opened[0])
            except Exception as exc:
                warnings.append(f"cannot read the server's settings: {one_line(exc)}")
    finally:
        for raw in opened:
            with contextlib.suppress(Exception):
                driver.close(raw)
    return results, server, errors, warnings


def render_check(doc: dict[str, Any]) -> str:
    """The human-readable ``pool-check`` report (errors are printed separately)."""
    out = [f"pool-check {where(doc['database'])} (pool {doc['pool']!r})"]
    for i, c in enumerate(doc["connections"], 1):
        out.append(f"  connection {i}: connect {fmt_ms(c['connect_ms'])} ms, "
                   f"ping {fmt_ms(c['ping_ms'])} ms")
    if doc["ok"]:  # a probe that failed says why in one line (stderr), nothing more
        out += server_lines(doc["server"], None, doc["database"].get("kind"))
        out.append("Configuration:")
        out += wrap([f"{k}={format_option(k, v)}" for k, v in doc["config"].items()])
    out += [f"WARNING: {w}" for w in doc["warnings"]]
    if doc["ok"]:
        n = len(doc["connections"])
        out.append(f"OK: {n} connection{'s' if n != 1 else ''} opened and pinged"
                   + (f", {len(doc['warnings'])} warning(s)" if doc["warnings"] else ""))
    return "\n".join(out)

