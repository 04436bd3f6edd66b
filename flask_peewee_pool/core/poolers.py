"""External poolers (PgBouncer, ProxySQL) in front of the database.

``external_pooler="pgbouncer"`` turns psycopg 3's automatic server-side prepared statements
off (``prepare_threshold=None``): in PgBouncer's transaction mode consecutive transactions of
one client run on different server connections, where a statement prepared on another one
"does not exist". :func:`external_pooler_warnings` lists the settings that would still break
a pooler (or, for ProxySQL, disable its multiplexing).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError

#: ``external_pooler`` values, and the database kind each one fronts.
EXTERNAL_POOLERS = {"pgbouncer": "postgresql", "proxysql": "mysql"}


def normalize_external_pooler(value: Any, *, kind: str | None = None,
                              setting: str = "external_pooler") -> str | None:
    """``"pgbouncer"``, ``"proxysql"`` or None (also for ``""``/``"none"``); ConfigError else.

    ``kind`` (``"postgresql"``/``"mysql"``/``"sqlite"``) rejects a pooler that does not
    front that database, so a mistake fails at start-up instead of doing nothing.
    """
    if value is None or value is False:
        return None
    if not isinstance(value, str):
        raise ConfigError(setting, f"expected 'pgbouncer', 'proxysql' or none, got {value!r}")
    text = value.strip().lower()
    if text in ("", "none", "off", "false", "0"):
        return None
    if text not in EXTERNAL_POOLERS:
        raise ConfigError(setting, f"expected 'pgbouncer', 'proxysql' or none, got {value!r}")
    fronts = EXTERNAL_POOLERS[text]
    if kind is not None and kind != fronts:
        other = next((p for p, k in EXTERNAL_POOLERS.items() if k == kind), None)
        hint = f"; for {kind} use {other!r}" if other else ""
        raise ConfigError(setting, f"{text!r} fronts {fronts}, not {kind}{hint}")
    return text


_SESSION_STATE = re.compile(
    r"^\s*(set\b(?!\s+local\b)|reset\b|prepare\b|listen\b|load\b|discard\b|"
    r"create\s+(global\s+|local\s+)?temp(orary)?\b|select\s+pg_advisory_lock)",
    re.IGNORECASE)


#: Session variables ProxySQL parses and replays on whichever backend it picks: a SET of
#: one of these keeps multiplexing on. Anything else it cannot track pins the session.
_PROXYSQL_TRACKED = re.compile(
    r"^\s*set\s+(session\s+|@@session\.|@@)?(names\b|character\s+set\b|charset\b|"
    r"sql_mode\b|time_zone\b|autocommit\b|character_set_\w+|collation_connection\b|"
    r"(session\s+)?transaction\s+isolation\b|transaction_isolation\b|tx_isolation\b|"
    r"transaction\s+read\b|transaction_read_only\b|sql_auto_is_null\b)",
    re.IGNORECASE)


def _user_variable(statement: str) -> bool:
    return re.search(r"(?<![@\w])@(?!@)\w", statement) is not None


def external_pooler_warnings(pooler: str | None, params: Mapping[str, Any], *,
                             init_sql: Iterable[str] = (), configure: Any = None,
                             reset: Any = None) -> list[str]:
    """What in these settings breaks ``pooler`` (or defeats it), one line per problem.

    ``params`` are the driver's connect parameters as the user gave them; ``init_sql``,
    ``configure`` and ``reset`` the pool's hooks. Pure: the database logs the result once,
    at start-up.
    """
    found: list[str] = []
    statements = [s for s in init_sql if s and s.strip()]
    if pooler == "pgbouncer":
        threshold = params.get("prepare_threshold", None)
        if "prepare_threshold" in params and threshold is not None:
            found.append(
                f"prepare_threshold={threshold!r}: psycopg prepares statements on the server "
                "connection PgBouncer lent for one transaction; later transactions run on "
                "others, where they \"do not exist\" (unless PgBouncer >= 1.21 has "
                "max_prepared_statements > 0). Leave it unset: the pgbouncer mode sets None")
        if params.get("options"):
            found.append(
                "options (startup -c settings): PgBouncer refuses unknown startup parameters "
                "(or ignores them if listed in ignore_startup_parameters); set them with "
                "ALTER ROLE/DATABASE ... SET on the server instead")
        for statement in statements:
            if _SESSION_STATE.match(statement):
                found.append(
                    f"init_sql {statement.strip()!r} changes session state outside a "
                    "transaction: in transaction mode it lands on whichever server connection "
                    "PgBouncer lends, then leaks to other clients and is missing for this "
                    "one; use SET LOCAL inside each transaction or ALTER ROLE ... SET")
        if configure is not None:
            found.append(
                "configure hook: runs once per client connection, but in transaction mode "
                "any session state it sets stays on one server connection and does not "
                "follow this client; keep it free of SET / PREPARE / LISTEN / temp tables")
        if reset is not None:
            found.append(
                "reset hook: runs at checkin outside any transaction, on whatever server "
                "connection PgBouncer lends for it, not the one the request used")
    elif pooler == "proxysql":
        init_command = params.get("init_command")
        for what, statement in ([("init_command", init_command)] if init_command else []) + [
                ("init_sql", s) for s in statements]:
            text = str(statement).strip()
            if _user_variable(text):
                found.append(
                    f"{what} {text!r} uses a user variable: ProxySQL disables multiplexing "
                    "for the whole session, for good")
            elif not _PROXYSQL_TRACKED.match(text):
                found.append(
                    f"{what} {text!r}: ProxySQL tracks only some SET statements (sql_mode, "
                    "time_zone, NAMES, autocommit, isolation level, ...); anything else "
                    "pins every connection to one backend (multiplexing off)")
        if params.get("autocommit") is False:
            found.append(
                "autocommit=False: every statement leaves a transaction open, and ProxySQL "
                "keeps a backend per client while a transaction is open (no multiplexing)")
    return found
