"""The control port's HTTP server: the standard library's HTTPServer with bounds.

What a stuck browser, a slow or hostile client can do is bounded here, as on the
Modbus side: at most MAX_CONNECTIONS connections (more are closed at accept, as is a
peer outside --allow, counted and logged at most once every 10 s), a request line of at
most 8 KiB (414), at most 100 header lines of 8 KiB each (431), a body of at most
64 KiB (413, not read). Time is bounded per request, not per recv: the request line
and headers must arrive within HEAD_DEADLINE_S of the request's first byte and the body
within BODY_DEADLINE_S of the headers (408 and closed otherwise), so a client that
trickles a byte at a time cannot keep its slot; between requests a connection may be
idle for IDLE_TIMEOUT_S. While every slot is taken, RESERVED_CONNECTIONS more from
loopback peers are served one health check each (a supervisor's /healthz must not
fail because slow clients hold the port); any other request there, or none within
RESERVE_DEADLINE_S, is closed unanswered.

A request's target is parsed once, here; a request refused for what its line and
headers say (the application's precheck: Host, token, origin, read-only, path,
method) is answered before its body is read and before `100 Continue`. Every
answer is JSON (errors too), except what the application returns as another type.
One Acceptor thread accepts; BoundedConnections (net.connections) keeps the limit,
the allow list and a thread per connection, which stop() ends and joins; reader.py
reads a request within its limits and deadlines.
"""
from __future__ import annotations

import http.server
import io
import json
import logging
import socketserver
import time
from typing import Callable, Optional
from urllib.parse import urlsplit

from ..net.acceptor import Acceptor
from ..net.connections import BoundedConnections
from ..net.listeners import client_ip
from ..ratelimit import RateLimitedLog
from .reader import DeadlineReader, Refusal, RequestDeadline, body_length, parse_headers, read_head

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 32
RESERVED_CONNECTIONS = 2  # beyond MAX_CONNECTIONS: loopback health checks while the port is full
IDLE_TIMEOUT_S = 30.0
HEAD_DEADLINE_S = 10.0  # the request line and headers, from the request's first byte
BODY_DEADLINE_S = 10.0  # the body (64 KiB at most), from the end of the headers
RESERVE_DEADLINE_S = 2.0  # a whole health check on a reserved connection
SEND_TIMEOUT_S = 1.0  # the 408 to a client that ran out of time: best effort only
HEALTH_PATH = "/healthz"


class Answer:
    """What the application answers: status, headers, body (bytes), and a log summary."""

    __slots__ = ("status", "headers", "body", "summary")

    def __init__(self, status: int, body: bytes = b"", headers: dict | None = None,
                 summary: str = "") -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.summary = summary


