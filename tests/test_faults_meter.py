"""Meter faults (control-contract section 5): freeze and offline on the seed map and on the
sdm630 profile, pins, resets and total jumps while they last, and their end; the fault metrics
(section 6) parsed with prometheus_client's own parser; the fault API of the real program
(POST/GET/DELETE /api/faults) with its 201, 400 and 404 answers.

test_faults.py has the request faults on the wire. Meters here tick once an hour unless a test
says otherwise; sim.tick() steps them by hand, at a high speed so that totals move."""
from __future__ import annotations

import http.client
import json
import socket
import struct
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymodbus.client import ModbusTcpClient

from meter_simulator.testing import MeterSimulator
from support import MeterProcess, accepts, connect, free_port, recv_exactly, u32, unit_kw, wait_for

MBAP = struct.Struct(">HHHB")
COUNTS_PER_KWH = 100


def ask(sock: socket.socket, pdu: bytes, tid: int = 1, unit: int = 1) -> tuple[int, int, int, bytes]:
    sock.sendall(MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu)
    rtid, pid, length, runit = MBAP.unpack(recv_exactly(sock, MBAP.size))
    return rtid, pid, runit, recv_exactly(sock, length - 1)


def words(port: int, address: int, count: int, function: int = 3) -> list[int]:
    """count registers from address, read on a new connection."""
    with connect(port) as sock:
        pdu = ask(sock, struct.pack(">BHH", function, address, count))[3]
    assert pdu[0] == function, pdu
    return list(struct.unpack(f">{count}H", pdu[2:]))


def bits(port: int, address: int = 0, count: int = 3, function: int = 1) -> list[bool]:
    with connect(port) as sock:
        pdu = ask(sock, struct.pack(">BHH", function, address, count))[3]
    assert pdu[0] == function, pdu
    return [bool(pdu[2] >> n & 1) for n in range(count)]


def readings(port: int) -> list[int]:
    """Registers 0-22: what a freeze or offline fault keeps."""
    return words(port, 0, 23)


def online_register(port: int) -> int:
    return words(port, 100, 1)[0]


def total_counts(port: int) -> int:
    return u32(words(port, 0, 2))


def power_counts(port: int) -> int:
    return u32(words(port, 2, 2))


@pytest.fixture
def sim():
    with MeterSimulator(type="electric", seed=1, interval=3600, speed=3600) as simulator:
        yield simulator


# --- freeze -----------------------------------------------------------------------------------

def test_freeze_keeps_the_readings_while_it_says_online_then_the_total_jumps_at_once(sim):
    sim.set(power_total=5000)  # 5 kW at 3600 x speed: 5 kWh (500 counts) a real second
    began = time.monotonic()
    sim.tick()
    began_late = time.monotonic()
    frozen = readings(sim.port)
    with sim.fault("freeze"):
        time.sleep(0.2)  # consumption to come back to
        sim.tick()
        time.sleep(0.1)
        ended_early = time.monotonic()
        sim.tick()
        ended = time.monotonic()
        assert readings(sim.port) == frozen, "stale data"
        assert online_register(sim.port) == 1 and bits(sim.port) == [True, True, True]
        assert bits(sim.port, function=2) == [True, True, True]
        assert sim.meter()["online"] is True
        assert sim.total() * COUNTS_PER_KWH == pytest.approx(u32(frozen[0:2]), abs=1)
        ticks = sim.ticks
    after = readings(sim.port)  # no tick in between: the end republishes at once
    assert sim.ticks == ticks
    jump = u32(after[0:2]) - u32(frozen[0:2])
    assert 500 * (ended_early - began_late) * 0.99 - 2 <= jump <= 500 * (ended - began) * 1.01 + 2
    assert jump >= 100
    assert abs(power_counts(sim.port) - 50000) <= 500
    assert sim.total() * COUNTS_PER_KWH == pytest.approx(u32(after[0:2]), abs=1)


