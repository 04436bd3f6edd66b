"""S4: many threads hit an empty pool at once over slow connects."""

from __future__ import annotations

import math
from pathlib import Path

from . import harness, report
from .harness import Case, Context, Record, Scenario, Settings
from .pools import PoolConfig
from .report import Block, median


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
        pr = harness.run_pool(
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
        for pool, recs in self.runs_by_pool(records, s, case):
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
        plt = harness.pyplot()
        case = self.cases(s)[0]
        fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
        drawn = False
        last = 1.0
        for pool, recs in self.runs_by_pool(records, s, case):
            rec = harness.median_record(recs, lambda r: r["all_queried_s"])
            done = rec["query_done_s"]
            if not done:
                continue
            xs = [t for t in done for _ in (0, 1)]
            ys = [v for i in range(len(done)) for v in (i, i + 1)]
            last = max(last, done[-1])
            style = harness.STYLE.get(pool, {})
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
        harness.save_small(fig, path)
        plt.close(fig)
        return [path]
