"""MeterTCPServer: the Modbus/TCP listener of one port, with its connection limit, allow list,
idle timeout, the faults that may act on its connections and their request counts."""
from __future__ import annotations

import ipaddress
import logging
import socket
import socketserver
from collections.abc import Sequence

from ..net.connections import BoundedConnections
from ..net.listeners import LISTEN_BACKLOG

log = logging.getLogger(__name__)


def add_counts(total: dict, counts: dict) -> None:
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value


class MeterTCPServer(BoundedConnections, socketserver.TCPServer):
    """TCPServer with a deep backlog, per-instance address family, bounded connections in
    threads of their own (net.connections), an idle timeout and request counts."""

    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    thread_prefix = "modbus-connection"
    full_reason = "max_clients"
    refusal_log = log

    def __init__(self, host: str, port: int, handler_class, *, responder, bus=None,
                 silence_s: float = 0.0, max_clients: int = 100,
                 idle_timeout_s: float = 120.0,
                 allow: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None) -> None:
        self.responder = responder  # the port's PDU seam (pdu.Responder): what connections ask
        self.bus = bus  # RTU over TCP: the port's meters on their bus (rtu.RtuBus); None: MBAP
        self.silence_s = silence_s  # RTU over TCP: the silence that discards a partial frame
        self.idle_timeout_s = idle_timeout_s  # 0: never
        self.ended_counts: dict[int, int] = {}  # the request counts of connections that ended
        self.request_faults: tuple = ()  # or (this port's request faults, every port's): control.py
        self.match_fault = None  # control.Control.match, when a fault is active
        super().__init__((host, port), handler_class, max_connections=max_clients, allow=allow)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()

    def refusal_message(self, peer: str, reason: str) -> tuple:
        if reason == "allow":
            return "refused connection from %s to port %d: not in --allow", peer, self.server_address[1]
        return ("refused connection from %s to port %d: %d clients already (--max-clients)",
                peer, self.server_address[1], self.max_connections)

    def unregister(self, handler) -> None:
        """A connection ends: its counts join those of the ended ones, in one step."""
        with self.connections_lock:
            self.connections.pop(handler, None)
            add_counts(self.ended_counts, handler.counts)

    def request_counts(self) -> dict[int, int]:
        """Requests by function code and result, and exceptions by code, of every connection."""
        with self.connections_lock:
            total = dict(self.ended_counts)
            for handler in self.connections:
                add_counts(total, handler.counts.copy())
        return total

    def handle_error(self, request, client_address) -> None:
        log.exception("error serving %s", client_address)
