"""The shared harness of scenarios S1-S6: settings, run context, cases, the repeat loop.

Why this shape: a scenario (one module each, registered in :mod:`.scenarios`) is a list
of *cases* (network settings, thread counts), a ``measure`` that runs one pool once in one
case, a ``summarize`` that turns the records into tables (:class:`report.Block`) and, for
S3/S4, a ``plot``.  The driver in :func:`run_scenario` owns repeats and the rotation of
pool order, so every pool of a case runs in the same conditions, in a different position
each repeat.

Times in records are seconds unless a key says ``_ms``; "cores" are CPU seconds per
second of window (2.0 is the whole of this machine).
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pymysql

from . import report
from .pools import POOLS, PoolAdapter, PoolConfig, Target
from .proxyctl import ProxyHandle
from .report import Block, percentile
from .runner import Meters, Run, run_workers, summary

Record = dict[str, Any]


@dataclass
class Settings:
    """Everything the command line decides (see :meth:`preset` for the three modes)."""

    mode: str = "full"  # full | quick | smoke
    repeats: int = 3
    pools: list[str] = field(default_factory=lambda: list(POOLS))
    tls: bool = False
    # S1 overhead (fake driver)
    s1_threads: list[int] = field(default_factory=lambda: [1, 32])
    s1_duration: float = 2.0
    # S2 steady (and the proxy calibration)
    steady_threads: int = 32
    duration: float = 5.0
    latencies_ms: list[float] = field(default_factory=lambda: [0.0, 1.0, 5.0])
    # S3 expiry storm
    storm_threads: int = 100
    storm_lifetime: float = 5.0
    storm_connect_delay: float = 0.02
    storm_latency_ms: float = 1.0
    storm_run: float = 9.0
    # S4 cold start
    cold_threads: int = 50
    connect_delay: float = 0.2
    # S5 outage
    outage_threads: int = 32
    outage_latency_ms: float = 1.0
    outage_before: float = 3.0
    outage_length: float = 5.0
    outage_after: float = 6.0
    outage_read_timeout: float = 2.0
    outage_checkout_timeout: float = 1.0
    # S6 end to end
    e2e_latencies_ms: list[float] = field(default_factory=lambda: [0.0, 1.0])
    e2e_duration: float = 5.0
    e2e_warmup: float = 1.0
    e2e_server_threads: int = 8
    e2e_clients: int = 16

    @classmethod
    def preset(cls, mode: str) -> Settings:
        if mode == "full":
            return cls()
        if mode == "quick":
            return cls(
                mode=mode,
                repeats=1,
                s1_duration=1.0,
                duration=1.5,
                latencies_ms=[1.0, 5.0],
                storm_run=7.0,
                outage_before=2.0,
                outage_after=4.0,
                e2e_duration=2.0,
                e2e_warmup=0.5,
            )
        if mode == "smoke":  # only proves that every code path runs
            return cls(
                mode=mode,
                repeats=1,
                s1_threads=[1, 4],
                s1_duration=0.3,
                steady_threads=4,
                duration=0.5,
                latencies_ms=[1.0],
                storm_threads=8,
                storm_lifetime=1.0,
                storm_run=2.5,
                cold_threads=5,
                connect_delay=0.05,
                outage_threads=4,
                outage_before=0.5,
                outage_length=1.0,
                outage_after=1.5,
                outage_read_timeout=0.5,
                outage_checkout_timeout=0.5,
                e2e_latencies_ms=[0.0],
                e2e_duration=0.5,
                e2e_warmup=0.2,
                e2e_server_threads=2,
                e2e_clients=2,
            )
        raise ValueError(f"unknown mode {mode!r}")


@dataclass
class Context:
    """The shared fixtures of a benchmark run: proxy, targets, meters, an admin link."""

    settings: Settings
    proxy: ProxyHandle
    via_proxy: Target
    direct: Target
    meters: Meters
    admin: pymysql.connections.Connection  # direct, never through the proxy
    baseline_sessions: int = 0
    log: Callable[[str], None] = print

    def reset_proxy(self) -> None:
        self.proxy.set_latency(0.0)
        self.proxy.set("connect_delay", 0.0)
        if self.proxy.get("blackholed"):
            self.proxy.call("restore")

    def server_sessions(self) -> int:
        with self.admin.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.processlist")
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def wait_sessions(self, expected: int, timeout: float = 5.0) -> int:
        """Poll (bounded) until the server has ``expected`` sessions; return the last count."""
        deadline = time.monotonic() + timeout
        while (count := self.server_sessions()) > expected and time.monotonic() < deadline:
            time.sleep(0.1)  # an external system: nothing to wait on but its answer
        return count


@dataclass(frozen=True)
class Case:
    label: str
    params: Mapping[str, Any]


@dataclass
class PoolRun:
    """One pool, one window: the runner's result plus what the adapter saw."""

    run: Run
    adapter: PoolAdapter
    warm_s: float | None
    close_s: float
    leftover: int

    def connects(self) -> list[tuple[float, float, str, bool]]:
        """Raw connects as (start s from the workers' start, seconds, thread, ok)."""
        t0 = self.run.start
        return [(t - t0, dt, who, ok) for t, dt, who, ok in self.adapter.connects.events]

    def queries(self) -> list[float]:
        """When each query's result arrived (s from the workers' start), with log_queries."""
        t0 = self.run.start
        return sorted(t - t0 for t in self.adapter.query_log or ())

    def record(self) -> Record:
        rec = summary(self.run)
        rec["warm_s"] = self.warm_s
        rec["close_s"] = self.close_s
        rec["leftover_connections"] = self.leftover
        chunks = rec["counters"].get("chunks_up")
        units = self.run.units
        rec["round_trips_per_unit"] = chunks / units if chunks is not None and units else None
        return rec


