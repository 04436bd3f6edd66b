"""``pool-stats``, ``pool-check`` and ``pool-drain`` as plain functions: every framework's
commands call these.

``flask pool-stats`` and ``manage.py pool_stats`` (and the others) are thin wrappers that
parse options and hand over an ``echo`` function, so both print the same report and exit
with the same code for the same pools. The process running a command is not a server: it
stops its own snapshot writer first (an app factory that queried at start-up would have
started it), so other invocations never count it as one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from . import drain, snapshots
from .check import DEFAULT_TIMEOUT, render_check, run_check
from .fleet import fleet_view, render_fleet
from .format import one_line
from .report import collect_stats, render_stats
from .snapshots import ExtensionState

__all__ = ["DEFAULT_DRAIN_TIMEOUT", "DEFAULT_TIMEOUT", "UsageError", "pool_check",
           "pool_drain", "pool_stats"]

#: Seconds ``pool-drain`` waits for every process by default.
DEFAULT_DRAIN_TIMEOUT = 30.0

#: ``echo(text, err)``: print one block of text (a newline is added) to stdout or stderr.
Echo = Callable[[str, bool], None]


class UsageError(Exception):
    """Options that contradict each other; adapters show it as their framework's usage error."""


def pool_stats(state: ExtensionState, echo: Echo, *, as_json: bool = False,
               watch: float | None = None, server: bool = False, no_server: bool = False,
               count: int | None = None, clear: Callable[[], None] | None = None) -> int:
    """Print the ``pool-stats`` report (or ``--server``'s); returns the exit code.

    ``watch``: refresh every so many seconds until Ctrl-C (``count``: that many times).
    ``clear``: clears a terminal between refreshes (None: a blank line instead).
    """
    if server and no_server:
        raise UsageError("--server and --no-server exclude each other")
    snapshots.stop_snapshots(state)
    done = 0
    failed = False
    try:
        while True:
            doc: dict[str, Any]
            if server:
                doc = fleet_view(state)
                failed = bool(doc["error"])
                text = render_fleet
            else:
                doc = collect_stats(state, server=not no_server)
                text = render_stats
            if as_json:
                echo(json.dumps(doc, separators=(",", ":"), default=str) if watch
                     else json.dumps(doc, indent=2, default=str), False)
            else:
                if done and clear is not None and sys.stdout.isatty():
                    clear()
                elif done:
                    echo("", False)
                echo(text(doc), False)
            done += 1
            if watch is None or (count is not None and done >= count):
                break
            time.sleep(watch)
    except KeyboardInterrupt:  # the way out of --watch: not an error
        return 0
    return 1 if failed and watch is None else 0


def pool_check(state: ExtensionState, echo: Echo, *, as_json: bool = False,
               connections: int = 2, strict: bool = False,
               timeout: float | None = DEFAULT_TIMEOUT) -> int:
    """Connect, ping, read the server's limits; print the report; 0 if healthy, else 1.

    A failure is one line on stderr (``FAIL: ...``), without a traceback or a password.
    Configuration warnings fail only with ``strict``. ``timeout`` bounds the whole check.
    """
    snapshots.stop_snapshots(state)
    try:
        doc = run_check(state, connections, timeout)
    except Exception as exc:  # a bug or an odd driver: still one line, still exit 1
        echo(f"FAIL: pool-check could not run: {one_line(exc)}", True)
        return 1
    failed = not doc["ok"] or (strict and bool(doc["warnings"]))
    if as_json:
        echo(json.dumps(doc, indent=2), False)
    else:
        echo(render_check(doc), False)
        for error in doc["errors"]:
            echo(f"FAIL: {error}", True)
        if doc["ok"] and failed:
            echo("FAIL: warnings with --strict", True)
    return 1 if failed else 0


def pool_drain(state: ExtensionState, echo: Echo, *, wait: bool = True,
               timeout: float = DEFAULT_DRAIN_TIMEOUT, as_json: bool = False,
               poll: float = 0.2, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> int:
    """Ask every live process of the app to drain its pool; 0 when all did, else 1.

    Writes a drain request into the stats directory (:mod:`.drain`), then, unless
    ``wait`` is False, reads the processes' snapshots every ``poll`` seconds until each
    one is done (token applied, no connection of an older generation left) or ``timeout``
    seconds passed, and prints a row per process. With snapshots off (no stats directory,
    or ``STATS_INTERVAL`` off) no other process can be reached: this process's own pool
    is drained and the report says so.
    """
    snapshots.stop_snapshots(state)
    pool = state.database.pool
    app_name = snapshots.build_snapshot(state)["app"]
    stats_dir = snapshots.stats_dir_of(state)
    if not stats_dir or snapshots.stats_interval_of(state) is None:
        connections = pool.drain()
        if as_json:
            echo(json.dumps({"mode": "local", "pool": pool.name, "app": app_name,
                             "pid": os.getpid(), "connections": connections,
                             "done": True}, indent=2), False)
        else:
            echo(f"Snapshots are off for pool {pool.name!r} of app {app_name!r} (no stats "
                 "directory): no other process can be reached.\n"
                 f"Drained this process's pool only (pid {os.getpid()}, {connections} "
                 "connection(s) to replace).", False)
        return 0

    request = drain.make_request(pool.name, app_name)
    path = drain.write_request(stats_dir, request)
    started = clock()
    interrupted = False
    doc = drain.progress(snapshots.read_snapshots(stats_dir), request)
    try:
        while wait and not doc["done"] and clock() - started < timeout:
            sleep(poll)
            doc = drain.progress(snapshots.read_snapshots(stats_dir), request)
    except KeyboardInterrupt:
        interrupted = True
    elapsed = clock() - started
    done = doc["done"] or not wait
    if as_json:
        echo(json.dumps({"mode": "fleet", "stats_dir": stats_dir, "request_file": path,
                         "waited": wait, "timeout": timeout, "elapsed_s": round(elapsed, 3),
                         **doc}, indent=2), False)
        return 0 if done and not interrupted else 1
    rows = doc["processes"]
    out = [f"Drain of pool {pool.name!r} of app {app_name!r} requested in {stats_dir} "
           f"(token {request['token']})."]
    if not wait:
        out.append(f"Not waiting (--no-wait): {_processes(len(rows))} drain at their next "
                   "maintainer tick; `pool-stats` shows their progress.")
        echo("\n".join(out), False)
        return 0
    if not rows:
        out.append("No live process of this app has written a snapshot: nothing to drain "
                   "(a process started later ignores the request).")
        echo("\n".join(out), False)
        return 0
    out += ["", *drain.render_progress(doc), ""]
    if doc["done"]:
        out.append(f"All {_processes(len(rows))} drained in {elapsed:.1f} s: no connection "
                   "opened before the request is left.")
    else:
        left = sum(r["status"] not in ("done", "new") for r in rows)
        why = "interrupted" if interrupted else f"not drained within {timeout:g} s"
        out.append(f"FAIL: {why}: {left} of {_processes(len(rows))} not done (connections "
                   "opened before the request still open or closing, or the request not "
                   "seen yet).")
    echo("\n".join(out), False)
    return 0 if doc["done"] and not interrupted else 1


def _processes(n: int) -> str:
    return f"{n} live process{'es' if n != 1 else ''}"
