"""Listening sockets: resolving the address to bind, IPv6 dual stack, the allow list and
loopback checks, and one-line bind errors; for the Modbus and the control ports alike."""
from __future__ import annotations

import ipaddress
import logging
import socket
import socketserver

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024  # hundreds of clients may connect at once: no SYN retransmit waits


class BindError(Exception):
    """The address and port cannot be served; the message says why in one line."""


def resolve(host: str, port: int) -> tuple[int, tuple]:
    """(address family, socket address) to bind host:port, IPv4 or IPv6."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise BindError(f"cannot resolve {host!r}: {getattr(exc, 'strerror', None) or exc}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def is_loopback(host: str) -> bool:
    """True when host resolves to a loopback address only (0.0.0.0 and :: are every address)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        return False
    return all(client_ip(info[4][0]).is_loopback for info in infos)


def client_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A peer's IP address; an IPv4 client of a dual-stack socket (::ffff:a.b.c.d) as IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # no IPv6 zone index
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def allowed(allow, address: str) -> bool:
    """True when a client at this address may connect (allow: networks, or None for any)."""
    if allow is None:
        return True
    try:
        ip = client_ip(address)
    except ValueError:
        return False
    return any(ip in network for network in allow)


def listen_or_close(server: socketserver.TCPServer) -> None:
    """Bind and listen, for a server made with bind_and_activate=False; closed and BindError
    with the system's reason otherwise."""
    try:
        server.server_bind()
        server.server_activate()
    except OSError as exc:
        server.server_close()
        raise BindError(exc.strerror or str(exc)) from None


def dual_stack(sock: socket.socket, family: int) -> None:
    """An IPv6 listener takes IPv4 clients too (::ffff:a.b.c.d), whatever the system default."""
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)

