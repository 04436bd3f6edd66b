"""Worker threads, timing and CPU accounting shared by every scenario.

Why one runner: every scenario is "N threads start together at a barrier, each
does units of work until a count or a deadline"; keeping that in one place keeps
the timing rules identical across pools (same barrier, same clock, same bounds).
Every wait here is bounded: barriers and joins have timeouts, units are bounded by
the pools' checkout timeout and the driver's read/connect timeouts.
"""

from __future__ import annotations

import array
import contextlib
import gc
import math
import os
import resource
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .proxyctl import ProxyHandle, cpu_seconds

_FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

BARRIER_TIMEOUT = 60.0  # includes opening dedicated connections before the window
JOIN_SLACK = 60.0  # how long past the deadline a unit may still run before a thread is "hung"


class Worker(Protocol):
    """What the runner needs from a pool adapter (real or fake)."""

    def unit(self) -> None: ...
    def thread_start(self, warm: bool) -> None: ...
    def thread_end(self) -> None: ...


@dataclass
class ThreadResult:
    units: int = 0
    errors: int = 0
    first_error: str | None = None
    started: float = 0.0  # perf_counter when it left the barrier
    finished: float = 0.0  # perf_counter when its last unit ended
    # Plain float arrays, not lists of tuples: nothing for the garbage collector to walk
    # while the window runs (a full collection over 100k tuples stalls every thread).
    latencies: array.array[float] = field(default_factory=lambda: array.array("d"))
    # With ``record=True``: every unit's start (perf_counter) and duration; error types by
    # index of the unit.
    starts: array.array[float] = field(default_factory=lambda: array.array("d"))
    durations: array.array[float] = field(default_factory=lambda: array.array("d"))
    error_types: dict[int, str] = field(default_factory=dict)
    busy_since: float | None = None  # start of the unit still running at the bound


