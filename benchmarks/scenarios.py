"""Scenarios S1-S6 of design section 6 (plus ``proxy``, the proxy's own cost).

Why this shape: a scenario is a list of *cases* (network settings, thread counts), a
``measure`` that runs one pool once in one case, a ``summarize`` that turns the records
into tables (:class:`report.Block`) and, for S3/S4, a ``plot``.  The driver in
:func:`run_scenario` owns repeats and the rotation of pool order, so every pool of a
case runs in the same conditions, in a different position each repeat.

Times in records are seconds unless a key says ``_ms``; "cores" are CPU seconds per
second of window (2.0 is the whole of this machine).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pymysql

from . import report
from .fakes import FAKES
from .pools import POOLS, PoolAdapter, PoolConfig, Target
from .proxyctl import ProxyHandle
from .report import Block, median, percentile
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


def _cores(rec: Record, key: str) -> float | None:
    """CPU seconds over the window as cores busy (2.0 = the whole machine here)."""
    value = rec["counters"].get(key)
    return value / rec["elapsed_s"] if value is not None and rec["elapsed_s"] else None


def _other_cores(rec: Record) -> float | None:
    """Cores busy with anything but client, proxy and server (other tenants)."""
    c = rec["counters"]
    parts = [c.get(k) for k in ("cpu_machine_s", "cpu_client_s", "cpu_proxy_s", "cpu_server_s")]
    if parts[0] is None or not rec["elapsed_s"]:
        return None
    return max(0.0, parts[0] - sum(p or 0.0 for p in parts[1:])) / rec["elapsed_s"]


def _ms(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value * 1000


_STYLE: dict[str, dict[str, Any]] = {
    "ours": {"color": "tab:blue", "lw": 2.5, "zorder": 5},
    "peewee": {"color": "tab:orange", "lw": 2.5},
    "sqlalchemy": {"color": "tab:green", "lw": 1.5},
    "dbutils": {"color": "tab:red", "lw": 1.2, "ls": "--", "zorder": 4},
    "dedicated": {"color": "black", "lw": 1.2, "ls": ":", "zorder": 6},
}


def _thin(events: Sequence[Sequence[float]], keep: int) -> list[Sequence[float]]:
    """At most about ``keep`` points for a scatter plot: an even sample of the timeline
    plus every point above its 99th latency percentile, so no stall disappears."""
    if len(events) <= keep:
        return list(events)
    cut = percentile(sorted(e[1] for e in events), 99)
    step = len(events) / keep
    picked = {int(i * step) for i in range(keep)}
    return [e for i, e in enumerate(events) if i in picked or e[1] >= cut]


def _save_small(fig: Any, path: Path) -> None:
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


def _median_record(recs: list[Record], key: Callable[[Record], float]) -> Record:
    """The record whose ``key`` is the median (the lower one for an even count)."""
    ordered = sorted(recs, key=key)
    return ordered[(len(ordered) - 1) // 2]


# ------------------------------------------------------------------------------------- S1


class Overhead(Scenario):
    """S1: each pool's own cost per checkout + checkin, fake zero-latency driver.

    No network, no server, no proxy: what is left is the pool's Python and its locks.
    """

    name = "s1"
    title = "S1 overhead"
    summary = "fake zero-latency driver, 1 and 32 threads: checkout+checkin per second"

    def pool_names(self, selected: Sequence[str]) -> list[str]:
        return [cls.name for p in selected for cls in FAKES.get(p, ())]

    def cases(self, s: Settings) -> list[Case]:
        return [
            Case(f"{n} thread{'s' if n > 1 else ''}", {"threads": n, "duration": s.s1_duration})
            for n in s.s1_threads
        ]

    def configure(self, ctx: Context, case: Case) -> None:
        pass  # no proxy involved

    def measure(self, ctx: Context, pool: str, case: Case) -> Record:
        cls = next(c for classes in FAKES.values() for c in classes if c.name == pool)
        n = case.params["threads"]
        adapter = cls(max(ctx.settings.s1_threads))
        try:
            run = run_workers(
                adapter,
                n,
                warm=True,
                duration=case.params["duration"],
                meters=Meters(None, None),
            )
        finally:
            adapter.close()
        rec = summary(run)
        rec.pop("thread_done_s")
        cpu = rec["counters"].get("cpu_client_s")
        rec["cpu_us_per_op"] = (
            cpu / rec["units"] * 1e6 if cpu is not None and rec["units"] else None
        )
        return rec

    def summarize(self, records: list[Record], s: Settings) -> list[Block]:
        blocks = []
        names = self.pool_names(s.pools)
        for case in self.cases(s):
            med = {
                p: median(
                    r["units_per_s"] for r in report.ok_records(records, case=case.label, pool=p)
                )
                for p in names
            }
            cpu = {
                p: median(
                    r["cpu_us_per_op"] for r in report.ok_records(records, case=case.label, pool=p)
                )
                for p in names
            }
            peewee = med.get("peewee", math.nan)
            rows = [
                [
                    p,
                    med[p],
                    report.ratio(med[p], peewee),
                    cpu[p],
                    report.ratio(cpu[p], cpu.get("peewee", math.nan)),
                    median(
                        _cores(r, "cpu_client_s")
                        for r in report.ok_records(records, case=case.label, pool=p)
                    ),
                ]
                for p in names
                if not math.isnan(med[p])
            ]
            blocks.append(
                Block(
                    f"S1 overhead, {case.label}, fake driver (median of {s.repeats})",
                    ["pool", "ops/s", "x peewee", "CPU us/op", "CPU x peewee", "cores"],
                    rows,
                )
            )
        blocks[-1].notes.append(
            "op = checkout + checkin, nothing else; ours-pool = ConnectionPool alone, "
            "ours = db.connect()/db.close() through peewee; CPU us/op = CPU seconds of the "
            "process per op (robust to other tenants, counts lock hand-offs); cores = CPU "
            "of this process"
        )
        return blocks


# ------------------------------------------------------------------------------------- S2


class Steady(Scenario):
    """S2: a full, warm pool under constant load at a given latency.

    Shows the per-checkout cost of each pool (locks, pings, rollbacks) against the
    ``dedicated`` ceiling, where threads own their connections and only run queries.
    """

    name = "s2"
    title = "S2 steady state"
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

    def measure(self, ctx: Context, pool: str, case: Case) -> Record:
        n = case.params["threads"]
        pr = run_pool(
            ctx, pool, PoolConfig(size=n), threads=n, warm=True, duration=case.params["duration"]
        )
        return pr.record()

    def summarize(self, records: list[Record], s: Settings) -> list[Block]:
        blocks = []
        for case in self.cases(s):
            per_pool = {p: report.ok_records(records, case=case.label, pool=p) for p in s.pools}
            med = {
                p: median(r["units_per_s"] for r in recs) for p, recs in per_pool.items() if recs
            }
            ceiling = med.get("dedicated", math.nan)
            rows = []
            for pool, recs in per_pool.items():
                if not recs:
                    continue
                rows.append(
                    [
                        pool,
                        med[pool],
                        report.ratio(med[pool], ceiling),
                        min(r["units_per_s"] for r in recs),
                        max(r["units_per_s"] for r in recs),
                        median(_ms(r["latency_s"]["p50"]) for r in recs),
                        median(_ms(r["latency_s"]["p99"]) for r in recs),
                        median(r["round_trips_per_unit"] for r in recs),
                        median(_cores(r, "cpu_client_s") for r in recs),
                        median(_cores(r, "cpu_proxy_s") for r in recs),
                        median(_cores(r, "cpu_server_s") for r in recs),
                        median(_other_cores(r) for r in recs),
                    ]
                )
            notes = []
            if "ours" in med and "dedicated-peewee" in med:
                share = report.ratio(med["ours"], med["dedicated-peewee"])
                notes.append(f"ours / dedicated-peewee = {report.fmt(share)}")
            for other in ("peewee", "sqlalchemy", "dbutils"):
                if "ours" in med and other in med:
                    notes.append(
                        f"ours / {other} = {report.fmt(report.ratio(med['ours'], med[other]))}"
                    )
            blocks.append(
                Block(
                    f"S2 steady, {case.label} (median of {s.repeats})",
                    [
                        "pool",
                        "units/s",
                        "of dedicated",
                        "min",
                        "max",
                        "p50 ms",
                        "p99 ms",
                        "RT/unit",
                        "cpu client",
                        "cpu proxy",
                        "cpu server",
                        "cpu other",
                    ],
                    rows,
                    ["; ".join(notes)] if notes else [],
                )
            )
        blocks.append(self._cost_block(records, s))
        blocks[-2].notes.append(
            "unit = checkout + SELECT 1 + checkin; RT/unit = client->server chunks per unit "
            "(round trips); cpu = cores busy (of 2); other = the rest of the machine"
        )
        return blocks

    def _cost_block(self, records: list[Record], s: Settings) -> Block:
        """What one unit costs the client process, per pool and latency (medians)."""
        rows = []
        for case in self.cases(s):
            for pool in s.pools:
                recs = report.ok_records(records, case=case.label, pool=pool)
                if not recs:
                    continue

                def per_unit(key: str, scale: float = 1e6, recs: list[Record] = recs) -> float:
                    return median(
                        r["counters"][key] / r["units"] * scale
                        if r["units"] and r["counters"].get(key) is not None
                        else None
                        for r in recs
                    )

                rows.append(
                    [
                        f"{case.params['latency_ms']:g} ms",
                        pool,
                        per_unit("client_user_s"),
                        per_unit("client_sys_s"),
                        per_unit("client_vol_switches", 1.0),
                        per_unit("client_invol_switches", 1.0),
                        per_unit("cpu_proxy_s"),
                        per_unit("cpu_server_s"),
                    ]
                )
        return Block(
            f"S2 cost per unit (median of {s.repeats})",
            [
                "one-way",
                "pool",
                "client user us",
                "client sys us",
                "voluntary switches",
                "involuntary",
                "proxy us",
                "server us",
            ],
            rows,
            [
                "CPU of each process per unit of work (getrusage / /proc): where the "
                "machine's 2 cores go; switches = context switches of the client per unit"
            ],
        )


# ------------------------------------------------------------------------------------- S3


class ExpiryStorm(Scenario):
    """S3: every connection born in the same instant reaches its lifetime together.

    100 connections warmed together, lifetime 5 s (ours ``max_lifetime=5`` with its
    default jitter 0.2; peewee ``stale_timeout=5``; SQLAlchemy ``recycle=5``; DBUtils
    has no age limit and runs without expiry, as a reference), +20 ms per connect, 1 ms
    one-way, 100 threads looping.  Windows (times from the workers' start):

    * steady: [0.5 s, storm start), before any connection can expire;
    * storm: [first birth + shortest lifetime - 1 s, last birth + lifetime + 1 s] where
      the shortest lifetime is 4 s for ours (jitter) and 5 s for the others.

    See :func:`_storm_stats`, which recomputes them from the saved timeline.
    """

    name = "s3"
    title = "S3 expiry storm"
    summary = "100 conns born together, lifetime 5 s, +20 ms connect, 1 ms: latency across expiry"
    pools = ("ours", "peewee", "sqlalchemy", "dbutils")

    def cases(self, s: Settings) -> list[Case]:
        label = (
            f"{s.storm_threads} threads, lifetime {s.storm_lifetime:g} s, connect "
            f"+{s.storm_connect_delay * 1000:g} ms, {s.storm_latency_ms:g} ms one-way"
        )
        return [Case(label, {"threads": s.storm_threads, "run": s.storm_run})]

    def configure(self, ctx: Context, case: Case) -> None:
        super().configure(ctx, case)
        ctx.proxy.set_latency(ctx.settings.storm_latency_ms / 1000)
        ctx.proxy.set("connect_delay", ctx.settings.storm_connect_delay)

    def measure(self, ctx: Context, pool: str, case: Case) -> Record:
        s = ctx.settings
        n = case.params["threads"]
        config = PoolConfig(size=n, lifetime=s.storm_lifetime)
        pr = run_pool(
            ctx, pool, config, threads=n, warm=True, duration=case.params["run"], record=True
        )
        rec = pr.record()
        events = pr.run.events()
        connects = pr.connects()
        births = [t + dt for t, dt, _who, ok in connects if ok and t < 0]
        longest = max(events, key=lambda e: e[1], default=None)
        in_run = [c for c in connects if c[0] >= 0]
        rec.update(
            {
                "lifetime_s": s.storm_lifetime,
                "shortest_lifetime_s": s.storm_lifetime * (0.8 if pool == "ours" else 1.0),
                "expires": pool != "dbutils",
                "births_s": [min(births), max(births)] if births else None,
                "longest_s": longest[1] if longest else math.nan,
                "longest_at_s": longest[0] if longest else math.nan,
                "connects_in_run": len(in_run),
                "connects_by_requests": sum(1 for c in in_run if c[2].startswith("bench-")),
                "connects_failed": sum(1 for c in in_run if not c[3]),
                "_events": [
                    (round(t, 4), round(dt, 5)) for t, dt, err, _i in events if err is None
                ],
            }
        )
        _storm_stats(rec)
        return rec

    def summarize(self, records: list[Record], s: Settings) -> list[Block]:
        case = self.cases(s)[0]
        rows = []
        for pool in self.pool_names(s.pools):
            recs = report.ok_records(records, case=case.label, pool=pool)
            if not recs:
                continue
            for r in recs:
                if "_events" in r:
                    _storm_stats(r)  # windows may have been re-defined since the run

            def m(win: str, key: str, recs: list[Record] = recs) -> float:
                return median(r[win][key] for r in recs)

            steady_max = m("steady", "max")
            rows.append(
                [
                    pool + (" (no expiry)" if pool == "dbutils" else ""),
                    m("steady", "per_s"),
                    _ms(m("steady", "p50")),
                    _ms(m("steady", "p99")),
                    _ms(steady_max),
                    m("storm", "per_s"),
                    _ms(m("storm", "p50")),
                    _ms(m("storm", "p99")),
                    _ms(m("storm", "max")),
                    report.ratio(m("storm", "max"), steady_max),
                    _ms(median(r["longest_s"] for r in recs)),
                    median(r["connects_by_requests"] for r in recs),
                    median(r["connects_in_run"] for r in recs),
                ]
            )
        return [
            Block(
                f"S3 expiry storm, {case.label} (median of {s.repeats})",
                [
                    "pool",
                    "steady q/s",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "storm q/s",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "storm max / steady max",
                    "longest ms",
                    "connects by requests",
                    "connects",
                ],
                rows,
                [
                    "steady = from 0.5 s until 1 s before the first connection can expire "
                    "(none when a pool's serial warm-up leaves < 1 s; DBUtils: the whole "
                    "run); storm = first expiry - 1 s to last expiry + 1 s; longest = "
                    "longest query of the whole run; connects counted after the warm-up "
                    "(by requests = in a request thread, not the pool's own)"
                ],
            )
        ]

    def plot(self, records: list[Record], s: Settings, out: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        case = self.cases(s)[0]
        panels = []
        for pool in self.pool_names(s.pools):
            recs = [
                r for r in report.ok_records(records, case=case.label, pool=pool) if "_events" in r
            ]
            if recs:
                panels.append((pool, _median_record(recs, lambda r: r["storm"]["max"])))
        if not panels:
            return []
        fig, axes = plt.subplots(
            len(panels), 1, figsize=(9, 6), dpi=100, sharex=True, sharey=True, squeeze=False
        )
        for ax, (pool, rec) in zip(axes[:, 0], panels, strict=True):
            ev = _thin(rec["_events"], 6000)
            ax.scatter(
                [t for t, _ in ev],
                [dt * 1000 for _, dt in ev],
                s=2 if len(ev) > 3000 else 4,
                alpha=0.4 if len(ev) > 3000 else 0.6,
                linewidths=0,
                rasterized=True,
            )
            lo, hi = rec["windows_s"]["storm"]
            if pool != "dbutils" and not math.isnan(lo):
                ax.axvspan(lo, hi, color="tab:red", alpha=0.08, lw=0)
            ax.set_yscale("log")
            label = pool + (" (no expiry)" if pool == "dbutils" else "")
            ax.text(
                0.005,
                0.92,
                f"{label}: longest {rec['longest_s'] * 1000:.0f} ms, "
                f"{rec['connects_by_requests']} connects paid by requests",
                transform=ax.transAxes,
                va="top",
                fontsize=8,
            )
            ax.grid(True, which="major", alpha=0.3)
        axes[-1, 0].set_xlabel("seconds since the workers started (shaded: storm window)")
        fig.supylabel("query latency, ms (log)")
        fig.suptitle(
            f"S3 expiry storm: {case.label}; each dot = one checkout + SELECT 1 + checkin",
            fontsize=9,
        )
        fig.tight_layout()
        path = out / "s3-expiry-storm.png"
        _save_small(fig, path)
        plt.close(fig)
        return [path]


def _storm_stats(rec: Record) -> None:
    """S3 windows and their latency figures, from the run's timeline.

    storm = [first birth + shortest lifetime - 1 s, last birth + lifetime + 1 s];
    steady = [0.5 s, storm start) if that is at least 1 s long (a pool whose warm-up
    took longer, connecting one at a time, has none), or the whole run for a pool
    without expiry.
    """
    events = rec["_events"]
    end = max((t + dt for t, dt in events), default=math.nan)
    births = rec["births_s"]
    if births:
        storm = (
            births[0] + rec["shortest_lifetime_s"] - 1.0,
            births[1] + rec["lifetime_s"] + 1.0,
        )
    else:
        storm = (math.nan, math.nan)
    if not rec["expires"]:
        steady = (0.5, end)
    elif storm[0] - 0.5 >= 1.0:
        steady = (0.5, storm[0])
    else:
        steady = (math.nan, math.nan)

    def window(lo: float, hi: float) -> dict[str, float]:
        lat = sorted(dt for t, dt in events if lo <= t < hi)
        span = hi - lo
        return {
            "n": len(lat),
            "per_s": len(lat) / span if span > 0 else math.nan,
            "p50": percentile(lat, 50),
            "p99": percentile(lat, 99),
            "max": lat[-1] if lat else math.nan,
        }

    rec["windows_s"] = {"steady": steady, "storm": storm}
    rec["steady"] = window(*steady)
    rec["storm"] = window(*storm)


# ------------------------------------------------------------------------------------- S4


class Cold(Scenario):
    """S4: many threads hit an empty pool at once over slow connects.

    A pool that connects under its lock (playhouse.pool, DBUtils) lets one connect run at
    a time, so the last thread queries after about N x connect latency.
    """

    name = "s4"
    title = "S4 cold start"
    summary = "50 threads, empty pool, +0.2 s per connect: time until all have queried"
    pools = ("ours", "peewee", "sqlalchemy", "dbutils", "dedicated")

    def cases(self, s: Settings) -> list[Case]:
        label = f"{s.cold_threads} threads, connect +{s.connect_delay * 1000:g} ms"
        return [Case(label, {"threads": s.cold_threads, "connect_delay": s.connect_delay})]

    def configure(self, ctx: Context, case: Case) -> None:
        super().configure(ctx, case)
        ctx.proxy.set("connect_delay", case.params["connect_delay"])

    def measure(self, ctx: Context, pool: str, case: Case) -> Record:
        n = case.params["threads"]
        pr = run_pool(
            ctx, pool, PoolConfig(size=n), threads=n, warm=False, units=1, log_queries=True
        )
        rec = pr.record()
        rec["query_done_s"] = pr.queries()
        rec["all_queried_s"] = rec["query_done_s"][-1] if rec["query_done_s"] else math.nan
        connects = pr.connects()
        rec["connects"] = len(connects)
        rec["connect_s"] = median(dt for _t, dt, _w, ok in connects if ok)
        return rec

    def summarize(self, records: list[Record], s: Settings) -> list[Block]:
        case = self.cases(s)[0]
        rows = []
        med: dict[str, float] = {}
        for pool in self.pool_names(s.pools):
            recs = report.ok_records(records, case=case.label, pool=pool)
            if not recs:
                continue
            queried = [r["all_queried_s"] for r in recs]
            med[pool] = median(queried)
            rows.append(
                [
                    pool,
                    med[pool],
                    None,
                    min(queried),
                    max(queried),
                    median(r["query_done_s"][len(r["query_done_s"]) // 2] for r in recs),
                    median(r["elapsed_s"] for r in recs),
                    median(r["connect_s"] for r in recs),
                    sum(r["errors"] for r in recs),
                ]
            )
        floor = med.get("dedicated", math.nan)
        for row in rows:
            row[2] = report.ratio(row[1], floor)
        return [
            Block(
                f"S4 cold start, {case.label}, empty pool (median of {s.repeats})",
                [
                    "pool",
                    "all queried s",
                    "x dedicated",
                    "min",
                    "max",
                    "median thread s",
                    "all returned s",
                    "one connect s",
                    "errors",
                ],
                rows,
                [
                    "all queried = from the common start until the last thread has its "
                    "SELECT 1 result; all returned = until the last checkin returned; "
                    "dedicated = each thread opens its own connection at once (the floor)"
                ],
            )
        ]

    def plot(self, records: list[Record], s: Settings, out: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        case = self.cases(s)[0]
        fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
        drawn = False
        last = 1.0
        for pool in self.pool_names(s.pools):
            recs = report.ok_records(records, case=case.label, pool=pool)
            if not recs:
                continue
            rec = _median_record(recs, lambda r: r["all_queried_s"])
            done = rec["query_done_s"]
            if not done:
                continue
            xs = [t for t in done for _ in (0, 1)]
            ys = [v for i in range(len(done)) for v in (i, i + 1)]
            last = max(last, done[-1])
            style = _STYLE.get(pool, {})
            ax.plot(xs, ys, label=f"{pool}: all queried at {done[-1]:.2f} s", **style)
            drawn = True
        if not drawn:
            plt.close(fig)
            return []
        ax.set_xscale("log")
        ax.set_xlim(0.1, last * 1.5)
        ax.set_xlabel("seconds since the threads started (log)")
        ax.set_ylabel("queries done (1 per thread)")
        ax.set_title(f"S4 cold start: {case.label}, empty pool", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        path = out / "s4-cold-start.png"
        _save_small(fig, path)
        plt.close(fig)
        return [path]


# ------------------------------------------------------------------------------------- S5


class Outage(Scenario):
    """S5: the database blackholed for 5 s under load, then restored.

    Every pool alike: PyMySQL ``connect_timeout`` = ``read_timeout`` = ``write_timeout`` =
    2 s, checkout timeout 1 s (ours ``timeout``, peewee ``timeout``, QueuePool
    ``timeout``; DBUtils has none and blocks until a connection is free).  The proxy holds
    every byte and every new connect during the blackhole, then delivers them
    (``restore()``: a network that comes back).  Recovery = end of the first 0.5 s window
    after the restore whose successful units/s reach 90 % of the rate before the outage
    (see :func:`_outage_stats`).
    """

    name = "s5"
    title = "S5 outage"
    summary = "32 threads, 1 ms, database blackholed 5 s then restored: blocking, errors, recovery"
    pools = ("ours", "peewee", "sqlalchemy", "dbutils")

    def cases(self, s: Settings) -> list[Case]:
        label = (
            f"{s.outage_threads} threads, {s.outage_latency_ms:g} ms one-way, blackhole "
            f"{s.outage_length:g} s"
        )
        return [Case(label, {"threads": s.outage_threads})]

    def configure(self, ctx: Context, case: Case) -> None:
        super().configure(ctx, case)
        ctx.proxy.set_latency(ctx.settings.outage_latency_ms / 1000)

    def measure(self, ctx: Context, pool: str, case: Case) -> Record:
        s = ctx.settings
        n = case.params["threads"]
        timeout = s.outage_read_timeout
        target = dataclasses.replace(
            ctx.via_proxy,
            extra={"connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout},
        )
        stamps: dict[str, float] = {}

        def outage(released: float) -> None:
            _sleep_until(released + s.outage_before)
            stamps["down"] = time.perf_counter()
            ctx.proxy.call("blackhole")
            _sleep_until(stamps["down"] + s.outage_length)
            stamps["up"] = time.perf_counter()
            ctx.proxy.call("restore")

        config = PoolConfig(size=n, checkout_timeout=s.outage_checkout_timeout)
        total = s.outage_before + s.outage_length + s.outage_after
        try:
            pr = run_pool(
                ctx,
                pool,
                config,
                threads=n,
                warm=True,
                duration=total,
                target=target,
                record=True,
                during=outage,
            )
        finally:
            if ctx.proxy.get("blackholed"):
                ctx.proxy.call("restore")
        rec = pr.record()
        run = pr.run
        events = run.events()
        down, up = stamps["down"] - run.start, stamps["up"] - run.start
        end = max((t + dt for t, dt, _e, _i in events), default=up)
        busy = [t.busy_since - run.start for t in run.threads if t.busy_since is not None]
        longest = max(events, key=lambda e: e[1], default=None)
        errors = collections.Counter(err for _t, _dt, err, _i in events if err is not None)
        rec.update(
            {
                "errors_expected": True,
                "outage_s": [down, up],
                "end_s": end,
                "longest_unit_s": longest[1] if longest else 0.0,
                "longest_blocked_at_s": longest[0] if longest else None,
                "still_busy_s": max((end - b for b in busy), default=0.0),
                "errors_by_type": dict(errors),
                "_ok_ends": sorted(round(t + dt, 4) for t, dt, err, _i in events if err is None),
            }
        )
        _outage_stats(rec)
        return rec

    def summarize(self, records: list[Record], s: Settings) -> list[Block]:
        case = self.cases(s)[0]
        rows = []
        for pool in self.pool_names(s.pools):
            recs = report.ok_records(records, case=case.label, pool=pool)
            if not recs:
                continue
            types: collections.Counter[str] = collections.Counter()
            for r in recs:
                if "_ok_ends" in r:
                    _outage_stats(r)
                types.update(r["errors_by_type"])
            per_run = ", ".join(
                f"{k} {v / len(recs):.{0 if v % len(recs) == 0 or v >= 10 * len(recs) else 1}f}"
                for k, v in types.most_common()
            )
            rows.append(
                [
                    pool,
                    median(r["before_per_s"] for r in recs),
                    median(r["longest_blocked_s"] for r in recs),
                    median(r["errors"] for r in recs),
                    per_run or "none",
                    median(r["first_ok_after_s"] for r in recs),
                    median(r["recovery_s"] for r in recs),
                    median(r["after_per_s"] for r in recs),
                ]
            )
        return [
            Block(
                f"S5 outage, {case.label} (median of {s.repeats})",
                [
                    "pool",
                    "before units/s",
                    "longest blocked s",
                    "errors",
                    "errors by type (per run)",
                    "first ok after restore s",
                    "recovery s",
                    "units/s at end",
                ],
                rows,
                [
                    f"PyMySQL connect/read/write timeout {s.outage_read_timeout:g} s and "
                    f"checkout timeout {s.outage_checkout_timeout:g} s for every pool (DBUtils "
                    "has no checkout timeout); blocked = longest single call (error or not); "
                    "recovery = restore to the start of the first 0.5 s window back at "
                    ">= 90 % of the rate before the outage"
                ],
            )
        ]


def _outage_stats(rec: Record) -> None:
    """S5 figures from the timeline of successful units (recomputable from saved runs).

    before = successful units/s in [0.5 s, blackhole); recovery = from the restore to the
    start of the first 0.5 s window (sliding by 0.05 s) whose rate reaches 90 % of before.
    """
    oks = rec["_ok_ends"]
    down, up = rec["outage_s"]
    end = rec["end_s"]
    before = _count_between(oks, 0.5, down)
    before_rate = before / (down - 0.5) if down > 0.5 else math.nan
    recovery = math.nan
    step, width = 0.05, 0.5
    lo = up
    while lo + width <= end:
        if _count_between(oks, lo, lo + width) / width >= 0.9 * before_rate:
            recovery = lo - up
            break
        lo += step
    after = [t for t in oks if t >= up]
    rec["before_per_s"] = before_rate
    rec["longest_blocked_s"] = max(rec["longest_unit_s"], rec["still_busy_s"])
    rec["ok_during_outage"] = _count_between(oks, down, up)
    rec["first_ok_after_s"] = (after[0] - up) if after else math.nan
    rec["recovery_s"] = recovery
    rec["after_per_s"] = _count_between(oks, end - 1.0, end) / 1.0 if oks else 0.0


def _sleep_until(deadline: float) -> None:
    """Follow a schedule (perf_counter deadline): there is no event to wait for."""
    while (left := deadline - time.perf_counter()) > 0:
        time.sleep(min(left, 0.05))


def _count_between(sorted_times: list[float], lo: float, hi: float) -> int:
    import bisect

    return bisect.bisect_left(sorted_times, hi) - bisect.bisect_left(sorted_times, lo)


# ------------------------------------------------------------------------------------- S6


class EndToEnd(Scenario):
    """S6: the example app under waitress vs the same app on FlaskDB + playhouse.pool."""

    name = "s6"
    title = "S6 end to end"
    summary = "example_app under waitress + HTTP load generator: ours vs FlaskDB, 0/1 ms"
    pools = ("ours", "peewee")

    def cases(self, s: Settings) -> list[Case]:
        return [
            Case(
                f"waitress {s.e2e_server_threads} threads, {s.e2e_clients} keep-alive "
                f"clients, {lat:g} ms one-way",
                {"latency_ms": lat},
            )
            for lat in s.e2e_latencies_ms
        ]

    def configure(self, ctx: Context, case: Case) -> None:
        super().configure(ctx, case)
        ctx.proxy.set_latency(case.params["latency_ms"] / 1000)

    def measure(self, ctx: Context, pool: str, case: Case) -> Record:
        from . import e2e

        return e2e.measure(ctx, pool, case)

    def summarize(self, records: list[Record], s: Settings) -> list[Block]:
        rows = []
        for case in self.cases(s):
            med: dict[str, float] = {}
            case_rows: dict[str, list[Any]] = {}
            for pool in self.pool_names(s.pools):
                recs = report.ok_records(records, case=case.label, pool=pool)
                if not recs:
                    continue
                med[pool] = median(r["requests_per_s"] for r in recs)
                case_rows[pool] = [
                    f"{case.params['latency_ms']:g} ms",
                    pool,
                    med[pool],
                    None,
                    median(_ms(r["latency_s"]["p50"]) for r in recs),
                    median(_ms(r["latency_s"]["p99"]) for r in recs),
                    sum(r["http_errors"] for r in recs),
                    median(r["cores"].get("server") for r in recs),
                    median(r["cores"].get("loadgen") for r in recs),
                    median(r["cores"].get("proxy") for r in recs),
                    median(r["cores"].get("db") for r in recs),
                    median(r["cores"].get("other") for r in recs),
                ]
            if "ours" in case_rows:
                case_rows["ours"][3] = report.ratio(med["ours"], med.get("peewee", math.nan))
            rows.extend(case_rows.values())
        return [
            Block(
                f"S6 end to end, GET /api/notes/<id> (median of {s.repeats})",
                [
                    "one-way",
                    "app",
                    "req/s",
                    "x peewee",
                    "p50 ms",
                    "p99 ms",
                    "non-200",
                    "cpu server",
                    "cpu loadgen",
                    "cpu proxy",
                    "cpu db",
                    "cpu other",
                ],
                rows,
                [
                    f"waitress threads={s.e2e_server_threads}, pool max_connections="
                    f"{s.e2e_server_threads}; load: {s.e2e_clients} threads, http.client "
                    "keep-alive, in another process; one request = one SELECT by primary key"
                ],
            )
        ]


# ---------------------------------------------------------------------------------- proxy


class ProxyCost(Scenario):
    """What the Python proxy itself costs: dedicated connections direct vs through it at 0 ms.

    With 1 thread the difference in p50 is the latency the proxy adds per round trip;
    with many threads it competes with the client and the server for the same cores,
    lowering the ceiling every pool is measured against.  "proxy us/RT" is the proxy's
    CPU per round trip (both chunks).
    """

    name = "proxy"
    title = "Proxy calibration"
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

    def measure(self, ctx: Context, pool: str, case: Case) -> Record:
        n = case.params["threads"]
        target = ctx.direct if case.params["direct"] else ctx.via_proxy
        pr = run_pool(
            ctx,
            pool,
            PoolConfig(size=n),
            threads=n,
            warm=True,
            duration=case.params["duration"],
            target=target,
        )
        return pr.record()

    def summarize(self, records: list[Record], s: Settings) -> list[Block]:
        rows = []
        medians: dict[tuple[int, bool], float] = {}
        for case in self.cases(s):
            recs = report.ok_records(records, case=case.label)
            if not recs:
                continue
            key = (case.params["threads"], case.params["direct"])
            medians[key] = median(r["units_per_s"] for r in recs)
            via = not case.params["direct"]
            rows.append(
                [
                    case.label,
                    medians[key],
                    median(_ms(r["latency_s"]["p50"]) for r in recs),
                    median(_ms(r["latency_s"]["p99"]) for r in recs),
                    median(_cores(r, "cpu_client_s") for r in recs),
                    median(_cores(r, "cpu_proxy_s") for r in recs) if via else None,
                    median(_proxy_us_per_rt(r) for r in recs) if via else None,
                    median(_cores(r, "cpu_server_s") for r in recs),
                    median(_other_cores(r) for r in recs),
                ]
            )
        notes = []
        for n in sorted({1, s.steady_threads}):
            if (n, True) in medians and (n, False) in medians:
                r = report.ratio(medians[n, False], medians[n, True])
                notes.append(f"{n} thread(s): through the proxy = {report.fmt(r)} of direct")
        return [
            Block(
                f"Proxy calibration: dedicated connections, SELECT 1, 0 ms (median of {s.repeats})",
                [
                    "case",
                    "queries/s",
                    "p50 ms",
                    "p99 ms",
                    "cpu client",
                    "cpu proxy",
                    "proxy us/RT",
                    "cpu server",
                    "cpu other",
                ],
                rows,
                notes,
            )
        ]


def _proxy_us_per_rt(rec: Record) -> float | None:
    cpu, chunks = rec["counters"].get("cpu_proxy_s"), rec["counters"].get("chunks_up")
    return cpu / chunks * 1e6 if cpu is not None and chunks else None


SCENARIOS: dict[str, Scenario] = {
    sc.name: sc
    for sc in (Overhead(), Steady(), ExpiryStorm(), Cold(), Outage(), EndToEnd(), ProxyCost())
}
ALIASES = {
    "overhead": "s1",
    "steady": "s2",
    "expiry": "s3",
    "storm": "s3",
    "cold": "s4",
    "outage": "s5",
    "e2e": "s6",
}


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
