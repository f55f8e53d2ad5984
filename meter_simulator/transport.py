"""TCP side of the Modbus server: the listening socket and the per-connection loop.

pyModbusTCP builds a stdlib ThreadingTCPServer and sets its class attributes for
the whole process (address family, daemon threads) and keeps the listen backlog
of 5. Here those are attributes of our own subclass, per server, and the
connection loop also serves IPv6 peers (pyModbusTCP unpacks getpeername() into
two values and drops every IPv6 client).
"""
from __future__ import annotations

import logging
import socket
import socketserver

from pyModbusTCP.server import ModbusServer

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


class MeterTCPServer(socketserver.ThreadingTCPServer):
    """ThreadingTCPServer with a deep backlog, per-instance address family, daemon threads."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    block_on_close = False

    def __init__(self, host: str, port: int, handler_class) -> None:
        self.address_family, sockaddr = resolve(host, port)
        super().__init__(sockaddr, handler_class, bind_and_activate=False)
        try:
            self.server_bind()
            self.server_activate()
        except OSError as exc:
            self.server_close()
            raise BindError(exc.strerror or str(exc)) from None

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()

    def handle_error(self, request, client_address) -> None:
        log.exception("error serving %s", client_address)


class ConnectionHandler(ModbusServer.ModbusService):
    """pyModbusTCP's connection loop, for IPv4 and IPv6 peers alike."""

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def handle(self) -> None:
        session_data = ModbusServer.SessionData()
        try:
            peer = self.request.getpeername()
            session_data.client.address, session_data.client.port = peer[0], peer[1]
            log.debug("connection from %s port %s", peer[0], peer[1])
            while True:
                session_data.new_request()
                session_data.request.mbap.raw = self._recv_all(7)
                session_data.request.pdu.raw = self._recv_all(session_data.request.mbap.length - 1)
                session_data.set_response_mbap()
                self.server.engine(session_data)
                self._send_all(session_data.response.raw)
        except (ModbusServer.Error, OSError) as exc:
            log.debug("connection closed: %r", exc)
        finally:
            self.request.close()
