"""Database URLs: ``mysql://``, ``mariadb://``, ``postgresql://``, ``sqlite:///``.

Query parameters that name a pool setting (``max_connections``, ``max_lifetime``, ...)
configure the pool; the others go to the driver (``charset``, ``connect_timeout``,
``sslmode``, ...). ``+pool`` suffixes (``mysql+pool://``, as in ``playhouse.db_url``) are
accepted and mean the same thing: every URL here is pooled.
"""

from __future__ import annotations

import difflib
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..core.errors import ConfigError
from ..core.options import ALIASES, PoolOptions
from ..core.redaction import redact_url
from .database import (
    PooledDatabase,
    PooledMySQLDatabase,
    PooledPostgresqlDatabase,
    PooledSqliteDatabase,
)

SCHEMES: dict[str, type[PooledDatabase]] = {
    "mysql": PooledMySQLDatabase,
    "mariadb": PooledMySQLDatabase,
    "mysql+pymysql": PooledMySQLDatabase,
    "mysql+mysqlclient": PooledMySQLDatabase,
    "mariadb+mysqlclient": PooledMySQLDatabase,
    "postgresql": PooledPostgresqlDatabase,
    "postgres": PooledPostgresqlDatabase,
    "postgresql+psycopg": PooledPostgresqlDatabase,
    "sqlite": PooledSqliteDatabase,
}

#: Schemes that choose a driver as well as a database class.
_SCHEME_DRIVERS = {"mysql+mysqlclient": "mysqlclient", "mariadb+mysqlclient": "mysqlclient"}

_POOL_KEYS = frozenset(PoolOptions.field_names()) | frozenset(ALIASES)
#: Arguments of the database classes themselves, not the driver's.
_RESERVED_KEYS = frozenset({"database", "pool_options"})


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (see :mod:`..core.redaction`)."""
    return redact_url(url)


def misspelt_pool_key(key: str) -> str | None:
    """The pool setting a query parameter that is not one was probably meant to be.

    ``?max_conections=5`` goes to the driver like any unknown parameter, and the driver's
    complaint would name a setting the user never wrote; this names the one they meant.
    """
    if key in _POOL_KEYS:
        return None
    close = difflib.get_close_matches(key, sorted(_POOL_KEYS), n=1, cutoff=0.8)
    return close[0] if close else None


def explain_rejected(exc: ConfigError, keys: Any) -> ConfigError:
    """A driver's refusal of the connect arguments, pinned on the URL's query parameter
    that caused it (a misspelt pool setting, or one the driver names), ``exc`` itself
    otherwise."""
    if exc.setting != "connect_args":
        return exc
    keys = list(keys)
    for key in keys:
        meant = misspelt_pool_key(key)
        if meant is not None:
            return ConfigError("DATABASE", f"query parameter {key!r} is not a pool setting; "
                               f"did you mean {meant!r}? ({exc.detail})")
    named = [key for key in keys if key in exc.detail]
    if named:  # the driver names a parameter that came from the URL: say it is the URL's
        return ConfigError("DATABASE", f"query parameter {named[0]!r} of the URL is passed "
                           f"to the driver, which rejects it: {exc.detail}")
    return exc


def parse(url: str) -> tuple[type[PooledDatabase], str, dict[str, Any]]:
    """Split a URL into (database class, database name, keyword arguments)."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError("DATABASE", "expected a database URL such as "
                          "mysql://user:password@host/db or sqlite:///path.db")
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL", a netloc NFKC normalization rejects, ...
        raise ConfigError("DATABASE", f"malformed URL {redact(url)!r}") from None
    scheme = parts.scheme.lower().removesuffix("+pool")
    cls = SCHEMES.get(scheme)
    if cls is None:
        raise ConfigError("DATABASE", f"unsupported scheme {parts.scheme!r} in "
                          f"{redact(url)!r}; accepted: {', '.join(sorted(SCHEMES))}")
    kwargs: dict[str, Any] = {}
    if scheme in _SCHEME_DRIVERS:
        kwargs["driver"] = _SCHEME_DRIVERS[scheme]
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _RESERVED_KEYS:
            raise ConfigError("DATABASE", f"query parameter {key!r} in {redact(url)!r}: "
                              "the database name is the URL's path")
        if key in _POOL_KEYS:
            kwargs[key] = value  # validated and converted by the database class
        else:
            kwargs[key] = _driver_value(value)
    if cls is PooledSqliteDatabase:
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if parts.netloc:
            path = unquote(parts.netloc) + ("/" + path if path else "")
        return cls, path or ":memory:", kwargs
    database = unquote(parts.path.lstrip("/"))
    if "@" in parts.path:  # mysql:///user:password@host/db, or a raw "/" in the user name
        raise ConfigError("DATABASE", f"'@' in the database name of {redact(url)!r}: "
                          "credentials go before the host (mysql://user:password@host/db), "
                          "with '/', '@' and ':' in them percent-encoded")
    if not database:
        raise ConfigError("DATABASE", f"no database name in {redact(url)!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("DATABASE", f"invalid port in {redact(url)!r}") from None
    if parts.hostname:
        kwargs.setdefault("host", parts.hostname)
    if port:
        kwargs.setdefault("port", port)
    if parts.username:
        kwargs.setdefault("user", unquote(parts.username))
    if parts.password is not None:
        kwargs.setdefault("password", unquote(parts.password))
    return cls, database, kwargs


def connect(url: str, **overrides: Any) -> PooledDatabase:
    """A pooled peewee database for ``url``; keyword arguments override the URL's."""
    cls, database, kwargs = parse(url)
    kwargs.update(overrides)
    try:
        return cls(database, **kwargs)
    except ConfigError as exc:
        raise explain_rejected(exc, query_keys(url)) from None


def query_keys(url: str) -> list[str]:
    """The names of the URL's query parameters, in order."""
    return [key for key, _ in parse_qsl(url.partition("?")[2], keep_blank_values=True)]


def _driver_value(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    return value