def test_freeze_with_real_ticks_keeps_every_reading_until_it_ends():
    with MeterSimulator(type="electric", seed=2, interval=0.05, speed=600) as sim:
        assert sim.wait_ticks(1)
        with sim.fault("freeze"):
            frozen = readings(sim.port)
            for _ in range(4):
                assert sim.wait_ticks(2)
                assert readings(sim.port) == frozen
                assert online_register(sim.port) == 1
        wait_for(lambda: total_counts(sim.port) > u32(frozen[0:2]), timeout=10)
        wait_for(lambda: readings(sim.port)[2:18] != frozen[2:18], timeout=10)


def test_pins_while_frozen_change_the_model_and_show_only_after(sim):
    sim.set(power_total=2000)
    with sim.fault("freeze"):
        frozen = readings(sim.port)
        sim.set(power_total=None, voltage_l2=190.0)  # outside the band: no alarm would turn OFF
        sim.tick()
        assert readings(sim.port) == frozen
        assert bits(sim.port) == [True, True, True], "coil 1 frozen too"
        assert sim.read()["voltage_l2"] != 190.0, "the API shows what the registers show"
    assert readings(sim.port)[11] == 1900
    assert bits(sim.port) == [True, False, True]
    assert sim.read()["voltage_l2"] == 190.0


def test_the_total_integrates_a_power_pinned_while_frozen(sim):
    sim.set(power_total=1000)
    sim.tick()
    ticked = time.monotonic()
    with sim.fault("freeze"):
        frozen = total_counts(sim.port)
        pin_early = time.monotonic()
        sim.set(power_total=9000)
        pin_late = time.monotonic()
        time.sleep(0.2)
        end_early = time.monotonic()
        sim.tick()
        end_late = time.monotonic()
        assert total_counts(sim.port) == frozen
    jump = total_counts(sim.port) - frozen  # counts: 100 per kWh, kW x real seconds at this speed
    low = 100 * (1 * max(pin_early - ticked, 0) + 9 * (end_early - pin_late))
    high = 100 * (1 * (pin_late - ticked) + 9 * (end_late - pin_early))
    assert low * 0.99 - 2 <= jump <= high * 1.01 + 2


def test_a_reset_or_total_jump_while_frozen_shows_at_once_in_registers_0_1(sim):
    sim.set(power_total=4000)
    sim.tick()
    with sim.fault("freeze"):
        frozen = readings(sim.port)
        sim.reset()
        assert readings(sim.port) == [0, 0] + frozen[2:], "only the total moves"
        sim.set_total(1234.56)
        assert readings(sim.port) == [123456 & 0xFFFF, 123456 >> 16] + frozen[2:]
        time.sleep(0.05)  # 4 kW for 0.05 h of simulated time: 20 counts
        sim.tick()
        assert total_counts(sim.port) == 123456, "while frozen, only the jump shows"
    assert total_counts(sim.port) > 123456, "consumed since the jump"


def test_freeze_for_a_duration_ends_by_itself_and_republishes_without_a_tick(sim):
    sim.set(power_total=1000)
    fault = sim.fault("freeze", duration_s=0.3)
    sim.set(power_total=2500)
    ticks = sim.ticks
    assert abs(power_counts(sim.port) - 10000) <= 100
    wait_for(lambda: abs(power_counts(sim.port) - 25000) <= 250, timeout=5)
    assert sim.ticks == ticks and not fault.active and sim.faults() == []


# --- offline ----------------------------------------------------------------------------------

def test_offline_fault_is_offline_by_coil_0_and_its_end_republishes_at_once(sim):
    sim.set(power_total=3000)
    before = readings(sim.port)
    with sim.fault("offline") as fault:
        assert fault.info()["type"] == "offline"
        assert online_register(sim.port) == 0
        assert bits(sim.port) == [False, True, True] and bits(sim.port, function=2)[0] is False
        sim.set(power_total=1500)
        time.sleep(0.05)
        sim.tick()
        assert readings(sim.port) == before, "registers 0-22 keep their last values"
        assert sim.meter()["online"] is False
        ticks = sim.ticks
    assert sim.ticks == ticks
    assert online_register(sim.port) == 1 and bits(sim.port) == [True, True, True]
    assert abs(power_counts(sim.port) - 15000) <= 150
    assert total_counts(sim.port) > u32(before[0:2])


