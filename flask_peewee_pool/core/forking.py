"""One fork registry: every module's at-fork work, run in a stated order.

``os.register_at_fork`` runs callbacks in registration order (``before`` in reverse), i.e.
in import order, which nobody chooses. Here each callback names its *stage*, and stages
run in this order in the child:

1. ``POOL``: the pools drop the parent's connections and threads (pool.py).
2. ``DATABASE``: peewee databases forget the forking thread's connection (database.py).
3. ``SERVICES``: snapshot writers, metrics updaters and other services built on a pool
   take the new pid and fresh locks (snapshots, metrics, the integration runtime).

``before`` callbacks run in the reverse stage order (services first, pools last), so
locks are taken from the outside in, and ``after_in_parent`` in stage order, releasing
them. Within a stage, callbacks run in registration order. A callback that raises is
logged and the others still run: a fork must never fail half-done.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

__all__ = ["DATABASE", "POOL", "SERVICES", "STAGES", "register", "unregister"]

logger = logging.getLogger("flask_peewee_pool")

POOL = "pool"
DATABASE = "database"
SERVICES = "services"
#: Stage order in the child (and in the parent after fork); ``before`` runs it reversed.
STAGES = (POOL, DATABASE, SERVICES)

Callback = Callable[[], None]

_callbacks: dict[str, dict[str, list[Callback]]] = {
    stage: {"before": [], "after_in_parent": [], "after_in_child": []} for stage in STAGES
}
_lock = threading.Lock()


def register(stage: str, *, before: Callback | None = None,
             after_in_parent: Callback | None = None,
             after_in_child: Callback | None = None) -> None:
    """Run these callbacks around every ``fork()``, at ``stage`` (see the module docstring)."""
    if stage not in _callbacks:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    with _lock:
        for when, func in (("before", before), ("after_in_parent", after_in_parent),
                           ("after_in_child", after_in_child)):
            if func is not None and func not in _callbacks[stage][when]:
                _callbacks[stage][when].append(func)


def unregister(func: Callback) -> None:
    """Forget ``func`` wherever it was registered (tests)."""
    with _lock:
        for whens in _callbacks.values():
            for funcs in whens.values():
                while func in funcs:
                    funcs.remove(func)


def _run(when: str, stages: tuple[str, ...]) -> None:
    for stage in stages:
        for func in list(_callbacks[stage][when]):
            try:
                func()
            except Exception:
                logger.exception("at-fork callback %r (%s, %s) failed", func, stage, when)


def _before() -> None:
    _run("before", tuple(reversed(STAGES)))


def _after_in_parent() -> None:
    _run("after_in_parent", STAGES)


def _after_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at fork time
    _run("after_in_child", STAGES)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before, after_in_parent=_after_in_parent,
                        after_in_child=_after_in_child)
