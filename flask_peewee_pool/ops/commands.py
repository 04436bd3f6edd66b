"""``pool-stats`` and ``pool-check`` as plain functions: every framework's commands call these.

``flask pool-stats`` and ``manage.py pool_stats`` are thin wrappers that parse options and
hand over an ``echo`` function, so both print the same report and exit with the same code
for the same pools. The process running a command is not a server: it stops its own
snapshot writer first (an app factory that queried at start-up would have started it), so
other invocations never count it as one.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from . import snapshots
from .check import DEFAULT_TIMEOUT, render_check, run_check
from .fleet import fleet_view, render_fleet
from .format import one_line
from .report import collect_stats, render_stats
from .snapshots import ExtensionState

__all__ = ["DEFAULT_TIMEOUT", "UsageError", "pool_check", "pool_stats"]

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