@dataclass
class Run:
    """What one pool did in one timed window."""

    threads: list[ThreadResult]
    hung: int
    counters: dict[str, float | None]  # Meters deltas over the window
    released: float = math.nan  # perf_counter when the barrier let the workers go

    @property
    def units(self) -> int:
        return sum(t.units for t in self.threads)

    @property
    def errors(self) -> int:
        return sum(t.errors for t in self.threads)

    @property
    def first_error(self) -> str | None:
        return next((t.first_error for t in self.threads if t.first_error), None)

    def _ran(self) -> list[ThreadResult]:
        return [t for t in self.threads if t.started]  # not those that failed to start

    @property
    def start(self) -> float:
        return min((t.started for t in self._ran()), default=math.nan)

    @property
    def elapsed(self) -> float:
        """First start to last finish."""
        return max((t.finished for t in self._ran()), default=math.nan) - self.start

    def events(self) -> list[tuple[float, float, str | None, int]]:
        """Recorded units of every thread: (start s from the common start, seconds, error
        type or None, thread index), in start order."""
        start = self.start
        out = [
            (t0 - start, dt, t.error_types.get(k), i)
            for i, t in enumerate(self.threads)
            for k, (t0, dt) in enumerate(zip(t.starts, t.durations, strict=True))
        ]
        out.sort()
        return out

    def done_times(self) -> list[float]:
        """Per thread, seconds from the common start until its last unit ended."""
        start = self.start
        return sorted(t.finished - start for t in self._ran())

    def latency_percentiles(self) -> dict[str, float]:
        lat = sorted(x for t in self.threads for x in t.latencies)
        return {f"p{q}": percentile(lat, q) for q in (50, 90, 99)} | {
            "max": lat[-1] if lat else math.nan
        }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def server_pid() -> int | None:
    """The local MariaDB/MySQL server's pid, for CPU accounting (None if not local)."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() in ("mariadbd", "mysqld"):
                    return int(pid)
        except OSError:
            continue
    return None


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent not idle since boot (/proc/stat), None if unknown.

    Over a window, this minus client, proxy and server is what *other* programs took
    from the benchmark (on a shared 2-core machine, test suites running beside it).
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Meters:
    """Counters sampled at the start and end of a timed window.

    CPU seconds of this process (minus an in-process proxy thread), of the proxy and of
    the server (on a 2-core machine they share the same cores, so this says who was
    the bottleneck), and the chunks the proxy forwarded upstream (about one per round
    trip).
    """

    def __init__(self, proxy: ProxyHandle | None, server: int | None) -> None:
        self.proxy = proxy
        self.server = server

    def sample(self) -> dict[str, float | None]:
        proxy = self.proxy
        proxy_cpu = proxy.cpu_seconds() if proxy is not None else None
        client = cpu_seconds(os.getpid())
        if client is not None and proxy_cpu is not None and proxy is not None:
            client -= proxy_cpu if proxy.mode == "thread" else 0.0
        ru = resource.getrusage(resource.RUSAGE_SELF)  # every thread, finished ones too
        return {
            "client_user_s": ru.ru_utime,
            "client_sys_s": ru.ru_stime,
            "client_vol_switches": float(ru.ru_nvcsw),
            "client_invol_switches": float(ru.ru_nivcsw),
            "cpu_machine_s": machine_busy_seconds(),
            "cpu_client_s": client,
            "cpu_proxy_s": proxy_cpu,
            "cpu_server_s": cpu_seconds(self.server) if self.server is not None else None,
            "chunks_up": float(proxy.get("chunks_up")) if proxy is not None else None,
        }

    @staticmethod
    def delta(a: dict[str, float | None], b: dict[str, float | None]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for key, start in a.items():
            end = b.get(key)
            out[key] = end - start if start is not None and end is not None else None
        return out


def run_workers(
    adapter: Worker,
    n_threads: int,
    *,
    warm: bool,
    duration: float | None = None,
    units_per_thread: int | None = None,
    meters: Meters | None = None,
    record: bool = False,
    during: Callable[[float], None] | None = None,
) -> Run:
    """Start ``n_threads`` together; each works until ``duration`` or ``units_per_thread``.

    ``record`` keeps every unit's start, duration and error type (for timelines);
    ``during(t0)`` runs in the calling thread once the workers are released (t0: the
    perf_counter of the release), e.g. to break the network on a schedule.
    """
    if duration is None and units_per_thread is None:
        raise ValueError("give a duration, a unit count, or both")
    barrier = threading.Barrier(n_threads + 1)
    results: list[ThreadResult] = [None] * n_threads  # type: ignore[list-item]

    def worker(index: int) -> None:
        # Made in the worker's own thread, as is everything the loop below writes: objects
        # the main thread made one after the other sit side by side in memory, and on
        # free-threaded CPython two workers writing their own results there would share
        # cache lines (a slowdown of the harness, measured as if it were the pool's).
        res = results[index] = ThreadResult()
        unit = adapter.unit
        try:
            adapter.thread_start(warm)
            barrier.wait(BARRIER_TIMEOUT)
        except Exception as exc:
            res.errors += 1
            res.first_error = f"thread start: {exc!r}"
            barrier.abort()
            return
        # Locals only in the loop (no module attribute, no closure cell read per unit):
        # on free-threaded CPython each read of a shared object is a contended write of
        # its reference count, and the harness would slow down as threads are added.
        perf_counter = time.perf_counter
        latencies = res.latencies.append
        is_recording = record
        limit = units_per_thread
        res.started = perf_counter()
        end = res.started + duration if duration is not None else math.inf
        try:
            while True:
                t0 = perf_counter()
                if is_recording:
                    res.busy_since = t0
                try:
                    unit()
                except Exception as exc:
                    res.errors += 1
                    if res.first_error is None:
                        res.first_error = repr(exc)
                    t1 = perf_counter()
                    if is_recording:
                        res.error_types[len(res.starts)] = type(exc).__name__
                        res.starts.append(t0)
                        res.durations.append(t1 - t0)
                else:
                    t1 = perf_counter()
                    res.units += 1
                    latencies(t1 - t0)
                    if is_recording:
                        res.starts.append(t0)
                        res.durations.append(t1 - t0)
                res.busy_since = None
                res.finished = t1
                if limit is not None and res.units + res.errors >= limit:
                    break
                if t1 >= end:
                    break
        finally:
            try:
                adapter.thread_end()
            except Exception as exc:
                res.first_error = res.first_error or f"thread end: {exc!r}"

    # What exists before the window (results of earlier runs, modules) is frozen out of
    # the collector's reach, so a full collection during the window stays short; every
    # pool gets the same treatment.
    # Not on free-threaded CPython: there frozen objects lose their owner's fast reference
    # counting, so every shared object read becomes a contended atomic write (measured: the
    # pool alone at 2 threads went from 1.2x to 2.0x its 1-thread CPU per op, for every
    # pool alike).
    freeze = not _FREE_THREADED
    gc.collect()
    if freeze:
        gc.freeze()
    try:
        return _run_threads(worker, results, barrier, duration, meters, during)
    finally:
        if freeze:
            gc.unfreeze()


def _run_threads(
    worker: Callable[[int], None],
    results: list[ThreadResult],
    barrier: threading.Barrier,
    duration: float | None,
    meters: Meters | None,
    during: Callable[[float], None] | None,
) -> Run:
    threads = [
        threading.Thread(target=worker, args=(i,), name=f"bench-{i}", daemon=True)
        for i in range(len(results))
    ]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a worker failed: it says why
        barrier.wait(BARRIER_TIMEOUT)
    released = time.perf_counter()
    before = meters.sample() if meters else {}
    if during is not None:
        during(released)
    limit = time.monotonic() + (duration or 0) + JOIN_SLACK
    for t in threads:
        t.join(max(0.0, limit - time.monotonic()))
    after = meters.sample() if meters else {}
    hung = sum(t.is_alive() for t in threads)
    for i, res in enumerate(results):  # a thread that never ran has nothing to report
        if res is None:
            results[i] = ThreadResult()
    return Run(threads=results, hung=hung, counters=Meters.delta(before, after), released=released)


def summary(run: Run) -> dict[str, Any]:
    """The JSON-friendly part of a run (no per-unit latencies: they would be megabytes)."""
    elapsed = run.elapsed
    return {
        "units": run.units,
        "errors": run.errors,
        "first_error": run.first_error,
        "hung_threads": run.hung,
        "elapsed_s": elapsed,
        "units_per_s": run.units / elapsed if elapsed > 0 else math.nan,
        "latency_s": run.latency_percentiles(),
        "thread_done_s": run.done_times(),
        "thread_units": [t.units for t in run.threads],
        "counters": run.counters,
    }
