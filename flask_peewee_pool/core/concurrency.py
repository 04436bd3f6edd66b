"""Which concurrency model the process runs, and who "the holder" of a connection is.

Two jobs, both small:

* **Holder identity.** A connection belongs to one thread, or under gevent to one greenlet.
  :func:`holder_key` names the caller: the current greenlet when the ``greenlet`` package is
  installed (in a plain thread that is the thread's own main greenlet, so threads are told
  apart too), else the thread. One C call, cheap enough for every checkout and every cursor.
* **gevent patching after construction.** ``gunicorn --preload -k gevent`` builds pools and
  databases in the master, then the worker runs ``gevent.monkey.patch_all()``: every lock,
  condition and thread-local made before that is a real OS-thread object, shared by all the
  greenlets of the worker. :func:`threading_patched` tells whether the ``threading`` module
  is patched now; :func:`on_patch_all` runs a callback right after gevent patches (gevent
  publishes that through ``zope.event``, which gevent depends on), so pools and databases
  rebuild their state before the first request.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

try:  # greenlet ships with gevent (and SQLAlchemy); without it, holders are threads
    from greenlet import getcurrent as _getcurrent
except ImportError:  # pragma: no cover - exercised only where greenlet is absent
    _getcurrent = None

#: ``greenlet.getcurrent`` (None without the greenlet package) and ``threading.get_ident``,
#: for hot paths that inline :func:`holder_key`. Never keep a greenlet itself: a dead one
#: must be collectable.
getcurrent: Callable[[], Any] | None = _getcurrent
get_ident: Callable[[], int] = threading.get_ident


def holder_key() -> int:
    """An int naming the current holder: ``id()`` of the current greenlet, or without the
    greenlet package the thread's ident (one C call: no shared object is read, which on
    free-threaded CPython would cost a contended reference count).

    Callers on hot paths inline it as
    ``get_ident() if getcurrent is None else id(getcurrent())``.
    """
    return get_ident() if getcurrent is None else id(getcurrent())


def describe_holder() -> str:
    """The current thread's name, and the greenlet when it is not the thread's main one."""
    name = f"thread {threading.current_thread().name!r}"
    if _getcurrent is not None:
        current = _getcurrent()
        if getattr(current, "parent", None) is not None:  # a spawned greenlet
            name += f", greenlet {getattr(current, 'name', None) or hex(id(current))}"
    return name


def threading_patched() -> bool:
    """True when gevent has monkey-patched the ``threading`` module in this process."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    try:
        return bool(monkey.is_module_patched("threading"))
    except Exception:  # pragma: no cover - an unknown gevent
        return False


def _original_local() -> type:
    import _thread

    if threading_patched():  # imported after patching: ask gevent for the original
        return sys.modules["gevent.monkey"].get_original("_thread", "_local")  # type: ignore[no-any-return]
    return _thread._local  # type: ignore[no-any-return]


#: The C thread-local type: one per OS thread, shared by every greenlet of that thread.
_REAL_LOCAL: type = _original_local()


def is_current_local(obj: Any) -> bool:
    """False when ``obj`` is a real thread-local while gevent has patched ``threading``
    (it was made before the patching, so all greenlets of a thread share it).

    A plain object (peewee's ``thread_safe=False`` state) counts as current: it was never
    meant to be per-thread.
    """
    local = threading.local
    if local is _REAL_LOCAL or isinstance(obj, local):
        return True
    return not isinstance(obj, _REAL_LOCAL)


_patch_callbacks: list[Callable[[], None]] = []
_subscribed = False


def on_patch_all(callback: Callable[[], None]) -> None:
    """Run ``callback()`` right after ``gevent.monkey.patch_all()`` in this process.

    Nothing happens if gevent (and so ``zope.event``) is not installed: then nothing can
    patch either.
    """
    global _subscribed
    _patch_callbacks.append(callback)
    if _subscribed:
        return
    try:
        import zope.event
    except ImportError:
        return
    zope.event.subscribers.append(_notify)
    _subscribed = True


def _notify(event: Any) -> None:
    kind = type(event).__name__
    if not (kind == "GeventDidPatchAllEvent" or (
            kind == "GeventDidPatchModuleEvent"
            and getattr(event, "module_name", None) == "threading")):
        return
    for callback in list(_patch_callbacks):
        callback()


def _gil_disabled() -> bool:
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return is_enabled is not None and not is_enabled()


def made_apart(factories: list[Callable[[], Any]]) -> list[Any]:
    """``[make() for make in factories]``, on free-threaded CPython each made in a thread
    of its own, so that no two results share a cache line.

    Why: objects one thread allocates one after the other sit side by side (one allocator
    heap per thread), and on free-threaded CPython every read of an object writes its
    reference count: two segments made in a row by the same thread bounce their shared
    cache lines between the cores of their two home threads (measured: a pool's speed-up
    at 2 threads varied from 1.3x to 1.95x between runs of the same code). The threads
    are alive together until every one has made its object: a thread that had exited
    would leave its half-used pages to the next one, whose objects would then sit beside
    the first one's again (measured: two segments' locks 64 bytes apart). Under the GIL
    (or if no thread can be started, e.g. at interpreter shutdown) they are made here,
    in order.
    """
    if len(factories) < 2 or not _gil_disabled():
        return [make() for make in factories]
    made: list[Any] = [None] * len(factories)
    errors: list[BaseException] = []
    built = [threading.Event() for _ in factories]
    leave = threading.Event()

    def build(index: int, make: Callable[[], Any]) -> None:
        try:
            made[index] = make()
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)
        finally:
            built[index].set()
        leave.wait()  # keep this heap's pages to this thread until all are made

    workers = []
    try:
        for index, make in enumerate(factories):
            worker = threading.Thread(target=build, args=(index, make), name="fpp-alloc",
                                      daemon=True)
            try:
                worker.start()
            except RuntimeError:  # interpreter shutting down, or no thread to be had
                made[index] = make()
                built[index].set()
                continue
            workers.append(worker)
        for event in built:
            event.wait()
    finally:
        leave.set()
        for worker in workers:
            worker.join()
    if errors:
        raise errors[0]
    return made
