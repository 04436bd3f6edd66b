"""``manage.py pool_check``: the same check, output and exit code as ``flask pool-check``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...ops import commands
from ...ops.check import DEFAULT_TIMEOUT
from ._common import echo_for, finish, positive_seconds, runtime


def _connections(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = ("Connect, ping, read the server's limits; exit 0 if healthy, 1 if not (a "
            "readiness probe: the whole check ends within --timeout).")
    requires_system_checks: Any = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print one JSON document.")
        parser.add_argument("--connections", type=_connections, default=2,
                            help="Connections to open and ping at once (default 2).")
        parser.add_argument("--strict", action="store_true",
                            help="Exit 1 on configuration warnings too.")
        parser.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT,
                            metavar="SECONDS", help="Longest the whole check may take; "
                            f"then FAIL (default {DEFAULT_TIMEOUT:g}).")

    def handle(self, *args: Any, **options: Any) -> None:
        finish(commands.pool_check(
            runtime(), echo_for(self), as_json=options["as_json"],
            connections=options["connections"], strict=options["strict"],
            timeout=options["timeout"]))
