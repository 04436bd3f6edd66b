"""S3: every connection born in the same instant reaches its lifetime together."""

from __future__ import annotations

import math
from pathlib import Path

from . import harness, report
from .harness import Case, Context, Record, Scenario, Settings
from .pools import PoolConfig
from .report import Block, median, percentile


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
        pr = harness.run_pool(
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
        for pool, recs in self.runs_by_pool(records, s, case):
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
                    harness.ms(m("steady", "p50")),
                    harness.ms(m("steady", "p99")),
                    harness.ms(steady_max),
                    m("storm", "per_s"),
                    harness.ms(m("storm", "p50")),
                    harness.ms(m("storm", "p99")),
                    harness.ms(m("storm", "max")),
                    report.ratio(m("storm", "max"), steady_max),
                    harness.ms(median(r["longest_s"] for r in recs)),
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
        plt = harness.pyplot()
        case = self.cases(s)[0]
        panels = []
        for pool in self.pool_names(s.pools):
            recs = [
                r for r in report.ok_records(records, case=case.label, pool=pool) if "_events" in r
            ]
            if recs:
                panels.append((pool, harness.median_record(recs, lambda r: r["storm"]["max"])))
        if not panels:
            return []
        fig, axes = plt.subplots(
            len(panels), 1, figsize=(9, 6), dpi=100, sharex=True, sharey=True, squeeze=False
        )
        for ax, (pool, rec) in zip(axes[:, 0], panels, strict=True):
            ev = harness.thin(rec["_events"], 6000)
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
        harness.save_small(fig, path)
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
