"""The control port's HTTP server: the standard library's ThreadingHTTPServer with bounds.

What a stuck browser, a slow or hostile client can do is bounded here, as on the
Modbus side: at most MAX_CONNECTIONS connections (more are closed at accept, as is a
peer outside --allow), a request line of at most 8 KiB (414), at most 100 header
lines of 8 KiB each (431), a body of at most 64 KiB (413, not read), and a
connection idle for IDLE_TIMEOUT_S is closed. Every answer is JSON (errors too),
except what the application returns as another type. One Acceptor thread accepts,
each connection has a thread of its own, and stop() ends them all and joins them.
"""
from __future__ import annotations

import email.parser
import http.client
import http.server
import io
import json
import logging
import socketserver
import threading
from typing import Callable

from .acceptor import Acceptor
from .transport import (
    allowed,
    dual_stack,
    listen_or_close,
    resolve,
    shut_down_and_join,
    start_connection_thread,
)

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 32
MAX_LINE_BYTES = 8192
MAX_HEADERS = 100
MAX_BODY_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 30.0


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
    """One HTTP request as the application sees it."""

    __slots__ = ("method", "target", "headers", "body", "peer")

    def __init__(self, method: str, target: str, headers, body: bytes, peer: str) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.peer = peer


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
        self.server.register(self)  # first: stop() can end the connection from here on
        self.timeout = self.server.idle_timeout_s  # StreamRequestHandler.setup applies it
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.unregister(self)

    def handle_one_request(self) -> None:
        try:
            self._handle_one_request()
        except OSError:  # a timeout, a reset, a closed socket: this connection is over
            self.close_connection = True

    def _handle_one_request(self) -> None:
        self.raw_requestline = self.rfile.readline(MAX_LINE_BYTES + 1)
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > MAX_LINE_BYTES:
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
            self.respond(error_answer(414, f"request line over {MAX_LINE_BYTES} bytes"), close=True)
            return
        header_lines = []
        while True:
            line = self.rfile.readline(MAX_LINE_BYTES + 1)
            if len(line) > MAX_LINE_BYTES:
                self._refuse_headers(f"a header line over {MAX_LINE_BYTES} bytes")
                return
            header_lines.append(line)
            if line in (b"\r\n", b"\n", b""):
                break
            if len(header_lines) > MAX_HEADERS:
                self._refuse_headers(f"more than {MAX_HEADERS} header lines")
                return
        # the library parses the request line alone; the headers are ours (its own reader
        # counts the blank line against its limit of 100 and would refuse 100 header lines)
        rfile, self.rfile = self.rfile, io.BytesIO(b"\r\n")
        try:
            parsed = self.parse_request()  # answers a malformed request line itself (send_error)
        finally:
            self.rfile = rfile
        if not parsed:
            return
        self.headers = email.parser.Parser(_class=http.client.HTTPMessage).parsestr(
            b"".join(header_lines).decode("iso-8859-1"))
        connection = self.headers.get("Connection", "").lower()
        if connection == "close" or self.request_version < "HTTP/1.1" and connection != "keep-alive":
            self.close_connection = True
        elif connection == "keep-alive" or self.request_version >= "HTTP/1.1":
            self.close_connection = False
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.send_response_only(100)  # curl waits for this before a body over 1 KiB
            self.end_headers()
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or ()}
        if len(lengths) > 1:
            self.respond(error_answer(400, "two different Content-Length headers"), close=True)
            return
        length_text = self.headers.get("Content-Length", "0").strip() or "0"
        if self.headers.get("Transfer-Encoding", "").strip():
            self.respond(error_answer(411, "send the body with a Content-Length, not chunked"),
                         close=True)
            return
        if not length_text.isdigit():
            self.respond(error_answer(400, f"bad Content-Length {length_text!r}"), close=True)
            return
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self.respond(error_answer(413, f"body of {length} bytes, over {MAX_BODY_BYTES}"),
                         close=True)
            return
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self.close_connection = True
            return
        request = Request(self.command, self.path, self.headers, body, self.client_address[0])
        self.respond(self.server.application(request))

    def _refuse_headers(self, reason: str) -> None:
        self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
        self.respond(error_answer(431, reason), close=True)

    def respond(self, answer: Answer, close: bool = False) -> None:
        if close:
            self.close_connection = True
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


class ControlServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer with a connection limit, an allow list, no reverse DNS at bind,
    per-instance address family, and connections that end when it stops."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, application: Callable[[Request], Answer], *,
                 allow=None, max_connections: int = MAX_CONNECTIONS,
                 idle_timeout_s: float = IDLE_TIMEOUT_S,
                 on_answer: Callable[[str, str, str, Answer], None] | None = None) -> None:
        self.application = application
        self.idle_timeout_s = idle_timeout_s
        self.allow = tuple(allow) if allow is not None else None
        self.max_connections = max_connections
        self.on_answer = on_answer
        self._lock = threading.Lock()
        self.connections: dict = {}  # handler -> thread
        self.threads: set = set()  # every connection thread that may still run (joined on stop)
        self.pending = 0  # accepted, thread not started or not registered yet
        self.acceptor: Acceptor | None = None
        self.address_family, sockaddr = resolve(host, port)
        super().__init__(sockaddr, ControlHandler, bind_and_activate=False)
        listen_or_close(self)

    def server_bind(self) -> None:
        dual_stack(self.socket, self.address_family)
        socketserver.TCPServer.server_bind(self)  # HTTPServer's would look the host name up
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @property
    def port(self) -> int:
        return self.server_address[1]

    def verify_request(self, request, client_address) -> bool:
        if not allowed(self.allow, client_address[0]):
            log.debug("control: refused connection from %s: not in --allow", client_address[0])
            return False
        with self._lock:
            if len(self.connections) + self.pending >= self.max_connections:
                log.debug("control: refused connection from %s: %d connections already",
                          client_address[0], self.max_connections)
                return False
            self.pending += 1
        return True

    def process_request(self, request, client_address) -> None:
        try:
            start_connection_thread(self, self._lock, "control-connection", request, client_address)
        except BaseException:
            with self._lock:
                self.pending -= 1
            raise

    def register(self, handler) -> None:
        with self._lock:
            self.pending -= 1
            self.connections[handler] = threading.current_thread()

    def unregister(self, handler) -> None:
        with self._lock:
            self.connections.pop(handler, None)

    def handle_error(self, request, client_address) -> None:
        log.exception("control: error serving %s", client_address[0])

    def log_answer(self, handler: ControlHandler, answer: Answer) -> None:
        if self.on_answer is not None:
            self.on_answer(handler.client_address[0], handler.command or "-",
                           handler.path if hasattr(handler, "path") else "-", answer)

    def start(self) -> None:
        """Accept connections in a thread of its own."""
        self.acceptor = Acceptor([self], name="control-server")
        self.acceptor.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop accepting, close the listener, end every connection and join its thread."""
        if self.acceptor is not None:
            self.acceptor.stop()
        self.server_close()
        shut_down_and_join(self._lock, self.connections, self.threads, timeout_s)
