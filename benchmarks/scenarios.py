"""Scenarios: what is measured, under which network conditions, and how it is summarised.

Why this shape: a scenario is a list of *cases* (network settings, thread counts), a
``measure`` that runs one pool once in one case, and a ``summarize`` that turns the
records into a table.  The driver in :func:`run_scenario` owns repeats and the
rotation of pool order, so a new scenario (expiry storm, outage, ...) is one class
with those three methods plus a line in :data:`SCENARIOS`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pymysql

from . import report
from .pools import POOLS, Target
from .proxyctl import ProxyHandle
from .runner import Meters, run_workers, summary


@dataclass
class Settings:
    """Everything the command line decides."""

    quick: bool = False
    repeats: int = 3
    pools: list[str] = field(default_factory=lambda: list(POOLS))
    cold_threads: int = 30
    connect_delay: float = 0.2
    steady_threads: int = 32
    duration: float = 5.0
    latencies_ms: list[float] = field(default_factory=lambda: [0.0, 1.0, 5.0])
    tls: bool = True


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


def measure_pool(
    ctx: Context,
    pool: str,
    *,
    threads: int,
    size: int,
    warm: bool,
    duration: float | None = None,
    units: int | None = None,
    options: Mapping[str, Any] | None = None,
    target: Target | None = None,
) -> dict[str, Any]:
    """Build a fresh pool, optionally fill it, run the window, close it, check for leaks.

    Leaks are counted at the proxy (connections still open through it after close),
    not from the server's processlist, which also shows every other client of a shared
    server (e.g. test suites running beside the benchmark).
    """
    adapter = POOLS[pool](target or ctx.via_proxy, size, options or {})
    warm_s = None
    try:
        if warm:
            t0 = time.perf_counter()
            adapter.warm(size)
            warm_s = time.perf_counter() - t0
        run = run_workers(
            adapter,
            threads,
            warm=warm,
            duration=duration,
            units_per_thread=units,
            meters=ctx.meters,
        )
    finally:
        t0 = time.perf_counter()
        adapter.close()
        idle = ctx.proxy.wait_idle(10.0)
        close_s = time.perf_counter() - t0
    rec = summary(run)
    rec["warm_s"] = warm_s
    rec["close_s"] = close_s
    rec["leftover_connections"] = 0 if idle else int(ctx.proxy.get("active"))
    chunks = rec["counters"].get("chunks_up")
    rec["round_trips_per_unit"] = chunks / run.units if chunks is not None and run.units else None
    return rec


class Scenario:
    name: ClassVar[str]
    summary: ClassVar[str]
    pools: ClassVar[tuple[str, ...] | None] = None  # None: every selected pool

    def cases(self, s: Settings) -> list[Case]:
        raise NotImplementedError

    def configure(self, ctx: Context, case: Case) -> None:
        """Set the proxy for a case; every knob from scratch, so cases don't leak."""
        ctx.reset_proxy()

    def measure(self, ctx: Context, pool: str, case: Case) -> dict[str, Any]:
        raise NotImplementedError

    def summarize(self, records: list[dict[str, Any]], s: Settings) -> str:
        raise NotImplementedError


def _cores(rec: dict[str, Any], key: str) -> float | None:
    """CPU seconds over the window as cores busy (2.0 = the whole machine here)."""
    value = rec["counters"].get(key)
    return value / rec["elapsed_s"] if value is not None and rec["elapsed_s"] else None


