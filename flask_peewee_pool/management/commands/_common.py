"""What ``pool_stats`` and ``pool_check`` share: the runtime, an echo, the exit code."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...adapters.django_ext import get_state
from ...core.errors import ConfigError
from ...integration.runtime import PoolRuntime


def runtime() -> PoolRuntime:
    """The project's pool, built from ``settings.PEEWEE_POOL`` (errors name the key)."""
    try:
        return get_state()
    except ConfigError as exc:  # one line naming the key, exit 1: no traceback
        raise CommandError(str(exc)) from None


def echo_for(command: BaseCommand) -> Any:
    def echo(text: str, err: bool) -> None:
        (command.stderr if err else command.stdout).write(text)

    return echo


def clear_for(command: BaseCommand) -> Any:
    def clear() -> None:
        command.stdout.write("\033[2J\033[H", ending="")

    return clear


def finish(code: int) -> None:
    """Exit with ``code`` as ``flask pool-*`` does (0: return normally)."""
    if code:
        sys.exit(code)


def positive_seconds(text: str) -> float:
    """argparse type for ``--timeout`` / ``--watch``: a number of seconds above 0."""
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value