def test_offline_fault_ends_in_the_online_state_the_meter_would_have(sim):
    with sim.fault("offline"):  # taken offline by the user meanwhile: stays offline
        sim.set_online(False)
    assert online_register(sim.port) == 0 and sim.meter()["online"] is False
    with sim.fault("offline"):  # back online by the user meanwhile: online at the end
        sim.set_online(True)
        assert online_register(sim.port) == 0
    assert online_register(sim.port) == 1
    sim.set_online(False)
    with sim.fault("offline"), connect(sim.port) as sock:  # the same by a Modbus write of coil 0
        assert ask(sock, bytes([0x05, 0, 0, 0xFF, 0])) == (1, 0, 1, bytes([0x05, 0, 0, 0xFF, 0]))
        assert online_register(sim.port) == 0
    assert online_register(sim.port) == 1 and sim.meter()["online"] is True


def test_overlapping_meter_faults_each_hold_until_the_last_ends(sim):
    sim.set(power_total=1000)
    offline, freeze, second = sim.fault("offline"), sim.fault("freeze"), sim.fault("offline")
    sim.set(power_total=2000)
    offline.end()
    assert online_register(sim.port) == 0, "the other offline fault holds"
    second.end()
    assert online_register(sim.port) == 1
    assert abs(power_counts(sim.port) - 10000) <= 100, "still frozen"
    freeze.end()
    assert abs(power_counts(sim.port) - 20000) <= 200


# --- a device profile: sdm630 -----------------------------------------------------------------

SDM630_REQUESTS = [bytes([0x04, 0, 0, 0, 2]), bytes([0x03, 0, 0, 0, 2]), bytes([0x01, 0, 0, 0, 1]),
                   bytes([0x02, 0, 0, 0, 1]), bytes([0x05, 0, 0, 0xFF, 0]), bytes([0x06, 0, 2, 0, 0]),
                   bytes([0x0F, 0, 0, 0, 1, 1, 0]), bytes([0x10, 0, 2, 0, 2, 4, 0x41, 0x70, 0, 0]),
                   bytes([0x17, 0, 0, 0, 1, 0, 2, 0, 1, 2, 0, 0]), bytes([0x2B, 0x0E, 1, 0]),
                   bytes([0x41])]


def sdm630_inputs(port: int) -> list[int]:
    """Every input register of the map, 0x0000-0x017D, in reads of up to 125."""
    return [word for start in range(0, 0x17E, 125)
            for word in words(port, start, min(125, 0x17E - start), function=4)]


def float32(registers: list[int], address: int) -> float:
    return struct.unpack(">f", struct.pack(">HH", *registers[address:address + 2]))[0]


@pytest.mark.parametrize("how", ["fault", "api"])
def test_an_offline_sdm630_answers_every_request_with_0x0b(how):
    with MeterSimulator(type="electric", profile="sdm630", seed=1, interval=3600) as sim:
        fault = sim.fault("offline") if how == "fault" else sim.set_online(False)
        with connect(sim.port) as sock:
            for n, pdu in enumerate(SDM630_REQUESTS):
                assert ask(sock, pdu, tid=100 + n, unit=n) == (100 + n, 0, n, bytes([pdu[0] | 0x80, 0x0B]))
        client = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=3, retries=0)
        assert client.connect()
        try:
            kw = unit_kw(client.read_input_registers)
            assert client.read_input_registers(0, count=2, **kw).exception_code == 0x0B
            if how == "fault":
                fault.end()
            else:
                sim.set_online(True)
            assert not client.read_input_registers(0, count=2, **kw).isError()
            assert client.read_coils(0, count=1, **kw).exception_code == 0x01, "no coils, as ever"
        finally:
            client.close()


