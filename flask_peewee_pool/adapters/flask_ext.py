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
raises :class:`~flask_peewee_pool.core.errors.ConfigError` naming the key at start-up, never at
the first request. Values may be typed or strings (``app.config.from_prefixed_env()``).

**One PeeweePool per database.** ``pool.database`` is a ``peewee.DatabaseProxy``
(:class:`AppDatabaseProxy`) and ``pool.Model`` binds to it, so models can be declared before
any app exists. Each ``init_app`` builds that app's own pooled database
(``app.extensions["peewee_pool"]``); inside an app context the proxy is the current app's
database, outside one the most recently initialised: one PeeweePool initialised on several
apps (an app factory called once per test, apps side by side) keeps each app's queries and
connections in its own pool. Two databases in one app take two PeeweePool objects.

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

**Closing.** ``pool.close(app)`` stops that app's pool, maintainer thread, snapshot writer
and metrics (:class:`~flask_peewee_pool.integration.runtime.PoolRuntime` owns them all), so
an app factory run in a test loop leaves nothing behind.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import peewee
from flask import (
    Flask,
    Response,
    appcontext_pushed,
    current_app,
    g,
    has_app_context,
    request,
    request_started,
)
from flask.typing import ResponseReturnValue
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from .. import compat
from ..core.errors import PoolError, PoolExhausted, PoolTimeout
from ..core.stats import PoolStats
from ..integration import config as _config
from ..integration.config import ACCEPTED_KEYS, PREFIX
from ..integration.connections import RETRY_AFTER, current_connection, release_connection
from ..integration.runtime import PoolRuntime
from ..ops.snapshots import DEFAULT_DIRNAME
from .flask_cli import EXTENSION_KEY, register_commands

logger = logging.getLogger("flask_peewee_pool")

__all__ = [
    "ACCEPTED_KEYS", "EXTENSION_KEY", "PREFIX", "AppDatabaseProxy", "PeeweePool",
    "PeeweePoolState",
]

_LEASE = "_peewee_pool_lease"  # key in g and in the WSGI environ

#: What ``app.extensions["peewee_pool"]`` holds: the framework-neutral runtime.
PeeweePoolState = PoolRuntime


class _FlaskHooks:
    """One app's request lifecycle: Flask's signals and hooks, translated for the runtime."""

    def __init__(self, runtime: PoolRuntime) -> None:
        self.runtime = runtime
        self.database = runtime.database
        self._local = threading.local()

    # ------------------------------------------------------------ request lifecycle

    def _on_appcontext_pushed(self, sender: Flask, **kwargs: Any) -> None:
        # Sent again when stream_with_context re-pushes the same context: keep the first.
        if _LEASE not in g:
            setattr(g, _LEASE, _Lease(current_connection(self.database)))

    def _before_request(self, sender: Flask, **kwargs: Any) -> None:
        # request_started: before every before_request function of the app, whenever
        # they were registered, so a query in one of them is this request's.
        abandoned: _Stream | None = getattr(self._local, "stream", None)
        if abandoned is not None:
            # A streamed response of an earlier request on this thread was neither read to
            # the end nor closed (a test client response left aside): a server would have
            # closed it before taking another request on this thread.
            self._end_stream(abandoned)
        request.environ[_LEASE] = _Lease(current_connection(self.database))
        if self.runtime.checkout == "eager" and self._wants_connection(request.endpoint):
            self.database.connect(reuse_if_open=True)  # pings it if it sat idle

    def _wants_connection(self, endpoint: str | None) -> bool:
        if endpoint is None or request.routing_exception is not None:
            return False  # 404 / 405: no view will run
        if endpoint.rpartition(".")[2] == "static":
            return False
        return endpoint not in self.runtime.excluded_endpoints

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

    def disconnect(self, app: Flask) -> None:
        """Stop listening to ``app``'s signals (the hooks left do nothing once closed)."""
        appcontext_pushed.disconnect(self._on_appcontext_pushed, app)
        request_started.disconnect(self._before_request, app)


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


_PROXY_SLOT = compat.proxy_slot()  # what DatabaseProxy.obj stores, under the property


class AppDatabaseProxy(peewee.DatabaseProxy):
    """A ``DatabaseProxy`` that is the current app's database inside an app context.

    Outside an app context (a script, a test after ``create_app()``) it is the database it
    was last ``initialize``-d with: the one of the app initialised last.
    """

    __slots__ = ("_extension",)

    def __init__(self, extension: PeeweePool) -> None:
        object.__setattr__(self, "_extension", extension)
        super().__init__()

    @property  # type: ignore[override]
    def obj(self) -> Any:
        if has_app_context():
            state = current_app.extensions.get(EXTENSION_KEY)
            if state is not None and state.extension is self._extension:
                return state.database
        return _PROXY_SLOT.__get__(self)

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr == "obj":
            _PROXY_SLOT.__set__(self, value)
        elif attr in ("_callbacks", "_Model"):
            object.__setattr__(self, attr, value)
        else:
            raise AttributeError("Cannot set attribute on proxy.")

    def __repr__(self) -> str:
        return f"<AppDatabaseProxy {self.obj!r}>"


