"""``manage.py pool_drain``: the same request, report and exit code as ``flask pool-drain``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...ops import commands
from ._common import echo_for, finish, positive_seconds, runtime


class Command(BaseCommand):
    help = ("Replace every connection of every live process of this project, gracefully "
            "(idle ones at once, busy ones when returned); exit 0 when all did, 1 if not "
            "within --timeout.")
    requires_system_checks: Any = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-wait", action="store_true",
                            help="Write the request and exit; the processes drain at their "
                                 "next tick.")
        parser.add_argument("--timeout", type=positive_seconds,
                            default=commands.DEFAULT_DRAIN_TIMEOUT, metavar="SECONDS",
                            help="Longest to wait for every process; then exit 1 (default "
                                 f"{commands.DEFAULT_DRAIN_TIMEOUT:g}).")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print one JSON document.")

    def handle(self, *args: Any, **options: Any) -> None:
        finish(commands.pool_drain(runtime(), echo_for(self), wait=not options["no_wait"],
                                   timeout=options["timeout"], as_json=options["as_json"]))