def test_a_frozen_sdm630_keeps_every_measured_register_and_a_reset_shows_at_once():
    with MeterSimulator(type="electric", profile="sdm630", seed=1, interval=3600, speed=3600) as sim:
        sim.set(power_total=3000)
        sim.tick()
        with sim.fault("freeze"):
            frozen = sdm630_inputs(sim.port)
            assert float32(frozen, 0x48) > 0
            sim.set(power_total=6000)
            sim.tick()
            sim.tick()
            assert sdm630_inputs(sim.port) == frozen
            sim.reset()  # the operator's reset: every energy counter at once
            reset = sdm630_inputs(sim.port)
            assert float32(reset, 0x48) == 0.0 and float32(reset, 0x15A) == 0.0
            assert reset[0:0x48] == frozen[0:0x48], "the measured values stay frozen"
            time.sleep(0.05)  # 6 kW for 0.05 h of simulated time, shown once the freeze ends
            sim.tick()
            assert sdm630_inputs(sim.port) == reset
        live = sdm630_inputs(sim.port)
        assert float32(live, 0x34) == pytest.approx(6000, rel=0.01)
        assert float32(live, 0x48) > 0, "consumed since the reset"


# --- metrics ----------------------------------------------------------------------------------

def scrape(url: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of GET /metrics, by prometheus_client's parser."""
    connection = http.client.HTTPConnection(url.split("/")[2], timeout=10)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        text = response.read().decode("utf-8")
    finally:
        connection.close()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def requests_counted(url: str, function: str = "3") -> tuple[float, float]:
    """(ok, fault) of meter_simulator_modbus_requests_total for a function code."""
    metrics = scrape(url)
    name = "meter_simulator_modbus_requests_total"
    return tuple(metrics.get((name, (("function", function), ("result", result))), 0)
                 for result in ("ok", "fault"))


def test_every_faulted_request_is_counted_once_as_fault_by_the_time_the_client_has_it():
    read = bytes([0x03, 0, 100, 0, 2])
    with MeterSimulator(type="electric", seed=1, interval=3600, http=True) as sim:
        url = sim.http_url
        with connect(sim.port) as sock:
            ask(sock, read)
            assert requests_counted(url) == (1, 0)
            for n, (kind, parameters) in enumerate([("exception", {"code": 6}), ("delay", {"delay_ms": 5}),
                                                    ("corrupt", {"mode": "transaction_id"})]):
                with sim.fault(kind, count=1, **parameters):
                    ask(sock, read)
                assert requests_counted(url) == (1, n + 1)
            with sim.fault("no_answer", count=1):
                sock.sendall(MBAP.pack(1, 0, 6, 1) + read)
                assert ask(sock, read, tid=2)[0] == 2, "the next one answered"
            assert requests_counted(url) == (2, 4)
        for n, kind in enumerate(["close", "reset"]):
            with connect(sim.port) as sock, sim.fault(kind, count=1):
                sock.sendall(MBAP.pack(1, 0, 6, 1) + read)
                try:
                    assert sock.recv(10) == b""
                except ConnectionResetError:
                    pass
            assert requests_counted(url) == (2, 5 + n)


def test_injected_exceptions_count_by_code_and_faults_applied_by_type():
    with MeterSimulator(type="electric", seed=1, interval=3600, http=True) as sim, \
            connect(sim.port) as sock:
        for code, times in ((6, 3), (0xFF, 1)):
            with sim.fault("exception", code=code, count=times):
                for _ in range(times):
                    assert ask(sock, bytes([0x04, 0, 0, 0, 2]))[3] == bytes([0x84, code])
        assert ask(sock, bytes([0x03, 0, 102, 0, 1]))[3] == bytes([0x83, 2]), "the meter's own"
        with sim.fault("delay", delay_ms=1, count=2):
            ask(sock, bytes([0x04, 0, 0, 0, 2]))
            ask(sock, bytes([0x04, 0, 0, 0, 2]))
        metrics = scrape(sim.http_url)
        exceptions = {labels[0][1]: value for (name, labels), value in metrics.items()
                      if name == "meter_simulator_modbus_exceptions_total"}
        assert exceptions == {"6": 3, "255": 1, "2": 1}
        applied = {labels[0][1]: value for (name, labels), value in metrics.items()
                   if name == "meter_simulator_faults_applied_total"}
        assert applied["exception"] == 4 and applied["delay"] == 2
        assert applied["no_answer"] == applied["corrupt"] == 0
        requests = {labels: value for (name, labels), value in metrics.items()
                    if name == "meter_simulator_modbus_requests_total"}
        assert requests[(("function", "4"), ("result", "fault"))] == 6
        assert requests[(("function", "3"), ("result", "exception"))] == 1
        assert (("function", "4"), ("result", "exception")) not in requests


# --- the real program's fault API -------------------------------------------------------------

class Program:
    """The program in gateway mode on two ports, its control port on a port of its own."""

    def __init__(self) -> None:
        self.http_port = free_port()
        self.meters = MeterProcess("--seed", "3", "--interval", "3600", "--count", "2",
                                   "--unit-ids", "1,2", "--http", str(self.http_port))

    def call(self, method: str, path: str, body=None) -> tuple[int, object]:
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            data = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data)
            response = connection.getresponse()
            assert response.headers["Content-Type"].split(";")[0] == "application/json"
            return response.status, json.loads(response.read())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def program():
    running = Program()
    with running.meters:
        wait_for(lambda: accepts("127.0.0.1", running.http_port), timeout=10)
        yield running


