"""Processes and sockets of this host, through psutil: who owns a connection, is a pid alive.

``pool-stats --server`` matches the database server's sessions from this host to local
processes by their client sockets, where the server shows no connection label; snapshots
use :func:`pid_alive` and :func:`process_start` to tell a live writer from a dead one (or
from another process that got its pid). psutil does the platform work (Linux /proc, macOS,
Windows), where hand-reading /proc worked on Linux only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import psutil

__all__ = ["attribute_local", "command_line", "local_addresses", "local_socket_owners",
           "normal_address", "pid_alive", "process_start"]


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this host (zombies count as dead)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # AccessDenied: it exists, it is someone else's
        return True


def process_start(pid: int) -> str | None:
    """The process's start time as text (with the pid, it names one process), or None."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except (psutil.Error, OSError):
        return None


def command_line(pid: int) -> str | None:
    """The process's command line (None if it cannot be read); reports shorten it."""
    try:
        parts = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return None
    return " ".join(p for p in parts if p)


def _plain(address: str) -> str:
    """An IPv4-mapped IPv6 address as IPv4; any other as given (normalised)."""
    with contextlib.suppress(ValueError):
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(parsed)
    return address


def _tcp_connections() -> list[Any]:
    try:
        return list(psutil.net_connections(kind="tcp"))
    except (psutil.Error, OSError):
        return []


def local_socket_owners(wanted: set[tuple[str, int]], remote_ports: set[int],
                        connections: Iterable[Any] | None = None
                        ) -> dict[tuple[str, int], int]:
    """``{(local address, local port): pid}`` for the established TCP sockets of this host
    among ``wanted`` whose remote port is one of ``remote_ports`` (the server's).

    Sockets of processes this user may not inspect have no pid and are skipped.
    ``connections``: psutil's ``net_connections()`` rows (default: read them now).
    """
    if not wanted:
        return {}
    found: dict[tuple[str, int], int] = {}
    rows = _tcp_connections() if connections is None else connections
    for conn in rows:
        if conn.status != psutil.CONN_ESTABLISHED or conn.pid is None or not conn.raddr:
            continue
        if remote_ports and conn.raddr.port not in remote_ports:
            continue
        key = (_plain(conn.laddr.ip), int(conn.laddr.port))
        if key in wanted:
            found[key] = int(conn.pid)
    return found


def local_addresses() -> set[str]:
    """Addresses of this host's interfaces, plus loopback."""
    found = {"127.0.0.1", "::1"}
    with contextlib.suppress(psutil.Error, OSError):
        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family in (socket.AF_INET, socket.AF_INET6):
                    found.add(_plain(address.address))
    return found


def normal_address(host: str | None) -> set[str]:
    """The addresses a host column may stand for: an IP, or this machine's own name (a
    server without skip_name_resolve shows names). Other names are not resolved: no DNS."""
    if not host:
        return set()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost":
            return {"127.0.0.1", "::1"}
        if host == socket.gethostname():
            with contextlib.suppress(OSError):
                return {_plain(str(info[4][0])) for info in socket.getaddrinfo(host, None)}
        return set()
    return {_plain(host)}


def attribute_local(sessions: list[dict[str, Any]], ports: set[int]) -> bool:
    """Give a pid to the sessions of this host that have none, from their sockets; add
    the command line of every local process. True if this host's sockets could be read."""
    connections = _tcp_connections()
    if not connections:
        return False
    local = local_addresses()
    resolved: dict[str | None, set[str]] = {}
    wanted: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for session in sessions:
        host = session["host"]
        if host not in resolved:
            resolved[host] = normal_address(host) & local
        addresses = resolved[host]
        session["local"] = bool(addresses)
        if session["pid"] is None and session["port"] and addresses:
            for address in addresses:
                wanted.setdefault((address, int(session["port"])), []).append(session)
    owners = local_socket_owners(set(wanted), ports, connections)
    for key, pid in owners.items():
        for session in wanted[key]:
            session["pid"], session["pid_source"] = pid, "socket"
    commands: dict[int, str | None] = {}
    for session in sessions:
        if session.get("local") and session["pid"] is not None:
            pid = int(session["pid"])
            if pid not in commands:
                commands[pid] = command_line(pid)
            session["command"] = commands[pid]
    return True
