"""``manage.py pool_stats``: the same report and exit code as ``flask pool-stats``."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...ops import commands
from ._common import clear_for, echo_for, finish, positive_seconds, runtime


class Command(BaseCommand):
    help = ("Connections of every live process of this project on this host, with totals; "
            "with --server, the connections as the database server lists them.")
    requires_system_checks: Any = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print one JSON document (one per line with --watch).")
        parser.add_argument("--watch", type=positive_seconds, default=None, metavar="SECONDS",
                            help="Refresh every SECONDS until Ctrl-C.")
        parser.add_argument("--server", action="store_true",
                            help="The database server's view instead: every client "
                                 "connection it lists, by host, application and process.")
        parser.add_argument("--no-server", action="store_true",
                            help="Do not connect to the database to read its settings.")
        parser.add_argument("--count", type=int, default=None,
                            help=argparse.SUPPRESS)  # with --watch: stop after N refreshes

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            code = commands.pool_stats(
                runtime(), echo_for(self), as_json=options["as_json"],
                watch=options["watch"], server=options["server"],
                no_server=options["no_server"], count=options["count"],
                clear=clear_for(self))
        except commands.UsageError as exc:
            raise CommandError(str(exc), returncode=2) from None
        finish(code)
