"""One config path for every framework: a mapping of settings -> a validated :class:`PoolConfig`.

Flask reads the settings from ``app.config`` (``PEEWEE_POOL_MAX_CONNECTIONS``), Django from
one dict (``PEEWEE_POOL = {"MAX_CONNECTIONS": ...}``), a WSGI app or a worker from any
mapping; each hands the keys without their prefix to :func:`build` with a ``label`` that
spells a key the way the user wrote it, so every error and warning names the setting as it
appears in the user's configuration.

Each concern lives in exactly one place: coercion of loosely typed values, the playhouse
aliases and ``timeout=0`` (wait forever) in :class:`~..core.options.PoolOptions`; the
yes/no words there too; unknown-key detection with "did you mean" in :func:`check_keys`;
secret redaction in :mod:`..core.redaction`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..core.attribution import normalize_application_name
from ..core.errors import ConfigError
from ..core.options import ALIASES, FALSE_WORDS, NONE_WORDS, TRUE_WORDS, PoolOptions
from ..core.options import unknown_setting as _unknown_setting
from ..core.poolers import normalize_external_pooler
from ..core.redaction import describe as _describe_url
from ..core.redaction import redact_params, redact_url
from ..orm import urls
from ..orm.database import (
    PooledDatabase,
    PooledMySQLDatabase,
    PooledPostgresqlDatabase,
    PooledSqliteDatabase,
)
from .connections import CHECKOUT_MODES

__all__ = [
    "ACCEPTED_KEYS", "PREFIX", "DatabaseSpec", "Label", "PoolConfig", "build", "dict_label",
    "flask_label", "prefixed",
]

#: Prefix of the Flask settings (``app.config``) and environment; Django's dict has none.
PREFIX = "PEEWEE_POOL_"

POOL_FIELDS = PoolOptions.field_names()
_OTHER_KEYS = (
    "DATABASE", "CONNECT_ARGS", "CHECKOUT", "EXCLUDED_ENDPOINTS", "STATS_DIR", "STATS_INTERVAL",
    "APPLICATION_NAME", "EXTERNAL_POOLER", "METRICS",
)
#: Every setting accepted, without a prefix.
ACCEPTED_KEYS = (*_OTHER_KEYS[:1], *(f.upper() for f in POOL_FIELDS), *_OTHER_KEYS[1:])
#: Seconds between two snapshots when ``STATS_INTERVAL`` is not set.
DEFAULT_STATS_INTERVAL = 5.0

Label = Callable[[str], str]


def flask_label(key: str) -> str:
    """``MAX_CONNECTIONS`` -> ``PEEWEE_POOL_MAX_CONNECTIONS``."""
    return PREFIX + key


def dict_label(name: str) -> Label:
    """A label for keys of the dict setting ``name``: ``PEEWEE_POOL["MAX_CONNECTIONS"]``."""
    return lambda key: f'{name}["{key}"]'


def prefixed(config: Mapping[str, Any], prefix: str = PREFIX) -> dict[str, Any]:
    """The entries of ``config`` whose key starts with ``prefix``, the prefix removed."""
    return {key[len(prefix):]: value for key, value in config.items()
            if isinstance(key, str) and key.startswith(prefix)}


@dataclasses.dataclass
class DatabaseSpec:
    """A pooled database still to be built: its class, name and keyword arguments."""

    cls: type[PooledDatabase]
    name: str
    #: Keyword arguments for peewee and the driver (``host``, ``charset``, ...).
    kwargs: dict[str, Any]
    #: Pool settings given with the database (URL query, dict keys), by field name.
    pool: dict[str, Any]
    #: How to show the database in settings and logs: never with its password.
    shown: str
    #: Query parameters of the URL it came from (to name a misspelt one in errors).
    query_keys: tuple[str, ...] = ()


@dataclasses.dataclass
class PoolConfig:
    """Every validated setting of one integration, and the database built from them.

    ``shown`` holds them all by lower-case name with secrets masked: it is meant to be
    shown (``pool-stats``, logs, snapshots).
    """

    database: PooledDatabase
    options: PoolOptions
    shown: dict[str, Any]
    checkout: str
    excluded_endpoints: frozenset[str]
    stats_dir: str | None
    stats_interval: float
    #: ``METRICS``: None (off), True (prometheus_client's default registry) or a registry.
    metrics_registry: Any = None
    #: How the user spells each key (for warnings: ``PEEWEE_POOL_MAX_LIFETIME``).
    label: Label = flask_label


def build(
    raw: Mapping[str, Any],
    *,
    label: Label,
    name: str,
    stats_dir: str | None,
    checkout: str = "lazy",
    database: DatabaseSpec | PooledDatabase | None = None,
    extra_excluded: Iterable[str] = (),
) -> PoolConfig:
    """Validate ``raw`` (keys without prefix) and build the pooled database.

    ``name`` is the default pool name, ``stats_dir`` the default snapshot directory (None:
    snapshots only if ``STATS_DIR`` is set), ``checkout`` the default checkout mode.
    ``database`` replaces the ``DATABASE`` key: a spec (FlaskDB's dict form) or a ready
    pooled database, whose pool settings are then its own. Raises :class:`ConfigError`
    naming the key, as ``label`` spells it, with nothing built.
    """
    check_keys(raw, label)
    connect_args: dict[str, Any] = {}
    spec: DatabaseSpec | None = None
    if isinstance(database, PooledDatabase):
        db: PooledDatabase | None = database
        options, shown = _given_database(database, raw, label)
    else:
        spec = database if database is not None else spec_from_url(raw.get("DATABASE"),
                                                                    label("DATABASE"))
        values: dict[str, Any] = {"name": name, **spec.pool}
        for field in POOL_FIELDS:
            if field.upper() in raw:
                values[field] = raw[field.upper()]
        if isinstance(values["name"], (int, float)) and not isinstance(values["name"], bool):
            values["name"] = str(values["name"])  # from_prefixed_env turns "123" into 123
        options = pool_options(values, label)
        connect_args = parse_connect_args(raw.get("CONNECT_ARGS"), label)
        db = None
        shown = spec.shown
    mode = parse_checkout(raw.get("CHECKOUT"), label, default=checkout)
    excluded = parse_excluded(raw.get("EXCLUDED_ENDPOINTS"), label("EXCLUDED_ENDPOINTS"))
    excluded |= frozenset(extra_excluded)
    directory = parse_stats_dir(raw.get("STATS_DIR"), label, default=stats_dir)
    interval = parse_stats_interval(raw.get("STATS_INTERVAL"), label)
    metrics_registry = parse_metrics(raw.get("METRICS"), label)
    # Labels and pooler mode: keyword arguments of the database class (the URL parameters
    # ?application_name= / ?external_pooler= reach it through the spec's kwargs already).
    extra: dict[str, Any] = {}
    if raw.get("APPLICATION_NAME") is not None:
        extra["application_name"] = normalize_application_name(
            raw["APPLICATION_NAME"], setting=label("APPLICATION_NAME"))
    if raw.get("EXTERNAL_POOLER") is not None:
        if db is not None:
            raise ConfigError(label("EXTERNAL_POOLER"), "not used with a database instance: "
                              "pass external_pooler= to the database's constructor instead")
        assert spec is not None
        extra["external_pooler"] = normalize_external_pooler(
            raw["EXTERNAL_POOLER"], kind=spec.cls.kind, setting=label("EXTERNAL_POOLER"))
    if db is None:  # built last: nothing to close when a setting is refused
        assert spec is not None
        db = _construct(spec, options, {**spec.kwargs, **connect_args, **extra}, label)
    return PoolConfig(
        database=db,
        options=options,
        shown={
            "database": shown,
            **{field: getattr(options, field) for field in POOL_FIELDS},
            "connect_args": redact_params(connect_args),
            "checkout": mode,
            "excluded_endpoints": sorted(excluded),
            "stats_dir": directory,
            "stats_interval": interval,
            "application_name": db.application_name,
            "external_pooler": db.external_pooler,
            "metrics": metrics_registry is not None,
        },
        checkout=mode,
        excluded_endpoints=excluded,
        stats_dir=directory,
        stats_interval=interval,
        metrics_registry=metrics_registry,
        label=label,
    )


def _construct(spec: DatabaseSpec, options: PoolOptions, kwargs: dict[str, Any],
               label: Label) -> PooledDatabase:
    try:
        return spec.cls(spec.name, pool_options=options, pool_name=options.name, **kwargs)
    except ConfigError as exc:
        explained = urls.explain_rejected(exc, spec.query_keys)
        if explained is exc:
            raise
        raise ConfigError(label("DATABASE"), explained.detail) from None


def _given_database(database: PooledDatabase, raw: Mapping[str, Any],
                    label: Label) -> tuple[PoolOptions, str]:
    for key in ("DATABASE", *(f.upper() for f in POOL_FIELDS), "CONNECT_ARGS"):
        if key in raw:
            raise ConfigError(label(key), "not used with a database instance: pass it to "
                              "the database's constructor instead")
    if database.deferred:  # type: ignore[attr-defined]
        raise ConfigError(label("DATABASE"), "the database instance is not initialised "
                          "yet: call its init() before init_app, or pass a URL")
    shown = describe(type(database), database.database,  # type: ignore[attr-defined]
                     database.connect_params)  # type: ignore[attr-defined]
    return database.pool_options, shown


def describe(db_class: type[PooledDatabase], name: Any, kwargs: Mapping[str, Any]) -> str:
    """A URL describing a database given as a class and arguments, password masked."""
    scheme = ("sqlite" if issubclass(db_class, PooledSqliteDatabase)
              else "mysql" if issubclass(db_class, PooledMySQLDatabase)
              else "postgresql" if issubclass(db_class, PooledPostgresqlDatabase)
              else db_class.__name__.lower())
    return _describe_url(scheme, name, kwargs)


def check_keys(raw: Mapping[str, Any], label: Label) -> None:
    """Refuse an unknown key, naming the closest accepted one (a typo is not ignored)."""
    unknown = sorted(str(k) for k in set(raw) - set(ACCEPTED_KEYS))
    if unknown:
        raise ConfigError(label(unknown[0]), _unknown_setting(
            unknown[0], list(ACCEPTED_KEYS), label=label))


def spec_from_url(url: Any, key: str) -> DatabaseSpec:
    """Parse and check a database URL; errors name ``key`` and never show a password."""
    if url is None or url == "":
        raise ConfigError(key, "required: a database URL such as "
                          "mysql://user:password@host/db or sqlite:///path/to/file.db")
    if not isinstance(url, str) or "://" not in url:
        got = f"got {type(url).__name__}" if not isinstance(url, str) else "value not shown"
        raise ConfigError(key, "expected a database URL such as "
                          f"mysql://user:password@host/db ({got}: it may hold a password)")
    try:
        db_class, db_name, url_kwargs = urls.parse(url)
    except ConfigError as exc:  # urls.parse shows the URL redacted only
        raise ConfigError(key, exc.detail) from None
    url_pool = take_pool_keys(url_kwargs)
    try:
        PoolOptions.from_mapping(url_pool)
    except ConfigError as exc:
        raise ConfigError(key, f"query parameter {exc.setting}: {exc.detail}") from None
    return DatabaseSpec(db_class, db_name, url_kwargs, url_pool, redact_url(url),
                        tuple(urls.query_keys(url)))


def take_pool_keys(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the pool settings (and their playhouse aliases) from ``kwargs``; by field."""
    pool = {}
    for key in list(kwargs):
        field = ALIASES.get(key, key)
        if field in POOL_FIELDS:
            value = kwargs.pop(key)
            if key in ALIASES and field in pool:
                continue  # the explicit name wins over the playhouse alias
            pool[field] = value
    return pool


def pool_options(values: Mapping[str, Any], label: Label) -> PoolOptions:
    """``PoolOptions.from_mapping``, errors named by ``label`` (field names upper-cased)."""
    try:
        return PoolOptions.from_mapping(values)
    except ConfigError as exc:
        raise ConfigError(label(exc.setting.upper()), exc.detail) from None


def parse_connect_args(value: Any, label: Label) -> dict[str, Any]:
    key = label("CONNECT_ARGS")
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:  # the text may hold a password: do not echo it
            raise ConfigError(key, f"expected a JSON object, got invalid JSON "
                              f"(line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a dict (or a JSON object), got {type(value).__name__}")
    args = dict(value)
    for name in args:
        if not isinstance(name, str):
            raise ConfigError(key, f"keys must be strings, got {name!r}")
        field = ALIASES.get(name, name)
        if field in POOL_FIELDS:
            raise ConfigError(key, f"{name!r} is a pool setting: use {label(field.upper())}")
        if name in ("database", "pool_options"):
            raise ConfigError(key, f"{name!r} is not a connect argument: the database comes "
                              f"from {label('DATABASE')}")
    return args


def parse_checkout(value: Any, label: Label, *, default: str = "lazy") -> str:
    if value is None:
        return default
    mode = value.strip().lower() if isinstance(value, str) else value
    if mode not in CHECKOUT_MODES:
        raise ConfigError(label("CHECKOUT"), f"expected 'lazy' or 'eager', got {value!r}")
    return mode  # type: ignore[no-any-return]


def parse_excluded(value: Any, key: str) -> frozenset[str]:
    """A list of endpoint names, or a comma-separated string of them; errors name ``key``."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigError(key, "expected a list of endpoint names or a comma-separated "
                          f"string, got {type(value).__name__}")
    names: Iterable[Any] = value
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(key, f"endpoint names must be non-empty strings, got {name!r}")
    return frozenset(value)


def parse_stats_dir(value: Any, label: Label, *, default: str | None) -> str | None:
    if value is None or value == "":
        return default
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(label("STATS_DIR"),
                          f"expected a directory path, got {type(value).__name__}")
    return os.fspath(value)


def parse_stats_interval(value: Any, label: Label) -> float:
    if value is None:
        return DEFAULT_STATS_INTERVAL
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if (isinstance(number, bool) or not isinstance(number, (int, float))
            or not math.isfinite(number) or number <= 0):
        raise ConfigError(label("STATS_INTERVAL"),
                          f"must be a finite number of seconds > 0, got {value!r}")
    return float(number)


def parse_metrics(value: Any, label: Label) -> Any:
    """None (off), True (prometheus_client's default registry) or a CollectorRegistry."""
    key = label("METRICS")
    enabled: Any = value
    if isinstance(value, str):
        text = value.strip().lower()
        enabled = (True if text in TRUE_WORDS
                   else False if text in FALSE_WORDS or text in NONE_WORDS else value)
    elif type(value) is int and value in (0, 1):  # from_prefixed_env turns "1" into 1
        enabled = bool(value)
    if value is None or enabled is False:
        return None
    if enabled is True:
        _need_prometheus(key)
        return True
    try:
        from prometheus_client import CollectorRegistry
    except ImportError:
        _need_prometheus(key)
    if not isinstance(enabled, CollectorRegistry):
        raise ConfigError(key, "expected true or false (or a prometheus_client "
                          f"CollectorRegistry), got {value!r}")
    return enabled


def _need_prometheus(key: str) -> None:
    try:
        import prometheus_client  # noqa: F401  (an optional extra)
    except ImportError:
        raise ConfigError(key, "needs prometheus_client: pip install "
                          "'flask-peewee-pool[prometheus]'") from None
