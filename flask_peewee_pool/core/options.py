"""PoolOptions: every setting of a pool, validated once, in one typed record.

Validation happens when the options are built, so a bad value fails at start-up with a
:class:`ConfigError` naming the setting and what it accepts, never at the first request.
The same record backs the peewee database classes, the URL query parameters and the Flask
``PEEWEE_POOL_*`` settings, which is why :meth:`PoolOptions.from_mapping` accepts strings.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError

#: The one word list for yes/no settings, everywhere (options, integration settings).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
#: Words meaning "no value": None for an optional setting, "off" for a switch.
NONE_WORDS = frozenset({"", "none", "null"})

#: Spellings of pool settings that playhouse users know (URL query, keyword arguments,
#: dicts): the one table of aliases.
ALIASES = {"stale_timeout": "max_lifetime", "pool_name": "name"}


#: The most segments a pool may be split into (see ``segments``).
MAX_SEGMENTS = 256


@dataclasses.dataclass(frozen=True)
class PoolOptions:
    """Settings of one :class:`~flask_peewee_pool.core.pool.ConnectionPool`.

    Durations are seconds. ``None`` switches a duration-based duty off.
    """

    #: Hard cap on connections this pool holds open (idle + in use + opening + closing).
    max_connections: int = 20
    #: Connections the maintainer keeps open even when idle.
    min_idle: int = 0
    #: Sub-pools, each with its own lock; ``None`` picks ``min(4, max_connections)``.
    segments: int | None = None
    #: Upper bound of a connection's life; keep it below the server's ``wait_timeout``.
    max_lifetime: float | None = 1800.0
    #: Each connection lives ``uniform(max_lifetime * (1 - jitter), max_lifetime)``.
    lifetime_jitter: float = 0.2
    #: Idle connections older than this are closed, down to ``min_idle``.
    idle_timeout: float | None = 600.0
    #: Ping at checkout only if the connection sat idle this long (0: always; None: never).
    ping_after: float | None = 1.0
    #: The maintainer pings connections idle this long, so no firewall or server drops them.
    keepalive: float | None = 60.0
    #: Longest a checkout waits for a connection (None: forever).
    timeout: float | None = 30.0
    #: Threads allowed to wait at once; beyond that, PoolExhausted at once (0: unlimited).
    max_waiting: int = 0
    #: Warn (once, with the checkout stack) about a connection held longer than this.
    leak_threshold: float | None = None
    #: Connects and closes the maintainer may run at the same time.
    maintenance_concurrency: int = 4
    #: Longest pause between reconnect attempts while the database is down.
    max_backoff: float = 10.0
    #: Name used in thread names, log records and error messages.
    name: str = "pool"
    #: Statements run once on every new connection, before it is first handed out.
    init_sql: tuple[str, ...] = ()
    #: ``configure(raw_connection)``: called once on every new connection (after init_sql).
    configure: Callable[[Any], None] | None = None
    #: ``reset(raw_connection)``: called at every checkin, after the rollback.
    reset: Callable[[Any], None] | None = None
    #: ``check(raw_connection)``: replaces the pre-checkout ping; raise if unusable.
    check: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:
        _check_int(self, "max_connections", minimum=1)
        _check_int(self, "min_idle", minimum=0)
        if self.min_idle > self.max_connections:
            raise ConfigError(
                "min_idle",
                f"must be at most max_connections ({self.max_connections}), got {self.min_idle}",
            )
        # Bounded: each segment is made by a thread of its own (concurrency.made_apart), and
        # a segment per core is all a lock split can use; an unbounded value would build
        # millions of them at startup instead of failing with a clear error.
        _check_int(self, "segments", minimum=1, maximum=MAX_SEGMENTS, optional=True)
        _check_number(self, "max_lifetime", positive=True, optional=True)
        _check_number(self, "lifetime_jitter", minimum=0.0)
        if self.lifetime_jitter >= 1:
            raise ConfigError(
                "lifetime_jitter", f"must be in [0, 1), got {_show(self.lifetime_jitter)}"
            )
        _check_number(self, "idle_timeout", positive=True, optional=True)
        _check_number(self, "ping_after", minimum=0.0, optional=True)
        _check_number(self, "keepalive", positive=True, optional=True)
        _check_number(self, "timeout", positive=True, optional=True)
        _check_int(self, "max_waiting", minimum=0)
        _check_number(self, "leak_threshold", positive=True, optional=True)
        _check_int(self, "maintenance_concurrency", minimum=1)
        _check_number(self, "max_backoff", positive=True)
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name", f"must be a non-empty string, got {_show(self.name)}")
        object.__setattr__(self, "init_sql", _statements(self.init_sql))
        for hook in ("configure", "reset", "check"):
            object.__setattr__(self, hook, _callable(hook, getattr(self, hook)))

    @property
    def segment_count(self) -> int:
        """Segments actually used: never more than there are connections to share."""
        wanted = self.segments if self.segments is not None else 4
        return max(1, min(wanted, self.max_connections))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "") -> PoolOptions:
        """Build options from loosely typed values (URL query strings, environment, config).

        Strings are converted by each field's type; unknown keys are rejected, because a
        misspelt setting silently ignored is a setting that does not work. ``source`` is
        prefixed to names in errors (e.g. ``PEEWEE_POOL_``) so they match what the user wrote.
        """
        def label(key: str) -> str:
            return source + key.upper() if source else key

        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, raw in values.items():
            if key not in known:
                raise ConfigError(label(key), unknown_setting(str(key), list(known),
                                                              label=label))
            kwargs[key] = _loose(label(key), known[key], raw)
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            if source:
                raise ConfigError(label(exc.setting), exc.detail) from None
            raise

    @classmethod
    def coerce(cls, name: str, raw: Any) -> Any:
        """Convert one loosely typed value (e.g. a string) to the type of setting ``name``."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        if name not in known:
            raise ConfigError(name, unknown_setting(name, list(known)))
        return _loose(name, known[name], raw)

    def replace(self, **changes: Any) -> PoolOptions:
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """The settings as plain JSON-able values (hooks by their qualified name)."""
        values = dataclasses.asdict(self)
        for hook in ("configure", "reset", "check"):
            func = values[hook]
            if func is not None:
                values[hook] = f"{getattr(func, '__module__', '?')}.{_qualname(func)}"
        values["init_sql"] = list(self.init_sql)
        return values


