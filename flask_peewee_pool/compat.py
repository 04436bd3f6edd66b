"""The one place that touches framework internals, where no public API does the job.

Each function names what it needs and why no public API gives it; each has a test run
on the lowest and newest supported framework versions (``nox -s frameworks``). Nothing
here imports a framework at module level: Flask, Django and prometheus_client stay
optional.

Replaced by public APIs (no longer needed here): ``flask.globals._cv_app`` (now
``flask.has_app_context()`` + ``current_app``) and inserting into
``app.before_request_funcs`` (now the ``request_started`` signal).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["flask_error_handlers", "histogram_feed", "on_response_close", "proxy_slot"]


def flask_error_handlers(app: Any, blueprint: str | None) -> Mapping[type, Callable[..., Any]]:
    """Flask: the handlers registered by exception class on ``app`` (``blueprint`` None) or
    on one blueprint; empty if none.

    Flask has no public lookup of registered error handlers (``_find_error_handler`` is
    private too); the extension needs one to register its 503 handler only where the app
    has none, and to let an app's own handler for a pool error win over it.
    """
    by_code = app.error_handler_spec.get(blueprint)  # .get: adds no defaultdict entry
    if not by_code:
        return {}
    return by_code.get(None) or {}  # type: ignore[no-any-return]


def proxy_slot() -> Any:
    """peewee: the slot descriptor behind ``DatabaseProxy.obj``.

    The Flask extension's proxy answers ``obj`` per app context (a property), yet must
    still store what ``initialize()`` gives it; peewee's ``Proxy`` keeps that in its
    ``obj`` slot and offers no other public place.
    """
    import peewee

    slot = peewee.DatabaseProxy.__dict__.get("obj") or peewee.Proxy.__dict__["obj"]
    return slot


def on_response_close(response: Any, callback: Callable[[], None]) -> None:
    """Django: call ``callback`` when the server closes ``response``.

    Django runs a response's resource closers in ``close()``; the public alternative, the
    ``request_finished`` signal, is global (not per response) and runs in whatever thread
    closes the response, so it cannot tell which request's connection to return.
    """
    response._resource_closers.append(callback)


def histogram_feed(child: Any, buckets: int) -> Callable[[list[int], float], None] | None:
    """prometheus_client: a function adding counts per bucket and a sum to one histogram
    child in one write each, or None where the histogram is laid out differently.

    The public ``observe()`` takes one observation at a time; copying a pool histogram's
    new observations that way costs one call per observation (thousands per scrape under
    load) and loses the exact sum. Callers fall back to ``observe()`` on None.
    """
    values = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if not (isinstance(values, list) and len(values) == buckets
            and all(hasattr(v, "inc") for v in values) and hasattr(total, "inc")):
        return None

    def add(counts: list[int], amount: float) -> None:
        for value, n in zip(values, counts, strict=True):
            if n:
                value.inc(n)
        total.inc(amount)

    return add
