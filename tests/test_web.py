"""The control port's HTTP server alone (web.py), with an application of the test's own: the idle
timeout, a bug in the application answered 500 and logged, stop ending kept-alive connections,
the request and body deadlines against clients that trickle, the reserve that answers health
checks on a full port, a target that cannot be parsed, and refusals before 100 Continue; and
reader.py's limits on the head and the body, without a socket."""
from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import threading
import time

import pytest

from meter_simulator.http.api import Api
from meter_simulator.http.reader import Refusal, body_length, parse_headers, read_head
from meter_simulator.http.web import ControlServer, Request, error_answer, json_answer
from support import closed_by_server, wait_for


def serve(application, **options) -> ControlServer:
    server = ControlServer("127.0.0.1", 0, application, **options)
    server.start()
    return server


def echo(request: Request):
    return json_answer(200, {"method": request.method, "target": request.target,
                             "body": request.body.decode()})


def test_an_idle_connection_is_closed_after_the_idle_timeout():
    server = serve(echo, idle_timeout_s=0.3)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
            started = time.monotonic()
            assert closed_by_server(silent, timeout=5)
            assert 0.25 <= time.monotonic() - started < 3.0
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("POST", "/x", body=b"{}")
        answer = connection.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["body"] == "{}"
        connection.close()
    finally:
        server.stop()


def test_a_bug_in_the_application_answers_500_logs_it_and_serving_goes_on(caplog):
    class Broken(Api):
        def route(self, request):
            if request.target == "/boom":
                raise RuntimeError("bug")
            return super().route(request)

    class NoControl:
        meters = []

    server = serve(Broken(NoControl()))
    try:
        with caplog.at_level(logging.ERROR, logger="meter_simulator"):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            connection.request("GET", "/boom")
            answer = connection.getresponse()
            assert answer.status == 500
            assert answer.getheader("Content-Type") == "application/json"
            assert json.loads(answer.read()) == {"error": "internal error: RuntimeError"}
            connection.request("GET", "/nowhere")  # the same connection still serves
            answer = connection.getresponse()
            assert answer.status == 404 and json.loads(answer.read()) == {"error": "no such path: /nowhere"}
            connection.close()
        assert any("error answering GET /boom" in record.getMessage() and record.exc_info
                   for record in caplog.records)
    finally:
        server.stop()


@pytest.mark.parametrize("connections", [1, 5])
def test_stop_ends_kept_alive_connections_and_joins_their_threads(connections):
    before = set(threading.enumerate())
    server = serve(echo)
    clients = []
    for _ in range(connections):
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        client.request("GET", "/")
        client.getresponse().read()
        clients.append(client)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2.0
    assert set(threading.enumerate()) == before
    for client in clients:
        client.close()


def read_answer(sock: socket.socket) -> tuple[str, dict, bytes]:
    """One HTTP answer off a raw socket: (status line, headers in lower case, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed with no whole answer, only {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(4096)
        assert chunk, "closed in the middle of the body"
        body += chunk
    return status_line, headers, body


# --- bounds on time: a request deadline, not only an idle timeout per recv ------------------------

def trickle(sock: socket.socket, data: bytes, every_s: float, stop: threading.Event) -> threading.Thread:
    """Send data a byte at a time, one every every_s (a slowloris), until stop or the server closes."""
    def run() -> None:
        for byte in data:
            if stop.wait(every_s):
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
    thread = threading.Thread(target=run, name="test-trickle", daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("deadline, sent, trickled", [
    ("head_deadline_s", b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 200),
    ("body_deadline_s", b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 200\r\n\r\n", b"x" * 200),
], ids=["head", "body"])
def test_a_request_trickled_a_byte_at_a_time_is_cut_off_at_its_deadline(deadline, sent, trickled):
    """Each byte comes well within the idle timeout, so only a deadline for the whole head (or
    body) ends it: the client gets 408 and its connection is closed, counted as late."""
    server = serve(echo, idle_timeout_s=30, **{deadline: 0.5})
    stop = threading.Event()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
            slow.sendall(sent)
            thread = trickle(slow, trickled, 0.05, stop)
            status_line, headers, body = read_answer(slow)  # within the socket's 10 s timeout
            assert status_line.startswith("HTTP/1.1 408 "), status_line
            assert b'"error"' in body and headers["connection"] == "close"
            assert closed_by_server(slow)
        stop.set()
        thread.join(5)
        assert server.late == 1
    finally:
        stop.set()
        server.stop()


def test_a_request_that_comes_whole_is_answered_and_the_connection_kept():
    """The deadline runs per request: a keep-alive connection idle between requests is fine."""
    server = serve(echo, head_deadline_s=0.5)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for _ in range(3):
            connection.request("POST", "/x", body=b"{}")
            assert connection.getresponse().read()
        connection.close()
        assert server.late == 0
    finally:
        server.stop()


# --- a full port: refusals counted and logged, health checks answered on the reserve -------------

def held(port: int) -> socket.socket:
    """A kept-alive connection that has been served once: it holds a slot."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert read_answer(sock)[0].startswith("HTTP/1.1 200 ")
    return sock


