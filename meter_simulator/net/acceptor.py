"""Acceptor: one thread that takes connections off many listening sockets, and survives running out.

A fleet of 1,000 ports with a serve_forever thread each costs about 20 % of a
core polling while idle and 0.2 s each to stop; one selector waits on all of
them and stops at once. Each connection goes through its server's own checks
and thread (verify_request, process_request), as socketserver's
_handle_request_noblock does.

When accept() fails because the process or the system is out of file
descriptors (EMFILE, ENFILE), the pending connection would stay in the backlog
and the listener readable: a loop at 100 % CPU, with clients hanging until
their own timeout. Here a descriptor held in reserve is given up for a moment
to accept that connection and close it at once (the client sees the
connection closed, as a full meter closes it), then taken again. Out of
memory or buffers (ENOMEM, ENOBUFS), or without the reserve, the listener
backs off for ACCEPT_BACKOFF_S, as mature event loops do. Either way one
rate-limited warning says so, and the server recovers by itself once
descriptors are free.
"""
from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import threading
import time
from typing import Callable

from ..ratelimit import RateLimitedLog

try:
    import resource
except ImportError:  # not on every platform; only the warning's numbers need it
    resource = None

log = logging.getLogger(__name__)

ACCEPT_BACKOFF_S = 0.1
DESCRIPTOR_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE))
RESOURCE_ERRNOS = DESCRIPTOR_ERRNOS | {errno.ENOBUFS, errno.ENOMEM}


def descriptor_limit() -> int | None:
    """The process's soft limit of open file descriptors, None where unknown or unlimited."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class SpareDescriptor:
    """A file descriptor held in reserve, given up for a moment to accept and close a connection
    when the process is out of descriptors."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._take()

    def _take(self) -> None:
        try:
            self._fd = os.open(os.devnull, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            self._fd = None

    def refuse(self, listener: socket.socket) -> bool:
        """Accept one pending connection in the reserve's place and close it at once; False when
        there is no reserve (another thread took the descriptor it had freed)."""
        if self._fd is None:
            self._take()
            if self._fd is None:
                return False
        os.close(self._fd)
        self._fd = None
        try:
            connection, _ = listener.accept()
        except OSError:
            pass  # gone already, or the freed descriptor went elsewhere
        else:
            connection.close()
        self._take()
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Acceptor:
    """One thread accepting connections for many socketserver servers (MeterTCPServer)."""

    def __init__(self, services: list, clock: Callable[[], float] = time.monotonic,
                 name: str = "modbus-server") -> None:
        self._name = name
        self._services = services
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._spare: SpareDescriptor | None = None
        self._paused: dict = {}  # service -> when it listens again, after running out of a resource
        self._log_exhausted = RateLimitedLog(log, clock=clock)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._spare = SpareDescriptor()
        for service in self._services:
            service.socket.setblocking(False)  # a connect reset before accept() must not block us
            self._selector.register(service.socket, selectors.EVENT_READ, service)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            timeout = None
            if self._paused:
                timeout = max(min(self._paused.values()) - self._clock(), 0.0)
            for key, _ in self._selector.select(timeout):
                if key.data is None:  # stop() woke us
                    return
                if not self.accept(key.data):
                    self._selector.unregister(key.data.socket)
                    self._paused[key.data] = self._clock() + ACCEPT_BACKOFF_S
            self._resume_paused()

    def _resume_paused(self) -> None:
        now = self._clock()
        for service, until in list(self._paused.items()):
            if until <= now:
                del self._paused[service]
                self._selector.register(service.socket, selectors.EVENT_READ, service)

    def accept(self, service) -> bool:
        """Take one pending connection and serve or refuse it (socketserver's checks and thread);
        False when the listener should back off for ACCEPT_BACKOFF_S."""
        try:
            request, client_address = service.get_request()
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                return self._exhausted(service, exc)
            return True  # nothing pending after all (taken back by the client, a spurious wake-up)
        if not service.verify_request(request, client_address):
            service.shutdown_request(request)
            return True
        try:
            service.process_request(request, client_address)
        except Exception:
            service.handle_error(request, client_address)
            service.shutdown_request(request)
        except BaseException:
            service.shutdown_request(request)
            raise
        return True

    def _exhausted(self, service, exc: OSError) -> bool:
        refused = exc.errno in DESCRIPTOR_ERRNOS and self._spare.refuse(service.socket)
        limit = descriptor_limit()
        self._log_exhausted(
            "cannot accept connections on port %d: %s (open file limit %s); %s",
            service.server_address[1], exc.strerror or exc, limit if limit is not None else "unknown",
            "new connections are closed at once until descriptors are free" if refused
            else f"accepting again in {ACCEPT_BACKOFF_S:g} s")
        return refused

    def stop(self) -> None:
        """Stop accepting; safe to call twice. The sockets are closed by their servers."""
        if self._thread is not None and self._thread.is_alive():
            self._wake_w.send(b"\0")
            self._thread.join()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        if self._spare is not None:
            self._spare.close()
