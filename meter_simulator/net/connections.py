"""BoundedConnections: a socketserver mixin that serves each connection in a named thread of its
own, within a connection limit and an allow list, and ends and joins every one on close."""
from __future__ import annotations

import logging
import socket
import threading

from ..ratelimit import RateLimitedLog
from .listeners import allowed, dual_stack, listen_or_close, resolve

log = logging.getLogger(__name__)

PRUNE_SLACK = 16  # ended threads forgotten once more than twice the live ones and this many


class BoundedConnections:
    """A mixin for socketserver.TCPServer, before it in the bases (in place of ThreadingMixIn):
    each connection is served in a daemon thread named for it (leak checks find it by name), at
    most max_connections at once; one outside the allow list or past the limit is closed at
    accept, counted by reason and logged at most once a period. end_connections shuts every
    connection down and joins every thread: those serving, just starting or just ending.

    A server names its threads (thread_prefix), its reason for a full port (full_reason) and
    its logger (refusal_log); it words its refusals (refusal_message) and may admit a
    connection past the limit (admit_over_limit: the control port's reserve).
    """

    thread_prefix = "connection"  # threads are "<prefix> <peer address> <peer port>"
    full_reason = "full"  # the refusal count of a connection past the limit
    refusal_log = log

    def __init__(self, server_address: tuple[str, int], handler_class, *, max_connections: int,
                 allow=None) -> None:
        """Resolve (host, port), bind (an IPv6 listener takes IPv4 clients too) and listen;
        BindError with the system's reason, and nothing left open, when that fails."""
        self.max_connections = max_connections
        self.allow = tuple(allow) if allow is not None else None  # networks; None: any client
        self.connections_lock = threading.Lock()  # slots, counts, connections; a server's own too
        self.slots: set = set()  # the sockets of the connections that hold a slot
        self.accepted = 0
        self.refused = {self.full_reason: 0, "allow": 0}  # connections closed unserved, by reason
        self.connections: dict = {}  # handler -> its thread, while it serves
        self.threads: dict = {}  # connection thread -> its socket; ended ones forgotten now and then
        self.closed = threading.Event()  # set on close: connections end, and no new one starts
        self._starting = threading.Lock()  # held while a thread starts: a close sees it started
        self._log_refused = {reason: RateLimitedLog(self.refusal_log) for reason in self.refused}
        self.address_family, sockaddr = resolve(*server_address)
        super().__init__(sockaddr, handler_class, bind_and_activate=False)
        dual_stack(self.socket, self.address_family)
        listen_or_close(self)

    @property
    def clients(self) -> int:
        """Connections holding a slot now."""
        return len(self.slots)

    def verify_request(self, request, client_address) -> bool:
        """Accept-time checks: the allow list, then a slot (or admit_over_limit); a refused
        connection is counted and logged here, closed by the caller at once."""
        peer = client_address[0]
        if not allowed(self.allow, peer):
            self.refuse(peer, "allow")
            return False
        with self.connections_lock:
            if len(self.slots) < self.max_connections:
                self.slots.add(request)  # given back when the connection ends (release)
                admitted = True
            else:
                admitted = self.admit_over_limit(request, peer)
            if admitted:
                self.accepted += 1
        if not admitted:
            self.refuse(peer, self.full_reason)
        return admitted

    def admit_over_limit(self, request, peer: str) -> bool:
        """Hook, called under connections_lock while every slot is taken: True serves this
        connection anyway (release then gives its place back); False, here, refuses it."""
        return False

    def refuse(self, peer: str, reason: str) -> None:
        """Count a connection closed unserved, and log it (at most once a period per reason)."""
        with self.connections_lock:
            self.refused[reason] += 1
        self._log_refused[reason](*self.refusal_message(peer, reason))

    def refusal_message(self, peer: str, reason: str) -> tuple:
        """Hook: the log message of a refusal and its arguments, in the server's words."""
        return "refused a connection from %s: %s", peer, reason

    def process_request(self, request, client_address) -> None:
        """Serve the connection in a daemon thread named for it; after a close, close it."""
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  name=f"{self.thread_prefix} {client_address[0]} {client_address[1]}",
                                  daemon=True)
        try:
            with self._starting:
                if not self.closed.is_set():
                    if len(self.threads) > 2 * len(self.connections) + PRUNE_SLACK:
                        self.threads = {known: sock for known, sock in self.threads.items()
                                        if known.is_alive()}
                    self.threads[thread] = request
                    thread.start()
                    return
        except BaseException:  # no thread to give the slot back: do it here, then let it fail
            self.release(request)
            raise
        self.release(request)  # closed while this one was being accepted: not served
        self.shutdown_request(request)

    def process_request_thread(self, request, client_address) -> None:
        """ThreadingMixIn's: serve, report an error, close the socket; then free the slot."""
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            try:
                self.shutdown_request(request)
            finally:
                self.release(request)

    def release(self, request) -> None:
        """A connection is over: its slot is free (called again after its thread: no harm)."""
        with self.connections_lock:
            self.slots.discard(request)

    def register(self, handler) -> None:
        """A connection starts being served by this handler."""
        with self.connections_lock:
            self.connections[handler] = threading.current_thread()

    def unregister(self, handler) -> None:
        """A connection's handler is done."""
        with self.connections_lock:
            self.connections.pop(handler, None)

    def server_close(self) -> None:
        self.closed.set()
        super().server_close()

    def end_connections(self, timeout_s: float = 2.0) -> None:
        """Start no more connections, shut every one down (also one whose handler has not
        registered yet) and join every thread, each within timeout_s."""
        self.closed.set()
        with self._starting:  # every thread known now has started: it can be joined
            known = dict(self.threads)
        for sock in known.values():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed already: that connection has ended
                pass
        current = threading.current_thread()
        for thread in known:
            if thread is not current and thread.ident is not None:  # None: its start failed
                thread.join(timeout_s)
