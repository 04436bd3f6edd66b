"""S5: the database blackholed for 5 s under load, then restored."""

from __future__ import annotations

import collections
import dataclasses
import math
import time

from . import harness
from .harness import Case, Context, Record, Scenario, Settings
from .pools import PoolConfig
from .report import Block, median


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
            pr = harness.run_pool(
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
        for pool, recs in self.runs_by_pool(records, s, case):
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
