"""Tests for the FaultProxy test helper, against an in-process echo server.

Timing bounds are deliberately generous (the CI machine has 2 cores); waits use
events and the proxy's ``wait_until`` rather than sleeps, and a socket timeout only
where the point is to show that nothing arrives.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pymysql
import pytest

from tests import dbutil
from tests.support.proxy import FaultProxy

SILENCE = 0.3  # how long "nothing arrives" is watched for


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: EchoServer = self.server  # type: ignore[assignment]
        with server.lock:
            server.connections += 1
        sock: socket.socket = self.request
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.lock = threading.Lock()
        self.connections = 0


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(*echo.server_address[:2]) as p:
        yield p
    assert not p._thread


_open_sockets: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    """Close every client socket even when a test fails half-way (no leaked fds)."""
    yield
    while _open_sockets:
        _open_sockets.pop().close()


def connect(proxy: FaultProxy, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    _open_sockets.append(sock)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def roundtrip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


def read_until_closed(sock: socket.socket) -> tuple[bytes, str]:
    """Read until the peer closes; return the data and "reset" or "eof"."""
    buf = bytearray()
    try:
        while chunk := sock.recv(65536):
            buf += chunk
    except ConnectionResetError:
        return bytes(buf), "reset"
    return bytes(buf), "eof"


def assert_silent(sock: socket.socket) -> None:
    sock.settimeout(SILENCE)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.settimeout(5.0)


def test_passthrough_and_half_close(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert roundtrip(sock, b"hello") == b"hello"
        assert proxy.wait_until(lambda p: p.active == 1 and p.upstream_connects == 1)
        sock.shutdown(socket.SHUT_WR)  # echo server sees EOF, closes, we see EOF
        assert read_until_closed(sock) == (b"", "eof")
    assert proxy.wait_until(lambda p: p.active == 0)
    assert proxy.accepted == 1
    assert proxy.chunks_up >= 1 and proxy.chunks_down >= 1


def test_large_transfer_with_flow_control(proxy: FaultProxy) -> None:
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB: more than the high-water mark
    with connect(proxy, timeout=20) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        got = recv_exactly(sock, len(payload))
        sender.join(5)
    assert got == payload


def test_latency_is_a_delay_line(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        roundtrip(sock)  # upstream connected, no latency yet
        proxy.set_latency(0.05)
        t0 = time.monotonic()
        roundtrip(sock)
        rtt = time.monotonic() - t0
        assert 0.09 <= rtt < 1.0

        # 20 chunks sent back to back are all in flight at once: the batch takes about
        # one RTT, not 20 (a throughput limiter would take ~2 s).
        t0 = time.monotonic()
        for i in range(20):
            sock.sendall(b"%02d" % i)
        got = recv_exactly(sock, 40)
        elapsed = time.monotonic() - t0
        assert got == b"".join(b"%02d" % i for i in range(20))  # order preserved
        assert 0.09 <= elapsed < 0.6

        proxy.set_latency(0)
        proxy.latency_down = 0.1
        t0 = time.monotonic()
        roundtrip(sock)
        assert 0.09 <= time.monotonic() - t0 < 1.0
    with pytest.raises(ValueError):
        proxy.latency_up = -1


def test_connect_delay_is_concurrent(proxy: FaultProxy) -> None:
    proxy.connect_delay = 0.2
    n = 20
    barrier = threading.Barrier(n + 1)
    durations: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client() -> None:
        try:
            barrier.wait(5)
            t0 = time.monotonic()
            with connect(proxy) as sock:
                assert roundtrip(sock) == b"ping"
            with lock:
                durations.append(time.monotonic() - t0)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    barrier.wait(5)
    t0 = time.monotonic()
    for t in threads:
        t.join(10)
    total = time.monotonic() - t0
    assert not errors
    assert len(durations) == n
    assert min(durations) >= 0.19  # each connect really was delayed
    assert total < 1.5  # ... but not one after the other (that would be >= 4 s)
    assert proxy.wait_until(lambda p: p.upstream_connects == n)


def test_many_concurrent_connections(proxy: FaultProxy) -> None:
    socks = [connect(proxy) for _ in range(150)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(b"%03d" % i)
        for i, sock in enumerate(socks):
            assert recv_exactly(sock, 3) == b"%03d" % i
        assert proxy.active == 150
    finally:
        for sock in socks:
            sock.close()
    assert proxy.wait_until(lambda p: p.active == 0)


def turned_away(proxy: FaultProxy) -> str:
    """Connect, send, read; say how the proxy turned us away ("reset" or "eof")."""
    try:
        sock = connect(proxy)
    except ConnectionResetError:  # the RST can beat connect()'s completion check
        return "reset"
    with sock:
        with contextlib.suppress(OSError):  # the RST may already be here
            sock.sendall(b"x")
        data, how = read_until_closed(sock)
    assert data == b""
    return how


def test_refuse(proxy: FaultProxy) -> None:
    proxy.refuse = True
    assert turned_away(proxy) in ("reset", "eof")
    assert proxy.wait_until(lambda p: p.refused == 1)
    proxy.refuse = False
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"


def test_blackhole_then_restore(proxy: FaultProxy, echo: EchoServer) -> None:
    old = connect(proxy)
    assert roundtrip(old) == b"ping"
    proxy.blackhole()
    old.sendall(b"held")
    assert_silent(old)

    new = connect(proxy)  # accepted, but never connected upstream while blackholed
    new.sendall(b"new")
    assert_silent(new)
    assert proxy.accepted == 2
    assert proxy.upstream_connects == 1
    assert echo.connections == 1

    proxy.restore()  # the partition heals: held data and held connects go through
    assert recv_exactly(old, 4) == b"held"
    assert recv_exactly(new, 3) == b"new"
    assert proxy.wait_until(lambda p: p.upstream_connects == 2)
    old.close()
    new.close()


def test_restore_reset_stalled(proxy: FaultProxy) -> None:
    old = connect(proxy)
    assert roundtrip(old) == b"ping"
    proxy.blackhole()
    new = connect(proxy)
    assert proxy.wait_until(lambda p: p.active == 2)
    proxy.restore(reset_stalled=True)
    for sock in (old, new):
        with contextlib.suppress(OSError):  # the RST may already be here
            sock.sendall(b"x")
        assert read_until_closed(sock)[0] == b""
        sock.close()
    assert proxy.wait_until(lambda p: p.active == 0)
    with connect(proxy) as sock:  # later connections work again
        assert roundtrip(sock) == b"ping"


def test_reset_all(proxy: FaultProxy) -> None:
    socks = [connect(proxy) for _ in range(3)]
    for sock in socks:
        assert roundtrip(sock) == b"ping"
    proxy.reset_all()
    assert proxy.active == 0
    for sock in socks:
        data, how = read_until_closed(sock)
        assert (data, how) == (b"", "reset")
        sock.close()
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"


def test_cut_after(proxy: FaultProxy) -> None:
    proxy.cut_after(15, count=1)  # 10 bytes up, then only 5 of the 10 echoed come back
    with connect(proxy) as sock:
        sock.sendall(b"0123456789")
        data, how = read_until_closed(sock)
    assert b"01234".startswith(data)
    assert how in ("reset", "eof")
    assert proxy.cut == 1
    with connect(proxy) as sock:  # count=1: the next connection is whole
        assert roundtrip(sock, b"0123456789") == b"0123456789"

    proxy.cut_after(0)  # every later connection dies on its first chunk
    for _ in range(2):
        with connect(proxy) as sock:
            sock.sendall(b"x")
            assert read_until_closed(sock)[0] == b""
    proxy.cut_after(None)
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"
    assert proxy.cut == 3


def test_stop_does_not_hang_with_stalled_connections(echo: EchoServer) -> None:
    proxy = FaultProxy(*echo.server_address[:2]).start()
    socks = [connect(proxy) for _ in range(5)]
    assert roundtrip(socks[0]) == b"ping"
    proxy.blackhole()
    socks.append(connect(proxy))
    proxy.connect_delay = 30
    socks.append(connect(proxy))
    socks[0].sendall(b"stuck")
    t0 = time.monotonic()
    proxy.stop()
    assert time.monotonic() - t0 < 3
    for sock in socks:
        assert read_until_closed(sock)[0] == b""
        sock.close()
    with pytest.raises(OSError):
        connect(proxy, timeout=1)


def test_upstream_down_resets_client() -> None:
    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        with FaultProxy("127.0.0.1", port) as proxy:
            assert turned_away(proxy) in ("reset", "eof")
            assert proxy.wait_until(lambda p: p.upstream_failures == 1 and p.active == 0)


@pytest.mark.mysql
def test_pymysql_through_proxy(mysql_url: str) -> None:
    kwargs = dbutil.mysql_connect_kwargs(mysql_url, connect_timeout=10)
    if kwargs.get("unix_socket"):
        pytest.skip("the MySQL URL names a unix socket; the proxy speaks TCP")
    with FaultProxy(kwargs.pop("host"), kwargs.pop("port")) as proxy:
        proxy.set_latency(0.01)
        conn = pymysql.connect(host=proxy.host, port=proxy.port, **kwargs)
        try:
            with conn.cursor() as cur:
                t0 = time.monotonic()
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)
                assert time.monotonic() - t0 >= 0.019  # one RTT of 2 x 10 ms
        finally:
            conn.close()
        assert proxy.wait_until(lambda p: p.active == 0)
        assert proxy.upstream_connects == 1
