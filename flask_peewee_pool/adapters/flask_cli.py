"""``flask pool-stats`` and ``flask pool-check``: click options in, :mod:`..ops.commands` out.

``pool-stats`` answers "what are my server processes doing with their connections?" (one
row per live process, from their snapshots, with totals, the server's limits and
warnings); ``pool-stats --server`` "who holds connections to this database server, from
every host?"; ``pool-check`` "can this process reach the database right now, and how
fast?" (exit 0 or 1, bounded by ``--timeout``: fit for a readiness probe); ``pool-drain``
"replace every connection of every process, without failing a request". The reports
themselves are framework-neutral (:mod:`flask_peewee_pool.ops`); Django's ``manage.py
pool_stats`` / ``pool_check`` / ``pool_drain`` print the same. Neither ever prints a password.
"""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from ..integration.runtime import PoolRuntime
from ..ops import commands
from ..ops.check import DEFAULT_TIMEOUT

__all__ = ["EXTENSION_KEY", "pool_check_command", "pool_drain_command", "pool_stats_command",
           "register_commands"]

#: Where the extension keeps its :class:`PoolRuntime` in ``app.extensions``.
EXTENSION_KEY = "peewee_pool"


def register_commands(app: Flask) -> None:
    """Add ``pool-stats``, ``pool-check`` and ``pool-drain`` to ``app.cli`` (``init_app``)."""
    app.cli.add_command(pool_stats_command)
    app.cli.add_command(pool_check_command)
    app.cli.add_command(pool_drain_command)


def _runtime() -> PoolRuntime:
    state = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise click.ClickException(
            f"flask-peewee-pool is not set up on app {current_app.name!r}: "
            "call PeeweePool(app) or pool.init_app(app) in the app factory")
    return state  # type: ignore[no-any-return]


def _echo(text: str, err: bool) -> None:
    click.echo(text, err=err)


def _exit(code: int) -> None:
    if code:
        raise click.exceptions.Exit(code)


@click.command("pool-stats")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document (one per line with --watch).")
@click.option("--watch", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Refresh every SECONDS until Ctrl-C.")
@click.option("--server", "server_view_", is_flag=True,
              help="The database server's view instead: every client connection it lists "
                   "(every host of the fleet), by host, application and process, against "
                   "its max_connections.")
@click.option("--no-server", is_flag=True,
              help="Do not connect to the database to read its settings.")
@click.option("--count", type=click.IntRange(min=1), default=None, hidden=True,
              help="With --watch: stop after this many refreshes.")
@with_appcontext
def pool_stats_command(as_json: bool, watch: float | None, server_view_: bool,
                       no_server: bool, count: int | None) -> None:
    """Connections of every live process of this app on this host, with totals.

    With --server: the connections as the database server lists them, from every host.
    """
    try:
        code = commands.pool_stats(_runtime(), _echo, as_json=as_json, watch=watch,
                                   server=server_view_, no_server=no_server, count=count,
                                   clear=click.clear)
    except commands.UsageError as exc:
        raise click.UsageError(str(exc)) from None
    _exit(code)


@click.command("pool-check")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--connections", type=click.IntRange(min=1, max=100), default=2,
              show_default=True, help="Connections to open and ping at once.")
@click.option("--strict", is_flag=True, help="Exit 1 on configuration warnings too.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_TIMEOUT, show_default=True, metavar="SECONDS",
              help="Longest the whole check may take; then FAIL.")
@with_appcontext
def pool_check_command(as_json: bool, connections: int, strict: bool, timeout: float) -> None:
    """Connect, ping, read the server's limits; exit 0 if healthy, 1 if not.

    Fit for a readiness probe: a connect error is one line on stderr, without a traceback
    or a password; the whole check ends within --timeout. Configuration warnings are
    reported but only fail with --strict.
    """
    _exit(commands.pool_check(_runtime(), _echo, as_json=as_json, connections=connections,
                              strict=strict, timeout=timeout))


@click.command("pool-drain")
@click.option("--no-wait", is_flag=True,
              help="Write the request and exit; the processes drain at their next tick.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              default=commands.DEFAULT_DRAIN_TIMEOUT, show_default=True, metavar="SECONDS",
              help="Longest to wait for every process; then exit 1.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@with_appcontext
def pool_drain_command(no_wait: bool, timeout: float, as_json: bool) -> None:
    """Replace every connection of every live process of this app, gracefully.

    Idle connections are replaced at once, busy ones when returned; no request fails. For
    a fail-over, a password change, a server restart. Waits until every process's
    snapshot shows no connection opened before the request: exit 0, or 1 after --timeout.
    """
    _exit(commands.pool_drain(_runtime(), _echo, wait=not no_wait, timeout=timeout,
                              as_json=as_json))
