"""``pool-stats --server``: the database server's own view of its client connections.

One command run anywhere sees every host of the fleet, grouped by client host and account,
by application and by process (see :mod:`.server` for the queries and :mod:`.processes`
for matching local sockets to processes).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from . import snapshots
from .format import one_line, opt, table, to_int, where
from .processes import attribute_local
from .report import setting_label
from .server import FLEET_STATES, SESSION_QUERIES, query_server
from .snapshots import ExtensionState

# ----------------------------------------------------------------------------- fleet view
#
# `pool-stats --server`: the database server's own view of its client connections, so one
# command run anywhere sees every host of the fleet. Each connection of this library
# carries the label "<application name>[<pid>]" (PostgreSQL application_name, MySQL
# program_name connection attribute), which gives application and process. MariaDB/MySQL
# expose connection attributes only in performance_schema; without it the processlist
# still gives the client host and port, and the sockets of this host (psutil) turn the
# ports of local clients into processes.


def _group(sessions: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for session in sessions:
        key = tuple(session.get(k) for k in keys)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {k: session.get(k) for k in keys}
            group.update({"connections": 0, **dict.fromkeys(FLEET_STATES, 0)})
        group["connections"] += 1
        group[session["state"]] += 1
        for extra in ("pid_source", "command"):
            if session.get(extra) and not group.get(extra):
                group[extra] = session[extra]
    return sorted(groups.values(), key=lambda g: (-g["connections"],
                                                  tuple(str(g[k]) for k in keys)))


def fleet_view(state: ExtensionState) -> dict[str, Any]:
    """The ``pool-stats --server`` document: every client connection the database server
    lists, by client host and user, by application and process, with totals against the
    server's ``max_connections``.

    Read over one dedicated connection made by the pool's driver (closed at once, and left
    out of the lists). ``error`` is set, and the lists empty, when the server cannot be read.
    """
    database = state.database
    driver = database.pool.driver
    own = snapshots.build_snapshot(state)
    application = getattr(database, "application_name", None)
    user = (getattr(database, "connect_params", None) or {}).get("user")
    doc: dict[str, Any] = {
        "view": "server",
        "app": own["app"],
        "pool": database.pool.name,
        "database": own["database"],
        "application_name": application,
        "user": user,
        "external_pooler": getattr(database, "external_pooler", None),
        "generated_at": time.time(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "max_connections_per_process": database.pool.options.max_connections,
        "max_connections_setting": setting_label(state)("MAX_CONNECTIONS"),
        "server": None,
        "sources": {},
        "by_host": [],
        "by_application": [],
        "by_process": [],
        "totals": {},
        "notes": [],
        "warnings": [],
        "error": None,
    }
    query = SESSION_QUERIES.get(driver.kind)
    if query is None:
        doc["error"] = f"no database server to ask ({driver.kind})"
        return doc
    try:
        raw = driver.connect()
    except Exception as exc:
        doc["error"] = one_line(exc)
        return doc
    try:
        server = query_server(driver.kind, raw)
        sessions, facts = query(raw)
    except Exception as exc:
        doc["error"] = one_line(exc)
        return doc
    finally:
        with contextlib.suppress(Exception):
            driver.close(raw)
    ports = set(facts.get("ports") or ())
    configured_port = to_int((getattr(database, "connect_params", None) or {}).get("port"))
    if configured_port:
        ports.add(configured_port)
    sockets = attribute_local(sessions, ports)
    # This command's own pool may hold a connection its app factory used (to create tables,
    # say): like the query connection, it is not one of the fleet's.
    listed = len(sessions)
    sessions = [s for s in sessions if not (s.get("local") and s["pid"] == os.getpid())]
    doc["own_connections"] = listed - len(sessions)
    doc["server"] = server
    doc["sources"] = {
        "sessions": "pg_stat_activity" if driver.kind == "postgresql"
        else "information_schema.processlist",
        "performance_schema": facts.get("performance_schema"),
        "connect_attrs": facts.get("connect_attrs") or None,
        "transactions": facts.get("transactions"),
        "local_sockets": sockets,
    }
    doc["notes"] = list(facts.get("notes", []))
    doc["by_host"] = _group(sessions, ("host", "user"))
    attributed = [s for s in sessions if s["application"] or s["pid"] is not None]
    doc["by_process"] = _group(attributed, ("application", "host", "pid"))
    named = [s for s in sessions if s["application"]]
    by_app = _group(named, ("application",))
    for group in by_app:
        mine = [s for s in named if s["application"] == group["application"]]
        group["hosts"] = len({s["host"] for s in mine})
        group["processes"] = len({(s["host"], s["pid"]) for s in mine if s["pid"] is not None})
    doc["by_application"] = by_app
    doc["sessions"] = sessions
    doc["totals"] = _fleet_totals(doc, sessions, server, application, user, driver.kind)
    doc["warnings"] = _fleet_warnings(doc)
    return doc


def _fleet_totals(doc: dict[str, Any], sessions: Sequence[dict[str, Any]],
                  server: dict[str, Any] | None, application: str | None, user: Any,
                  kind: str) -> dict[str, Any]:
    server = server or {}
    settings = server.get("settings") or {}
    limit = server.get("max_connections")
    reserved = settings.get("superuser_reserved_connections") or 0
    in_use = server.get("connections")
    available = None if limit is None or in_use is None else max(0, limit - reserved - in_use)
    labelled = doc["sources"].get("connect_attrs") is not None
    if application and labelled:
        mine = [s for s in sessions if s["application"] == application]
        matched_by = "application_name" if kind == "postgresql" else "program_name"
    else:
        mine = [s for s in sessions if user is not None and s["user"] == user]
        matched_by = "user"
    totals: dict[str, Any] = {
        "connections": in_use,  # the server's own count, this command's session included
        "listed": len(sessions),
        "max_connections": limit,
        "reserved": reserved,
        "available": available,
        "hosts": len({s["host"] for s in sessions}),
        "this_app": {
            "matched_by": matched_by,
            "connections": len(mine),
            "hosts": len({s["host"] for s in mine}),
            "processes": len({(s["host"], s["pid"]) for s in mine if s["pid"] is not None}),
        },
        **{state: sum(1 for s in sessions if s["state"] == state) for state in FLEET_STATES},
    }
    unlisted = None if in_use is None else in_use - len(sessions) - 1 - doc["own_connections"]
    if kind == "mysql" and unlisted is not None and unlisted > 0:
        doc["notes"].append(
            f"{unlisted} connection(s) of other accounts are not listed: "
            "the processlist shows them only to an account with the PROCESS privilege")
    pooler = doc.get("external_pooler")
    if pooler == "pgbouncer":
        doc["notes"].append(
            "through PgBouncer: these are PgBouncer's server connections; each shows the "
            "application_name of the last client that used it. PgBouncer's own SHOW CLIENTS "
            "lists the clients")
    elif pooler == "proxysql":
        doc["notes"].append(
            "through ProxySQL: these are ProxySQL's backend connections (client host = "
            "ProxySQL), without the clients' program_name; ProxySQL's "
            "stats_mysql_processlist lists the clients")
    return totals


def _fleet_warnings(doc: dict[str, Any]) -> list[str]:
    warnings = []
    totals = doc["totals"]
    limit, in_use = totals.get("max_connections"), totals.get("connections")
    usable = (limit or 0) - int(totals.get("reserved") or 0)
    if limit and in_use is not None and usable > 0 and in_use >= 0.9 * usable:
        warnings.append(f"the server has {in_use} connections of {usable} it accepts "
                        f"({100 * in_use // usable}%): new connections will soon be refused")
    mine = totals.get("this_app") or {}
    processes = int(mine.get("processes") or 0)
    per_process = int(doc.get("max_connections_per_process") or 0)
    if usable > 0 and processes and processes * per_process > usable \
            and not doc.get("external_pooler"):
        warnings.append(
            f"{processes} processes of this app seen on the server x max_connections "
            f"{per_process} = {processes * per_process} > the {usable} connections the "
            "server accepts: under load some will be refused (lower "
            f"{doc.get('max_connections_setting', 'MAX_CONNECTIONS')}, or put an external "
            "pooler in front)")
    return warnings



def _short(command: str | None, width: int = 80) -> str | None:
    """A command line cut to ``width`` characters for the table (JSON keeps it whole)."""
    if command is None or len(command) <= width:
        return command
    return command[:width - 3] + "..."


def render_fleet(doc: dict[str, Any]) -> str:
    """The human-readable ``pool-stats --server`` report for a :func:`fleet_view` document."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(doc["generated_at"]))
    out = [f"Server view for pool {doc['pool']!r} of app {doc['app']!r}: "
           f"{where(doc['database'])}, at {stamp}"]
    if doc["error"]:
        if doc["database"].get("kind") == "sqlite":
            out.append("Server: none (SQLite): there is no server to ask")
        else:
            out.append(f"Server: unreachable: {doc['error']}")
        return "\n".join(out)
    server, totals = doc["server"] or {}, doc["totals"]
    reserved = int(totals.get("reserved") or 0)
    limit = totals.get("max_connections")
    line = (f"Server ({server.get('kind')} {server.get('version') or ''}".rstrip()
            + f"): {opt(totals.get('connections'))} connections of max_connections "
            f"{opt(limit)}")
    if reserved:
        line += f" ({reserved} reserved for superusers)"
    if totals.get("available") is not None:
        line += f", {totals['available']} available"
    out.append(line)
    mine = totals.get("this_app") or {}
    if mine.get("matched_by") in ("application_name", "program_name"):
        out.append(f"This app ({mine['matched_by']} '{doc['application_name']}[<pid>]'): "
                   f"{mine.get('connections', 0)} connections from {mine.get('processes', 0)} "
                   f"process(es) on {mine.get('hosts', 0)} host(s)")
    else:
        out.append(f"This app's account {doc.get('user')!r}: {mine.get('connections', 0)} "
                   f"connections on {mine.get('hosts', 0)} host(s) (the server shows no "
                   "connection labels here)")
    out.append("")

    states = ("active", "idle", "idle_in_transaction", "other")
    heads = ["CONNECTIONS", "ACTIVE", "IDLE", "IDLE IN TXN", "OTHER"]

    def counts(group: dict[str, Any]) -> list[str]:
        return [str(group["connections"])] + [str(group[s]) for s in states]

    out.append("By client host:")
    rows = [[opt(g["host"]), opt(g["user"]), *counts(g)] for g in doc["by_host"]]
    rows.append(["TOTAL", ""] + [str(totals["listed"])] + [str(totals[s]) for s in states])
    out += table(["HOST", "USER", *heads], rows, frozenset({0, 1}))
    out.append("")
    if doc["by_application"]:
        out.append("By application:")
        rows = [[opt(g["application"]), str(g["hosts"]), str(g["processes"]), *counts(g)]
                for g in doc["by_application"]]
        out += table(["APPLICATION", "HOSTS", "PROCESSES", *heads], rows, frozenset({0}))
        out.append("")
    if doc["by_process"]:
        out.append("By process:")
        rows = [[opt(g["application"]), opt(g["host"]), opt(g["pid"]), *counts(g),
                 opt(g.get("pid_source")), opt(_short(g.get("command")))]
                for g in doc["by_process"]]
        out += table(["APPLICATION", "HOST", "PID", *heads, "FROM", "COMMAND"], rows,
                      frozenset({0, 1, 2, 9, 10}))
        out.append("")
    sources = doc["sources"]
    used = [sources.get("sessions") or "?"]
    if sources.get("connect_attrs"):
        used.append(str(sources["connect_attrs"]))
    if sources.get("local_sockets"):
        used.append("this host's sockets")
    out.append(f"Sources: {', '.join(used)}. This command's own connection is not listed.")
    for note in doc["notes"]:
        out.append(f"Note: {note}")
    if doc["warnings"]:
        out.append("Warnings:")
        out += [f"  ! {w}" for w in doc["warnings"]]
    return "\n".join(out)

