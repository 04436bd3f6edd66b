"""Run the FaultProxy in this process (a thread) or in a child process, behind one handle.

Why a child process by default: the proxy is Python. In-process, its event loop
competes for the GIL with the 32 benchmark threads, and every forwarded chunk waits
for a GIL hand-off; that measured about 3x fewer round trips per second at 0 ms than
the same proxy in its own process.  In a child process it only competes for CPU.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from multiprocessing.connection import Connection
from typing import Any

from tests.support import proxy as _proxy_module
from tests.support.proxy import FaultProxy

_REPLY_TIMEOUT = 30.0
_CALLABLE = frozenset({"blackhole", "restore", "reset_all"})


def _survive_reset_peers() -> None:
    """Work around a FaultProxy bug until tests/support/proxy.py fixes it (reported).

    When a client has closed its socket during a blackhole, the proxy later forwards the
    half-close with ``write_eof()``, which raises ENOTCONN once the client's kernel has
    answered with an RST; the error escapes the timer callback before the pair is
    finished, so the pair stays counted in ``active`` forever (no socket, no server
    session: a bookkeeping leak that would read as a pool leak here).  Any OSError
    while flushing means that peer is gone: reset the pair, as on any other reset.
    """
    direction = _proxy_module._Direction
    original = direction.flush
    if getattr(original, "_resets_on_oserror", False):
        return

    def flush(self: Any) -> None:
        try:
            original(self)
        except OSError:
            self.pair.close(reset=True)

    flush._resets_on_oserror = True  # type: ignore[attr-defined]
    direction.flush = flush  # type: ignore[method-assign]


def cpu_seconds(pid: int, tid: int | None = None) -> float | None:
    """User+system CPU of a process (or one of its threads) from /proc; None if unknown."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


class ProxyHandle:
    """What the benchmarks need from a proxy, wherever it runs."""

    host: str
    port: int
    mode: str

    def set(self, name: str, value: Any) -> None:
        raise NotImplementedError

    def get(self, name: str) -> Any:
        raise NotImplementedError

    def call(self, method: str, *args: Any) -> Any:
        """Call a proxy method (``blackhole``, ``restore``, ``reset_all``); returns once
        the proxy has applied it."""
        raise NotImplementedError

    def set_latency(self, one_way: float) -> None:
        self.set("latency_up", one_way)
        self.set("latency_down", one_way)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no connection is open through the proxy."""
        raise NotImplementedError

    def cpu_seconds(self) -> float | None:
        """CPU used so far by the proxy's loop thread / process."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class ThreadProxy(ProxyHandle):
    mode = "thread"

    def __init__(self, target_host: str, target_port: int) -> None:
        _survive_reset_peers()
        self._proxy = FaultProxy(target_host, target_port).start()
        self.host, self.port = self._proxy.host, self._proxy.port

    def set(self, name: str, value: Any) -> None:
        setattr(self._proxy, name, value)

    def get(self, name: str) -> Any:
        return getattr(self._proxy, name)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self._proxy, method)(*args)

    def wait_idle(self, timeout: float) -> bool:
        return self._proxy.wait_until(lambda p: p.active == 0, timeout)

    def cpu_seconds(self) -> float | None:
        tid = self._proxy.thread_id
        return None if tid is None else cpu_seconds(os.getpid(), tid)

    def stop(self) -> None:
        self._proxy.stop()


def _serve(conn: Connection, target_host: str, target_port: int) -> None:
    """Child process: run a FaultProxy and obey (op, args) messages until "stop" or EOF."""
    _survive_reset_peers()
    proxy = FaultProxy(target_host, target_port).start()
    conn.send(("ok", (proxy.host, proxy.port)))
    try:
        while True:
            try:
                op, args = conn.recv()
            except EOFError:  # parent went away
                return
            if op == "stop":
                return
            try:
                if op == "set":
                    result = setattr(proxy, *args)
                elif op == "get":
                    result = getattr(proxy, args[0])
                elif op == "call" and args[0] in _CALLABLE:
                    result = getattr(proxy, args[0])(*args[1:])
                elif op == "wait_idle":
                    result = proxy.wait_until(lambda p: p.active == 0, args[0])
                else:
                    raise ValueError(f"unknown op {op!r}")
                conn.send(("ok", result))
            except Exception as exc:
                conn.send(("err", repr(exc)))
    finally:
        proxy.stop()
        conn.close()


class ProcessProxy(ProxyHandle):
    mode = "process"

    def __init__(self, target_host: str, target_port: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(child_conn, target_host, target_port), daemon=True
        )
        self._proc.start()
        child_conn.close()
        self.host, self.port = self._request(None)

    def _request(
        self, message: tuple[str, tuple[Any, ...]] | None, timeout: float = _REPLY_TIMEOUT
    ) -> Any:
        if message is not None:
            self._conn.send(message)
        if not self._conn.poll(timeout):
            raise RuntimeError("proxy process did not answer in time")
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"proxy process: {value}")
        return value

    def set(self, name: str, value: Any) -> None:
        self._request(("set", (name, value)))

    def get(self, name: str) -> Any:
        return self._request(("get", (name,)))

    def call(self, method: str, *args: Any) -> Any:
        return self._request(("call", (method, *args)))

    def wait_idle(self, timeout: float) -> bool:
        return bool(self._request(("wait_idle", (timeout,)), timeout + _REPLY_TIMEOUT))

    def cpu_seconds(self) -> float | None:
        pid = self._proc.pid
        return None if pid is None else cpu_seconds(pid)

    def stop(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("stop", ()))
            self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()


def start_proxy(mode: str, target_host: str, target_port: int) -> ProxyHandle:
    if mode == "thread":
        return ThreadProxy(target_host, target_port)
    if mode == "process":
        return ProcessProxy(target_host, target_port)
    raise ValueError(f"proxy mode must be 'thread' or 'process', not {mode!r}")