def test_a_full_port_answers_health_checks_on_the_reserve_and_closes_the_rest(caplog):
    server = serve(echo, max_connections=2, reserved_connections=1)
    slots = []
    try:
        slots = [held(server.port), held(server.port)]
        with caplog.at_level(logging.WARNING, logger="meter_simulator"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as other:
                other.sendall(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert closed_by_server(other), "a request past the limit was served"
            wait_for(lambda: not server.reserve)  # it came on the reserve: given back as it ends
            for _ in range(2):  # the reserve is given back after each check
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
                connection.request("GET", "/healthz")
                answer = connection.getresponse()
                assert answer.status == 200 and answer.getheader("Connection") == "close"
                connection.close()
                wait_for(lambda: not server.reserve)
        assert server.refused["max_connections"] == 1
        assert any("refused a connection from 127.0.0.1: 2 connections already" in record.getMessage()
                   for record in caplog.records)
    finally:
        for sock in slots:
            sock.close()
        server.stop()


def test_a_silent_connection_on_the_reserve_is_closed_at_its_deadline():
    server = serve(echo, max_connections=1, reserved_connections=1)
    slot = None
    try:
        slot = held(server.port)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as silent:
            wait_for(lambda: server.reserve)
            assert closed_by_server(silent), "answered: only a health check is, on the reserve"
        wait_for(lambda: not server.reserve)
        assert server.late == 1
    finally:
        if slot is not None:
            slot.close()
        server.stop()


# --- the target is parsed once; what the precheck refuses gets no 100 Continue --------------------

def test_a_target_that_cannot_be_parsed_is_a_400_logged_in_one_line(caplog):
    server = serve(echo)
    try:
        with caplog.at_level(logging.DEBUG, logger="meter_simulator"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"GET http://[/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                status_line, _, body = read_answer(sock)
        assert status_line.startswith("HTTP/1.1 400 "), status_line
        assert json.loads(body) == {"error": "cannot parse the request target 'http://[/x'"}
        assert not [record for record in caplog.records if record.exc_info]
    finally:
        server.stop()


def protected(request: Request):
    """A precheck that refuses /protected (401), as the token check does."""
    if request.path == "/protected":
        return error_answer(401, "a bearer token is needed")
    return None


@pytest.mark.parametrize("target, length, status", [("/protected", 10, 401), ("/open", 70000, 413)])
def test_a_refusal_comes_without_100_continue(target, length, status):
    server = serve(echo, precheck=protected)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"PUT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
                         "Expect: 100-continue\r\n\r\n".encode())
            status_line, _, _ = read_answer(sock)
            assert status_line.startswith(f"HTTP/1.1 {status} "), status_line
            assert closed_by_server(sock), "the body it announced was never sent: the connection ends"
    finally:
        server.stop()


def test_100_continue_then_the_body_when_the_precheck_passes():
    server = serve(echo, precheck=protected)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"PUT /open HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"{}")
            status_line, _, body = read_answer(sock)
            assert status_line.startswith("HTTP/1.1 200 ") and json.loads(body)["body"] == "{}"
    finally:
        server.stop()


def test_a_refused_request_with_its_body_sent_is_answered_on_a_kept_connection():
    """Without Expect the body comes anyway: it is read, then refused, and the connection serves on."""
    server = serve(echo, precheck=protected)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("PUT", "/protected", body=b'{"a": 1}')
        answer = connection.getresponse()
        assert answer.status == 401 and answer.read()
        connection.request("PUT", "/open", body=b"{}")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        server.stop()


# --- reader.py: the head's and the body's limits, without a socket -------------------------------

def head(lines: int, line: bytes = b"X-A: b\r\n") -> io.BytesIO:
    return io.BytesIO(b"GET / HTTP/1.1\r\n" + line * lines + b"\r\n")


@pytest.mark.parametrize("stream, status", [
    (head(100), None), (head(101), 431), (head(1, b"X-A: " + b"b" * 8200 + b"\r\n"), 431),
    (io.BytesIO(b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n\r\n"), 414),
], ids=["100-headers", "101-headers", "long-header", "long-line"])
def test_read_head_takes_a_line_and_headers_within_the_limits(stream, status):
    if status is None:
        request_line, header_lines = read_head(stream)
        assert request_line == b"GET / HTTP/1.1\r\n" and len(header_lines) == 101  # the blank one too
    else:
        with pytest.raises(Refusal) as refused:
            read_head(stream)
        assert refused.value.status == status


def test_read_head_at_the_end_of_the_stream_is_empty():
    assert read_head(io.BytesIO(b"")) == (b"", [])


@pytest.mark.parametrize("lines, length, status", [
    ([], 0, None), ([b"Content-Length: 65536"], 65536, None),
    ([b"Content-Length: 2", b"Content-Length: 2"], 2, None),
    ([b"Content-Length: 65537"], None, 413), ([b"Content-Length: 1", b"Content-Length: 2"], None, 400),
    ([b"Content-Length: -1"], None, 400), ([b"Transfer-Encoding: chunked"], None, 411),
])
def test_body_length_within_the_limit_or_refused(lines, length, status):
    headers = parse_headers([line + b"\r\n" for line in lines] + [b"\r\n"])
    if status is None:
        assert body_length(headers) == length
    else:
        with pytest.raises(Refusal) as refused:
            body_length(headers)
        assert refused.value.status == status
