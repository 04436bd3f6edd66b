"""What the database server says: its limits and load, and its list of client sessions.

Every query runs over a connection the caller opened with the pool's driver (a real
connect, not a checkout): nothing here starts a pool's maintainer or leaves a connection
behind. MySQL/MariaDB and PostgreSQL; SQLite has no server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from ..core.attribution import parse_label
from .format import one_line, rows_of, to_int
from .snapshots import ExtensionState


def mysql_server(raw: Any) -> dict[str, Any]:
    cursor = raw.cursor()
    try:
        # Session values: what a connection made with the pool's settings actually gets
        # (an init_command may have changed wait_timeout for it).
        cursor.execute("SHOW VARIABLES WHERE Variable_name IN "
                       "('max_connections', 'max_user_connections', 'wait_timeout', 'version')")
        variables = {str(k): v for k, v in rows_of(cursor)}
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        status = {str(k): v for k, v in rows_of(cursor)}
    finally:
        cursor.close()
    wait_timeout = to_int(variables.get("wait_timeout"))
    settings = {
        "max_connections": to_int(variables.get("max_connections")),
        "max_user_connections": to_int(variables.get("max_user_connections")),
        "wait_timeout": wait_timeout,
        "Threads_connected": to_int(status.get("Threads_connected")),
    }
    return {
        "kind": "mysql",
        "version": variables.get("version"),
        "max_connections": settings["max_connections"],
        "max_user_connections": settings["max_user_connections"] or None,
        "connections": settings["Threads_connected"],
        "idle_timeout": wait_timeout or None,
        "idle_timeout_setting": "wait_timeout",
        "settings": settings,
    }


def postgres_server(raw: Any) -> dict[str, Any]:
    cursor = raw.cursor()
    try:
        cursor.execute("SELECT name, setting, unit FROM pg_settings WHERE name IN "
                       "('max_connections', 'idle_session_timeout', "
                       "'superuser_reserved_connections', 'server_version')")
        found = {str(name): (setting, unit) for name, setting, unit in rows_of(cursor)}
        cursor.execute("SELECT count(*) FROM pg_stat_activity "
                       "WHERE backend_type = 'client backend'")
        row = cursor.fetchone()
    finally:
        cursor.close()
    idle_ms = None
    if "idle_session_timeout" in found:  # PostgreSQL 14+; 0 means off
        setting, unit = found["idle_session_timeout"]
        factor = {"ms": 1, "s": 1000, "min": 60000}.get(str(unit), 1)
        idle_ms = (to_int(setting) or 0) * factor
    settings = {
        "max_connections": to_int(found.get("max_connections", (None, None))[0]),
        "superuser_reserved_connections": to_int(
            found.get("superuser_reserved_connections", (None, None))[0]),
        "idle_session_timeout": None if idle_ms is None else idle_ms / 1000.0,
        "pg_stat_activity": to_int(row[0]) if row else None,
    }
    return {
        "kind": "postgresql",
        "version": found.get("server_version", (None, None))[0],
        "max_connections": settings["max_connections"],
        "max_user_connections": None,
        "connections": settings["pg_stat_activity"],
        "idle_timeout": (idle_ms / 1000.0) if idle_ms else None,
        "idle_timeout_setting": "idle_session_timeout",
        "settings": settings,
    }


SERVER_QUERIES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "mysql": mysql_server,
    "postgresql": postgres_server,
}


def query_server(kind: str, raw: Any) -> dict[str, Any] | None:
    """The server's limits and current load over the open connection ``raw``.

    MySQL/MariaDB: ``max_connections``, ``max_user_connections``, ``wait_timeout`` (SHOW
    VARIABLES) and ``Threads_connected`` (SHOW GLOBAL STATUS). PostgreSQL:
    ``max_connections``, ``idle_session_timeout`` and the client backends in
    ``pg_stat_activity``. SQLite (and unknown kinds): None, there is no server.
    Normalised keys (``max_connections``, ``connections``, ``idle_timeout`` in seconds or
    None when off) sit beside the server's own names in ``settings``.
    """
    query = SERVER_QUERIES.get(kind)
    return query(raw) if query else None


def server_view(state: ExtensionState) -> tuple[dict[str, Any] | None, str | None]:
    """``(server info, error)`` over one dedicated connection, closed at once.

    The connection is made by the pool's driver (same parameters, same TLS context as the
    pool's connections) rather than checked out, so this command never starts the pool's
    maintainer, never refills ``min_idle`` and leaves no connection behind.
    """
    database = state.database
    driver = database.pool.driver
    if driver.kind not in SERVER_QUERIES:
        return None, None
    try:
        raw = driver.connect()
    except Exception as exc:
        return None, one_line(exc)
    try:
        return query_server(driver.kind, raw), None
    except Exception as exc:
        return None, one_line(exc)
    finally:
        with contextlib.suppress(Exception):
            driver.close(raw)



FLEET_STATES = ("active", "idle", "idle_in_transaction", "other")


def mysql_sessions(raw: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Client sessions from information_schema.PROCESSLIST (+ INNODB_TRX, and
    performance_schema.session_connect_attrs when enabled), without this one."""
    cursor = raw.cursor()
    facts: dict[str, Any] = {"performance_schema": None, "connect_attrs": False,
                             "transactions": False, "notes": []}
    try:
        cursor.execute("SELECT ID, USER, HOST, DB, COMMAND FROM information_schema.PROCESSLIST"
                       " WHERE ID <> CONNECTION_ID()")
        rows = rows_of(cursor)
        cursor.execute("SELECT @@port, @@performance_schema")
        port, perf = rows_of(cursor)[0]
        facts["ports"] = {p for p in (to_int(port),) if p}
        facts["performance_schema"] = bool(to_int(perf))
        in_trx: set[int] | None = None
        try:  # needs PROCESS, like the other accounts' rows of the processlist
            cursor.execute("SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX")
            in_trx = {int(r[0]) for r in rows_of(cursor)}
            facts["transactions"] = True
        except Exception:
            in_trx = None
            facts["notes"].append(
                "sessions idle in a transaction are counted as IDLE: telling them apart "
                "(information_schema.INNODB_TRX) needs the PROCESS privilege")
        attrs: dict[int, dict[str, str]] = {}
        if facts["performance_schema"]:
            for table in ("session_connect_attrs", "session_account_connect_attrs"):
                try:
                    cursor.execute(
                        f"SELECT PROCESSLIST_ID, ATTR_NAME, ATTR_VALUE FROM performance_schema."
                        f"{table} WHERE ATTR_NAME IN ('program_name', '_pid')")
                except Exception:
                    continue
                for thread_id, name, value in rows_of(cursor):
                    attrs.setdefault(int(thread_id), {})[str(name)] = str(value)
                facts["connect_attrs"] = table
                break
            if not facts["connect_attrs"]:
                facts["notes"].append("performance_schema is on but its connection attributes "
                                      "are not readable by this account: grant SELECT on "
                                      "performance_schema.session_connect_attrs")
        else:
            facts["notes"].append(
                "performance_schema is OFF: connection attributes (program_name) are not "
                "visible; connections are shown by client host, and those of this host by "
                "process (from its sockets)")
    finally:
        cursor.close()
    sessions = []
    for thread_id, user, host, db, command in rows:
        command = str(command or "")
        if command == "Daemon" or user in ("system user", "event_scheduler"):
            continue  # server threads, not client connections
        address, client_port = split_host_port(str(host or ""))
        if command == "Sleep":
            state = "idle" if in_trx is None or int(thread_id) not in in_trx \
                else "idle_in_transaction"
        elif command in ("Killed",):
            state = "other"
        else:
            state = "active"
        session_attrs = attrs.get(int(thread_id), {})
        application, pid = labelled(session_attrs.get("program_name"))
        source = "program_name" if pid is not None else None
        if pid is None and to_int(session_attrs.get("_pid")):
            pid, source = to_int(session_attrs.get("_pid")), "_pid"
        sessions.append({
            "id": int(thread_id), "user": user, "host": address, "port": client_port,
            "database": db, "state": state, "application": application, "pid": pid,
            "pid_source": source,
        })
    return sessions, facts


