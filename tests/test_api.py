"""The control port's routes without a socket (api.py): the Host check that keeps a rebound web
page out, and which errors a client is told are its own (400, 404) and which are bugs (500)."""
from __future__ import annotations

import json
import logging

import pytest

from meter_simulator.http.api import Api, HostCheck, host_and_port
from meter_simulator.http.web import Request
from meter_simulator.testing import MeterSimulator


@pytest.mark.parametrize("header, parsed", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("localhost", ("localhost", None)),
    ("LocalHost.:8080", ("localhost", 8080)), ("[::1]:8080", ("::1", 8080)), ("[::1]", ("::1", None)),
    ("rebind.example:8080", ("rebind.example", 8080)),
    ("[::1", None), ("[::1]8080", None), ("localhost:80a", None), ("localhost:", None),
    ("localhost:８０", None),
])
def test_a_host_header_is_read_as_name_and_port(header, parsed):
    assert host_and_port(header) == parsed


@pytest.mark.parametrize("bound, header, answered", [
    ("127.0.0.1", "127.0.0.1:8080", True), ("127.0.0.1", "localhost:8080", True),
    ("127.0.0.1", "[::1]:8080", True), ("127.0.0.1", "127.0.0.1", True), ("127.0.0.1", None, True),
    ("127.0.0.1", "rebind.example:8080", False), ("127.0.0.1", "rebind.example", False),
    ("127.0.0.1", "127.0.0.1.rebind.example:8080", False), ("127.0.0.1", "localhost:8081", False),
    ("127.0.0.1", "192.168.1.5:8080", False), ("127.0.0.1", "", False),
    ("meters.lab", "meters.lab:8080", True), ("meters.lab", "METERS.LAB.:8080", True),
    ("meters.lab", "other.lab:8080", False),
    ("::1", "[::1]:8080", True),
    ("0.0.0.0", "192.168.1.5:8080", True), ("0.0.0.0", "[fe80::1]:8080", True),
    ("0.0.0.0", "rebind.example:8080", False), ("::", "10.0.0.7:8080", True),
])
def test_without_a_token_only_this_ports_own_address_is_answered(bound, header, answered):
    assert HostCheck(bound, 8080)(header) is answered


@pytest.fixture(scope="module")
def sim():
    with MeterSimulator(interval=3600, seed=5) as simulator:
        yield simulator


def request(method: str, path: str, body: bytes = b"", **headers: str) -> Request:
    return Request(method, path, headers, body, "127.0.0.1")


@pytest.mark.parametrize("method, path", [("GET", "/healthz"), ("GET", "/"), ("GET", "/api/meters"),
                                          ("POST", "/api/faults"), ("DELETE", "/api/faults")])
def test_a_rebound_name_is_refused_before_routing(sim, method, path):
    api = Api(sim.control)
    api.bound("127.0.0.1", 8080)
    answer = api(request(method, path, b'{"type": "freeze"}', Host="rebind.example:8080"))
    assert answer.status == 403 and answer.headers["Content-Type"] == "application/json"
    assert json.loads(answer.body)["error"].startswith("refused: Host 'rebind.example:8080'")
    assert api.refusal(request(method, path, Host="rebind.example:8080")).status == 403
    assert sim.faults() == []


def test_with_a_token_the_host_is_not_checked(sim):
    api = Api(sim.control, token="t0ken")
    api.bound("127.0.0.1", 8080)
    answer = api(request("GET", "/api/meters", Host="rebind.example:8080", Authorization="Bearer t0ken"))
    assert answer.status == 200


@pytest.mark.parametrize("token", ["", "  "])
def test_an_empty_token_is_refused(sim, token):
    with pytest.raises(ValueError, match="token must not be empty"):
        Api(sim.control, token=token)


def test_an_error_that_is_no_refusal_of_the_core_is_a_logged_500(sim, monkeypatch, caplog):
    """An OverflowError (or any error the core did not raise as a refusal) after a change began is
    a bug, not the client's fault: it was answered 400 while the change stayed in place."""
    def broken(device, total):
        raise OverflowError("float too large to pack with f format")

    monkeypatch.setattr(sim.control.updater, "jump_total", broken)
    api = Api(sim.control)
    with caplog.at_level(logging.ERROR, logger="meter_simulator"):
        answer = api(request("PUT", f"/api/meters/{sim.meter_ids[0]}/total", b'{"total": 5}'))
    assert answer.status == 500
    assert json.loads(answer.body) == {"error": "internal error: OverflowError"}
    assert any(record.exc_info and "error answering PUT" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("path, body, status", [
    ("/api/meters/{m}/total", b'{"total": -1}', 400), ("/api/meters/{m}/overrides", b'{"volts": 1}', 400),
    ("/api/meters/{m}/online", b'{"online": 1}', 400), ("/api/meters/{m}/total", b'{"total": 1e400}', 400),
    ("/api/faults", b'{"type": "steam"}', 400),
    ("/api/faults", b'{"type": "freeze", "scope": {"port": 1}}', 404),
    ("/api/faults", b'{"type": "delay", "delay_ms": 5, "scope": {"face": "serial"}}', 404),
    ("/api/faults", b'{"type": "delay", "delay_ms": 5, "scope": {"face": "rtu"}}', 400),
    ("/api/faults", b'{"type": "corrupt", "mode": "crc"}', 400),
    ("/api/faults", b'{"type": "offline", "scope": {"face": "tcp"}}', 400),
    ("/api/meters/nope/total", b'{"total": 1}', 404), ("/api/meters?limit=0", b"", 400),
])
def test_the_cores_own_refusals_stay_4xx(sim, path, body, status):
    api = Api(sim.control)
    method = "GET" if path.startswith("/api/meters?") else "POST" if path == "/api/faults" else "PUT"
    before = sim.meter()
    answer = api(request(method, path.format(m=sim.meter_ids[0]), body))
    assert answer.status == status, answer.body
    assert sim.meter()["total"] == before["total"] and sim.faults() == []


def test_one_fault_past_the_limit_is_409_and_changes_nothing(sim, monkeypatch):
    monkeypatch.setattr("meter_simulator.device.faults.MAX_FAULTS", 2)
    api = Api(sim.control)
    try:
        for _ in range(2):
            assert api(request("POST", "/api/faults", b'{"type": "no_answer", "count": 1}')).status == 201
        answer = api(request("POST", "/api/faults", b'{"type": "no_answer", "count": 1}'))
        assert answer.status == 409
        assert json.loads(answer.body) == {
            "error": "too many faults: 2 are active, the most a run keeps; end some first"}
        assert len(sim.faults()) == 2
    finally:
        sim.clear_faults()


def test_a_meters_details_name_its_framing_and_serial_line(sim):
    answer = Api(sim.control)(request("GET", f"/api/meters/{sim.meter_ids[0]}"))
    details = json.loads(answer.body)
    assert (details["framing"], details["serial"]) == ("tcp", None)
