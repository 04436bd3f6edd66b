"""A TCP latency / fault-injection proxy for tests and benchmarks.

Why: the pool's whole point is that slow network I/O (connect, ping, close) never
happens under a pool lock.  On loopback everything is instant, so lock contention is
invisible; putting this proxy between the driver and the database makes every
round trip, every connect and every failure as slow or as broken as we like.

Design
------
* One asyncio event loop in one daemon thread serves every connection with plain
  ``asyncio.Protocol`` objects: hundreds of connections cost a few kilobytes each and
  no threads.
* Each direction of a connection is a *delay line*: a chunk received at ``t`` is
  written at ``t + latency`` (the latency in force when it was received), in order.
  Many chunks may be in flight at once and each gets the same delay, so latency does
  not limit throughput.  If the latency is lowered while chunks are in flight, later
  chunks wait for earlier ones (order is never broken).  The delay is a minimum: the
  loop's timers run on epoll's 1 ms granularity, so expect +0.1-0.3 ms per hop
  (1 ms one-way measured 2.37 ms per ``SELECT 1`` against 0.17 ms at 0 ms).
* Flow control: a reader is paused while its peer's write buffer is full or more than
  ``_HIGH_WATER`` bytes wait in its delay line, so memory stays bounded.
* ``stop()`` resets whatever is still open (held, blackholed or connecting pairs
  included) and joins the thread within 10 s.  ``wait_until(predicate)`` blocks on
  counter changes, so tests never need to sleep to see the proxy catch up.
* In-process, the loop shares the GIL with the caller's threads: with dozens of busy
  client threads each forwarded chunk waits for a GIL hand-off.  The benchmarks run
  it in a child process instead (``benchmarks/proxyctl.py``).
* Knobs are plain attributes (one atomic store each under the GIL) read by the loop
  when a chunk arrives or a connection is accepted, so they take effect for later
  data/connections.  Methods that act on existing connections (``blackhole``,
  ``restore``, ``reset_all``) run on the loop and return once applied.

Fault semantics
---------------
* ``connect_delay``: after accepting a client the proxy waits this long before it
  opens the upstream connection.  The client's ``connect()`` returns at once (the
  kernel accepts), but the server greeting / first reply arrives ``connect_delay``
  later.  Each connection has its own timer: concurrent connects are never
  serialised.
* ``refuse``: new clients are reset (``SO_LINGER`` 0 then close: an RST) right
  after accept; they see ``ECONNRESET`` from ``connect()`` itself (the RST can beat
  its completion check) or on their first read/write.
* ``blackhole()``: nothing is forwarded in either direction on any connection; data
  is *held* (readers are paused so it stays in kernel buffers, and chunks already in a
  delay line are kept).  New clients are accepted but not connected upstream.
  ``restore()`` heals the partition like a network that comes back: held data is
  delivered and held connects proceed (stalled connections resume).  With
  ``restore(reset_stalled=True)`` every connection that exists at that moment is
  reset instead, as if peers or a middlebox had given up on them.
* ``reset_all()``: every current connection, both sides, is aborted with an RST.
* ``cut_after(n, count=None)``: each of the next ``count`` accepted connections
  (every later one if ``count`` is None) gets a budget of ``n`` bytes forwarded in
  total, both directions together.  The chunk that exhausts the budget is truncated
  to it, written, and both sides are then reset.  ``cut_after(0)`` resets a
  connection on its first chunk.  ``cut_after(None)`` disables it for later
  connections; connections already accepted keep their budget.
* A peer that resets makes the proxy reset the other side at once; a half-close (FIN)
  is forwarded through the delay line; a pair is closed once both directions have
  forwarded their FIN.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["FaultProxy"]

_T = TypeVar("_T")

_CLIENT = 0
_UPSTREAM = 1
_EOF = b""  # marker in a delay line; real chunks are never empty
_LINGER_RST = struct.pack("ii", 1, 0)
_HIGH_WATER = 1 << 20  # bytes queued in one delay line before its reader is paused
_LOW_WATER = 1 << 18  # ... and resumed
_CALL_TIMEOUT = 10.0  # bound on waiting for the loop to apply a blackhole/restore/reset
_STOP_TIMEOUT = 10.0  # bound on stop()'s join


def _abort_with_rst(transport: asyncio.BaseTransport | None) -> None:
    """Close a transport so the peer sees an RST rather than a FIN."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    transport.abort()  # type: ignore[attr-defined]


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class _Direction:
    """One direction of a pair: a FIFO delay line from ``src`` to ``dst``."""

    __slots__ = (
        "dst",
        "dst_full",
        "eof_sent",
        "last_due",
        "pair",
        "queue",
        "queued",
        "src",
        "timer",
    )

    def __init__(self, pair: _Pair, src: int, dst: int) -> None:
        self.pair = pair
        self.src = src
        self.dst = dst
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0  # bytes waiting in the line
        self.last_due = 0.0  # due times never decrease: order is preserved
        self.timer: asyncio.TimerHandle | None = None
        self.dst_full = False  # the destination transport asked us to stop writing
        self.eof_sent = False

    def push(self, chunk: bytes, latency: float) -> None:
        now = self.pair.loop.time()
        due = max(now + latency, self.last_due)
        self.last_due = due
        self.queue.append((due, chunk))
        self.queued += len(chunk)
        if self.timer is None:  # an armed timer is for an earlier head: leave it
            self.flush()
        if self.queued > _HIGH_WATER:
            self.update_flow()

    def kick(self) -> None:
        """Re-examine the line now (after connect, restore or a writable peer)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.flush()
        self.update_flow()

    def flush(self) -> None:
        """Write every chunk whose time has come; arm one timer for the next one."""
        self.timer = None
        pair = self.pair
        if pair.closed or pair.proxy._blackholed:
            return  # held: restore() kicks us
        dst = pair.transports[self.dst]
        if dst is None:
            return  # upstream not connected yet: kicked once it is
        loop = pair.loop
        now = loop.time()
        queue = self.queue
        while queue:
            due, chunk = queue[0]
            if due > now:
                self.timer = loop.call_at(due, self._on_timer)
                return
            queue.popleft()
            if chunk is _EOF:
                self.eof_sent = True
                if not dst.is_closing():
                    try:
                        dst.write_eof()  # type: ignore[attr-defined]
                    except OSError:  # the peer reset before we noticed (ENOTCONN)
                        pair.close(reset=True)
                        return
                pair.maybe_finish()
                return
            self.queued -= len(chunk)
            if not pair.forward(dst, chunk):
                return  # cut

    def _on_timer(self) -> None:
        self.flush()
        if "flow" in self.pair.pause_reasons[self.src]:
            self.update_flow()

    def update_flow(self) -> None:
        """Pause the source while the destination or the delay line is full."""
        currently = "flow" in self.pair.pause_reasons[self.src]
        limit = _LOW_WATER if currently else _HIGH_WATER
        self.pair.set_paused(self.src, "flow", self.dst_full or self.queued > limit)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.queued = 0


class _Pair:
    """A client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy, client: asyncio.Transport, budget: int | None) -> None:
        self.proxy = proxy
        self.loop = proxy._require_loop()
        self.transports: list[asyncio.Transport | None] = [client, None]
        self.pause_reasons: tuple[set[str], set[str]] = (set(), set())
        self.directions = (
            _Direction(self, _CLIENT, _UPSTREAM),
            _Direction(self, _UPSTREAM, _CLIENT),
        )
        self.budget = budget  # bytes still allowed through, None = unlimited
        self.closed = False
        self.connect_task: asyncio.Task[None] | None = None

    # -- events from the protocols -------------------------------------------------
    def on_data(self, side: int, data: bytes) -> None:
        if self.closed:
            return
        proxy = self.proxy
        latency = proxy._latency_up if side == _CLIENT else proxy._latency_down
        self.directions[side].push(data, latency)

    def on_eof(self, side: int) -> None:
        if self.closed:
            return
        proxy = self.proxy
        latency = proxy._latency_up if side == _CLIENT else proxy._latency_down
        self.directions[side].push(_EOF, latency)

    def on_lost(self, side: int, exc: Exception | None) -> None:
        if self.closed:
            return
        # A side vanished without a forwarded half-close: propagate at once.
        self.close(reset=exc is not None)

    def on_writable(self, side: int, writable: bool) -> None:
        direction = self.directions[1 - side]  # the direction writing *to* this side
        direction.dst_full = not writable
        if writable:
            direction.kick()
        else:
            direction.update_flow()

    def attach_upstream(self, transport: asyncio.Transport) -> None:
        if self.closed:
            _abort_with_rst(transport)
            return
        self.transports[_UPSTREAM] = transport
        if self.pause_reasons[_UPSTREAM]:
            transport.pause_reading()
        self.set_paused(_CLIENT, "connecting", False)
        self.directions[_CLIENT].kick()

    # -- actions -------------------------------------------------------------------
    def forward(self, dst: asyncio.Transport, chunk: bytes) -> bool:
        """Write a chunk, honouring the cut budget; False if the pair was cut."""
        if dst.is_closing():
            return True
        if dst is self.transports[_UPSTREAM]:
            self.proxy.chunks_up += 1
        else:
            self.proxy.chunks_down += 1
        budget = self.budget
        if budget is not None:
            if len(chunk) >= budget:
                if budget:
                    dst.write(chunk[:budget])
                self.budget = 0
                self.proxy.cut += 1
                self.close(reset=True)
                return False
            self.budget = budget - len(chunk)
        dst.write(chunk)
        return True

    def set_paused(self, side: int, reason: str, on: bool) -> None:
        reasons = self.pause_reasons[side]
        before = bool(reasons)
        if on:
            reasons.add(reason)
        else:
            reasons.discard(reason)
        after = bool(reasons)
        transport = self.transports[side]
        if before == after or transport is None or transport.is_closing():
            return
        if after:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def maybe_finish(self) -> None:
        if all(d.eof_sent for d in self.directions):
            self.close(reset=False)

    def close(self, *, reset: bool) -> None:
        """Close both sides (RST if ``reset``), idempotently, and forget the pair."""
        if self.closed:
            return
        self.closed = True
        if self.connect_task is not None:
            self.connect_task.cancel()
        for direction in self.directions:
            direction.cancel()
        for transport in self.transports:
            if transport is None:
                continue
            if reset:
                _abort_with_rst(transport)
            elif not transport.is_closing():
                transport.close()
        self.proxy._forget(self)