def run_pool(
    ctx: Context,
    pool: str,
    config: PoolConfig,
    *,
    threads: int,
    warm: bool,
    duration: float | None = None,
    units: int | None = None,
    target: Target | None = None,
    record: bool = False,
    during: Callable[[float], None] | None = None,
    log_queries: bool = False,
) -> PoolRun:
    """Build a fresh pool, optionally fill it, run the window, close it, check for leaks.

    Leaks are counted at the proxy (connections still open through it after close),
    not from the server's processlist, which also shows every other client of a shared
    server (e.g. test suites running beside the benchmark).
    """
    adapter = POOLS[pool](target or ctx.via_proxy, config)
    if log_queries:
        adapter.query_log = []
    warm_s = None
    try:
        if warm:
            t0 = time.perf_counter()
            adapter.warm(config.size)
            warm_s = time.perf_counter() - t0
        run = run_workers(
            adapter,
            threads,
            warm=warm,
            duration=duration,
            units_per_thread=units,
            meters=ctx.meters,
            record=record,
            during=during,
        )
    finally:
        t0 = time.perf_counter()
        adapter.close()
        idle = ctx.proxy.wait_idle(5.0)  # closes take milliseconds; a leak waits no longer
        close_s = time.perf_counter() - t0
        leftover = 0 if idle else int(ctx.proxy.get("active"))
        if leftover:  # counted against this pool; reset so the next run starts clean
            ctx.proxy.call("reset_all")
            ctx.proxy.wait_idle(5.0)
    return PoolRun(run, adapter, warm_s, close_s, leftover)


class Scenario:
    name: ClassVar[str]
    title: ClassVar[str]
    summary: ClassVar[str]
    pools: ClassVar[tuple[str, ...] | None] = None  # None: every selected pool

    def pool_names(self, selected: Sequence[str]) -> list[str]:
        return [p for p in selected if self.pools is None or p in self.pools]

    def runs_by_pool(
        self, records: list[Record], s: Settings, case: Case
    ) -> list[tuple[str, list[Record]]]:
        """(pool, its successful records in ``case``) for each pool that has any."""
        found = [
            (pool, report.ok_records(records, case=case.label, pool=pool))
            for pool in self.pool_names(s.pools)
        ]
        return [(pool, recs) for pool, recs in found if recs]

    def cases(self, s: Settings) -> list[Case]:
        raise NotImplementedError

    def configure(self, ctx: Context, case: Case) -> None:
        """Set the proxy for a case; every knob from scratch, so cases don't leak."""
        ctx.reset_proxy()

    def measure(self, ctx: Context, pool: str, case: Case) -> Record:
        raise NotImplementedError

    def summarize(self, records: list[Record], s: Settings) -> list[Block]:
        raise NotImplementedError

    def plot(self, records: list[Record], s: Settings, out: Path) -> list[Path]:
        return []


def cores(rec: Record, key: str) -> float | None:
    """CPU seconds over the window as cores busy (2.0 = the whole machine here)."""
    value = rec["counters"].get(key)
    return value / rec["elapsed_s"] if value is not None and rec["elapsed_s"] else None


def other_cores(rec: Record) -> float | None:
    """Cores busy with anything but client, proxy and server (other tenants)."""
    c = rec["counters"]
    parts = [c.get(k) for k in ("cpu_machine_s", "cpu_client_s", "cpu_proxy_s", "cpu_server_s")]
    if parts[0] is None or not rec["elapsed_s"]:
        return None
    return max(0.0, parts[0] - sum(p or 0.0 for p in parts[1:])) / rec["elapsed_s"]


