"""PeeweePool: the Flask extension.

::

    pool = PeeweePool()                 # or PeeweePool(app)

    class Note(pool.Model):
        text = peewee.TextField()

    def create_app():
        app = Flask(__name__)
        app.config["PEEWEE_POOL_DATABASE"] = "mysql://user:password@db/app"
        pool.init_app(app)
        return app

Every ``PEEWEE_POOL_*`` setting is validated in :meth:`PeeweePool.init_app`: a bad value
raises :class:`~flask_peewee_pool.errors.ConfigError` naming the key at start-up, never at
the first request. Values may be typed or strings (``app.config.from_prefixed_env()``).

**One PeeweePool per database.** ``pool.database`` is a ``peewee.DatabaseProxy`` and
``pool.Model`` binds to it, so models can be declared before any app exists. Each
``init_app`` builds that app's own pooled database (``app.extensions["peewee_pool"]``) and
points the proxy at it: when one PeeweePool is initialised on several apps (an app factory
called once per test), the models follow the most recent one, while every app still
returns its own connections. Two databases, or two apps that must run side by side with
different databases, take two PeeweePool objects.

**Lifecycle.** A request borrows at most one connection: on its first query (``CHECKOUT =
"lazy"``, the default) or before the view runs (``"eager"``). It is returned when the
request ends, whatever happened (an exception, ``abort()``), with any transaction the view
left open rolled back; a response whose body is a generator (streamed, with or without
``stream_with_context``) keeps it until the body is exhausted or closed.
Endpoints in ``EXCLUDED_ENDPOINTS`` (and every ``static`` one) never get a connection up
front; a query there still works and is still returned. App contexts outside requests (CLI
commands, scripts) return their connection when they end. A
context only returns a connection it took itself: one already held by an enclosing context
on the same thread (a nested ``app_context()``, a test client call inside a test that
opened a transaction) belongs to that context.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import peewee
from flask import Flask, Response, appcontext_pushed, current_app, g, has_app_context, request
from flask.typing import ResponseReturnValue
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from . import urls
from .cli import register_commands
from .errors import ConfigError, PoolError, PoolExhausted, PoolTimeout
from .middleware import (
    CHECKOUT_MODES,
    RETRY_AFTER,
    current_connection,
    release_connection,
)
from .options import PoolOptions
from .snapshots import start_snapshots
from .stats import PoolStats

logger = logging.getLogger("flask_peewee_pool")

EXTENSION_KEY = "peewee_pool"
PREFIX = "PEEWEE_POOL_"

_POOL_FIELDS = PoolOptions.field_names()
_OTHER_KEYS = (
    "DATABASE", "CONNECT_ARGS", "CHECKOUT", "EXCLUDED_ENDPOINTS", "STATS_DIR", "STATS_INTERVAL",
    "METRICS",
)
#: Every setting init_app accepts, without the prefix.
ACCEPTED_KEYS = (*_OTHER_KEYS[:1], *(f.upper() for f in _POOL_FIELDS), *_OTHER_KEYS[1:])

_URL_POOL_ALIASES = {"stale_timeout": "max_lifetime", "pool_name": "name"}
_SECRET_KEYS = frozenset({"password", "passwd"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off", "none"})
_LEASE = "_peewee_pool_lease"  # key in g and in the WSGI environ


class PeeweePoolState:
    """What :meth:`PeeweePool.init_app` built for one app: ``app.extensions["peewee_pool"]``.

    ``settings`` holds every validated value, keyed by lower-case setting name, with the
    password masked: it is meant to be shown (``flask pool-stats``, logs, snapshots).
    ``metrics`` is the :class:`~flask_peewee_pool.metrics.PoolMetrics` publishing this
    pool to Prometheus (``PEEWEE_POOL_METRICS``), or None.
    """

    def __init__(
        self,
        extension: PeeweePool,
        app: Flask,
        database: peewee.Database,
        options: PoolOptions,
        settings: dict[str, Any],
        checkout: str,
        excluded_endpoints: frozenset[str],
        stats_dir: str,
        stats_interval: float,
        metrics_registry: Any = None,
    ) -> None:
        self.extension = extension
        self.app = app
        self.database = database
        self.options = options
        self.settings = settings
        self.checkout = checkout
        self.excluded_endpoints = excluded_endpoints
        self.stats_dir = stats_dir
        self.stats_interval = stats_interval
        #: ``PEEWEE_POOL_METRICS``: None (off), True (the default registry) or a registry.
        self.metrics_registry = metrics_registry
        self.metrics: Any = None
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"<PeeweePoolState {self.app.name!r} {self.settings['database']!r}>"

    def stats(self) -> PoolStats:
        return self.database.pool_stats()  # type: ignore[attr-defined, no-any-return]

    # ------------------------------------------------------------ request lifecycle

    def _on_appcontext_pushed(self, sender: Flask, **kwargs: Any) -> None:
        # Sent again when stream_with_context re-pushes the same context: keep the first.
        if _LEASE not in g:
            setattr(g, _LEASE, _Lease(current_connection(self.database)))

    def _before_request(self) -> None:
        abandoned: _Stream | None = getattr(self._local, "stream", None)
        if abandoned is not None:
            # A streamed response of an earlier request on this thread was neither read to
            # the end nor closed (a test client response left aside): a server would have
            # closed it before taking another request on this thread.
            self._end_stream(abandoned)
        request.environ[_LEASE] = _Lease(current_connection(self.database))
        if self.checkout == "eager" and self._wants_connection(request.endpoint):
            self.database.connect(reuse_if_open=True)  # pings it if it sat idle

    def _wants_connection(self, endpoint: str | None) -> bool:
        if endpoint is None or request.routing_exception is not None:
            return False  # 404 / 405: no view will run
        if endpoint.rpartition(".")[2] == "static":
            return False
        return endpoint not in self.excluded_endpoints

    def _after_request(self, response: Response) -> Response:
        lease: _Lease | None = request.environ.get(_LEASE)
        if lease is None or not inspect.isgenerator(response.response):
            return response
        # A generator body runs after the view returned, with stream_with_context inside
        # the request context, without it after both contexts are gone: either way the
        # connection stays with the response until its body is exhausted or closed.
        stream = _Stream(lease, g.get(_LEASE))
        self._local.stream = stream
        response.response = self._release_after(response.response, stream)
        return response

    def _release_after(self, body: Iterator[Any], stream: _Stream) -> Iterator[Any]:
        try:
            yield from body  # close() reaches body too, so stream_with_context pops first
        finally:
            self._end_stream(stream)

    def _end_stream(self, stream: _Stream) -> None:
        if not stream.open or threading.get_ident() != stream.thread:
            # Not open any more, or finalised by the garbage collector in another thread,
            # whose connection is not this one: the owner thread's next request ends it.
            return
        stream.open = False
        if getattr(self._local, "stream", None) is stream:
            self._local.stream = None
        lease, context_lease = stream.lease, stream.context_lease
        lease.streams -= 1
        keep = lease.keep
        if context_lease is not None:
            context_lease.streams -= 1
            if context_lease.ended and not context_lease.streams:
                keep = context_lease.keep  # that context ended first and left this to us
        release_connection(self.database, keep)

    def _teardown_request(self, exc: BaseException | None) -> None:
        lease: _Lease | None = request.environ.get(_LEASE)
        if lease is None:
            return  # before_request never ran (test_request_context): the app context owns it
        lease.ended = True
        if not lease.streams:
            release_connection(self.database, lease.keep)

    def _teardown_appcontext(self, exc: BaseException | None) -> None:
        # Left in g: stream_with_context may push this context again, and must find it.
        lease: _Lease | None = g.get(_LEASE)
        if lease is None:  # pushed before init_app: it cannot have inherited anything
            release_connection(self.database)
            return
        lease.ended = True
        if not lease.streams:
            release_connection(self.database, lease.keep)

    # ------------------------------------------------------------ 503

    def _on_pool_busy(self, exc: PoolError) -> ResponseReturnValue:
        """PoolTimeout / PoolExhausted -> 503 with Retry-After, unless the app has a handler.

        Registered for the two base classes at init_app (only if the app had none). An app
        handler registered later for the same class replaces this one; a handler for a
        subclass or a base (``PoolError``, playhouse's ``MaxConnectionsExceeded``) would
        lose to it in Flask's lookup, so it is looked for here and given precedence.
        """
        handler = _pool_error_handler(current_app, exc, self._on_pool_busy)
        if handler is not None:
            return current_app.ensure_sync(handler)(exc)  # type: ignore[no-any-return]
        logger.warning("answering 503 Service Unavailable: %s", exc)
        rv = current_app.handle_http_exception(ServiceUnavailable(
            "No database connection is available at the moment; retry shortly.",
            retry_after=RETRY_AFTER,
        ))
        if isinstance(rv, HTTPException):
            rv = rv.get_response()
        response = current_app.make_response(rv)
        response.headers.setdefault("Retry-After", str(RETRY_AFTER))
        return response


class _Lease:
    """What one Flask context (app or request) owns of the thread's connection."""

    __slots__ = ("ended", "keep", "streams")

    def __init__(self, keep: Any) -> None:
        self.keep = keep  # the connection an enclosing context already held: not ours
        self.streams = 0  # generator responses still running; they release it
        self.ended = False


class _Stream:
    """A generator response still holding the connection of the request that made it."""

    __slots__ = ("context_lease", "lease", "open", "thread")

    def __init__(self, lease: _Lease, context_lease: _Lease | None) -> None:
        self.lease = lease
        self.context_lease = context_lease
        self.thread = threading.get_ident()
        self.open = True
        lease.streams += 1
        if context_lease is not None:
            context_lease.streams += 1


class PeeweePool:
    """Flask extension: a pooled peewee database per app, returned after every request.

    ``pool.database`` is a ``peewee.DatabaseProxy`` bound by :meth:`init_app`;
    ``pool.Model`` is a model base class using it. See the module docstring for settings
    and the connection lifecycle.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self.database = peewee.DatabaseProxy()
        proxy = self.database

        class Model(peewee.Model):
            class Meta:
                database = proxy

        self.Model: type[peewee.Model] = Model
        self._last_state: PeeweePoolState | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate ``app``'s ``PEEWEE_POOL_*`` settings, build its pool, hook its lifecycle."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                f"a PeeweePool is already registered on app {app.name!r}; use one app per "
                "PeeweePool database, or call init_app once")
        state = _build_state(self, app)

        app.extensions[EXTENSION_KEY] = state
        appcontext_pushed.connect(state._on_appcontext_pushed, app)
        app.before_request_funcs.setdefault(None, []).insert(0, state._before_request)
        app.after_request(state._after_request)
        app.teardown_request(state._teardown_request)
        app.teardown_appcontext(state._teardown_appcontext)
        handlers = app.error_handler_spec[None][None]
        for exc_class in (PoolTimeout, PoolExhausted):
            if exc_class not in handlers:
                app.register_error_handler(exc_class, state._on_pool_busy)

        self.database.initialize(state.database)
        self._last_state = state

        register_commands(app)
        start_snapshots(state)
        if state.metrics_registry is not None:
            from . import metrics

            kwargs = {} if state.metrics_registry is True else {
                "registry": state.metrics_registry}
            state.metrics = metrics.instrument(state.database, **kwargs)

    def get_state(self, app: Flask | None = None) -> PeeweePoolState:
        """The state for ``app``; default: the current app, else the last one initialised."""
        if app is None:
            if has_app_context():
                app = current_app._get_current_object()  # type: ignore[attr-defined]
            elif self._last_state is not None:
                return self._last_state
            else:
                raise RuntimeError("PeeweePool.init_app() has not been called")
        state = app.extensions.get(EXTENSION_KEY)
        if state is None or state.extension is not self:
            raise RuntimeError(f"this PeeweePool is not registered on app {app.name!r}")
        return state  # type: ignore[no-any-return]

    def stats(self, app: Flask | None = None) -> PoolStats:
        """A snapshot of the pool's counters (see :class:`~flask_peewee_pool.stats.PoolStats`)."""
        return self.get_state(app).stats()


# ---------------------------------------------------------------------------- settings


def _build_state(extension: PeeweePool, app: Flask) -> PeeweePoolState:
    raw = {key[len(PREFIX):]: value for key, value in app.config.items()
           if key.startswith(PREFIX)}
    unknown = sorted(set(raw) - set(ACCEPTED_KEYS))
    if unknown:
        accepted = ", ".join(PREFIX + k for k in ACCEPTED_KEYS)
        raise ConfigError(PREFIX + unknown[0], f"unknown setting; accepted: {accepted}")

    url = raw.get("DATABASE")
    if url is None or url == "":
        raise ConfigError(PREFIX + "DATABASE", "required: a database URL such as "
                          "mysql://user:password@host/db or sqlite:///path/to/file.db")
    if not isinstance(url, str) or "://" not in url:
        got = f"got {type(url).__name__}" if not isinstance(url, str) else "value not shown"
        raise ConfigError(PREFIX + "DATABASE", "expected a database URL such as "
                          f"mysql://user:password@host/db ({got}: it may hold a password)")
    try:
        db_class, db_name, url_kwargs = urls.parse(url)
    except ConfigError as exc:
        raise ConfigError(PREFIX + "DATABASE", _scrub(exc.detail, url)) from None

    url_pool = {}
    for key in list(url_kwargs):
        field = _URL_POOL_ALIASES.get(key, key)
        if field in _POOL_FIELDS:
            url_pool[field] = url_kwargs.pop(key)
    try:
        PoolOptions.from_mapping(url_pool)
    except ConfigError as exc:
        raise ConfigError(PREFIX + "DATABASE",
                          f"query parameter {exc.setting}: {exc.detail}") from None

    values: dict[str, Any] = {"name": app.import_name, **url_pool}
    for field in _POOL_FIELDS:
        if field.upper() in raw:
            values[field] = raw[field.upper()]
    if isinstance(values["name"], (int, float)) and not isinstance(values["name"], bool):
        values["name"] = str(values["name"])  # from_prefixed_env turns "123" into 123
    options = PoolOptions.from_mapping(values, source=PREFIX)

    connect_args = _connect_args(raw.get("CONNECT_ARGS"))
    checkout = _checkout(raw.get("CHECKOUT"))
    excluded = _excluded_endpoints(raw.get("EXCLUDED_ENDPOINTS"))
    stats_dir = _stats_dir(raw.get("STATS_DIR"), app)
    stats_interval = _stats_interval(raw.get("STATS_INTERVAL"))
    metrics_registry = _metrics(raw.get("METRICS"))

    database = db_class(db_name, pool_options=options, pool_name=options.name,
                        **{**url_kwargs, **connect_args})
    settings: dict[str, Any] = {
        "database": _redact(url),
        **{field: getattr(options, field) for field in _POOL_FIELDS},
        "connect_args": {k: "***" if k in _SECRET_KEYS else v for k, v in connect_args.items()},
        "checkout": checkout,
        "excluded_endpoints": sorted(excluded),
        "stats_dir": stats_dir,
        "stats_interval": stats_interval,
        "metrics": metrics_registry is not None,
    }
    return PeeweePoolState(extension, app, database, options, settings, checkout,
                           excluded, stats_dir, stats_interval, metrics_registry)


def _connect_args(value: Any) -> dict[str, Any]:
    key = PREFIX + "CONNECT_ARGS"
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
        field = _URL_POOL_ALIASES.get(name, name)
        if field in _POOL_FIELDS:
            raise ConfigError(key, f"{name!r} is a pool setting: use {PREFIX}{field.upper()}")
    return args


def _checkout(value: Any) -> str:
    if value is None:
        return "lazy"
    mode = value.strip().lower() if isinstance(value, str) else value
    if mode not in CHECKOUT_MODES:
        raise ConfigError(PREFIX + "CHECKOUT", f"expected 'lazy' or 'eager', got {value!r}")
    return mode  # type: ignore[no-any-return]


def _excluded_endpoints(value: Any) -> frozenset[str]:
    key = PREFIX + "EXCLUDED_ENDPOINTS"
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


def _stats_dir(value: Any, app: Flask) -> str:
    if value is None or value == "":
        return os.path.join(app.instance_path, "peewee_pool_stats")
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(PREFIX + "STATS_DIR",
                          f"expected a directory path, got {type(value).__name__}")
    return os.fspath(value)


def _stats_interval(value: Any) -> float:
    if value is None:
        return 5.0
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if (isinstance(number, bool) or not isinstance(number, (int, float))
            or not math.isfinite(number) or number <= 0):
        raise ConfigError(PREFIX + "STATS_INTERVAL",
                          f"must be a finite number of seconds > 0, got {value!r}")
    return float(number)


def _metrics(value: Any) -> Any:
    """None (off), True (prometheus_client's default registry) or a CollectorRegistry."""
    key = PREFIX + "METRICS"
    enabled: Any = value
    if isinstance(value, str):
        text = value.strip().lower()
        enabled = True if text in _TRUE else False if text in _FALSE else value
    elif type(value) is int and value in (0, 1):  # from_prefixed_env turns "1" into 1
        enabled = bool(value)
    if value is None or enabled is False:
        return None
    try:
        from . import metrics  # prometheus_client is an optional extra
    except ImportError:
        raise ConfigError(key, "needs prometheus_client: pip install "
                          "'flask-peewee-pool[prometheus]'") from None
    if enabled is not True and not isinstance(enabled, metrics.CollectorRegistry):
        raise ConfigError(key, "expected true or false (or a prometheus_client "
                          f"CollectorRegistry), got {value!r}")
    return enabled


_USERINFO_PASSWORD = re.compile(r"^([A-Za-z][\w+.-]*://[^:/@?#]*:)(.*)@", re.DOTALL)
_redact = urls.redact


def _scrub(message: str, url: str) -> str:
    """``message`` with every password that ``url`` holds masked."""
    match = _USERINFO_PASSWORD.match(url)
    secrets = [match.group(2)] if match else []
    secrets += [v for k, v in parse_qsl(urlsplit(url).query) if k in _SECRET_KEYS]
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


def _pool_error_handler(app: Flask, exc: BaseException, ours: Any) -> Any:
    """The app's (or blueprint's) own handler for this pool error, if any but ours.

    Only handlers for pool error classes count: a catch-all ``Exception`` handler is not a
    decision about what an exhausted pool should answer.
    """
    for name in (*request.blueprints, None):
        handlers = app.error_handler_spec[name][None]
        for cls in type(exc).__mro__:
            if not issubclass(cls, (PoolError, MaxConnectionsExceeded)):
                continue
            handler = handlers.get(cls)
            if handler is not None and handler != ours:
                return handler
    return None