@pytest.fixture
def api(program):
    yield program
    assert program.call("DELETE", "/api/faults")[0] == 200


def exception_hit(port: int, unit: int = 1) -> bool:
    with connect(port) as sock:
        pdu = ask(sock, bytes([0x03, 0, 100, 0, 2]), tid=9, unit=unit)[3]
    assert pdu in (bytes([0x83, 6]), bytes([0x03, 4, 0, 1, 0, 0])), pdu
    return pdu[0] == 0x83


FIELDS = {"id", "type", "scope", "functions", "probability", "count", "remaining", "duration_s",
          "expires_in_s", "applied"}


def test_the_fault_api_creates_lists_shows_and_ends_faults(api):
    port = api.meters.port
    status, first = api.call("POST", "/api/faults", {"type": "delay", "delay_ms": 500,
                                                     "scope": {"port": port}, "count": 3})
    assert status == 201
    assert FIELDS | {"delay_ms"} <= set(first)
    assert (first["type"], first["delay_ms"], first["scope"], first["count"], first["remaining"],
            first["applied"], first["probability"]) == ("delay", 500, {"port": port}, 3, 3, 0, 1)
    status, second = api.call("POST", "/api/faults", {"type": "freeze", "duration_s": 60})
    assert status == 201 and 0 < second["expires_in_s"] <= 60
    listed = api.call("GET", "/api/faults")[1]["faults"]
    assert [fault["id"] for fault in listed] == [first["id"], second["id"]], "oldest first"
    assert api.call("GET", f"/api/faults/{first['id']}") == (200, first)
    status, ended = api.call("DELETE", f"/api/faults/{first['id']}")
    assert status == 200 and ended["id"] == first["id"]
    assert api.call("GET", f"/api/faults/{first['id']}")[0] == 404
    assert api.call("DELETE", f"/api/faults/{first['id']}")[0] == 404
    assert api.call("DELETE", "/api/faults") == (200, {"cleared": 1})
    assert api.call("GET", "/api/faults") == (200, {"faults": []})