def ms(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value * 1000


STYLE: dict[str, dict[str, Any]] = {
    "ours": {"color": "tab:blue", "lw": 2.5, "zorder": 5},
    "peewee": {"color": "tab:orange", "lw": 2.5},
    "sqlalchemy": {"color": "tab:green", "lw": 1.5},
    "dbutils": {"color": "tab:red", "lw": 1.2, "ls": "--", "zorder": 4},
    "dedicated": {"color": "black", "lw": 1.2, "ls": ":", "zorder": 6},
}


def thin(events: Sequence[Sequence[float]], keep: int) -> list[Sequence[float]]:
    """At most about ``keep`` points for a scatter plot: an even sample of the timeline
    plus every point above its 99th latency percentile, so no stall disappears."""
    if len(events) <= keep:
        return list(events)
    cut = percentile(sorted(e[1] for e in events), 99)
    step = len(events) / keep
    picked = {int(i * step) for i in range(keep)}
    return [e for i, e in enumerate(events) if i in picked or e[1] >= cut]


def save_small(fig: Any, path: Path) -> None:
    """PNG with a 64-colour palette: a tenth of the bytes, same look for these plots."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    try:
        from PIL import Image
    except ImportError:  # matplotlib's own PNG then
        path.write_bytes(buf.getvalue())
        return
    buf.seek(0)
    with Image.open(buf) as img:
        img.convert("RGB").quantize(colors=64).save(path, optimize=True)


def median_record(recs: list[Record], key: Callable[[Record], float]) -> Record:
    """The record whose ``key`` is the median (the lower one for an even count)."""
    ordered = sorted(recs, key=key)
    return ordered[(len(ordered) - 1) // 2]


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (imported late: plots are optional)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_scenario(scenario: Scenario, ctx: Context, pools: list[str]) -> list[Record]:
    """Every case, ``repeats`` times, pools in an order rotated by one each repeat."""
    s = ctx.settings
    names = scenario.pool_names(pools)
    records: list[Record] = []
    if not names:
        return records
    for case in scenario.cases(s):
        for rep in range(s.repeats):
            shift = rep % len(names)
            order = names[shift:] + names[:shift]
            for pos, pool in enumerate(order):
                scenario.configure(ctx, case)
                base = {
                    "scenario": scenario.name,
                    "case": case.label,
                    "params": dict(case.params),
                    "pool": pool,
                    "repeat": rep,
                    "position": pos,
                }
                t0 = time.monotonic()
                try:
                    rec = base | scenario.measure(ctx, pool, case)
                except Exception as exc:
                    ctx.log(traceback.format_exc())
                    rec = base | {"error": f"{type(exc).__name__}: {exc}"}
                rec["wall_s"] = time.monotonic() - t0
                records.append(rec)
                ctx.log(_progress(rec))
    ctx.reset_proxy()
    return records


def _progress(rec: Record) -> str:
    head = f"  {rec['scenario']} | {rec['case']} | rep {rec['repeat']} | {rec['pool']:<10}"
    if "error" in rec:
        return f"{head} FAILED {rec['error']}"
    if "requests_per_s" in rec:
        return (
            f"{head} {rec['requests']} requests ({rec['requests_per_s']:.0f}/s), "
            f"p99 {rec['latency_s']['p99'] * 1000:.1f} ms, non-200 {rec['http_errors']}, "
            f"wall {rec['wall_s']:.1f}s"
        )
    warm = f"warm {rec['warm_s']:.1f}s, " if rec.get("warm_s") is not None else ""
    extra = ""
    if "storm" in rec:
        extra = (
            f" steady max {rec['steady']['max'] * 1000:.0f} ms, storm max "
            f"{rec['storm']['max'] * 1000:.0f} ms, by requests {rec['connects_by_requests']},"
        )
    if "recovery_s" in rec:
        extra = (
            f" blocked {rec['longest_blocked_s']:.2f}s, recovery {rec['recovery_s']:.2f}s,"
            f" errors {rec['errors_by_type']},"
        )
    close = f"close {rec['close_s']:.1f}s, " if "close_s" in rec else ""
    return (
        f"{head} {rec['units']} units in {rec['elapsed_s']:.2f}s ({rec['units_per_s']:.0f}/s),"
        f" errors {rec['errors']},{extra} {warm}{close}wall {rec['wall_s']:.1f}s"
    )
