"""Attribution: every server connection says who owns it.

PostgreSQL's ``application_name`` and MySQL/MariaDB's ``program_name`` connection attribute
carry the label ``<application name>[<pid>]`` (:func:`connection_label`), computed at each
connect so a forked worker's connections carry its own pid. ``flask pool-stats --server``
reads it back from ``pg_stat_activity`` / ``performance_schema.session_connect_attrs``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from .errors import ConfigError

#: PostgreSQL keeps ``NAMEDATALEN - 1`` = 63 bytes of ``application_name`` and silently
#: drops the rest; labels are cut to this length on both servers, the ``[pid]`` kept whole.
LABEL_MAX_BYTES = 63


_LABEL = re.compile(r"^(?P<name>.*)\[(?P<pid>\d{1,10})\]$", re.DOTALL)


def connection_label(name: str, pid: int | None = None) -> str:
    """``<name>[<pid>]``: what the server shows as the owner of a connection.

    Characters outside printable ASCII become ``?`` (PostgreSQL would otherwise escape or
    replace them, and the label must read back the same from either server); the name is
    cut so the whole label fits in :data:`LABEL_MAX_BYTES`, never the pid.
    """
    suffix = f"[{os.getpid() if pid is None else pid}]"
    clean = "".join(c if " " <= c <= "~" else "?" for c in str(name))
    return clean[: max(0, LABEL_MAX_BYTES - len(suffix))] + suffix


def parse_label(label: str | None) -> tuple[str | None, int | None]:
    """``(name, pid)`` from a :func:`connection_label`; ``(label, None)`` for any other text
    (a client that is not this library); ``(None, None)`` for an empty one."""
    if not label:
        return None, None
    match = _LABEL.match(label)
    if match is None:
        return label, None
    return match.group("name"), int(match.group("pid"))


def normalize_application_name(value: Any, *, setting: str = "application_name") -> str | None:
    """The name part of the label: a string; None = the default (the pool's name); ``""``
    switches the label off (nothing is sent, the driver's own default applies)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(setting, f"expected a string, got {type(value).__name__}")
    return str(value).strip()
