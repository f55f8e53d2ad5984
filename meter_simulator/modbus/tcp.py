"""MeterTCPServer: the Modbus/TCP listener of one port, with its connection limit, allow list,
idle timeout, the faults that may act on its connections and their request counts."""
from __future__ import annotations

import ipaddress
import logging
import socket
import socketserver
import threading
from collections.abc import Sequence

from ..net.connections import shut_down_and_join, start_connection_thread
from ..net.listeners import LISTEN_BACKLOG, allowed, dual_stack, listen_or_close, resolve
from ..ratelimit import RateLimitedLog

log = logging.getLogger(__name__)



def add_counts(total: dict, counts: dict) -> None:
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value


class MeterTCPServer(socketserver.ThreadingTCPServer):
    """ThreadingTCPServer with a deep backlog, per-instance address family, daemon threads,
    a connection limit, an allow list checked at accept time and an idle timeout."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    block_on_close = False

    def __init__(self, host: str, port: int, handler_class, *, max_clients: int = 100,
                 idle_timeout_s: float = 120.0,
                 allow: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None) -> None:
        self.max_clients = max_clients
        self.idle_timeout_s = idle_timeout_s  # 0: never
        self.allow = tuple(allow) if allow is not None else None  # None: any client
        self.clients = 0  # connections being served now
        self._clients_lock = threading.Lock()  # also guards the connection and request counts
        self.accepted = 0
        self.refused = {"max_clients": 0, "allow": 0}
        self.connections: dict = {}  # handler -> its thread, while it serves
        self.threads: set = set()  # every connection thread that may still run (joined on stop)
        self.ended_counts: dict[int, int] = {}  # the request counts of connections that ended
        self.closed = threading.Event()  # set when the listener closes: connections end now
        self.request_faults: tuple = ()  # or (this port's request faults, every port's): control.py
        self.match_fault = None  # control.Control.match, when a fault is active
        self._log_full = RateLimitedLog(log)
        self._log_not_allowed = RateLimitedLog(log)
        self.address_family, sockaddr = resolve(host, port)
        super().__init__(sockaddr, handler_class, bind_and_activate=False)
        listen_or_close(self)

    def server_bind(self) -> None:
        dual_stack(self.socket, self.address_family)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()

    def allowed(self, address: str) -> bool:
        """True when a client at this address may connect."""
        return allowed(self.allow, address)

    def verify_request(self, request, client_address) -> bool:
        """Accept-time checks; a refused connection is closed by the caller at once."""
        port = self.server_address[1]
        if not self.allowed(client_address[0]):
            self._log_not_allowed("refused connection from %s to port %d: not in --allow",
                                  client_address[0], port)
            self.refused["allow"] += 1
            return False
        with self._clients_lock:
            if self.clients >= self.max_clients:
                full = True
                self.refused["max_clients"] += 1
            else:
                full = False
                self.clients += 1  # given back when the connection's thread ends
                self.accepted += 1
        if full:
            self._log_full("refused connection from %s to port %d: %d clients already "
                           "(--max-clients)", client_address[0], port, self.max_clients)
            return False
        return True

    def release(self) -> None:
        """A served connection has ended: its slot is free."""
        with self._clients_lock:
            self.clients -= 1

    def register(self, handler) -> None:
        """A connection starts being served (its counts are summed while it lives)."""
        with self._clients_lock:
            self.connections[handler] = threading.current_thread()

    def unregister(self, handler) -> None:
        """A connection ends: its counts join those of the ended ones, in one step."""
        with self._clients_lock:
            self.connections.pop(handler, None)
            add_counts(self.ended_counts, handler.counts)

    def request_counts(self) -> dict[int, int]:
        """Requests by function code and result, and exceptions by code, of every connection."""
        with self._clients_lock:
            total = dict(self.ended_counts)
            for handler in self.connections:
                add_counts(total, handler.counts.copy())
        return total

    def server_close(self) -> None:
        self.closed.set()
        super().server_close()

    def end_connections(self, timeout_s: float = 2.0) -> None:
        """Shut every connection down and wait for its thread (after server_close)."""
        shut_down_and_join(self._clients_lock, self.connections, self.threads, timeout_s)

    def process_request(self, request, client_address) -> None:
        try:
            start_connection_thread(self, self._clients_lock, "modbus-connection", request, client_address)
        except BaseException:  # no thread to give the slot back: do it here, then let it fail
            self.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.release()

    def handle_error(self, request, client_address) -> None:
        log.exception("error serving %s", client_address)

