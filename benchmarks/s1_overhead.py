"""S1: each pool's own cost per checkout + checkin, fake zero-latency driver."""

from __future__ import annotations

import math
from collections.abc import Sequence

from . import harness, report
from .fakes import FAKES
from .harness import Case, Context, Record, Scenario, Settings
from .report import Block, median
from .runner import Meters, run_workers, summary


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
                        harness.cores(r, "cpu_client_s")
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
