"""The control port's errors, limits, command line, access and life cycle (control-contract
sections 1, 2 and 9): 404, 405 and 400 answers that change nothing, the HTTP limits with raw
sockets, bad --http values and token files, a port in use, the start lines, the warning,
--allow, --read-only, the token, SIGTERM with connections open, IPv6, and the state file across
restarts. The helpers are test_control_http.py's."""
from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import threading
import time
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_control_http import ControlProcess, call, modbus_image, refused, snapshot

from meter_simulator.app.options import short_usage
from support import (
    BIND_ATTEMPTS,
    bindable,
    closed_by_server,
    free_port,
    ipv6_loopback_available,
    recv_exactly,
    run_program,
    wait_for,
)

STOP_DEADLINE_S = 2.0  # section 1: exit 0 within 2 s, also with clients connected
STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"


@pytest.fixture(scope="module")
def limited():
    """One electric meter that does not tick, for the errors and the limits."""
    with ControlProcess("--interval", "3600", "--seed", "12") as program:
        yield program


@pytest.fixture
def meter(limited):
    """The meter's id; every pin is released after."""
    yield str(limited.port)
    limited.change("DELETE", f"/api/meters/{limited.port}/overrides")


# --- section 2: conventions --------------------------------------------------------------------

NOT_FOUND = ["/nope", "/api", "/api/meter", "/api/meters/1", "/api/meters/abc", "/api/meters/{p}/nope",
             "/api/meters/{p}-1", "/api/faults/f999", "/api/faults/nope"]


@pytest.mark.parametrize("path", NOT_FOUND)
def test_unknown_path_meter_or_fault_is_404(limited, path):
    refused(limited.call("GET", path.format(p=limited.port)), 404)


def test_unknown_meter_or_fault_is_404_for_changes_too(limited):
    before = snapshot(limited, str(limited.port))
    for method, path, body in [("PUT", "/api/meters/1/overrides", {"frequency": 50}),
                               ("DELETE", "/api/meters/1/overrides", None),
                               ("PUT", "/api/meters/1/online", {"online": False}),
                               ("POST", "/api/meters/1/reset", None),
                               ("PUT", "/api/meters/1/total", {"total": 5}),
                               ("DELETE", "/api/faults/f999", None)]:
        refused(limited.call(method, path, body), 404)
    assert snapshot(limited, str(limited.port)) == before


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "/api/meters", {"GET"}),
    ("POST", "/api/meters/{p}", {"GET"}),
    ("PATCH", "/api/meters/{p}/overrides", {"PUT", "DELETE"}),
    ("GET", "/api/meters/{p}/reset", {"POST"}),
    ("GET", "/api/meters/{p}/total", {"PUT"}),
    ("POST", "/api/meters/{p}/online", {"PUT"}),
    ("PUT", "/healthz", {"GET"}),
    ("PUT", "/api/faults", {"GET", "POST", "DELETE"}),
])
def test_method_not_allowed_is_405_with_allow(limited, method, path, allowed):
    before = snapshot(limited, str(limited.port))
    reply = limited.call(method, path.format(p=limited.port), {"online": False, "total": 1})
    refused(reply, 405)
    given = {name.strip() for name in reply.headers.get("Allow", "").split(",") if name.strip()}
    assert allowed <= given and method not in given, reply.headers.get("Allow")
    assert snapshot(limited, str(limited.port)) == before


