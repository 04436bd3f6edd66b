"""What a read of a shared object costs on free-threaded CPython, 1 thread against 2.

``python -m benchmarks.sharedreads [KIND ...]`` (on 3.13t: the venv of
``benchmarks/freethreaded.sh``). Each kind is a micro-loop run by 1 and then 2 threads at
once; the figure is CPU nanoseconds per iteration (median of 5; for the pool kinds, per
checkout + return). On a free-threaded build
every load of an object other threads also load writes its reference count, so a loop over
a shared object slows down as threads are added while the same loop over a per-thread
object does not. This is why the pool's fast paths read the thread's home segment, not the
pool (docs/benchmarks.md, "S1 scaling after the hot-path rewrite").
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable

N = 300_000
REPEATS = 5


class _Object:
    def __init__(self) -> None:
        self.a = 1
        self.b = None

    def connect(self) -> bool:
        return True

    def close(self) -> bool:
        return True


_SHARED = _Object()
_LOCAL = threading.local()


def _attrs(obj: _Object) -> None:
    for _ in range(N):
        (obj.a, obj.b, obj.a, obj.b, obj.a, obj.b, obj.a, obj.b, obj.a, obj.b)  # noqa: B018


def _local(own: _Object) -> None:
    _LOCAL.r = own
    for _ in range(N):
        _LOCAL.r  # noqa: B018
        _LOCAL.r  # noqa: B018


def _calls(obj: _Object) -> None:
    for _ in range(N):
        obj.connect()
        obj.close()


def _function() -> int:
    return 1


def _global_function(own: _Object) -> None:
    for _ in range(N):
        _function()
        _function()


_SENTINEL = object()


class _Sentinel:
    """A class as a default value: on 3.13t classes are immortal once a thread started."""


def _object_default(timeout: object = _SENTINEL) -> None:
    pass


def _class_default(timeout: object = _Sentinel) -> None:
    pass


def _defaults(function: Callable[[], None]) -> Callable[[_Object], None]:
    def loop(own: _Object) -> None:
        for _ in range(N):
            function()
            function()
    return loop


#: Checkouts + returns per pool loop (each is some microseconds, not nanoseconds).
POOL_N = N // 10


def _new_pool() -> object:
    from flask_peewee_pool.core.pool import ConnectionPool

    from .fakes import FakeDriver

    return ConnectionPool(FakeDriver(), max_connections=8, max_lifetime=None,
                          start_maintainer=False)


def _pool_loop(pool: object) -> None:
    home = pool.home()  # type: ignore[attr-defined]
    checkout, checkin = home.checkout, home.checkin
    for _ in range(POOL_N):
        checkin(checkout())


#: kind -> loop(own object of the thread[, what the threads share])
KINDS: dict[str, Callable[..., None]] = {
    "shared-attrs": lambda own: _attrs(_SHARED),  # 10 attribute reads of a shared object
    "own-attrs": _attrs,  # the same, of an object made by the thread
    "shared-local": _local,  # 2 reads of one threading.local shared by the threads
    "shared-calls": lambda own: _calls(_SHARED),  # db.connect(); db.close() doing nothing
    "own-calls": _calls,
    "global-function": _global_function,  # 2 calls of a module-level function
    "object-default": _defaults(_object_default),  # 2 calls, default arg an object()
    "class-default": _defaults(_class_default),  # 2 calls, default arg a class
    # One checkout + return (fake driver, kept home): one pool that the threads share,
    # each on its own segment, against a pool of each thread's own: the difference is
    # what the threads still share (the pool's ideal is none).
    "pool-shared": lambda own, shared: _pool_loop(shared),
    "pool-own": lambda own, shared: _pool_loop(_new_pool()),
}
#: Kinds whose threads share one new pool per run (made before they start).
POOL_KINDS = {"pool-shared", "pool-own"}


def run(kind: str, threads: int) -> float:
    cpu: list[float] = []
    pool = _new_pool() if kind in POOL_KINDS else None
    iterations = POOL_N if kind in POOL_KINDS else N

    def work() -> None:
        own = _Object()  # made in this thread
        t0 = time.thread_time()
        if pool is None:
            KINDS[kind](own)
        else:
            KINDS[kind](own, pool)
        cpu.append(time.thread_time() - t0)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(cpu) / (iterations * threads) * 1e9


def main(argv: list[str] | None = None) -> int:
    kinds = (sys.argv[1:] if argv is None else argv) or list(KINDS)
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"Python {sys.version.split()[0]}, GIL {'on' if gil else 'off'}: CPU ns/iteration")
    for kind in kinds:
        one = statistics.median(run(kind, 1) for _ in range(REPEATS))
        two = statistics.median(run(kind, 2) for _ in range(REPEATS))
        print(f"  {kind:16} 1 thread {one:7.1f}   2 threads {two:7.1f}   x{two / one:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
