"""Small formatting helpers shared by the reports: numbers, ages, option values, tables.

The tables are plain aligned text (eight lines of code below); a table library would add a
dependency for no gain, and the reports' exact layout is what scripts and tests read.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from ..core.redaction import redact_text

DURATIONS = frozenset({"max_lifetime", "idle_timeout", "ping_after", "keepalive", "timeout",
                        "leak_threshold", "max_backoff"})
NONE_LABELS = {"segments": "auto", "timeout": "none (waits forever)", "ping_after": "never"}


def ms(seconds: Any) -> float:
    return round(float(seconds or 0.0) * 1000.0, 3)


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, password fields masked: no traceback, ever."""
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return redact_text(message)


def where(database: dict[str, Any]) -> str:
    return str(database.get("url") or database.get("description") or "?")


def to_int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def rows_of(cursor: Any) -> list[tuple[Any, ...]]:
    """Rows as tuples whatever the cursor class (PyMySQL's DictCursor returns dicts)."""
    return [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in cursor.fetchall()]



def age(seconds: Any) -> str:
    s = int(float(seconds or 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def fmt_ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]],
           left: frozenset[int] = frozenset({0})) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def format_option(key: str, value: Any) -> str:
    if value is None:
        return NONE_LABELS.get(key, "off")
    if isinstance(value, float):
        value = f"{value:g}"
    return f"{value} s" if key in DURATIONS else str(value)


def wrap(items: Sequence[str], indent: str = "  ") -> list[str]:
    return textwrap.wrap("  ".join(items), width=100, initial_indent=indent,
                         subsequent_indent=indent, break_on_hyphens=False) or [indent]




def opt(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)