class Cold(Scenario):
    """Design S4 / issue 2a: many threads hit an empty pool at once over slow connects.

    A pool that connects under its lock (playhouse.pool) lets one connect run at a time,
    so the last thread queries after about N x connect latency.
    """

    name = "cold"
    summary = "N threads, empty pool, +0.2 s per connect: time until all have queried"

    def cases(self, s: Settings) -> list[Case]:
        label = f"{s.cold_threads} threads, connect +{s.connect_delay * 1000:g} ms"
        return [Case(label, {"threads": s.cold_threads, "connect_delay": s.connect_delay})]

    def configure(self, ctx: Context, case: Case) -> None:
        super().configure(ctx, case)
        ctx.proxy.set("connect_delay", case.params["connect_delay"])

    def measure(self, ctx: Context, pool: str, case: Case) -> dict[str, Any]:
        n = case.params["threads"]
        return measure_pool(ctx, pool, threads=n, size=n, warm=False, units=1)

    def summarize(self, records: list[dict[str, Any]], s: Settings) -> str:
        out = []
        for case in self.cases(s):
            rows = []
            medians: dict[str, float] = {}
            for pool in s.pools:
                recs = report.ok_records(records, case=case.label, pool=pool)
                if not recs:
                    continue
                alls = [r["elapsed_s"] for r in recs]
                medians[pool] = report.median(alls)
                p50 = report.median(r["thread_done_s"][len(r["thread_done_s"]) // 2] for r in recs)
                rows.append(
                    [
                        pool,
                        medians[pool],
                        min(alls),
                        max(alls),
                        p50,
                        len(recs),
                        sum(r["errors"] for r in recs),
                    ]
                )
            out.append(f"cold: {case.label} (seconds until every thread has queried)")
            out.append(
                report.table(
                    ["pool", "all done s", "min", "max", "median thread s", "runs", "errors"], rows
                )
            )
            if "ours" in medians and "peewee" in medians:
                speedup = report.ratio(medians["peewee"], medians["ours"])
                out.append(f"ours is {report.fmt(speedup)}x faster than peewee to serve all")
        return "\n".join(out)


class Steady(Scenario):
    """Design S2 / issue 2b: a full, warm pool under constant load at a given latency.

    Shows the per-checkout cost of each pool (locks, pings, rollbacks) against the
    ``dedicated`` ceiling, where threads own their connections and only run queries.
    """

    name = "steady"
    summary = "32 threads on a warm 32-connection pool at 0/1/5 ms one-way: units/s"

    def cases(self, s: Settings) -> list[Case]:
        return [
            Case(
                f"{s.steady_threads} threads, {lat:g} ms one-way",
                {"threads": s.steady_threads, "latency_ms": lat, "duration": s.duration},
            )
            for lat in s.latencies_ms
        ]

    def configure(self, ctx: Context, case: Case) -> None:
        super().configure(ctx, case)
        ctx.proxy.set_latency(case.params["latency_ms"] / 1000)

    def measure(self, ctx: Context, pool: str, case: Case) -> dict[str, Any]:
        n = case.params["threads"]
        return measure_pool(
            ctx, pool, threads=n, size=n, warm=True, duration=case.params["duration"]
        )

    def summarize(self, records: list[dict[str, Any]], s: Settings) -> str:
        out = []
        for case in self.cases(s):
            medians: dict[str, float] = {}
            rows = []
            per_pool = {p: report.ok_records(records, case=case.label, pool=p) for p in s.pools}
            for pool, recs in per_pool.items():
                if recs:
                    medians[pool] = report.median(r["units_per_s"] for r in recs)
            ceiling = medians.get("dedicated", float("nan"))
            for pool, recs in per_pool.items():
                if not recs:
                    continue
                rows.append(
                    [
                        pool,
                        medians[pool],
                        report.ratio(medians[pool], ceiling),
                        report.median(r["latency_s"]["p50"] * 1000 for r in recs),
                        report.median(r["latency_s"]["p99"] * 1000 for r in recs),
                        report.median(r["round_trips_per_unit"] for r in recs),
                        report.median(_cores(r, "cpu_client_s") for r in recs),
                        report.median(_cores(r, "cpu_proxy_s") for r in recs),
                        report.median(_cores(r, "cpu_server_s") for r in recs),
                        sum(r["errors"] for r in recs),
                    ]
                )
            out.append(f"steady: {case.label} (median of {s.repeats} runs)")
            out.append(
                report.table(
                    [
                        "pool",
                        "units/s",
                        "of ceiling",
                        "p50 ms",
                        "p99 ms",
                        "RT/unit",
                        "cpu client",
                        "cpu proxy",
                        "cpu server",
                        "errors",
                    ],
                    rows,
                )
            )
            for other in ("peewee", "sqlalchemy"):
                if "ours" in medians and other in medians:
                    r = report.ratio(medians["ours"], medians[other])
                    out.append(f"ours/{other} = {report.fmt(r)}")
        out.append("RT/unit = client->server chunks per unit (round trips); cpu = cores busy")
        return "\n".join(out)


class Overhead(Scenario):
    """What the Python proxy itself costs: dedicated connections direct vs through it at 0 ms.

    With 1 thread the difference in p50 is the latency the proxy adds per round trip;
    with many threads it competes with the client and the server for the same cores,
    lowering the ceiling every pool is measured against.  "proxy us/RT" is the proxy's
    CPU per round trip (both chunks).
    """

    name = "overhead"
    summary = "dedicated connections at 0 ms, direct vs through the proxy (1 and N threads)"
    pools = ("dedicated",)

    def cases(self, s: Settings) -> list[Case]:
        return [
            Case(
                f"{n} thread{'s' if n > 1 else ''}, {where}",
                {"threads": n, "direct": where == "direct", "duration": s.duration},
            )
            for n in sorted({1, s.steady_threads})
            for where in ("direct", "via proxy")
        ]

    def measure(self, ctx: Context, pool: str, case: Case) -> dict[str, Any]:
        n = case.params["threads"]
        target = ctx.direct if case.params["direct"] else ctx.via_proxy
        return measure_pool(
            ctx, pool, threads=n, size=n, warm=True, duration=case.params["duration"], target=target
        )

    def summarize(self, records: list[dict[str, Any]], s: Settings) -> str:
        rows = []
        medians: dict[tuple[int, bool], float] = {}
        for case in self.cases(s):
            recs = report.ok_records(records, case=case.label)
            if not recs:
                continue
            key = (case.params["threads"], case.params["direct"])
            medians[key] = report.median(r["units_per_s"] for r in recs)
            via = not case.params["direct"]
            rows.append(
                [
                    case.label,
                    medians[key],
                    report.median(r["latency_s"]["p50"] * 1000 for r in recs),
                    report.median(r["latency_s"]["p99"] * 1000 for r in recs),
                    report.median(_cores(r, "cpu_client_s") for r in recs),
                    report.median(_cores(r, "cpu_proxy_s") for r in recs) if via else None,
                    report.median(_proxy_us_per_rt(r) for r in recs) if via else None,
                    report.median(_cores(r, "cpu_server_s") for r in recs),
                    min((r["units_per_s"] for r in recs), default=None),
                    max((r["units_per_s"] for r in recs), default=None),
                ]
            )
        out = [
            f"overhead: dedicated connections, 0 ms (median of {s.repeats} runs)",
            report.table(
                [
                    "case",
                    "units/s",
                    "p50 ms",
                    "p99 ms",
                    "cpu client",
                    "cpu proxy",
                    "proxy us/RT",
                    "cpu server",
                    "min/s",
                    "max/s",
                ],
                rows,
            ),
        ]
        for n in sorted({1, s.steady_threads}):
            if (n, True) in medians and (n, False) in medians:
                r = report.ratio(medians[n, False], medians[n, True])
                out.append(f"{n} thread(s): through the proxy = {report.fmt(r)} of direct")
        return "\n".join(out)


def _proxy_us_per_rt(rec: dict[str, Any]) -> float | None:
    cpu, chunks = rec["counters"].get("cpu_proxy_s"), rec["counters"].get("chunks_up")
    return cpu / chunks * 1e6 if cpu is not None and chunks else None


SCENARIOS: dict[str, Scenario] = {sc.name: sc for sc in (Cold(), Steady(), Overhead())}


def run_scenario(scenario: Scenario, ctx: Context, pools: list[str]) -> list[dict[str, Any]]:
    """Every case, ``repeats`` times, pools in an order rotated by one each repeat."""
    s = ctx.settings
    names = [p for p in pools if scenario.pools is None or p in scenario.pools]
    records: list[dict[str, Any]] = []
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


def _progress(rec: dict[str, Any]) -> str:
    head = f"  {rec['scenario']} | {rec['case']} | rep {rec['repeat']} | {rec['pool']:<10}"
    if "error" in rec:
        return f"{head} FAILED {rec['error']}"
    warm = f"warm {rec['warm_s']:.1f}s, " if rec.get("warm_s") is not None else ""
    return (
        f"{head} {rec['units']} units in {rec['elapsed_s']:.2f}s ({rec['units_per_s']:.0f}/s),"
        f" errors {rec['errors']}, {warm}close {rec['close_s']:.1f}s, wall {rec['wall_s']:.1f}s"
    )
