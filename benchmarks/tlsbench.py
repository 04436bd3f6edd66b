"""Free-threaded CPython: what a shared ``threading.local`` and a shared object cost.

``python -m benchmarks.tlsbench [--n 300000] [--quiet-below 0.15]``

Why: peewee keeps every thread's connection state in *one* ``threading.local`` per
database (``Database._state``), and ``db.connect(); db.close()`` touch it about 16 times.
This measures the pattern alone, 1 and 2 threads, median of 3: each thread setting and
reading its own attributes on one shared ``threading.local``, on one ``threading.local``
per thread, on a plain object per thread, and only reading an attribute of one shared
plain object (its reference count is written by every load on 3.13t).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .scaling import wait_for_quiet


class _Local(threading.local):
    def __init__(self) -> None:
        self.closed = True
        self.conn: Any = None


class _Plain:
    def __init__(self) -> None:
        self.closed = True
        self.conn: Any = None


def _set_and_read(obj: Any, n: int) -> None:
    for _ in range(n):
        obj.conn = 1
        obj.closed = False
        _ = obj.closed
        obj.conn = None
        obj.closed = True


def _read_only(obj: Any, n: int) -> None:
    hits = 0
    for _ in range(n):
        hits += obj.closed is True


def _run(
    fn: Callable[[Any, int], None],
    make: Callable[[int], Any],
    threads: int,
    n: int,
    quiet: float | None,
) -> tuple[float, float]:
    if quiet is not None:
        wait_for_quiet(quiet, 10.0)
    workers = [threading.Thread(target=fn, args=(make(i), n)) for i in range(threads)]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return threads * n / wall, cpu / (threads * n) * 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tlsbench", description=__doc__)
    p.add_argument("--n", type=int, default=300_000, help="iterations per thread")
    p.add_argument("--quiet-below", type=float, help="wait for a quiet machine before each run")
    args = p.parse_args(argv)
    shared_local, shared_plain = _Local(), _Plain()
    cases: list[tuple[str, Callable[[Any, int], None], Callable[[int], Any]]] = [
        ("one threading.local shared by the threads", _set_and_read, lambda i: shared_local),
        ("one threading.local per thread", _set_and_read, lambda i: _Local()),
        ("one plain object per thread", _set_and_read, lambda i: _Plain()),
        ("one plain object shared, read only", _read_only, lambda i: shared_plain),
    ]
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"Python {sys.version.split()[0]}, GIL {'on' if gil else 'off'}, median of 3")
    for name, fn, make in cases:
        (ops1, ns1), (ops2, ns2) = (
            sorted(_run(fn, make, t, args.n, args.quiet_below) for _ in range(3))[1] for t in (1, 2)
        )
        print(
            f"  {name:<42} 1 thread {ops1 / 1e6:5.2f} M it/s {ns1:5.0f} ns CPU/it | "
            f"2 threads {ops2 / 1e6:5.2f} M it/s {ns2:5.0f} ns CPU/it | x{ops2 / ops1:4.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
