"""The proxy's own cost: dedicated connections direct vs through it at 0 ms."""

from __future__ import annotations

from . import harness, report
from .harness import Case, Context, Record, Scenario, Settings
from .pools import PoolConfig
from .report import Block, median


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
        pr = harness.run_pool(
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
                    median(harness.ms(r["latency_s"]["p50"]) for r in recs),
                    median(harness.ms(r["latency_s"]["p99"]) for r in recs),
                    median(harness.cores(r, "cpu_client_s") for r in recs),
                    median(harness.cores(r, "cpu_proxy_s") for r in recs) if via else None,
                    median(_proxy_us_per_rt(r) for r in recs) if via else None,
                    median(harness.cores(r, "cpu_server_s") for r in recs),
                    median(harness.other_cores(r) for r in recs),
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