def unknown_setting(key: str, names: list[str], *,
                    label: Callable[[str], str] | None = None) -> str:
    """The error text for an unknown setting: the closest known name, if one is close.

    Only when nothing is close does it list them all: a typo deserves one suggestion, not
    a wall of names. Names are compared without prefix and case; ``label`` spells a name
    the way the user writes it (``max_lifetime`` -> ``PEEWEE_POOL_MAX_LIFETIME``).
    """
    show = label or (lambda name: name)
    folded = {name.lower(): name for name in names}
    alias = ALIASES.get(key.lower())
    if alias in folded:  # playhouse's spelling where only ours is accepted
        return (f"unknown setting; did you mean {show(folded[alias])}? ({key} is "
                f"playhouse's name for it)")
    close = difflib.get_close_matches(key.lower(), list(folded), n=1, cutoff=0.75)
    if close:
        return f"unknown setting; did you mean {show(folded[close[0]])}?"
    return f"unknown setting; accepted: {', '.join(show(name) for name in names)}"


def _loose(name: str, field: dataclasses.Field[Any], raw: Any) -> Any:
    """A loosely typed value (string, playhouse spelling) as the field's type.

    ``timeout`` 0 means "wait forever" (``None``), as in playhouse.pool: this is the one
    place that says so, for URLs, keyword arguments, Flask and Django settings alike.
    """
    value = _coerce(name, field, raw)
    if field.name == "timeout" and not isinstance(value, bool) and value == 0:
        return None
    return value


def _qualname(func: Any) -> str:
    return str(getattr(func, "__qualname__", type(func).__name__))


def _statements(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(s, str) and s.strip() for s in value):
        raise ConfigError("init_sql", "must be an SQL statement or a list of them, "
                          f"got {_show(value)}")
    return tuple(value)


def _callable(name: str, value: Any) -> Callable[[Any], None] | None:
    """A hook: a callable, or the dotted path of one (``"package.module:function"``)."""
    if value is None or callable(value):
        return value
    if isinstance(value, str) and value.strip():
        module_name, _, attr = value.strip().replace(":", ".").rpartition(".")
        try:
            found = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise ConfigError(name, f"cannot import {value!r}: {exc}") from None
        if callable(found):
            return found  # type: ignore[no-any-return]
    raise ConfigError(name, "must be a callable taking the connection, or the dotted "
                      f"path of one, got {_show(value)}")


def _coerce(name: str, field: dataclasses.Field[Any], raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    text = raw.strip().lower()
    kind = str(field.type)
    if "None" in kind and text in NONE_WORDS:
        return None
    try:
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            if text in ("inf", "infinity"):
                raise ValueError(text)
            return float(text)
        if kind.startswith("bool"):
            if text in TRUE_WORDS:
                return True
            if text in FALSE_WORDS:
                return False
            raise ValueError(text)
    except ValueError:
        raise ConfigError(name, f"expected {_describe(kind)}, got {_show(raw)}") from None
    return raw


def _describe(kind: str) -> str:
    words = []
    if "int" in kind:
        words.append("an integer")
    elif "float" in kind:
        words.append("a number of seconds")
    elif "bool" in kind:
        words.append("true or false")
    else:
        words.append("a string")
    if "None" in kind:
        words.append("or none")
    return " ".join(words)


def _check_int(opts: PoolOptions, name: str, *, minimum: int, maximum: int | None = None,
               optional: bool = False) -> None:
    value = getattr(opts, name)
    if value is None and optional:
        return
    if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
            or (maximum is not None and value > maximum)):
        accepted = (f"an integer >= {minimum}" if maximum is None
                    else f"an integer from {minimum} to {maximum}")
        accepted += " or None" if optional else ""
        raise ConfigError(name, f"must be {accepted}, got {_show(value)}")


def _show(value: Any) -> str:
    """``repr(value)`` for an error message: short, and never raising."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to convert to text
        return "an integer of thousands of digits"
    return text if len(text) <= 80 else text[:77] + "..."


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def _check_number(
    opts: PoolOptions,
    name: str,
    *,
    minimum: float | None = None,
    positive: bool = False,
    optional: bool = False,
) -> None:
    value = getattr(opts, name)
    if value is None and optional:
        return
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and _finite(value)
        and (value > 0 if positive else value >= (minimum or 0.0))
    )
    if not ok:
        bound = "> 0" if positive else f">= {minimum or 0}"
        accepted = f"a finite number {bound}" + (" or None" if optional else "")
        raise ConfigError(name, f"must be {accepted}, got {_show(value)}")
