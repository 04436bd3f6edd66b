"""pytest plugin for free-threaded runs: the suite passes *with the GIL off*, or fails.

Used by ``benchmarks/freethreaded.sh test`` as ``-p benchmarks.nogil_check``. On a
free-threaded build (3.13t) importing a C extension that has not declared
``Py_mod_gil`` silently turns the GIL back on for the whole process (a RuntimeWarning
that pytest's warning capture may swallow), and every later "passed" would prove
nothing. So the GIL is checked when the session starts, after collection and after
every test; a test during which it came back fails, naming the extension modules
(files ending in ``.so``) that were first imported meanwhile.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Generator
from typing import Any

import pytest

_STATE: dict[str, Any] = {"enabled_by": [], "modules": set()}


def gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def _new_extensions() -> list[str]:
    """Extension modules imported since the last call (name and file)."""
    seen: set[str] = _STATE["modules"]
    found = []
    for name, mod in list(sys.modules.items()):
        if name in seen:
            continue
        seen.add(name)
        path = getattr(mod, "__file__", None) or ""
        if path.endswith((".so", ".pyd")):
            found.append(f"{name} ({path})")
    return found


def pytest_configure(config: pytest.Config) -> None:
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        raise pytest.UsageError(
            f"nogil_check: {sys.executable} is not a free-threaded build (Py_GIL_DISABLED unset)"
        )
    if gil_enabled():
        raise pytest.UsageError(
            "nogil_check: the GIL is enabled at startup (PYTHON_GIL=1 or -X gil=1?); "
            f"extension modules loaded so far: {_new_extensions()}"
        )
    _new_extensions()  # baseline: what the interpreter and pytest loaded


def pytest_collection_finish(session: pytest.Session) -> None:
    new = _new_extensions()
    if gil_enabled():
        _STATE["enabled_by"].append(("collection", new))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator:
    outcome = yield
    if call.when != "teardown" or _STATE["enabled_by"]:
        return
    new = _new_extensions()
    if gil_enabled():
        _STATE["enabled_by"].append((item.nodeid, new))
        report = outcome.get_result()
        report.outcome = "failed"
        report.longrepr = (
            "the GIL was re-enabled during this test; extension modules imported meanwhile: "
            + (", ".join(new) or "none (look at modules imported from threads)")
        )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int) -> None:
    tr = terminalreporter
    if _STATE["enabled_by"]:
        where, mods = _STATE["enabled_by"][0]
        tr.write_line(
            f"nogil_check: FAILED, the GIL came back on during {where}; "
            f"extension modules imported then: {', '.join(mods) or 'none found'}",
            red=True,
        )
    else:
        tr.write_line(
            f"nogil_check: sys._is_gil_enabled() is False at the end of the session "
            f"({sys.version.split()[0]}, {sysconfig.get_config_var('SOABI')})",
            green=True,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _STATE["enabled_by"] or gil_enabled():
        if not _STATE["enabled_by"]:
            _STATE["enabled_by"].append(("the session", _new_extensions()))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