DEEP = b'{"frequency": ' + b"[" * 30000 + b"]" * 30000 + b"}"  # within 64 KiB
BAD_REQUESTS = [  # (what, method, path under the meter, body): each is a 400 and changes nothing
    ("bad JSON", "PUT", "overrides", b'{"frequency": 50'),
    ("not JSON", "PUT", "overrides", b"frequency=50"),
    ("a list", "PUT", "overrides", b'[["frequency", 50]]'),
    ("a string", "PUT", "overrides", b'"frequency"'),
    ("null", "PUT", "overrides", b"null"),
    ("a number", "PUT", "overrides", b"50"),
    ("no body", "PUT", "overrides", b""),
    ("not UTF-8", "PUT", "overrides", b'{"voltage_l1": 240, "\xff\xfe": 1}'),
    ("nested deep", "PUT", "overrides", DEEP),
    ("NaN", "PUT", "overrides", b'{"voltage_l1": NaN}'),
    ("Infinity", "PUT", "overrides", b'{"voltage_l1": Infinity}'),
    ("1e400", "PUT", "overrides", b'{"voltage_l1": 1e400}'),
    ("a huge integer", "PUT", "overrides", b'{"voltage_l1": 1' + b"0" * 5000 + b"}"),
    ("a string value", "PUT", "overrides", {"voltage_l1": "240"}),
    ("a boolean value", "PUT", "overrides", {"voltage_l1": True}),
    ("a list value", "PUT", "overrides", {"voltage_l1": [240]}),
    ("an unknown name", "PUT", "overrides", {"voltage_l4": 240}),
    ("an unknown name beside a good one", "PUT", "overrides", {"voltage_l1": 240, "volts": 1}),
    ("a water quantity", "PUT", "overrides", {"flow": 10}),
    ("a reading that is not pinnable", "PUT", "overrides", {"energy_import": 10}),
    ("power_total below 0 without panels", "PUT", "overrides", {"power_total": -1}),
    ("power_total over 100 kW", "PUT", "overrides", {"power_total": 100000.5}),
    ("voltage over 6553.5 V", "PUT", "overrides", {"voltage_l2": 6553.6}),
    ("voltage below 0", "PUT", "overrides", {"voltage_l3": -0.1}),
    ("current over 655.35 A", "PUT", "overrides", {"current_l1": 655.36}),
    ("current below 0", "PUT", "overrides", {"current_l2": -1}),
    ("frequency over 655.35 Hz", "PUT", "overrides", {"frequency": 655.36}),
    ("power factor over 1", "PUT", "overrides", {"power_factor_total": 1.001}),
    ("power factor below 0", "PUT", "overrides", {"power_factor_total": -0.5}),
    ("power_total with a voltage", "PUT", "overrides", {"power_total": 1000, "voltage_l1": 230}),
    ("power_total with a current", "PUT", "overrides", {"power_total": 1000, "current_l3": 4}),
    ("online missing", "PUT", "online", {}),
    ("online a string", "PUT", "online", {"online": "false"}),
    ("online a number", "PUT", "online", {"online": 0}),
    ("online null", "PUT", "online", {"online": None}),
    ("online an unknown key", "PUT", "online", {"online": False, "now": True}),
    ("online a list", "PUT", "online", b"[false]"),
    ("online bad JSON", "PUT", "online", b"{online: false}"),
    ("reset an unknown key", "POST", "reset", {"total": 0}),
    ("reset a list", "POST", "reset", b"[]"),
    ("reset bad JSON", "POST", "reset", b"{"),
    ("total over 1e9", "PUT", "total", {"total": 1e9 + 1}),
    ("total below 0", "PUT", "total", {"total": -1}),
    ("total a string", "PUT", "total", {"total": "42"}),
    ("total a boolean", "PUT", "total", {"total": True}),
    ("total null", "PUT", "total", {"total": None}),
    ("total missing", "PUT", "total", {}),
    ("total an unknown key", "PUT", "total", {"total": 5, "kwh": 5}),
    ("total NaN", "PUT", "total", b'{"total": NaN}'),
    ("total a huge integer", "PUT", "total", b'{"total": 1' + b"0" * 5000 + b"}"),
]


