"""Where a checkout + return through peewee spends its instructions (S1, SQLite).

``python -m benchmarks.hotpath callgrind [--n 20000] [--variants ...]``: instructions per
``db.connect(); db.close()`` under valgrind's callgrind, for peewee's
``playhouse.pool.PooledSqliteDatabase`` and ours, and for ours with one piece of the
per-checkout bookkeeping switched off at a time (an *ablation*: the difference is what
that piece costs). Instruction counts do not depend on the other tenants of a busy
machine, unlike times; each figure is (instructions of a run with N ops - instructions of
the same run with 0 ops) / N, so start-up and imports cancel out.

``python -m benchmarks.hotpath profile``: a pyinstrument call tree of the same loop
(sampled time, for the shape; the instruction counts are the figures).

``python -m benchmarks.hotpath time``: CPU us/op of every variant in this interpreter,
median of 3 (quick check without valgrind; noisy on a shared machine).

The ablations patch the library *in this process only* (benchmark code, never shipped):
they remove a diagnostic to price it, they are not proposals to drop it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Patch = Callable[[], Callable[[], None]]  # apply -> undo


def _patch(obj: Any, name: str, value: Any) -> Callable[[], None]:
    old = obj.__dict__[name] if isinstance(obj, type) else getattr(obj, name)
    setattr(obj, name, value)
    return lambda: setattr(obj, name, old)


def _no_checkin_driver_call() -> Callable[[], None]:
    """checkin_status() asked of the driver at every checkin (is it usable, does it need
    a rollback: one call, no I/O)."""
    from flask_peewee_pool.core import drivers

    return _patch(drivers.SqliteDriver, "checkin_status", lambda self, raw: drivers.CLEAN)


#: name -> patches applied to "ours" (the peewee-level path of this library). The other
#: pieces (holder, application frame, histograms, freshness test) are written out inside
#: checkout()/checkin() since the hot-path rewrite, so they can no longer be priced by
#: patching one function; docs/benchmarks.md keeps their prices from before it.
ABLATIONS: dict[str, tuple[Patch, ...]] = {
    "ours": (),
    "ours -checkin-driver": (_no_checkin_driver_call,),
}
#: The peewee layer alone: each database with its pool replaced by a stub that hands out
#: one connection and takes it back for free (what is left is peewee + the glue).
LAYERS = ["peewee-layer", "ours-layer"]
#: The same op plus one ``db.cursor()`` while connected: (ours+cursor - ours) against
#: (peewee+cursor - peewee) is what our cursor(), holder check included, adds to peewee's.
CURSOR = ["peewee+cursor", "ours+cursor"]
VARIANTS = ["peewee", "ours-pool", *ABLATIONS, *LAYERS, *CURSOR]


class _StubPooled:
    reclaimed = False
    checkouts = 0

    def __init__(self, raw: Any) -> None:
        self.raw = raw


class _StubPool:
    def __init__(self, raw: Any) -> None:
        self.conn = _StubPooled(raw)
        self.conn.pool = self  # type: ignore[attr-defined]

    def checkout(self) -> _StubPooled:
        return self.conn

    def checkin(self, conn: Any, *, broken: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


def make_db(variant: str, path: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """(one op, close) for ``variant``: op = db.connect(); db.close() (or the pool alone)."""
    with_cursor = "+cursor" in variant
    if variant in ("peewee", "peewee-layer", "peewee+cursor"):
        from playhouse.pool import PooledSqliteDatabase

        db: Any = PooledSqliteDatabase(path, max_connections=8, stale_timeout=None)
        if variant == "peewee-layer":
            import sqlite3

            raw = sqlite3.connect(path, check_same_thread=False)
            db._connect = lambda: raw
            db._close = lambda conn, close_conn=False: None
    elif variant == "ours-pool":
        from flask_peewee_pool.core.drivers import SqliteDriver
        from flask_peewee_pool.core.pool import ConnectionPool

        pool = ConnectionPool(
            SqliteDriver(None, database=path), max_connections=8, max_lifetime=None
        )

        def pool_op() -> None:
            pool.checkin(pool.checkout())

        return pool_op, pool.close
    else:
        from flask_peewee_pool.orm.database import PooledSqliteDatabase as Ours

        db = Ours(path, max_connections=8, stale_timeout=None)
        if variant == "ours-layer":
            import sqlite3

            db._pool.close()
            db._pool = _StubPool(sqlite3.connect(path, check_same_thread=False))

    def op() -> None:
        db.connect()
        db.close()

    if with_cursor:

        def op() -> None:
            db.connect()
            db.cursor()
            db.close()

    return op, (db.close_all if variant.startswith("peewee") else db.close_pool)


@contextlib.contextmanager
def applied(variant: str) -> Iterator[None]:
    undo = [p() for p in ABLATIONS.get(variant, ())]
    try:
        yield
    finally:
        for u in reversed(undo):
            u()


def loop(variant: str, n: int, path: str) -> None:
    """Set up, warm (one op: first connect), then ``n`` ops: the callgrind subject."""
    with applied(variant):
        op, close = make_db(variant, path)
        op()
        for _ in range(n):
            op()
        close()


def callgrind_ir(variant: str, n: int, path: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.hotpath",
            "_loop",
            variant,
            str(n),
            path,
        ]
        env = dict(os.environ, PYTHONHASHSEED="0")
        subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=900)
        text = out.read_text()
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if m is None:
        raise RuntimeError(f"no totals in callgrind output for {variant}")
    return int(m.group(1))


def cmd_callgrind(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"n": args.n, "python": sys.version.split()[0], "ir_per_op": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        for variant in args.variants:
            base = callgrind_ir(variant, 0, path)
            full = callgrind_ir(variant, args.n, path)
            per_op = (full - base) / args.n
            out["ir_per_op"][variant] = per_op
            print(f"  {variant:<24} {per_op:10.0f} instructions/op", file=sys.stderr, flush=True)
    ir = out["ir_per_op"]
    peewee, ours = ir.get("peewee"), ir.get("ours")
    print(f"callgrind, Python {out['python']}, {args.n} ops, SQLite file, instructions per op")
    for variant, v in ir.items():
        rel = f"{v / peewee:5.2f}x peewee" if peewee else ""
        saved = (
            f"  saves {ours - v:7.0f} ({(ours - v) / ours:5.1%})"
            if ours and (variant.startswith("ours -"))
            else ""
        )
        print(f"  {variant:<24} {v:10.0f}  {rel}{saved}")
    return out


def cmd_time(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"python": sys.version.split()[0], "cpu_us_per_op": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        for variant in args.variants:
            runs = []
            for _ in range(3):
                with applied(variant):
                    op, close = make_db(variant, path)
                    op()
                    t0 = time.process_time()
                    for _ in range(args.n):
                        op()
                    runs.append((time.process_time() - t0) / args.n * 1e6)
                    close()
            res["cpu_us_per_op"][variant] = statistics.median(runs)
            print(f"  {variant:<24} {statistics.median(runs):6.2f} us/op (CPU, median of 3)")
    return res


class _Adapter:
    """One variant as a :mod:`.runner` worker (every thread runs the same op)."""

    def __init__(self, op: Callable[[], None]) -> None:
        self.unit = op

    def thread_start(self, warm: bool) -> None:
        pass

    def thread_end(self) -> None:
        pass


def cmd_scale(args: argparse.Namespace) -> dict[str, Any]:
    """ops/s and CPU us/op at 1 and 2 threads per variant (free-threaded contention):
    a piece whose removal brings the 2-thread CPU per op back to the 1-thread figure is
    where the threads share a cache line."""
    from .runner import Meters, run_workers

    res: dict[str, Any] = {"python": sys.version.split()[0], "gil": _gil(), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        for variant in args.variants:
            for n in (1, 2):
                figures = []
                for _ in range(args.repeats):
                    if args.quiet_below is not None:
                        from .scaling import wait_for_quiet

                        wait_for_quiet(args.quiet_below, args.quiet_wait)
                    with applied(variant):
                        op, close = make_db(variant, path)
                        try:
                            run = run_workers(
                                _Adapter(op),
                                n,
                                warm=True,
                                duration=args.duration,
                                meters=Meters(None, None),
                            )
                        finally:
                            close()
                    cpu = run.counters.get("cpu_client_s") or math.nan
                    figures.append(
                        (run.units / run.elapsed, cpu / run.units * 1e6, cpu / run.elapsed)
                    )
                ops, us, cores = (statistics.median(f[i] for f in figures) for i in range(3))
                res["runs"][f"{variant} x{n}"] = {
                    "ops_per_s": ops,
                    "cpu_us_per_op": us,
                    "cores": cores,
                }
                print(
                    f"  {variant:<24} {n} thread(s) {ops:10.0f}/s {us:6.2f} us/op"
                    f" {cores:4.2f} cores",
                    flush=True,
                )
    res["gil_at_end"] = _gil()
    return res


def _gil() -> bool:
    return bool(getattr(sys, "_is_gil_enabled", lambda: True)())


def cmd_profile(args: argparse.Namespace) -> None:
    from pyinstrument import Profiler

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        for variant in args.variants:
            op, close = make_db(variant, path)
            op()
            profiler = Profiler(interval=0.0001)
            profiler.start()
            for _ in range(args.n):
                op()
            profiler.stop()
            close()
            print(f"==== {variant}")
            print(profiler.output_text(unicode=False, color=False, show_all=True))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_loop":  # the callgrind subject
        loop(argv[1], int(argv[2]), argv[3])
        return 0
    p = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__)
    p.add_argument("mode", choices=("callgrind", "time", "profile", "scale"))
    p.add_argument("--repeats", type=int, default=3, help="scale: runs per figure")
    p.add_argument("--duration", type=float, default=1.0, help="scale: window per run, s")
    p.add_argument("--quiet-below", type=float, help="scale: wait for a quiet machine first")
    p.add_argument("--quiet-wait", type=float, default=20.0, help="scale: at most this long")
    p.add_argument("--n", type=int, help="ops per run (default 20000; profile 200000)")
    p.add_argument("--variants", help=f"comma-separated subset of {', '.join(VARIANTS)}")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    args.variants = (
        args.variants.split(",")
        if args.variants
        else (["peewee", "ours"] if args.mode == "profile" else VARIANTS)
    )
    bad = set(args.variants) - set(VARIANTS)
    if bad:
        p.error(f"unknown variant(s) {sorted(bad)}; choose from {VARIANTS}")
    args.n = args.n or (200_000 if args.mode == "profile" else 20_000)
    if args.mode == "profile":
        cmd_profile(args)
        return 0
    modes = {"callgrind": cmd_callgrind, "time": cmd_time, "scale": cmd_scale}
    res = modes[args.mode](args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