class _SideProtocol(asyncio.Protocol):
    """Thin adapter forwarding transport events of one side to its pair."""

    def __init__(self, proxy: FaultProxy, side: int, pair: _Pair | None = None) -> None:
        self.proxy = proxy
        self.side = side
        self.pair = pair

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.side == _CLIENT:
            self.pair = self.proxy._on_accept(transport)
        elif self.pair is not None:
            self.pair.attach_upstream(transport)

    def data_received(self, data: bytes) -> None:
        if self.pair is not None:
            self.pair.on_data(self.side, data)

    def eof_received(self) -> bool:
        if self.pair is not None:
            self.pair.on_eof(self.side)
        return True  # keep the transport open: the half-close goes through the delay line

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pair is not None:
            self.pair.on_lost(self.side, exc)

    def pause_writing(self) -> None:
        if self.pair is not None:
            self.pair.on_writable(self.side, False)

    def resume_writing(self) -> None:
        if self.pair is not None:
            self.pair.on_writable(self.side, True)


class FaultProxy:
    """TCP proxy adding latency and faults between clients and ``target``.

    See the module docstring for the exact semantics of each knob.  Use as::

        with FaultProxy("127.0.0.1", 3306) as proxy:
            proxy.set_latency(0.001)
            pymysql.connect(host=proxy.host, port=proxy.port, ...)
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = listen_host
        self.port = listen_port
        self._latency_up = 0.0
        self._latency_down = 0.0
        self._connect_delay = 0.0
        self.refuse = False
        self._blackholed = False
        self._cut: tuple[int, int | None] | None = None
        self._cut_lock = threading.Lock()
        # Counters, written by the loop thread only.
        self.accepted = 0  # client connections accepted (refused ones included)
        self.refused = 0  # client connections reset because of ``refuse``
        self.active = 0  # pairs currently open (including ones not yet connected upstream)
        self.upstream_connects = 0  # upstream connections established
        self.upstream_failures = 0  # upstream connects that failed (client is reset)
        self.cut = 0  # connections cut by ``cut_after``
        # Chunks forwarded per direction. Request/response protocols send about one
        # chunk per request, so chunks_up approximates client round trips.
        self.chunks_up = 0
        self.chunks_down = 0
        self._cond = threading.Condition()
        self._pairs: set[_Pair] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._open: asyncio.Event | None = None  # set while not blackholed

    # -- knobs ---------------------------------------------------------------------
    @property
    def latency_up(self) -> float:
        """One-way delay (s) added to each chunk client -> server."""
        return self._latency_up

    @latency_up.setter
    def latency_up(self, value: float) -> None:
        self._latency_up = _non_negative("latency_up", value)

    @property
    def latency_down(self) -> float:
        """One-way delay (s) added to each chunk server -> client."""
        return self._latency_down

    @latency_down.setter
    def latency_down(self, value: float) -> None:
        self._latency_down = _non_negative("latency_down", value)

    @property
    def connect_delay(self) -> float:
        """Seconds between accepting a client and opening its upstream connection."""
        return self._connect_delay

    @connect_delay.setter
    def connect_delay(self, value: float) -> None:
        self._connect_delay = _non_negative("connect_delay", value)

    def set_latency(self, one_way: float) -> None:
        """Set both one-way latencies (the round trip grows by twice this)."""
        self.latency_up = one_way
        self.latency_down = one_way

    @property
    def blackholed(self) -> bool:
        return self._blackholed

    def blackhole(self) -> None:
        """Stop forwarding anything on any connection and stop connecting upstream."""
        self._blackholed = True
        self._call(self._apply_blackhole)

    def restore(self, *, reset_stalled: bool = False) -> None:
        """End a blackhole: resume every connection, or reset them all if asked."""
        # Clearing the flag first is safe: held chunks are ahead in their delay lines.
        self._blackholed = False
        self._call(self._apply_restore, reset_stalled)

    def reset_all(self) -> None:
        """Abort every current connection, both sides, with an RST."""
        self._call(self._apply_reset_all)

    def cut_after(self, n_bytes: int | None, count: int | None = None) -> None:
        """Cut the next ``count`` (None: all later) connections after ``n_bytes`` bytes."""
        if n_bytes is not None and n_bytes < 0:
            raise ValueError("n_bytes must be >= 0")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1")
        with self._cut_lock:
            self._cut = None if n_bytes is None else (n_bytes, count)

    @property
    def thread_id(self) -> int | None:
        """Native id of the loop thread (for CPU accounting via /proc), None if stopped."""
        thread = self._thread
        return thread.native_id if thread is not None else None

    def wait_until(self, predicate: Callable[[FaultProxy], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate(self)`` holds (re-checked on every counter change)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Start the loop thread; returns once the socket listens."""
        if self._thread is not None:
            raise RuntimeError("FaultProxy already started")
        self._thread = threading.Thread(
            target=self._run,
            name=f"FaultProxy->{self.target_host}:{self.target_port}",
            daemon=True,
        )
        self._thread.start()
        if not self._ready.wait(_CALL_TIMEOUT):
            raise RuntimeError("FaultProxy did not start listening in time")
        if self._start_error is not None:
            self._thread.join(_STOP_TIMEOUT)
            self._thread = None
            raise self._start_error
        return self

    def stop(self) -> None:
        """Reset every connection, close the listener and join the thread (bounded)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop already finished
                loop.call_soon_threadsafe(stopping.set)
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError("FaultProxy thread did not stop in time")
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start() if self._thread is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"<FaultProxy {self.host}:{self.port} -> {self.target_host}:{self.target_port}"
            f" active={self.active} accepted={self.accepted}>"
        )

    # -- loop thread -----------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # surfaced by start() if it happened before listening
            if not self._ready.is_set():
                self._start_error = exc
        finally:
            self._ready.set()
            with contextlib.suppress(Exception):
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                loop.run_until_complete(asyncio.sleep(0))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        # An own accept loop rather than loop.create_server(): closing an asyncio
        # Server while accepted sockets still wait for their transport strands them
        # (3.11 asserts in Server._attach and leaks the socket); here stop() first
        # stops accepting, then lets every pending hand-over finish, then resets all.
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._open = asyncio.Event()
        if not self._blackholed:
            self._open.set()
        listener = socket.create_server((self.host, self.port), backlog=1024)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        handing_over: set[asyncio.Task[Any]] = set()
        loop.add_reader(listener.fileno(), self._accept_ready, listener, handing_over)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            loop.remove_reader(listener.fileno())
            listener.close()
            if handing_over:
                await asyncio.wait(handing_over, timeout=1.0)
            self._apply_reset_all()
            await asyncio.sleep(0)  # let connection_lost callbacks run

    def _accept_ready(self, listener: socket.socket, handing_over: set[asyncio.Task[Any]]) -> None:
        """Accept what is queued (bounded per call) and hand each socket to a transport."""
        loop = self._require_loop()
        for _ in range(128):
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. EMFILE: back off instead of spinning on a readable socket
                loop.remove_reader(listener.fileno())
                loop.call_later(
                    0.5,
                    loop.add_reader,
                    listener.fileno(),
                    self._accept_ready,
                    listener,
                    handing_over,
                )
                return
            self.accepted += 1
            if self.refuse:
                self.refused += 1
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                conn.close()
                self._notify()
                continue
            conn.setblocking(False)
            task = loop.create_task(
                loop.connect_accepted_socket(lambda: _SideProtocol(self, _CLIENT), conn)
            )
            handing_over.add(task)
            task.add_done_callback(functools.partial(self._handed_over, handing_over, conn))

    @staticmethod
    def _handed_over(
        handing_over: set[asyncio.Task[Any]], conn: socket.socket, task: asyncio.Task[Any]
    ) -> None:
        handing_over.discard(task)
        if task.cancelled() or task.exception() is not None:
            conn.close()

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T | None:
        """Run ``fn`` on the loop and wait for it (just run it if not running)."""
        loop = self._loop
        if loop is None or self._thread is None or loop.is_closed():
            return None  # not running: the flags alone apply at the next start
        if threading.current_thread() is self._thread:
            return fn(*args)
        fut: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return fut.result(_CALL_TIMEOUT)

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _on_accept(self, transport: asyncio.Transport) -> _Pair:
        with self._cut_lock:
            budget = None
            if self._cut is not None:
                budget, count = self._cut
                if count is not None:
                    self._cut = None if count == 1 else (budget, count - 1)
        pair = _Pair(self, transport, budget)
        self._pairs.add(pair)
        self.active += 1
        # Client data waits in the delay line until upstream exists; don't read ahead.
        pair.set_paused(_CLIENT, "connecting", True)
        if self._blackholed:
            pair.set_paused(_CLIENT, "blackhole", True)
            pair.set_paused(_UPSTREAM, "blackhole", True)
        pair.connect_task = asyncio.get_running_loop().create_task(self._connect_upstream(pair))
        self._notify()
        return pair

    async def _connect_upstream(self, pair: _Pair) -> None:
        loop = asyncio.get_running_loop()
        delay = self._connect_delay
        if delay > 0:
            await asyncio.sleep(delay)
        assert self._open is not None
        await self._open.wait()
        if pair.closed:
            return
        try:
            await loop.create_connection(
                lambda: _SideProtocol(self, _UPSTREAM, pair),
                self.target_host,
                self.target_port,
            )
        except OSError:
            self.upstream_failures += 1
            pair.close(reset=True)
            return
        self.upstream_connects += 1
        self._notify()

    def _forget(self, pair: _Pair) -> None:
        if pair in self._pairs:
            self._pairs.discard(pair)
            self.active -= 1
            self._notify()

    def _apply_blackhole(self) -> None:
        self._blackholed = True
        assert self._open is not None
        self._open.clear()
        for pair in self._pairs:
            pair.set_paused(_CLIENT, "blackhole", True)
            pair.set_paused(_UPSTREAM, "blackhole", True)

    def _apply_restore(self, reset_stalled: bool) -> None:
        self._blackholed = False
        if reset_stalled:
            self._apply_reset_all()
        for pair in list(self._pairs):
            pair.set_paused(_CLIENT, "blackhole", False)
            pair.set_paused(_UPSTREAM, "blackhole", False)
            for direction in pair.directions:
                direction.kick()
        assert self._open is not None
        self._open.set()

    def _apply_reset_all(self) -> None:
        for pair in list(self._pairs):
            pair.close(reset=True)