def postgres_sessions(raw: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Client backends from pg_stat_activity, without this one."""
    cursor = raw.cursor()
    try:
        cursor.execute("SELECT pid, usename, datname, application_name, host(client_addr), "
                       "client_port, state FROM pg_stat_activity "
                       "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        rows = rows_of(cursor)
        cursor.execute("SELECT current_setting('port')")
        port = rows_of(cursor)[0][0]
    finally:
        cursor.close()
    facts: dict[str, Any] = {"ports": {p for p in (to_int(port),) if p}, "notes": [],
                             "performance_schema": None, "connect_attrs": "application_name",
                             "transactions": True}
    sessions = []
    hidden = 0
    for backend_pid, user, db, app_name, address, client_port, state in rows:
        text = str(state or "")
        if state is None:
            hidden += 1
            kind = "other"
        elif text == "active":
            kind = "active"
        elif text == "idle":
            kind = "idle"
        elif text.startswith("idle in transaction"):
            kind = "idle_in_transaction"
        else:
            kind = "other"
        if address is None:
            address = "[local]" if client_port == -1 else None
        application, pid = labelled(app_name)
        sessions.append({
            "id": int(backend_pid), "user": user, "host": address,
            "port": client_port if client_port and client_port > 0 else None,
            "database": db, "state": kind, "application": application, "pid": pid,
            "pid_source": "application_name" if pid is not None else None,
        })
    if hidden:
        facts["notes"].append(
            f"{hidden} session(s) of other roles show no state or client address: "
            "grant pg_read_all_stats to this role to see them whole")
    return sessions, facts


SESSION_QUERIES: dict[str, Callable[[Any], tuple[list[dict[str, Any]], dict[str, Any]]]] = {
    "mysql": mysql_sessions,
    "postgresql": postgres_sessions,
}


def labelled(label: Any) -> tuple[str | None, int | None]:
    return parse_label(str(label) if label else None)


def split_host_port(host: str) -> tuple[str | None, int | None]:
    """``"10.0.0.5:51234"`` / ``"::1:51234"`` -> (address, port); ``"localhost"`` (a Unix
    socket) -> ("localhost", None); ``""`` -> (None, None)."""
    if not host:
        return None, None
    address, sep, port = host.rpartition(":")
    if sep and port.isdigit() and address:
        return address.strip("[]"), int(port)
    return host, None

