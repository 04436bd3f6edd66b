"""S6: the example app under waitress, ours vs FlaskDB + playhouse.pool."""

from __future__ import annotations

import math
from typing import Any

from . import harness, report
from .harness import Case, Context, Record, Scenario, Settings
from .report import Block, median


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
            for pool, recs in self.runs_by_pool(records, s, case):
                med[pool] = median(r["requests_per_s"] for r in recs)
                case_rows[pool] = [
                    f"{case.params['latency_ms']:g} ms",
                    pool,
                    med[pool],
                    None,
                    median(harness.ms(r["latency_s"]["p50"]) for r in recs),
                    median(harness.ms(r["latency_s"]["p99"]) for r in recs),
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