def json_answer(status: int, document, headers: dict | None = None, summary: str = "") -> Answer:
    body = (json.dumps(document, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    return Answer(status, body, {"Content-Type": "application/json", **(headers or {})}, summary)


def error_answer(status: int, message: str, headers: dict | None = None) -> Answer:
    return json_answer(status, {"error": message}, headers, summary=message)


class Request:
    """One HTTP request as the application sees it: the target parsed once into its path and
    query (undecoded), the body empty until it has been read."""

    __slots__ = ("method", "target", "path", "query", "headers", "body", "peer")

    def __init__(self, method: str, target: str, headers, body: bytes, peer: str) -> None:
        """ValueError for a target that cannot be parsed (an unclosed IPv6 bracket)."""
        parts = urlsplit(target)
        self.method = method
        self.target = target
        self.path = parts.path
        self.query = parts.query
        self.headers = headers
        self.body = body
        self.peer = peer


Precheck = Callable[[Request], Optional[Answer]]


class ControlHandler(http.server.BaseHTTPRequestHandler):
    """Reads one request at a time within the limits and hands it to the server's application."""

    protocol_version = "HTTP/1.1"  # keep-alive: a dashboard polls on one connection
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    default_request_version = "HTTP/1.1"  # an unparsable request line still gets a status line
    server_version = "meter-simulator"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        self.server.register(self)
        self.reserved = self.server.is_reserved(self.request)
        self.timeout = self.server.idle_timeout_s  # StreamRequestHandler.setup applies it
        self.target_path = "-"  # the parsed path of the request being answered, for the log
        super().setup()
        self.rfile.close()  # the library's reader: ours keeps a deadline across reads
        self.reader = DeadlineReader(self.connection, self.server.idle_timeout_s)
        self.rfile = io.BufferedReader(self.reader)
        if self.reserved:  # its one request, from the moment it was accepted
            self.reader.deadline = time.monotonic() + RESERVE_DEADLINE_S

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.unregister(self)

    def handle_one_request(self) -> None:
        try:
            self._handle_one_request()
        except RequestDeadline:
            self.server.timed_out(self)
            if self.reserved:  # as any request past the limit but a health check: unanswered
                self.close_connection = True
            else:
                self._answer_late()
        except OSError:  # an idle timeout, a reset, a closed socket: this connection is over
            self.close_connection = True

    def _answer_late(self) -> None:
        """408 to a client whose request did not arrive in time, if it takes it at once."""
        self.close_connection = True
        if not getattr(self, "command", None):
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
        try:
            self.respond(error_answer(408, "the request did not arrive whole in time"), close=True,
                         timeout_s=SEND_TIMEOUT_S)
        except OSError:
            pass

    def _handle_one_request(self) -> None:
        head = self._read_request()
        if head is not None:
            self._answer(*head)

    def _read_request(self) -> tuple[Request, int] | None:
        """The next request's line and headers, within their deadline, parsed, and its body's
        length; None when it was answered already or the connection ends."""
        self.command, self.target_path = "", "-"
        reader = self.reader
        if not self.reserved:
            reader.deadline = None
        if not self.rfile.peek(1):  # the idle wait between requests: EOF ends the connection
            self.close_connection = True
            return None
        if not self.reserved:
            reader.deadline = time.monotonic() + self.server.head_deadline_s
        try:
            self.raw_requestline, header_lines = read_head(self.rfile)
        except Refusal as refusal:  # 414, 431: too long to read, let alone parse
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
            self.respond(error_answer(refusal.status, str(refusal)), close=True)
            return None
        if not self.raw_requestline:
            self.close_connection = True
            return None
        request = self._parse(header_lines)
        if request is None:
            return None
        try:
            length = body_length(self.headers)
        except Refusal as refusal:  # before any 100 Continue: a client that waits sends no body
            self.respond(error_answer(refusal.status, str(refusal)), close=True)
            return None
        if self.reserved:
            self.close_connection = True  # one health check per reserved connection
            if request.path != self.server.health_path or request.method not in ("GET", "HEAD"):
                self.server.refused_on_reserve(self)
                return None
        return request, length

    def _answer(self, request: Request, length: int) -> None:
        """The precheck, then the body within its deadline (100 Continue first if asked for and
        not refused), then the application's answer."""
        refusal = self.server.precheck(request) if self.server.precheck is not None else None
        continues = self.headers.get("Expect", "").lower() == "100-continue"
        if refusal is not None and continues:  # no 100 Continue: the client keeps its body
            self.respond(refusal, close=length > 0)
            return
        if continues:
            self.send_response_only(100)  # curl waits for this before a body over 1 KiB
            self.end_headers()
        reader = self.reader
        if not self.reserved:
            reader.deadline = time.monotonic() + self.server.body_deadline_s
        request.body = self.rfile.read(length) if length else b""  # read even when refused:
        reader.deadline = None  # closing on unread bytes would reset the answer away
        if len(request.body) < length:
            self.close_connection = True
            return
        self.respond(refusal if refusal is not None else self.server.application(request))

    def _parse(self, header_lines: list[bytes]) -> Request | None:
        """The request of the line and headers read, its target parsed; None when refused."""
        # the library parses the request line alone; the headers are ours (parse_headers)
        rfile, self.rfile = self.rfile, io.BytesIO(b"\r\n")
        try:
            parsed = self.parse_request()  # answers a malformed request line itself (send_error)
        finally:
            self.rfile = rfile
        if not parsed:
            return None
        self.headers = parse_headers(header_lines)
        connection = self.headers.get("Connection", "").lower()
        if connection == "close" or self.request_version < "HTTP/1.1" and connection != "keep-alive":
            self.close_connection = True
        elif connection == "keep-alive" or self.request_version >= "HTTP/1.1":
            self.close_connection = False
        try:
            request = Request(self.command, self.path, self.headers, b"", self.client_address[0])
        except ValueError:
            self.respond(error_answer(400, f"cannot parse the request target {self.path[:200]!r}"),
                         close=True)
            return None
        self.target_path = request.path
        return request

    def respond(self, answer: Answer, close: bool = False, timeout_s: float | None = None) -> None:
        if close:
            self.close_connection = True
        # a client that stops reading is held to the idle timeout for the whole answer
        self.connection.settimeout(timeout_s if timeout_s is not None else self.server.idle_timeout_s)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
        self.wfile.flush()
        self.server.log_answer(self, answer)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The library's own refusals (a malformed request line, HTTP/2), as JSON errors; a
        request is never answered 5xx for what it is (HTTP/2.0: 400)."""
        if code >= 500:
            code, message = 400, f"{self.request_version} is not supported: use HTTP/1.1"
        self.close_connection = True
        self.respond(error_answer(code, message or self.responses.get(code, ("error",))[0]), close=True)

    def log_request(self, code="-", size="-") -> None:
        pass  # the server logs each answer once (log_answer), without bodies or tokens

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the library's name
        log.debug("control %s: " + format, self.client_address[0], *args)


class ControlServer(BoundedConnections, http.server.HTTPServer):
    """HTTPServer with bounded connections in threads of their own (net.connections), a reserve
    for health checks past the limit, request deadlines, no reverse DNS at bind and a
    per-instance address family."""

    allow_reuse_address = True
    request_queue_size = 128
    thread_prefix = "control-connection"
    full_reason = "max_connections"
    refusal_log = log

    def __init__(self, host: str, port: int, application: Callable[[Request], Answer], *,
                 allow=None, max_connections: int = MAX_CONNECTIONS,
                 reserved_connections: int = RESERVED_CONNECTIONS,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, head_deadline_s: float = HEAD_DEADLINE_S,
                 body_deadline_s: float = BODY_DEADLINE_S, health_path: str = HEALTH_PATH,
                 precheck: Precheck | None = None,
                 on_answer: Callable[[str, str, str, Answer], None] | None = None) -> None:
        self.application = application
        self.precheck = precheck
        self.idle_timeout_s = idle_timeout_s
        self.head_deadline_s = head_deadline_s
        self.body_deadline_s = body_deadline_s
        self.health_path = health_path
        self.reserved_connections = reserved_connections
        self.on_answer = on_answer
        self.reserve: set = set()  # the sockets of connections served on the reserve
        self.late = 0  # requests that did not arrive whole within their deadline
        self._log_late = RateLimitedLog(log)
        self.acceptor: Acceptor | None = None
        super().__init__((host, port), ControlHandler, max_connections=max_connections, allow=allow)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's would look the host name up
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @property
    def port(self) -> int:
        return self.server_address[1]

    def admit_over_limit(self, request, peer: str) -> bool:
        """The reserve: a loopback peer's health check is served while every slot is taken."""
        if len(self.reserve) < self.reserved_connections and is_loopback_peer(peer):
            self.reserve.add(request)
            return True
        return False

    def refusal_message(self, peer: str, reason: str) -> tuple:
        why = ("not in --allow" if reason == "allow"
               else f"{self.max_connections} connections already (health checks only)")
        return "control port: refused a connection from %s: %s", peer, why

    def is_reserved(self, request) -> bool:
        """True for a connection admitted on the reserve (one health check, then closed)."""
        with self.connections_lock:
            return request in self.reserve

    def refused_on_reserve(self, handler: ControlHandler) -> None:
        """A reserved connection asked for more than a health check: closed unanswered."""
        self.refuse(handler.client_address[0], self.full_reason)

    def timed_out(self, handler: ControlHandler) -> None:
        with self.connections_lock:
            self.late += 1
        self._log_late("control port: closed a connection from %s: its request did not arrive "
                       "whole within %g s", handler.client_address[0],
                       RESERVE_DEADLINE_S if handler.reserved else self.head_deadline_s)

    def release(self, request) -> None:
        """A connection is over: its slot (or its place on the reserve) is free. Called when its
        handler finishes, before the socket is closed, so a client that sees the close can
        connect again at once; and after its thread, for a connection that never got that far."""
        with self.connections_lock:
            self.slots.discard(request)
            self.reserve.discard(request)

    def unregister(self, handler) -> None:
        super().unregister(handler)
        self.release(handler.request)

    def handle_error(self, request, client_address) -> None:
        log.exception("control: error serving %s", client_address[0])

    def log_answer(self, handler: ControlHandler, answer: Answer) -> None:
        if self.on_answer is not None:
            self.on_answer(handler.client_address[0], handler.command or "-", handler.target_path,
                           answer)

    def start(self) -> None:
        """Accept connections in a thread of its own."""
        self.acceptor = Acceptor([self], name="control-server")
        self.acceptor.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop accepting, close the listener, end every connection and join its thread."""
        if self.acceptor is not None:
            self.acceptor.stop()
        self.server_close()
        self.end_connections(timeout_s)


def is_loopback_peer(address: str) -> bool:
    try:
        return client_ip(address).is_loopback
    except ValueError:
        return False
