"""Medians, ratios, tables (plain text and Markdown) and the JSON results file.

Why medians: each pool runs ``repeats`` times in rotated order; the median of a few
runs resists one run disturbed by the other tenants of a 2-core machine.  Scenarios
summarise into :class:`Block` objects (title, table, notes) so the same figures print on
the terminal and go into ``--markdown`` for docs/benchmarks.md, never retyped.
"""

from __future__ import annotations

import gzip
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NO_ROWS = "FAILED: no successful run (see problems)"


@dataclass
class Block:
    """One table of a scenario's summary."""

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        if not self.rows:
            return "\n".join([self.title, NO_ROWS, *self.notes])
        return "\n".join([self.title, table(self.headers, self.rows), *self.notes])

    def markdown(self) -> str:
        if not self.rows:
            notes = [f"- {n}" for n in self.notes]
            return "\n".join([f"**{self.title}**", "", NO_ROWS, "", *notes]).rstrip()
        head = "| " + " | ".join(self.headers) + " |"
        rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.headers))) + "|"
        body = ["| " + " | ".join(fmt(c) for c in row) + " |" for row in self.rows]
        notes = [f"- {n}" for n in self.notes]
        return "\n".join([f"**{self.title}**", "", head, rule, *body, "", *notes]).rstrip()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN if empty)."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def median(values: Iterable[float | None]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers with ``digits`` significant digits; None/NaN as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned plain-text table; a header line alone when there are no rows."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        first, *rest = values
        return "  ".join(
            [first.ljust(widths[0]), *(v.rjust(w) for v, w in zip(rest, widths[1:], strict=True))]
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def ok_records(records: Iterable[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    """Records that ran (not skipped/failed) and match every ``key=value``."""
    return [
        r
        for r in records
        if "error" not in r and "skipped" not in r and all(r.get(k) == v for k, v in match.items())
    ]


def problems(records: Iterable[dict[str, Any]]) -> list[str]:
    """One line per skipped pool, failed run, erroring unit or leaked connection."""
    lines: list[str] = []
    seen_skips: set[str] = set()
    for r in records:
        where = f"{r.get('scenario')}/{r.get('case')}/{r.get('pool')}"
        if "skipped" in r:
            if r["pool"] not in seen_skips:
                seen_skips.add(r["pool"])
                lines.append(f"skipped pool {r['pool']!r}: {r['skipped']}")
        elif "error" in r:
            lines.append(f"{where} repeat {r.get('repeat')}: FAILED {one_line(r['error'])}")
        else:
            if r.get("errors") and not r.get("errors_expected"):
                lines.append(f"{where}: {r['errors']} unit errors, first {r.get('first_error')}")
            if r.get("hung_threads"):
                lines.append(f"{where}: {r['hung_threads']} threads still running at the bound")
            if r.get("leftover_connections"):
                lines.append(f"{where}: {r['leftover_connections']} connections left open")
    return lines


def failed_scenarios(records: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Scenario -> pools that ran in it and never succeeded in some case (every repeat
    failed): what the tables cannot show, since a failed run has no figures."""
    ran: dict[tuple[str, str, str], bool] = {}
    for r in records:
        if "skipped" in r:
            continue
        key = (str(r.get("scenario")), str(r.get("case")), str(r.get("pool")))
        ran[key] = ran.get(key, False) or "error" not in r
    out: dict[str, list[str]] = {}
    for (scenario, _case, pool), ok in ran.items():
        if not ok and pool not in out.setdefault(scenario, []):
            out[scenario].append(pool)
    return {k: v for k, v in out.items() if v}


def exit_status(records: Iterable[dict[str, Any]], failures: Sequence[str]) -> int:
    """1 when the run measured less than it was asked to: a failed run, a pool whose code
    does not import, or a summary/plot that could not be made; else 0.  Findings about a
    pool's behaviour (unit errors, leaked connections) are reported but are results."""
    bad = any("error" in r or "skipped" in r for r in records)
    return 1 if bad or failures else 0


def one_line(text: str, limit: int = 300) -> str:
    """An error on one line: its first line and, for a captured traceback, the last
    (where the exception itself is), so a problems list stays a list."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return ""
    head = lines[0] if len(lines[0]) <= limit else lines[0][: limit - 3] + "..."
    return head if len(lines) == 1 else f"{head} ... {lines[-1]}"


def write_json(out_dir: Path, name: str, payload: dict[str, Any]) -> Path:
    """Write the results.  Record keys starting with "_" (raw timelines, megabytes) go to
    a gzipped sidecar ``<name>.timelines.json.gz`` so :func:`load` can re-plot a run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    payload = dict(payload)
    records = payload.get("records", [])
    payload["records"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in records]
    path.write_text(json.dumps(payload, indent=1, default=str, allow_nan=True) + "\n")
    raw = {
        str(i): {k: v for k, v in r.items() if k.startswith("_")}
        for i, r in enumerate(records)
        if any(k.startswith("_") for k in r)
    }
    if raw:
        with gzip.open(_sidecar(path), "wt") as f:
            json.dump(raw, f)
    return path


def load(path: Path) -> dict[str, Any]:
    """A results file written by :func:`write_json`, timelines merged back in."""
    payload: dict[str, Any] = json.loads(path.read_text())
    side = _sidecar(path)
    if side.exists():
        with gzip.open(side, "rt") as f:
            raw = json.load(f)
        for i, extra in raw.items():
            payload["records"][int(i)].update(extra)
    return payload


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".json") + ".timelines.json.gz")
