"""Django integration: a pooled peewee database for a Django project, returned after every
request.

::

    # settings.py
    MIDDLEWARE = [
        "flask_peewee_pool.django.PoolMiddleware",   # first: outermost
        ...
    ]
    PEEWEE_POOL = {
        "DATABASE": "mysql://user:password@db/app",
        "MAX_CONNECTIONS": 20,
    }

    # models.py
    import peewee
    from flask_peewee_pool.django import database

    class Note(peewee.Model):
        text = peewee.TextField()

        class Meta:
            database = database          # or: class Note(flask_peewee_pool.django.Model)

Management commands, the shell and workers load no middleware: add
``"flask_peewee_pool.django.PeeweePoolConfig"`` to ``INSTALLED_APPS`` to bind the database
when Django starts (or call :func:`get_state`). That entry also brings the management
commands ``manage.py pool_stats`` and ``manage.py pool_check``, which print the same
reports as ``flask pool-stats`` / ``flask pool-check`` (same options, same exit codes).

``PEEWEE_POOL`` takes the keys of the Flask settings without their ``PEEWEE_POOL_`` prefix
(``DATABASE``, ``MAX_CONNECTIONS``, ``TIMEOUT``, ``CHECKOUT``, ``EXCLUDED_ENDPOINTS``, ...),
validated by the same code: a bad value raises :class:`PoolImproperlyConfigured` (both our
:class:`~flask_peewee_pool.core.errors.ConfigError` and Django's ``ImproperlyConfigured``)
naming the key, e.g. ``PEEWEE_POOL["MAX_CONNECTIONS"]``, when the middleware is loaded,
i.e. when the server starts. Snapshots for ``pool-stats`` are written only if
``STATS_DIR`` is set (a Django project has no instance folder); ``"METRICS": True``
publishes the pool to Prometheus (extra ``prometheus``).

:data:`database` is a ``peewee.DatabaseProxy``: models can be declared before settings
are read; the middleware binds it at start-up (:func:`get_state` does the same for
management commands and scripts).

**Lifecycle.** A request borrows at most one connection, on its first query (``CHECKOUT
= "lazy"``, the default) or before the view runs (``"eager"``, skipped for views named in
``EXCLUDED_ENDPOINTS``, by ``view_name`` or ``url_name``, and for Django's static-file
views). It is returned when the response is done, with any open transaction rolled back:
at once for an ordinary response (and again when the server closes the response, for
whatever a middleware outside this one queried after it), and for a
``StreamingHttpResponse`` only when its body is exhausted or the response is closed. A
``PoolTimeout`` / ``PoolExhausted`` raised by a view becomes ``503 Service Unavailable``
with ``Retry-After``. A connection the thread held before the request (a test that opened
a transaction, then uses the test client) belongs to the caller and is left alone.

Synchronous middleware (``async_capable = False``): under ASGI, Django runs it and the
sync views in one thread per request, which is what the pool's per-thread connections
need. An async view that queries (through ``sync_to_async``) does so in another thread,
whose connection this middleware cannot return: wrap such code in
``database.connection_context()``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import peewee
from django.apps import AppConfig
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from .. import compat
from ..core.errors import ConfigError, PoolExhausted, PoolTimeout
from ..integration import config as _config
from ..integration.connections import RETRY_AFTER, current_connection, release_connection
from ..integration.runtime import PoolRuntime

__all__ = [
    "DjangoPoolState",
    "Model",
    "PeeweePoolConfig",
    "PoolImproperlyConfigured",
    "PoolMiddleware",
    "close",
    "database",
    "drain",
    "get_state",
]

logger = logging.getLogger("flask_peewee_pool")

SETTING = "PEEWEE_POOL"

#: The pooled database of the project; bound from ``settings.PEEWEE_POOL`` at start-up.
database = peewee.DatabaseProxy()


class Model(peewee.Model):
    """Base class of models using :data:`database`."""

    class Meta:
        database = database


class PoolImproperlyConfigured(ConfigError, ImproperlyConfigured):
    """A ``PEEWEE_POOL`` setting has a value the pool cannot use (names the key)."""


_STATIC_VIEW_MODULES = frozenset({"django.views.static", "django.contrib.staticfiles.views"})


#: What :func:`get_state` returns: the framework-neutral runtime.
DjangoPoolState = PoolRuntime


class _Requests:
    """The project's request lifecycle: which connection a thread's response still holds."""

    def __init__(self, runtime: PoolRuntime) -> None:
        self.runtime = runtime
        self.database = runtime.database
        self._local = threading.local()

    def end_abandoned(self) -> None:
        abandoned: _Held | None = getattr(self._local, "held", None)
        if abandoned is not None:
            # A streaming response of an earlier request on this thread was neither read
            # to the end nor closed (a test client response left aside): a server would
            # have closed it before taking another request on this thread.
            abandoned.end()

    def hold(self, response: HttpResponseBase, keep: Any) -> None:
        held = _Held(self, keep)
        if response.streaming and not response.is_async:  # type: ignore[attr-defined]
            self._local.held = held
            response.streaming_content = held.wrap(  # type: ignore[attr-defined]
                response.streaming_content)  # type: ignore[attr-defined]
        elif response.streaming:
            self._local.held = held  # an async body: returned when the response is closed
        else:
            held.end()
            held.open = True  # once more at close(), for middleware outside this one
        compat.on_response_close(response, held.end)


class _Held:
    """The connection a request took, until its response is done with it."""

    __slots__ = ("keep", "open", "state", "thread")

    def __init__(self, state: _Requests, keep: Any) -> None:
        self.state = state
        self.keep = keep  # the connection the thread held before the request: not ours
        self.thread = threading.get_ident()
        self.open = True

    def end(self) -> None:
        """Return the request's connection; only from the request's own thread."""
        if not self.open or threading.get_ident() != self.thread:
            return
        self.open = False
        local = self.state._local
        if getattr(local, "held", None) is self:
            local.held = None
        release_connection(self.state.database, self.keep)

    def wrap(self, body: Iterable[bytes]) -> Iterator[bytes]:
        elsewhere = threading.get_ident() != self.thread
        # Under ASGI a synchronous body is read in another thread: what it checks out
        # there is returned there; the request's own connection at close().
        keep_there = current_connection(self.state.database) if elsewhere else None
        try:
            yield from body
        finally:
            if elsewhere:
                release_connection(self.state.database, keep_there)
            else:
                self.end()


_lock = threading.Lock()
_state: PoolRuntime | None = None


def get_state() -> PoolRuntime:
    """Build the pool from ``settings.PEEWEE_POOL`` (once) and bind :data:`database`.

    Raises :class:`PoolImproperlyConfigured` naming the key at fault.
    """
    state = _state
    if state is not None:
        return state
    return _configure()


def _configure() -> PoolRuntime:
    global _state
    with _lock:
        if _state is not None:
            return _state
        raw = getattr(django_settings, SETTING, None)
        if raw is None:
            raise PoolImproperlyConfigured(SETTING, "required: a dict such as "
                                           '{"DATABASE": "mysql://user:password@host/db"}')
        if not isinstance(raw, Mapping):
            raise PoolImproperlyConfigured(
                SETTING, f"expected a dict of settings, got {type(raw).__name__}")
        try:
            state = PoolRuntime.from_settings(
                raw, label=_config.dict_label(SETTING), name=_project_name(),
                stats_dir=None)
        except ConfigError as exc:
            raise PoolImproperlyConfigured(exc.setting, exc.detail) from None
        state.name = state.options.name  # the app of snapshots and reports: NAME, or the project
        state.adapter = _Requests(state)
        state.start()
        database.initialize(state.database)
        _state = state
        return state


def drain() -> int:
    """Replace every connection of this process's pool, gracefully: idle ones at once,
    busy ones when returned. Returns how many were open. ``manage.py pool_drain`` asks
    every process of the project."""
    return get_state().drain()


def close() -> None:
    """Close the pool and unbind :data:`database`: the next request (or :func:`get_state`)
    builds them again from the settings of that time."""
    global _state
    with _lock:
        state, _state = _state, None
        if state is not None and database.obj is state.database:
            database.initialize(None)
    if state is not None:
        state.close()


def _project_name() -> str:
    module = getattr(django_settings, "SETTINGS_MODULE", None) or "django"
    return module.split(".")[0]


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:  # override_settings(PEEWEE_POOL=...) in a test
        close()


setting_changed.connect(_on_setting_changed, dispatch_uid="flask_peewee_pool.django")


class PeeweePoolConfig(AppConfig):
    """``INSTALLED_APPS`` entry binding :data:`database` when Django starts (all processes:
    servers, management commands, the shell, task workers)."""

    name = "flask_peewee_pool"
    label = "flask_peewee_pool"
    verbose_name = "peewee connection pool"
    default = False

    def ready(self) -> None:
        get_state()


class PoolMiddleware:
    """Django middleware: each request returns its pooled connection when it is done.

    Put it first in ``MIDDLEWARE`` so its response hooks run after every other
    middleware's. See the module docstring for settings and the lifecycle.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        get_state()  # at start-up: a bad setting stops the server, naming the key

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        state = get_state()
        requests: _Requests = state.adapter
        requests.end_abandoned()
        keep = current_connection(state.database)
        try:
            response = self.get_response(request)
        except BaseException:
            release_connection(state.database, keep)
            raise
        requests.hold(response, keep)
        return response

    def process_view(self, request: HttpRequest, view_func: Callable[..., Any],
                     view_args: Any, view_kwargs: Any) -> HttpResponseBase | None:
        state = get_state()
        if state.checkout != "eager" or not _wants_connection(state, request, view_func):
            return None
        try:
            state.database.connect(reuse_if_open=True)  # pings it if it sat idle
        except (PoolTimeout, PoolExhausted) as exc:
            return _service_unavailable(exc)
        return None

    def process_exception(self, request: HttpRequest,
                          exception: Exception) -> HttpResponseBase | None:
        if isinstance(exception, (PoolTimeout, PoolExhausted)):
            return _service_unavailable(exception)
        return None


def _wants_connection(state: PoolRuntime, request: HttpRequest,
                      view_func: Callable[..., Any]) -> bool:
    if getattr(view_func, "__module__", None) in _STATIC_VIEW_MODULES:
        return False
    match = request.resolver_match
    if match is None or not state.excluded_endpoints:
        return True
    return not ({match.view_name, match.url_name} & state.excluded_endpoints)


def _service_unavailable(exc: Exception) -> HttpResponse:
    logger.warning("answering 503 Service Unavailable: %s", exc)
    return HttpResponse(
        "Service Unavailable: no database connection available, retry shortly.\n",
        status=503,
        content_type="text/plain; charset=utf-8",
        headers={"Retry-After": str(RETRY_AFTER)},
    )