class PeeweePool:
    """Flask extension: a pooled peewee database per app, returned after every request.

    ``pool.database`` is a ``peewee.DatabaseProxy`` bound by :meth:`init_app`;
    ``pool.Model`` is a model base class using it. See the module docstring for settings
    and the connection lifecycle.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self.database = AppDatabaseProxy(self)
        proxy = self.database

        class Model(peewee.Model):
            class Meta:
                database = proxy

        self.Model: type[peewee.Model] = Model
        self._last_state: PoolRuntime | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate ``app``'s ``PEEWEE_POOL_*`` settings, build its pool, hook its lifecycle."""
        self._check_unregistered(app)
        self._install(app, PoolRuntime.from_settings(
            _config.prefixed(app.config), name=app.import_name, app_name=app.name,
            label=_config.flask_label,
            stats_dir=os.path.join(app.instance_path, DEFAULT_DIRNAME), app=app,
            extension=self))

    def _check_unregistered(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                f"a PeeweePool is already registered on app {app.name!r}; use one app per "
                "PeeweePool database, or call init_app once")

    def _install(self, app: Flask, runtime: PoolRuntime) -> None:
        """Register ``runtime`` on ``app``: lifecycle hooks, 503 handler, CLI, snapshots."""
        hooks = _FlaskHooks(runtime)
        runtime.adapter = hooks
        app.extensions[EXTENSION_KEY] = runtime
        appcontext_pushed.connect(hooks._on_appcontext_pushed, app)
        request_started.connect(hooks._before_request, app)
        app.after_request(hooks._after_request)
        app.teardown_request(hooks._teardown_request)
        app.teardown_appcontext(hooks._teardown_appcontext)
        handlers = compat.flask_error_handlers(app, None)
        for exc_class in (PoolTimeout, PoolExhausted):
            if exc_class not in handlers:
                app.register_error_handler(exc_class, hooks._on_pool_busy)

        self.database.initialize(runtime.database)
        self._last_state = runtime

        register_commands(app)
        runtime.start()

    def get_state(self, app: Flask | None = None) -> PoolRuntime:
        """The runtime for ``app``; default: the current app, else the last one initialised."""
        if app is None:
            if has_app_context():
                app = current_app  # the proxy serves .extensions and .name
            elif self._last_state is not None:
                return self._last_state
            else:
                raise RuntimeError("PeeweePool.init_app() has not been called")
        state = app.extensions.get(EXTENSION_KEY)
        if state is None or state.extension is not self:
            raise RuntimeError(f"this PeeweePool is not registered on app {app.name!r}")
        return state  # type: ignore[no-any-return]

    def stats(self, app: Flask | None = None) -> PoolStats:
        """A snapshot of the pool's counters (:class:`~flask_peewee_pool.PoolStats`)."""
        return self.get_state(app).stats()

    def drain(self, app: Flask | None = None) -> int:
        """Replace every connection of ``app``'s pool in this process, gracefully (after a
        fail-over, a password change, a server restart): idle ones at once, busy ones when
        returned. Returns how many were open. ``flask pool-drain`` asks every process."""
        return self.get_state(app).drain()

    def close(self, app: Flask | None = None) -> None:
        """Close ``app``'s pool (default: as :meth:`get_state` finds it) for good.

        Stops its maintainer thread, snapshot writer (the file is removed) and metrics, and
        closes its connections; connections still checked out are closed when returned.
        The app stays registered (``init_app`` on it again is an error): it is done with
        this database. Idempotent.
        """
        runtime = self.get_state(app)
        hooks = getattr(runtime, "adapter", None)
        if isinstance(hooks, _FlaskHooks) and runtime.app is not None:
            hooks.disconnect(runtime.app)
        if self._last_state is runtime:
            self._last_state = None
            if _PROXY_SLOT.__get__(self.database) is runtime.database:
                self.database.initialize(None)
        runtime.close()


def _pool_error_handler(app: Flask, exc: BaseException, ours: Any) -> Any:
    """The app's (or blueprint's) own handler for this pool error, if any but ours.

    Only handlers for pool error classes count: a catch-all ``Exception`` handler is not a
    decision about what an exhausted pool should answer.
    """
    for name in (*request.blueprints, None):
        handlers = compat.flask_error_handlers(app, name)
        for cls in type(exc).__mro__:
            if not issubclass(cls, (PoolError, MaxConnectionsExceeded)):
                continue
            handler = handlers.get(cls)
            if handler is not None and handler != ours:
                return handler
    return None
