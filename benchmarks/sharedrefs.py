"""Shared reference counts written per checkout + return on free-threaded CPython, counted.

``python -m benchmarks.sharedrefs [--pools ours,ours-pool,peewee] [--units 3]`` (on 3.13t:
the venv of ``benchmarks/freethreaded.sh``; needs gdb and an interpreter with debug symbols,
which pyenv's builds have; x86-64).

Why a count: on 3.13t a thread that loads an object made by another thread writes that
object's reference count atomically, and when two threads load the same object the cache
line holding it bounces between their cores. That is the whole cost of sharing, but on this
VM the wall-time speed-up it causes is smaller than the speed-up's own wobble between runs
(docs/benchmarks.md). This count does not wobble: one worker thread runs the pool's unit
(``benchmarks.scaling``'s adapters, the same per-thread closure) under gdb, with a
breakpoint on ``_Py_DecRefShared``, through which every release of a reference to an object
the releasing thread does not own goes. Counted per unit, by type: the objects the main
thread made, which every worker of an application or of the scaling benchmark loads (the
contended ones), and the rest (made by threads that no worker shares them with, such as
the pool's segments, each made by an allocation thread of its own).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from typing import Any

#: Between these two calls the breakpoint counts (they are cheap, and nothing else in a
#: unit calls them).
_START, _STOP = os.getppid, os.getegid

#: Per release: the thread releasing (CPython's thread id is the fs base on x86-64), the
#: object's owner, whether a type-attribute-cache miss is walking an MRO, the type.
_PRINT = ('printf "SHAREDREF %lu %lu %d %s\\n", $fs_base, ((PyObject*)o)->ob_tid, '
          '$_any_caller_is("find_name_in_mro", 3), ((PyObject*)o)->ob_type->tp_name')

_GDB_SCRIPT = """\
set pagination off
set confirm off
set breakpoint pending on
set print thread-events off
break _Py_DecRefShared
disable 1
commands 1
  silent
  @PRINT@
  continue
end
break os_getppid
commands 2
  silent
  enable 1
  continue
end
break os_getegid
commands 3
  silent
  disable 1
  continue
end
run
quit
""".replace("@PRINT@", _PRINT)


def _thread_id_of_objects_made_here() -> int:
    """CPython's id of the calling thread, as it is stored in the objects the thread makes
    (``ob_tid``, the first word of an object on a free-threaded build)."""
    probe = object()
    return ctypes.c_size_t.from_address(id(probe)).value


def child(pool: str, units: int) -> None:
    from .scaling import POOLS

    adapter = POOLS[pool](8)
    main_tid = _thread_id_of_objects_made_here()
    found: dict[str, Any] = {"main": main_tid}

    def worker() -> None:
        found["worker"] = _thread_id_of_objects_made_here()
        unit = adapter.unit
        for _ in range(2000):  # warm: every lazily made object exists before counting
            unit()
        _START()
        for _ in range(units):
            unit()
        _STOP()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    adapter.close()
    print("SHAREDREFS-IDS " + json.dumps(found), flush=True)


def count(pool: str, units: int) -> dict[str, Any]:
    gdb = shutil.which("gdb")
    if gdb is None:
        raise SystemExit("sharedrefs: gdb is not installed (apt-get install gdb)")
    with tempfile.NamedTemporaryFile("w", suffix=".gdb", delete=False) as script:
        script.write(_GDB_SCRIPT)
    try:
        out = subprocess.run(
            [gdb, "-q", "-batch", "-x", script.name, "--args", sys.executable, "-m",
             "benchmarks.sharedrefs", "--child", pool, "--units", str(units)],
            capture_output=True, text=True, timeout=600, check=False,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        ).stdout
    finally:
        os.unlink(script.name)
    ids = next((json.loads(line.split(" ", 1)[1]) for line in out.splitlines()
                if line.startswith("SHAREDREFS-IDS ")), None)
    if ids is None:
        raise SystemExit(f"sharedrefs: the child did not finish under gdb:\n{out[-2000:]}")
    shared: collections.Counter[str] = collections.Counter()
    other: collections.Counter[str] = collections.Counter()
    type_cache_misses = 0
    for line in out.splitlines():
        if not line.startswith("SHAREDREF "):
            continue
        _, current, owner, in_mro_walk, type_name = line.split(" ", 4)
        if int(current) != ids["worker"]:
            continue  # another thread (the pool's maintainer)
        if in_mro_walk == "1":
            # A class's MRO tuple, walked when CPython's type attribute cache misses: which
            # lookups collide there depends on the process's string hash seed, not on the
            # pool (counted apart; PYTHONHASHSEED fixes it for a run).
            type_cache_misses += 1
            continue
        (shared if int(owner) == ids["main"] else other)[type_name] += 1
    return {
        "pool": pool,
        "units": units,
        "shared_per_unit": sum(shared.values()) / units,
        "shared_by_type": {k: v / units for k, v in shared.most_common()},
        "other_per_unit": sum(other.values()) / units,
        "other_by_type": {k: v / units for k, v in other.most_common()},
        "type_cache_misses_per_unit": type_cache_misses / units,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sharedrefs",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--pools", default="dedicated,ours,ours-pool,peewee,sqlalchemy,dbutils")
    p.add_argument("--units", type=int, default=3)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.units)
        return 0
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        print("sharedrefs: this interpreter is not free-threaded; on a GIL build every "
              "object's count is shared and the figure means nothing", file=sys.stderr)
        return 2
    records = [count(pool, args.units) for pool in args.pools.split(",")]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    print(f"Python {sys.version.split()[0]} (free-threaded): references released per unit "
          f"by a worker thread, of objects it does not own ({args.units} units after 2,000)")
    for rec in records:
        by_type = ", ".join(f"{k} {v:g}" for k, v in rec["shared_by_type"].items()) or "-"
        print(f"  {rec['pool']:<16} made by the main thread (shared by every worker): "
              f"{rec['shared_per_unit']:g}  [{by_type}]; of other threads: "
              f"{rec['other_per_unit']:g}; type-cache misses: "
              f"{rec['type_cache_misses_per_unit']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
