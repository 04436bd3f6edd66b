"""Medians, ratios, plain-text tables and the JSON results file.

Why medians: each pool runs ``repeats`` times in rotated order; the median of a few
runs resists one run disturbed by the other tenants of a 2-core machine.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


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
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

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
            lines.append(f"{where} repeat {r.get('repeat')}: FAILED {r['error']}")
        else:
            if r.get("errors"):
                lines.append(f"{where}: {r['errors']} unit errors, first {r.get('first_error')}")
            if r.get("hung_threads"):
                lines.append(f"{where}: {r['hung_threads']} threads still running at the bound")
            if r.get("leftover_connections"):
                lines.append(f"{where}: {r['leftover_connections']} connections left open")
    return lines


def write_json(out_dir: Path, name: str, payload: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(json.dumps(payload, indent=1, default=str, allow_nan=True) + "\n")
    return path