@pytest.mark.parametrize("method, target, body", [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_request_is_400_and_changes_nothing(limited, meter, method, target, body):
    limited.pin(meter, current_l2=3.5)  # a pin a bad request must not release either
    before = snapshot(limited, meter)
    refused(limited.call(method, f"/api/meters/{meter}/{target}", body), 400)
    assert snapshot(limited, meter) == before  # also: the meter keeps serving Modbus


def test_power_total_cannot_join_a_phase_pin_already_in_place(limited, meter):
    limited.pin(meter, voltage_l1=231.0)
    before = snapshot(limited, meter)
    refused(limited.call("PUT", f"/api/meters/{meter}/overrides", {"power_total": 2000}), 400)
    assert snapshot(limited, meter) == before


def test_a_body_of_64_kib_is_taken(limited, meter):
    document = json.dumps({"frequency": 50.5}).encode()
    body = document[:-1] + b" " * (64 * 1024 - len(document)) + b"}"
    assert len(body) == 64 * 1024
    reply = limited.call("PUT", f"/api/meters/{meter}/overrides", body)
    assert reply.status == 200, reply
    assert modbus_image(limited.port)["regs"][16] == 5050


def test_a_request_content_type_is_not_checked(limited, meter):
    reply = limited.call("PUT", f"/api/meters/{meter}/overrides", b'{"frequency": 50.25}',
                       headers={"Content-Type": "text/plain"})
    assert reply.status == 200, reply
    assert modbus_image(limited.port)["regs"][16] == 5025


# --- section 1: the command line -----------------------------------------------------------------

def assert_usage_error(done, option: str) -> None:
    """Exit 2, one line naming the option (then the usage, as for every bad option), nothing
    started."""
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    reason, _, rest = done.stderr.partition("\n")
    assert reason.startswith("meter-simulator: ") and option in reason, done.stderr
    assert rest.rstrip("\n") == short_usage(), done.stderr
    assert "Traceback" not in done.stderr and "serving" not in done.stderr


@pytest.mark.parametrize("value", ["", "localhost", "127.0.0.1:", ":8080", "8080x", "70000",
                                   "127.0.0.1:65536", "-1", "::1:8080", "::1", "[::1]", "[::1]:",
                                   "[localhost]:8080", "bad_host!:8080", "a b:8080", "[::1]:99999"])
def test_bad_http_value_exits_2_naming_the_option(value):
    port = free_port()
    done = run_program("--port", str(port), "--http", value)
    assert_usage_error(done, "--http")
    assert bindable(port)


@pytest.fixture(params=["missing", "a directory", "empty", "a blank first line", "not UTF-8",
                        "a control character"])
def bad_token_file(request, tmp_path):
    path = tmp_path / "token"
    if request.param == "a directory":
        path.mkdir()
    elif request.param == "a control character":
        path.write_bytes(b"sec\x00ret\n")
    elif request.param == "empty":
        path.write_text("")
    elif request.param == "a blank first line":
        path.write_text("   \nsecret\n")
    elif request.param == "not UTF-8":
        path.write_bytes(b"\xff\xfe\xfa\n")
    return path


def test_unreadable_or_empty_token_file_exits_2_naming_the_option(bad_token_file):
    port = free_port()
    done = run_program("--port", str(port), "--http", "0", "--http-token-file", str(bad_token_file))
    assert_usage_error(done, "--http-token-file")
    assert bindable(port)


def test_control_port_in_use_exits_1_and_frees_the_modbus_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        http_port = holder.getsockname()[1]
        for _ in range(BIND_ATTEMPTS):
            port = free_port()
            done = run_program("--port", str(port), "--http", str(http_port))
            if f":{port}" not in done.stderr:  # else another process took the Modbus port
                break
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "127.0.0.1" in lines[0] and str(http_port) in lines[0], lines[0]
    assert "Address already in use" in lines[0] and "Traceback" not in done.stderr
    assert bindable(port)  # nothing left running


def test_control_start_line_follows_the_modbus_line_within_2_s():
    for _ in range(BIND_ATTEMPTS):
        http_port = free_port()
        program = ControlProcess("--interval", "3600", http=str(http_port))
        try:
            program.start()
            break
        except AssertionError as exc:  # the free port was taken before the program bound it
            if "Address already in use" not in str(exc):
                raise
    try:
        modbus = program.wait_line(rf"^{STAMP} INFO electric meter serving Modbus/TCP on "
                                   rf"127\.0\.0\.1:{program.port}$")
        control = program.wait_line(rf"^{STAMP} INFO control port on http://127\.0\.0\.1:{http_port}/$")
        assert program.http_port == http_port
        assert program.lines.index(control) == program.lines.index(modbus) + 1

        def when(line: str) -> datetime:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        assert 0 <= (when(control) - when(modbus)).total_seconds() <= 2.0
        assert call(http_port, "GET", "/healthz").status == 200
    finally:
        program.__exit__()


def test_http_0_names_the_port_it_took(limited):
    assert limited.http_port != 0
    assert limited.matching(rf"INFO control port on http://127\.0\.0\.1:{limited.http_port}/$")
    assert call(limited.http_port, "GET", "/healthz").doc["status"] == "ok"


@pytest.mark.parametrize("with_token", [False, True])
def test_control_port_beyond_loopback_without_a_token_warns_once(tmp_path, with_token):
    """Bound to every address for a moment; the test talks to it over loopback only."""
    options = ["--interval", "3600"]
    if with_token:
        (tmp_path / "token").write_text("s3cret\n")
        options += ["--http-token-file", str(tmp_path / "token")]
    with ControlProcess(*options, http="0.0.0.0:0") as program:
        assert program.http_host == "0.0.0.0"
        status, err = program.stop()
    assert status == 0, err
    warnings = [line for line in err.splitlines() if " WARNING " in line]
    if with_token:
        assert warnings == [], err
    else:
        assert len(warnings) == 1, err
        assert "control port" in warnings[0] and "--http-token-file" in warnings[0], err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_with_keep_alive_and_half_sent_requests_open(sig):
    with ControlProcess("--interval", "3600") as program:
        keep_alive = http.client.HTTPConnection("127.0.0.1", program.http_port, timeout=10)
        keep_alive.request("GET", "/api/meters")
        answer = keep_alive.getresponse()
        assert answer.status == 200 and answer.getheader("Connection", "").lower() != "close"
        answer.read()
        half = socket.create_connection(("127.0.0.1", program.http_port), timeout=10)
        half.sendall(b"GET /api/meters HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # a slow client, mid-request
        silent = socket.create_connection(("127.0.0.1", program.http_port), timeout=10)
        try:
            # the silent connection is accepted: a request on a fourth one is answered after it
            assert call(program.http_port, "GET", "/healthz").status == 200
            started = time.monotonic()
            status, err = program.stop(sig)
            elapsed = time.monotonic() - started
        finally:
            keep_alive.close()
            half.close()
            silent.close()
    assert status == 0, err
    assert elapsed < STOP_DEADLINE_S, f"stopped after {elapsed:.2f} s"
    assert re.search(r"INFO electric meter on 127\.0\.0\.1:\d+ stopped$", err), err


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback")
def test_control_port_on_ipv6_loopback():
    with ControlProcess("--interval", "3600", http="[::1]:0") as program:
        assert program.matching(rf"INFO control port on http://\[::1\]:{program.http_port}/$")
        assert program.http_host == "::1"
        assert program.get("/healthz")["status"] == "ok"
        doc = program.pin(program.port, frequency=50.3)
        assert doc["overrides"] == {"frequency": 50.3}
        assert modbus_image(program.port)["regs"][16] == 5030
        assert program.wait_line(r"INFO control ::1: PUT ")
        status, err = program.stop()
    assert status == 0, err


# --- section 2: limits, with raw sockets ----------------------------------------------------------

def raw_request(port: int, data: bytes, sock: socket.socket | None = None) -> tuple[int, dict, bytes]:
    """Send data as it is and read one answer: (status, headers in lower case, body)."""
    own = sock is None
    sock = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(data)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed with no HTTP answer, only {head!r} (no status line)")
            head += chunk
        head, _, body = head.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        if len(body) < length:
            body += recv_exactly(sock, length - len(body))
        return int(status_line.split()[1]), headers, body
    finally:
        if own:
            sock.close()


def request(target: str = "/healthz", headers: list[bytes] = (), method: bytes = b"GET") -> bytes:
    return (method + b" " + target.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
        header + b"\r\n" for header in headers) + b"\r\n")


def assert_json_refusal(answer: tuple[int, dict, bytes], status: int) -> None:
    code, headers, body = answer
    assert code == status, answer
    assert headers.get("content-type", "").split(";")[0] == "application/json", headers
    assert set(json.loads(body)) == {"error"}


def still_serving(program: ControlProcess) -> None:
    """Other clients are not harmed: HTTP and Modbus answer."""
    assert program.get("/healthz")["status"] == "ok"
    assert modbus_image(program.port)["status"] == [1, 0]


def test_request_line_over_8_kib_is_414(limited):
    assert raw_request(limited.http_port, request("/" + "a" * 8000))[0] == 404  # long, not too long
    assert_json_refusal(raw_request(limited.http_port, request("/" + "a" * 8300)), 414)
    assert_json_refusal(raw_request(limited.http_port, request("/" + "a" * 100000)), 414)
    still_serving(limited)


def test_header_line_over_8_kib_is_431(limited):
    port = limited.http_port
    assert raw_request(port, request(headers=[b"X-Long: " + b"a" * 8000]))[0] == 200
    assert_json_refusal(raw_request(port, request(headers=[b"X-Long: " + b"a" * 8300])), 431)
    assert_json_refusal(raw_request(port, request(headers=[b"X-Long: " + b"a" * 100000])), 431)
    still_serving(limited)


def test_more_than_100_header_lines_is_431(limited):
    port = limited.http_port
    over = [b"X-H%d: v" % n for n in range(100)]  # and Host: 101
    assert_json_refusal(raw_request(port, request(headers=over)), 431)
    assert_json_refusal(raw_request(port, request(headers=[b"X-H%d: v" % n for n in range(5000)])), 431)
    still_serving(limited)


def test_100_header_lines_are_taken(limited):
    hundred = [b"X-H%d: v" % n for n in range(99)]  # and Host
    answer = raw_request(limited.http_port, request(headers=hundred))
    assert answer[0] == 200, answer[2]


ODD_REQUESTS = [
    b"\x00\x01\x02garbage\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
    b"GET /api/meters HTTP/1.1 extra\r\n\r\n", b"get /api/meters HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /api/meters/%ff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"GET /api/meters/%00 HTTP/1.1\r\n\r\n",
    b"GET /api/meters?offset=%ff&limit=%00 HTTP/1.1\r\n\r\n", b"GET /api/meters/\xc3\xa9 HTTP/1.1\r\n\r\n",
    b"GET http://meter/api/meters HTTP/1.1\r\n\r\n", b"GET ../../etc/passwd HTTP/1.1\r\n\r\n",
    b"GET /api/meters HTTP/1.0\r\n\r\n", b"GET /api/meters HTTP/1.1\r\nNo colon here\r\n\r\n",
    b"PUT /api/meters/{p}/overrides HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"PUT /api/meters/{p}/overrides HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
    b"PUT /api/meters/{p}/overrides HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"POST /api/meters/{p}/reset HTTP/1.1\r\nContent-Length: 4\r\n\r\nnull",
    b"BREW /api/meters HTTP/1.1\r\n\r\n", b"OPTIONS * HTTP/1.1\r\n\r\n",
]


def test_odd_requests_get_an_http_answer_never_a_5xx_or_a_traceback(limited):
    """Each gets a status line (HTTP/1.1, not the stdlib's HTTP/0.9-style bare body for a request
    line it cannot parse) with a status below 500, and changes nothing."""
    before = snapshot(limited, str(limited.port))
    wrong = {}
    for data in ODD_REQUESTS:
        data = data.replace(b"{p}", str(limited.port).encode())
        try:
            status = raw_request(limited.http_port, data)[0]
        except ConnectionError as exc:
            wrong[data] = str(exc)
            continue
        if status >= 500:
            wrong[data] = status
    assert wrong == {}
    assert snapshot(limited, str(limited.port)) == before
    assert "Traceback" not in limited.err and not limited.matching(r" -> 5\d\d ")
    still_serving(limited)


def test_body_over_64_kib_is_413_without_reading_it(limited):
    meter_id = str(limited.port)
    before = snapshot(limited, meter_id)
    # the body is announced and never sent: an answer shows the server did not wait for it
    answer = raw_request(limited.http_port, request(f"/api/meters/{meter_id}/overrides", method=b"PUT",
                                                    headers=[b"Content-Length: 65537"]))
    assert_json_refusal(answer, 413)
    body = b'{"frequency": 50.5' + b" " * (64 * 1024) + b"}"
    refused(limited.call("PUT", f"/api/meters/{meter_id}/overrides", body), 413)
    assert snapshot(limited, meter_id) == before
    still_serving(limited)


def test_more_than_32_connections_are_closed_but_health_checks_answered(limited):
    """Past 32 connections a request is closed unanswered, except a loopback health check
    (a supervisor must not restart the simulator because the port is full)."""
    port = limited.http_port
    served = []
    try:
        for _ in range(32):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            served.append(sock)
            assert raw_request(port, request(), sock)[0] == 200  # keep-alive: the connection stays
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
                try:
                    extra.sendall(request(f"/api/meters/{limited.port}"))
                except OSError:
                    pass  # closed before the request went out
                assert closed_by_server(extra), "a 33rd connection was served"
        # the extras came from loopback, on the reserve: a check the moment before their places
        # are given back is refused as one past the reserve, and a supervisor checks again
        wait_for(lambda: health_check_answered(port), timeout=10)
        for sock in served:  # the first 32 are still answered
            assert raw_request(port, request(f"/api/meters/{limited.port}"), sock)[0] == 200
        served.pop().close()

        def one_more_served() -> bool:
            try:
                return call(port, "GET", "/healthz").status == 200
            except (ConnectionError, http.client.RemoteDisconnected):
                return False
        wait_for(one_more_served, timeout=10)  # a place freed is taken again
    finally:
        for sock in served:
            sock.close()
    still_serving(limited)
    assert control_metric(limited, "meter_simulator_control_connections_refused_total",
                          reason="max_connections") >= 3
    assert limited.wait_line(r"WARNING .*control port: refused a connection from 127\.0\.0\.1: "
                             r"32 connections already")


def health_check_answered(port: int) -> bool:
    """True when a health check on a new connection is answered 200 and its connection then
    closed (one check per reserved connection); False when it is closed unanswered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as health:
        try:
            status, headers, _ = raw_request(port, request(), health)
        except ConnectionError:
            return False
        assert status == 200 and headers["connection"] == "close"
        assert closed_by_server(health), "a health check's reserved connection stays open"
        return True


def control_metric(program: ControlProcess, name: str, **labels: str) -> float:
    """A sample of /metrics, read with Prometheus' own parser."""
    reply = program.call("GET", "/metrics")
    assert reply.status == 200, reply
    for family in text_string_to_metric_families(reply.body.decode("utf-8")):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no {name} {labels} in /metrics")


# --- section 9: access --------------------------------------------------------------------------

def test_allow_closes_other_peers_at_accept_without_an_answer():
    with ControlProcess("--interval", "3600", "--allow", "10.0.0.0/8,127.0.0.2/32") as program:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", program.http_port), timeout=10) as refused_sock:
                try:
                    refused_sock.sendall(request())
                except OSError:
                    pass
                assert closed_by_server(refused_sock), "a peer outside --allow was answered"
        listed = http.client.HTTPConnection("127.0.0.1", program.http_port, timeout=10,
                                            source_address=("127.0.0.2", 0))
        try:
            listed.request("GET", "/healthz")
            assert listed.getresponse().status == 200
        finally:
            listed.close()


CHANGES = [("PUT", "overrides", {"frequency": 50.4}), ("DELETE", "overrides", None),
           ("PUT", "online", {"online": False}), ("POST", "reset", None),
           ("PUT", "total", {"total": 42}), ("POST", None, {"type": "no_answer"}),
           ("DELETE", None, None)]


def test_read_only_refuses_every_change_with_403_and_reads_work():
    with ControlProcess("--interval", "3600", "--read-only") as program:
        meter_id = str(program.port)
        before = snapshot(program, meter_id)
        for method, target, body in CHANGES:
            path = f"/api/meters/{meter_id}/{target}" if target else "/api/faults"
            refused(program.call(method, path, body), 403)
        refused(program.call("DELETE", "/api/faults/f1"), 403)
        assert snapshot(program, meter_id) == before
        assert program.get("/api/faults") == {"faults": []}
        assert program.get("/api/meters")["count"] == 1
        assert program.get("/healthz")["status"] == "ok"
        assert program.call("GET", "/metrics").status == 200
        assert program.call("HEAD", f"/api/meters/{meter_id}").status == 200


def test_token_is_needed_everywhere_but_healthz_and_never_logged(tmp_path):
    token = "tok-3f9a7c1e5d"
    (tmp_path / "token").write_text(f"  {token}  \nsecond line\n")
    with ControlProcess("--interval", "3600", "--http-token-file", str(tmp_path / "token")) as program:
        meter_id = str(program.port)
        for headers in ({}, {"Authorization": f"Bearer {token}x"}, {"Authorization": f"Basic {token}"},
                        {"Authorization": "Bearer"}, {"Authorization": token}):
            for method, path, body in [("GET", "/api/meters", None), ("GET", f"/api/meters/{meter_id}", None),
                                       ("GET", "/metrics", None), ("GET", "/api/faults", None),
                                       ("PUT", f"/api/meters/{meter_id}/overrides", {"frequency": 50.4}),
                                       ("POST", f"/api/meters/{meter_id}/reset", None)]:
                reply = program.call(method, path, body, headers=headers)
                refused(reply, 401)
                assert reply.headers.get("WWW-Authenticate", "").split()[0] == "Bearer"
        assert call(program.http_port, "GET", "/healthz").doc["status"] == "ok"  # no token needed
        assert modbus_image(program.port)["regs"][16] != 5040  # the refused pin changed nothing
        doc = program.pin(meter_id, frequency=50.4, token=token)
        assert doc["overrides"] == {"frequency": 50.4}
        assert modbus_image(program.port)["regs"][16] == 5040
        refused(program.call("PUT", f"/api/meters/{meter_id}/total", {"total": -1}, token=token), 400)
        program.wait_line(r"INFO control 127\.0\.0\.1: PUT \S+/total -> 400 ")
        status, err = program.stop()
    assert status == 0, err
    assert token not in err and "3f9a7c1e5d" not in err


REBOUND = ["rebind.example:{port}", "rebind.example", "127.0.0.1.rebind.example:{port}",
           "localhost:{other}", "[::1]:{other}"]


@pytest.mark.parametrize("host", REBOUND)
def test_without_a_token_a_host_not_naming_the_control_port_is_403_for_every_method(limited, host):
    """DNS rebinding: a page the tester visits re-resolves its own name to 127.0.0.1 and is then
    same-origin with the control port; its requests still carry that name in Host."""
    host = host.format(port=limited.http_port, other=limited.http_port + 1)
    meter_id = str(limited.port)
    before = snapshot(limited, meter_id)
    requests = [(method, f"/api/meters/{meter_id}/{target}" if target else "/api/faults", body)
                for method, target, body in CHANGES]
    requests += [("GET", path, None) for path in (f"/api/meters/{meter_id}", "/api/faults", "/healthz")]
    for method, path, body in requests:
        error = refused(limited.call(method, path, body, headers={"Host": host}), 403)
        assert error.startswith(f"refused: Host {host!r}"), error
    for path in ("/", "/metrics", "/dashboard.js"):
        assert limited.call("GET", path, headers={"Host": host}).status == 403
    assert snapshot(limited, meter_id) == before
    assert limited.get("/api/faults") == {"faults": []}


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST.:{port}", "127.0.0.1"])
def test_without_a_token_loopback_names_are_answered(limited, host):
    reply = limited.call("GET", "/api/meters", headers={"Host": host.format(port=limited.http_port)})
    assert reply.status == 200, reply


def test_with_a_token_any_host_is_answered_with_the_token(tmp_path):
    (tmp_path / "token").write_text("tok-rebind\n")
    with ControlProcess("--interval", "3600", "--http-token-file", str(tmp_path / "token")) as program:
        host = {"Host": f"meters.lab.example:{program.http_port}"}
        refused(program.call("GET", "/api/meters", headers=host), 401)
        assert program.call("GET", "/api/meters", headers=host, token="tok-rebind").status == 200


@pytest.mark.parametrize("path, length, status", [("/api/faults", 20, 401), ("/api/faults", 70000, 413)])
def test_a_refused_change_gets_no_100_continue(tmp_path, path, length, status):
    """curl sends Expect: 100-continue and waits before a body over 1 KiB: the refusal comes
    first, and the body it would have sent is never asked for."""
    (tmp_path / "token").write_text("tok-continue\n")
    with ControlProcess("--interval", "3600", "--http-token-file", str(tmp_path / "token")) as program:
        with socket.create_connection(("127.0.0.1", program.http_port), timeout=10) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
                         "Expect: 100-continue\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                assert chunk, head
                head += chunk
            assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
        assert program.get("/api/faults", token="tok-continue") == {"faults": []}


@pytest.mark.slow
def test_slow_clients_holding_every_slot_leave_healthz_reachable(limited):
    """32 clients trickle a byte every 2 s: health checks are answered on the reserve meanwhile,
    the slots come back when the request deadline (10 s) ends the trickles, and the refusals
    are counted. Nothing here waits on a fixed time: each step polls with a deadline."""
    port = limited.http_port
    stop = threading.Event()
    slow = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(32)]

    def trickle() -> None:
        request_bytes = b"GET /api/meters HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 100
        for byte in request_bytes:
            for sock in slow:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    pass
            if stop.wait(2.0):
                return

    thread = threading.Thread(target=trickle, name="test-trickle", daemon=True)
    thread.start()
    try:
        wait_for(lambda: not served_now(port, f"/api/meters/{limited.port}"), timeout=10)
        wait_for(lambda: served_now(port, "/healthz"), timeout=5)  # on the reserve
        wait_for(lambda: served_now(port, f"/api/meters/{limited.port}"), timeout=15)
        for sock in slow:
            assert answered_then_closed(sock).startswith(b"HTTP/1.1 408 ")
    finally:
        stop.set()
        thread.join(10)
        for sock in slow:
            sock.close()
    assert control_metric(limited, "meter_simulator_control_connections_refused_total",
                          reason="max_connections") >= 1
    assert control_metric(limited, "meter_simulator_control_requests_timed_out_total") >= 32
    assert limited.wait_line(r"control port: closed a connection from 127\.0\.0\.1: its request did "
                             r"not arrive whole within 10 s")


def answered_then_closed(sock: socket.socket) -> bytes:
    """What the server sent on a connection until it closed it (bounded by the socket's timeout)."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def served_now(port: int, path: str) -> bool:
    """True when a request on a new connection is answered (False: closed unanswered)."""
    try:
        return call(port, "GET", path).status == 200
    except (ConnectionError, http.client.RemoteDisconnected):
        return False


# --- the state file across restarts -----------------------------------------------------------

@pytest.mark.slow
def test_state_file_keeps_jumps_and_resets_but_no_pin(tmp_path):
    state = tmp_path / "state.json"

    def saved(port: int) -> float:
        return json.loads(state.read_text())["meters"][str(port)]["energy_import"]

    program = ControlProcess("--interval", "3600", "--state-file", str(state))
    with program:
        meter_id = str(program.port)
        program.change("PUT", f"/api/meters/{meter_id}/total", {"total": 100.0})
        started = time.monotonic()
        program.pin(meter_id, power_total=50000)  # 50 kW: 0.014 kWh a real second
        status, err = program.stop()
        elapsed_h = (time.monotonic() - started) / 3600
    assert status == 0, err
    assert 100.0 <= saved(program.port) <= 100.0 + 50.0 * elapsed_h + 0.001
    again = ControlProcess("--interval", "3600", "--state-file", str(state), port=program.port)
    with again:
        assert again.meter(meter_id)["readings"]["energy_import"] == pytest.approx(saved(program.port))
        assert again.meter(meter_id)["overrides"] == {}  # pins are not state
        again.change("POST", f"/api/meters/{meter_id}/reset")
        status, err = again.stop()
    assert status == 0, err
    assert saved(again.port) < 0.01
