"""S2: a full, warm pool under constant load at 0, 1 and 5 ms one-way."""

from __future__ import annotations

import math

from . import harness, report
from .harness import Case, Context, Record, Scenario, Settings
from .pools import PoolConfig
from .report import Block, median


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
        pr = harness.run_pool(
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
                        median(harness.ms(r["latency_s"]["p50"]) for r in recs),
                        median(harness.ms(r["latency_s"]["p99"]) for r in recs),
                        median(r["round_trips_per_unit"] for r in recs),
                        median(harness.cores(r, "cpu_client_s") for r in recs),
                        median(harness.cores(r, "cpu_proxy_s") for r in recs),
                        median(harness.cores(r, "cpu_server_s") for r in recs),
                        median(harness.other_cores(r) for r in recs),
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
