"""PoolMiddleware: the per-request connection lifecycle for any WSGI application.

A request borrows at most one connection and gives it back when the *server* is done with
the response, which for a streamed body is when it calls ``close()`` on the iterable, not
when the application returns it. Returning means: roll back whatever transaction the
application left open, then hand the connection back to the pool. The same helpers
(:mod:`..integration.connections`) back the Flask and Django adapters, so all behave alike.

The middleware only ever returns a connection the request itself took: if the calling
thread already held one when the request began (a test that opened a transaction and then
calls the application in-process), that connection belongs to the caller and is left alone.

No Flask or Werkzeug import here: this module must work under any WSGI framework.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..core.errors import PoolExhausted, PoolTimeout
from ..integration.connections import (
    CHECKOUT_MODES,
    RETRY_AFTER,
    current_connection,
    release_connection,
)

__all__ = ["CHECKOUT_MODES", "RETRY_AFTER", "PoolMiddleware", "current_connection",
           "release_connection"]

logger = logging.getLogger("flask_peewee_pool")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ReleasingIterable:
    """Wraps a WSGI response iterable; ``close()`` closes it and then releases, once."""

    __slots__ = ("_iterable", "_release")

    def __init__(self, iterable: Iterable[bytes], release: Callable[[], Any]) -> None:
        self._iterable = iterable
        self._release: Callable[[], Any] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._iterable)

    def close(self) -> None:
        release, self._release = self._release, None
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            if release is not None:
                release()


class PoolMiddleware:
    """Wrap ``wsgi_app`` so each request returns its pooled connection when it ends.

    ``database`` is a pooled peewee database (or a ``DatabaseProxy`` to one).
    ``checkout="lazy"`` (default) lets peewee connect on the first query, so requests that
    never touch the database never borrow a connection; ``"eager"`` checks one out before
    the application runs (running the pool's health ping if it sat idle), and answers
    ``503 Service Unavailable`` with ``Retry-After`` if none can be had in time.

    The connection is returned when the server closes the response iterable (PEP 3333
    guarantees it does, even after an error), or at once if the application raises.
    """

    def __init__(self, wsgi_app: WSGIApp, database: Any, *, checkout: str = "lazy") -> None:
        if checkout not in CHECKOUT_MODES:
            raise ValueError(f"checkout must be one of {CHECKOUT_MODES}, got {checkout!r}")
        self.wsgi_app = wsgi_app
        self.database = database
        self.checkout = checkout

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        database = self.database
        keep = current_connection(database)
        started = False

        def tracking_start_response(*args: Any) -> Any:
            nonlocal started
            started = True
            return start_response(*args)

        try:
            if self.checkout == "eager":
                database.connect(reuse_if_open=True)
            result = self.wsgi_app(environ, tracking_start_response)
        except (PoolTimeout, PoolExhausted) as exc:
            release_connection(database, keep)
            logger.warning("answering 503 Service Unavailable: %s", exc)
            # exc_info only if the app had started a response: PEP 3333 lets us replace
            # its headers then, and some servers refuse exc_info otherwise.
            return _service_unavailable(start_response, sys.exc_info() if started else None)
        except BaseException:
            release_connection(database, keep)
            raise
        return _ReleasingIterable(result, lambda: release_connection(database, keep))


def _service_unavailable(start_response: Callable[..., Any], exc_info: Any) -> list[bytes]:
    body = b"Service Unavailable: no database connection available, retry shortly.\n"
    start_response(
        "503 Service Unavailable",
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Retry-After", str(RETRY_AFTER)),
        ],
        exc_info,
    )
    return [body]
