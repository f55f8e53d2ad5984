"""Reading one HTTP/1.1 request within its bounds: DeadlineReader (a deadline across reads),
read_head (line and header limits), parse_headers and body_length (the body's limit)."""
from __future__ import annotations

import email.parser
import http.client
import io
import socket
import time

MAX_LINE_BYTES = 8192
MAX_HEADERS = 100
MAX_BODY_BYTES = 64 * 1024


class RequestDeadline(TimeoutError):
    """A request did not arrive whole within its deadline."""


class Refusal(Exception):
    """A request refused for its size or framing before it is read whole: the status to answer
    (400, 411, 413, 414, 431) and why, in one line."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class DeadlineReader(io.RawIOBase):
    """A socket's bytes with a deadline across reads: a client that trickles its request a
    byte at a time is cut off when the request's time is up, not only when one recv waits
    longer than the idle timeout."""

    def __init__(self, sock: socket.socket, idle_timeout_s: float) -> None:
        super().__init__()
        self._sock = sock
        self._idle_timeout_s = idle_timeout_s
        self.deadline: float | None = None  # monotonic time the bytes read now are due; None: idle

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        timeout = self._idle_timeout_s
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise RequestDeadline("the request did not arrive whole in time")
            timeout = min(timeout, left)
        self._sock.settimeout(timeout)
        try:
            return self._sock.recv_into(buffer)
        except socket.timeout:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise RequestDeadline("the request did not arrive whole in time") from None
            raise


def read_head(rfile) -> tuple[bytes, list[bytes]]:
    """The request line and the header lines, the blank one included; (b"", []) when the stream
    ends first; Refusal 414 or 431 when a line, or their number, is over the limit."""
    request_line = rfile.readline(MAX_LINE_BYTES + 1)
    if not request_line:
        return b"", []
    if len(request_line) > MAX_LINE_BYTES:
        raise Refusal(414, f"request line over {MAX_LINE_BYTES} bytes")
    header_lines = []
    while True:
        line = rfile.readline(MAX_LINE_BYTES + 1)
        if len(line) > MAX_LINE_BYTES:
            raise Refusal(431, f"a header line over {MAX_LINE_BYTES} bytes")
        header_lines.append(line)
        if line in (b"\r\n", b"\n", b""):
            return request_line, header_lines
        if len(header_lines) > MAX_HEADERS:
            raise Refusal(431, f"more than {MAX_HEADERS} header lines")


def parse_headers(header_lines: list[bytes]) -> http.client.HTTPMessage:
    """The header lines read as the standard library's message (its own reader counts the
    blank line against its limit of 100 and would refuse 100 header lines)."""
    return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(
        b"".join(header_lines).decode("iso-8859-1"))


def body_length(headers: http.client.HTTPMessage) -> int:
    """The announced body's length, within the limit; Refusal 400 (two lengths, a bad one),
    411 (chunked) or 413 (over MAX_BODY_BYTES) otherwise."""
    lengths = {value.strip() for value in headers.get_all("Content-Length") or ()}
    if len(lengths) > 1:
        raise Refusal(400, "two different Content-Length headers")
    length_text = headers.get("Content-Length", "0").strip() or "0"
    if headers.get("Transfer-Encoding", "").strip():
        raise Refusal(411, "send the body with a Content-Length, not chunked")
    if not length_text.isdigit():
        raise Refusal(400, f"bad Content-Length {length_text!r}")
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise Refusal(413, f"body of {length} bytes, over {MAX_BODY_BYTES}")
    return length