def test_a_fault_acts_on_the_next_request_after_its_201_until_its_count_is_used_up(api):
    port = api.meters.port
    for _ in range(5):
        status, fault = api.call("POST", "/api/faults", {"type": "exception", "code": 6, "count": 2})
        assert status == 201
        assert exception_hit(port, 1)
        assert api.call("GET", f"/api/faults/{fault['id']}")[1]["applied"] == 1
        assert exception_hit(port + 1, 2)
        assert not exception_hit(port, 1)
        assert api.call("GET", "/api/faults") == (200, {"faults": []})
        assert api.call("GET", f"/api/faults/{fault['id']}")[0] == 404
        assert api.call("DELETE", f"/api/faults/{fault['id']}")[0] == 404
    status, fault = api.call("POST", "/api/faults", {"type": "exception", "code": 6})
    assert exception_hit(port)
    assert api.call("DELETE", f"/api/faults/{fault['id']}")[0] == 200
    assert not exception_hit(port), "ended for the next request"


def test_the_program_scopes_a_fault_to_a_port_or_a_meter_in_gateway_mode(api):
    port = api.meters.port
    cases = [({"port": port + 1}, [False, False, True, True]),
             ({"meter": f"{port}-2"}, [False, True, False, False]),
             ({"port": port + 1, "unit_id": 1}, [False, False, True, False]),
             ({"unit_id": 2}, [False, True, False, True])]
    for scope, expected in cases:
        status, fault = api.call("POST", "/api/faults", {"type": "exception", "code": 6, "scope": scope})
        assert status == 201, fault
        assert [exception_hit(p, u) for p in (port, port + 1) for u in (1, 2)] == expected, scope
        assert api.call("DELETE", f"/api/faults/{fault['id']}")[0] == 200


def test_the_program_answers_404_for_what_it_does_not_serve_and_400_for_bad_specs(api):
    port = api.meters.port
    for scope in ({"port": port + 2}, {"meter": f"{port}"}, {"meter": f"{port}-3"}, {"meter": "x"},
                  {"unit_id": 9}, {"port": port, "unit_id": 0}):
        status, doc = api.call("POST", "/api/faults", {"type": "close", "scope": scope})
        assert status == 404 and set(doc) == {"error"}, (scope, doc)
    for spec in ({"type": "bogus"}, {"type": "delay"}, {"type": "delay", "delay_ms": 0},
                 {"type": "exception", "code": 0}, {"type": "exception", "code": 256},
                 {"type": "corrupt", "mode": "bytes"}, {"type": "close", "probability": 0},
                 {"type": "close", "probability": 1.5}, {"type": "close", "count": 0},
                 {"type": "close", "duration_s": 0}, {"type": "freeze", "count": 1},
                 {"type": "offline", "probability": 0.5}, {"type": "close", "when": "now"}, [1, 2]):
        status, doc = api.call("POST", "/api/faults", spec)
        assert status == 400 and set(doc) == {"error"} and "\n" not in doc["error"], (spec, doc)
    assert api.call("GET", "/api/faults") == (200, {"faults": []}), "a refusal creates nothing"
    assert not exception_hit(port)


# --- the Python API: fleets and fault handles ------------------------------------------------

def test_a_fleet_on_port_0_serves_free_ports_only():
    """MeterSimulator(count=2) without port=: each meter on a free port (section 10: port 0),
    never on ports 1, 2... which another run may hold and only root may bind."""
    with MeterSimulator(type="electric", seed=1, interval=3600, count=2) as sim:
        assert len(set(sim.ports)) == 2 and all(port >= 1024 for port in sim.ports), sim.ports
        with sim.fault("exception", code=6, port=sim.ports[1]):
            assert not exception_hit(sim.ports[0]) and exception_hit(sim.ports[1])


def test_a_fault_handle_still_tells_how_often_it_applied_once_its_count_ended_it():
    with MeterSimulator(type="electric", seed=1, interval=3600) as sim:
        fault = sim.fault("exception", code=6, count=2)
        assert fault.info()["applied"] == 0
        assert exception_hit(sim.port) and exception_hit(sim.port) and not fault.active
        assert fault.applied == 2, "applied counts the requests it acted on"
        assert fault.info()["remaining"] == 0
