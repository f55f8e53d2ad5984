"""The control port from the outside (control-contract sections 1-4 and 7-9): the real program
with --http, driven with the standard library's HTTP client, its Modbus side read with pymodbus.

Most tests share a few programs started once a module, on meters that do not tick (1 h interval),
so a reading can be compared with its registers. The errors (404, 405, 400, 413), the HTTP
limits (raw sockets), the command line, access and the stop are in test_control_limits.py, which
shares the helpers here.
"""
from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from pymodbus.client import ModbusTcpClient

from support import BIND_ATTEMPTS, RUN_METER, free_ports, lost_a_port_race, u32, unit_kw, wait_for

CONTROL_LINE = re.compile(r"INFO control port on http://(\[[^\]]+\]|[^:/\[\]]+):(\d+)/$")
PEER = r"control 127\.0\.0\.1: "


class Reply:
    """An HTTP answer: status, headers, body (bytes) and the body as JSON (doc)."""

    def __init__(self, status: int, headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def doc(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:300]!r})"


def call(port: int, method: str, path: str, body=None, *, headers: dict | None = None,
         token: str | None = None, host: str = "127.0.0.1") -> Reply:
    """One request on a connection of its own. body: a document sent as JSON, or bytes as they
    are. Every answer of the API and /healthz is checked to be JSON (section 2)."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        reply = Reply(response.status, response.headers, response.read())
    finally:
        connection.close()
    if path.startswith(("/api", "/healthz")):
        content_type = reply.headers.get("Content-Type", "")
        assert content_type.split(";")[0].strip() == "application/json", (method, path, content_type)
    return reply


def refused(reply: Reply, status: int) -> str:
    """The one-line error of a refusal with this status: {"error": "..."} and nothing else."""
    assert reply.status == status, reply
    doc = reply.doc
    assert set(doc) == {"error"}, doc
    assert isinstance(doc["error"], str) and doc["error"].strip() and "\n" not in doc["error"], doc
    return doc["error"]


class ControlProcess:
    """The program with --http (default: a free port, 0) in a subprocess. Its stderr is read as
    it comes, by a thread, so a test can wait for the start lines or a request's log line."""

    def __init__(self, *options: str, count: int = 1, http: str = "0", port: int | None = None) -> None:
        self.options = list(options)
        self.count = count
        self.http = http
        self.fixed_port = port
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.http_host = ""
        self.http_port = 0

    @property
    def err(self) -> str:
        return "\n".join(self.lines)

    def _read(self, proc: subprocess.Popen, lines: list[str]) -> None:
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))

    def start(self) -> ControlProcess:
        for _ in range(BIND_ATTEMPTS):
            self.port = self.fixed_port or free_ports(self.count)
            self.lines = []
            self.proc = subprocess.Popen(
                [sys.executable, str(RUN_METER), "--port", str(self.port), "--count", str(self.count),
                 "--http", self.http, *self.options],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self.reader = threading.Thread(target=self._read, args=(self.proc, self.lines),
                                           name="control-test-stderr", daemon=True)
            self.reader.start()
            wait_for(lambda: self.proc.poll() is not None or self.control_line(), 20)
            match = self.control_line()
            if match and self.proc.poll() is None:
                self.http_host, self.http_port = match.group(1).strip("[]"), int(match.group(2))
                return self
            self._reap()
            if self.fixed_port or not lost_a_port_race(self.err):
                break
        raise AssertionError(f"program exited {self.proc.returncode}: {self.err}")

    def control_line(self) -> re.Match | None:
        for line in list(self.lines):
            match = CONTROL_LINE.search(line)
            if match:
                return match
        return None

    def matching(self, pattern: str) -> list[str]:
        """The stderr lines so far in which pattern (a regular expression) is found."""
        return [line for line in list(self.lines) if re.search(pattern, line)]

    def wait_line(self, pattern: str, timeout: float = 10.0) -> str:
        return wait_for(lambda: self.matching(pattern), timeout)[-1]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str]:
        """Send sig, wait for the exit: (exit status, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        status = self.proc.wait(timeout)
        self._reap()
        return status, self.err

    def _reap(self) -> None:
        """After the exit: the rest of stderr read, the pipe closed."""
        self.proc.wait(10)
        self.reader.join(5)
        self.proc.stderr.close()

    def __enter__(self) -> ControlProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self._reap()

    # --- the API ---
    def call(self, method: str, path: str, body=None, **kwargs) -> Reply:
        return call(self.http_port, method, path, body, host=self.http_host, **kwargs)

    def get(self, path: str, **kwargs) -> dict:
        reply = self.call("GET", path, **kwargs)
        assert reply.status == 200, reply
        return reply.doc

    def meter(self, meter_id, **kwargs) -> dict:
        return self.get(f"/api/meters/{meter_id}", **kwargs)

    def change(self, method: str, path: str, body=None, **kwargs) -> dict:
        """A change that must succeed: the meter as the answer shows it."""
        reply = self.call(method, path, body, **kwargs)
        assert reply.status == 200, reply
        return reply.doc

    def pin(self, meter_id, token: str | None = None, **pins) -> dict:
        return self.change("PUT", f"/api/meters/{meter_id}/overrides", pins, token=token)


# --- the Modbus side, read with pymodbus ------------------------------------------------------

def modbus_image(port: int, unit_id: int = 1) -> dict:
    """registers 0-23, registers 100-101 and coils 0-2 of a meter, on one connection."""
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=5)
    try:
        assert client.connect(), f"cannot connect to port {port}"
        kw = unit_kw(client.read_holding_registers, unit_id)
        low = client.read_holding_registers(0, count=24, **kw)
        status = client.read_holding_registers(100, count=2, **kw)
        coils = client.read_coils(0, count=3, **kw)
        for result in (low, status, coils):
            assert not result.isError(), result
        return {"regs": list(low.registers), "status": list(status.registers),
                "coils": list(coils.bits[:3])}
    finally:
        client.close()


def write_coil(port: int, address: int, value: bool) -> None:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=5)
    try:
        assert client.connect()
        result = client.write_coil(address, value, **unit_kw(client.write_coil))
        assert not result.isError(), result
    finally:
        client.close()


# the seed map (meter-contract section 3): name -> (address, scale, offset); 0 and 2 are 32-bit
SEED_MAP = {
    "electric": {"energy_import": (0, 100, 0), "power_total": (2, 10, 0),
                 "voltage_l1": (10, 10, 0), "voltage_l2": (11, 10, 0), "voltage_l3": (12, 10, 0),
                 "current_l1": (13, 100, 0), "current_l2": (14, 100, 0), "current_l3": (15, 100, 0),
                 "frequency": (16, 100, 0), "power_factor_total": (17, 1000, 0)},
    "water": {"volume_total": (0, 100, 0), "flow": (2, 10, 0), "temperature": (21, 10, 50),
              "pressure": (22, 100, 0)},
}
SEED_MAP["gas"] = SEED_MAP["water"]


def register(regs: list[int], address: int) -> int:
    return u32(regs[address:address + 2]) if address in (0, 2) else regs[address]


def power_w(regs: list[int]) -> float:
    return register(regs, 2) / 10


def total(regs: list[int]) -> float:
    return register(regs, 0) / 100


def assert_registers_show(readings: dict, regs: list[int], meter_type: str) -> None:
    """Each reading the seed map carries equals its registers within one count. The map's
    registers are unsigned: with solar panels registers 2-3 show max(P, 0) and register 17 |PF|
    (profiles-contract section 2), where the readings are signed."""
    for name, (address, scale, offset) in SEED_MAP[meter_type].items():
        value = readings[name]
        if name == "power_total":
            value = max(value, 0.0)
        elif name == "power_factor_total":
            value = abs(value)
        assert abs(register(regs, address) - (value + offset) * scale) <= 1, (name, value, regs)
    if meter_type != "electric":
        assert abs(regs[20] - readings["flow"] * 10) <= 1, (readings["flow"], regs)


def phase_power_w(regs: list[int], readings: dict) -> float:
    """sum V*I*PF over the phases: voltages and currents from the registers, each phase's power
    factor from the readings (the seed map carries only the total's)."""
    return sum(regs[10 + k] / 10 * regs[13 + k] / 100 * readings[f"power_factor_l{k + 1}"]
               for k in range(3))


def close_to(value: float, expected: float) -> bool:
    """Within 1 % or 5 W (contract section 4)."""
    return abs(value - expected) <= max(0.01 * abs(expected), 5.0)


# --- programs shared by a module ---------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet():
    """Three electric meters that do not tick during the module: the first one is changed (and
    put back by `meter`), the other two only read."""
    with ControlProcess("--interval", "3600", "--seed", "11", count=3) as program:
        yield program


@pytest.fixture
def meter(fleet):
    """The fleet's first meter's id; every pin is released and the meter put online after."""
    meter_id = str(fleet.port)
    yield meter_id
    fleet.change("DELETE", f"/api/meters/{meter_id}/overrides")
    fleet.change("PUT", f"/api/meters/{meter_id}/online", {"online": True})


@pytest.fixture(scope="module")
def flow_meters():
    """A water and a gas meter that do not tick, by type."""
    with ControlProcess("--type", "water", "--interval", "3600", "--seed", "4") as water, \
            ControlProcess("--type", "gas", "--interval", "3600", "--seed", "4") as gas:
        yield {"water": water, "gas": gas}


@pytest.fixture(scope="module")
def fast():
    """An electric meter ticking every 0.05 s at speed 3600 (a simulated hour a second)."""
    with ControlProcess("--interval", "0.05", "--speed", "3600", "--seed", "5") as program:
        yield program


@pytest.fixture
def fast_meter(fast):
    meter_id = str(fast.port)
    yield meter_id
    fast.change("DELETE", f"/api/meters/{meter_id}/overrides")


def snapshot(program: ControlProcess, meter_id: str, unit_id: int = 1) -> tuple:
    """What a change would show: the meter through the API and on the Modbus side."""
    doc = program.meter(meter_id)
    shown = {key: doc[key] for key in ("online", "no_alarm", "readings", "overrides", "faults")}
    return shown, modbus_image(doc["port"], unit_id)


# --- section 2: JSON in UTF-8 (the errors are in test_control_limits.py) -------------------------

def test_every_answer_is_utf8_json(flow_meters):
    water = flow_meters["water"]
    reply = water.call("GET", f"/api/meters/{water.port}")
    assert reply.headers["Content-Type"].split(";")[0] == "application/json"
    charset = re.search(r"charset=([\w-]+)", reply.headers["Content-Type"])
    assert charset is None or charset.group(1).lower() == "utf-8"
    assert reply.doc["units"]["volume_total"] == "m³"  # decoded as UTF-8


# --- section 3: reading --------------------------------------------------------------------------

SUMMARY_KEYS = {"id", "port", "unit_id", "type", "online", "no_alarm", "total", "rate", "overrides",
                "faults"}
DETAIL_KEYS = {"id", "port", "unit_id", "type", "online", "no_alarm", "tick", "readings", "overrides",
               "faults"}
READINGS = {  # the keys section 3 requires, and their units
    "electric": {"energy_import": "kWh", "power_total": "W", "voltage_l1": "V", "voltage_l2": "V",
                 "voltage_l3": "V", "current_l1": "A", "current_l2": "A", "current_l3": "A",
                 "frequency": "Hz", "power_factor_total": None},
    "water": {"volume_total": "m³", "flow": "L/min", "temperature": "°C", "pressure": "bar"},
    "gas": {"volume_total": "m³", "flow": "L/min", "temperature": "°C", "pressure": "mbar"},
}


def ids(page: dict) -> list[str]:
    return [summary["id"] for summary in page["meters"]]


def test_meters_are_listed_in_port_order_and_paged(fleet):
    p = fleet.port
    page = fleet.get("/api/meters")
    assert (page["count"], page["offset"], page["limit"]) == (3, 0, 100)
    assert ids(page) == [str(p), str(p + 1), str(p + 2)]
    for port, summary in zip(range(p, p + 3), page["meters"]):
        assert SUMMARY_KEYS <= set(summary), summary
        assert (summary["port"], summary["unit_id"], summary["type"]) == (port, None, "electric")
        assert summary["online"] is True and summary["no_alarm"] is True
        assert isinstance(summary["overrides"], list) and isinstance(summary["faults"], list)
        details = fleet.meter(summary["id"])
        assert summary["total"] == details["readings"]["energy_import"]
        assert summary["rate"] == details["readings"]["power_total"]
    page = fleet.get("/api/meters?offset=1&limit=1")
    assert (page["count"], page["offset"], page["limit"], ids(page)) == (3, 1, 1, [str(p + 1)])
    assert ids(fleet.get("/api/meters?offset=2&limit=5")) == [str(p + 2)]
    assert ids(fleet.get("/api/meters?limit=1000")) == [str(p), str(p + 1), str(p + 2)]
    page = fleet.get("/api/meters?offset=3")
    assert (page["count"], page["meters"]) == (3, [])


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=1.5",
                                   "offset=-1", "offset=x", "offset=1e2", "limit=%20"])
def test_bad_paging_is_400(fleet, query):
    refused(fleet.call("GET", f"/api/meters?{query}"), 400)


@pytest.fixture(scope="module")
def gateway():
    """Two gateway ports with unit ids 1, 5 and 7 behind each, not ticking."""
    with ControlProcess("--unit-ids", "1,5,7", "--interval", "3600", "--seed", "8", count=2) as program:
        yield program


def test_gateway_meters_are_ids_port_dash_unit_in_port_then_unit_order(gateway):
    p, q = gateway.port, gateway.port + 1
    page = gateway.get("/api/meters")
    assert page["count"] == 6
    assert ids(page) == [f"{p}-1", f"{p}-5", f"{p}-7", f"{q}-1", f"{q}-5", f"{q}-7"]
    assert [(s["port"], s["unit_id"]) for s in page["meters"]] == [
        (p, 1), (p, 5), (p, 7), (q, 1), (q, 5), (q, 7)]
    assert ids(gateway.get("/api/meters?offset=2&limit=2")) == [f"{p}-7", f"{q}-1"]
    details = gateway.meter(f"{q}-5")
    assert (details["id"], details["port"], details["unit_id"]) == (f"{q}-5", q, 5)
    for missing in (f"{p}-2", str(p), f"{p}-0", f"{p}-5-1"):
        refused(gateway.call("GET", f"/api/meters/{missing}"), 404)


def test_gateway_readings_equal_each_unit_ids_registers(gateway):
    for port in (gateway.port, gateway.port + 1):
        for unit_id in (1, 5, 7):
            readings = gateway.meter(f"{port}-{unit_id}")["readings"]
            assert_registers_show(readings, modbus_image(port, unit_id)["regs"], "electric")
    # two units of a gateway are two meters
    assert gateway.meter(f"{gateway.port}-1")["readings"] != gateway.meter(f"{gateway.port}-5")["readings"]


def check_details(doc: dict, meter_type: str, port: int) -> None:
    assert DETAIL_KEYS <= set(doc), doc.keys()
    assert (doc["id"], doc["port"], doc["unit_id"], doc["type"]) == (str(port), port, None, meter_type)
    assert doc["online"] is True and doc["no_alarm"] is True
    assert doc["overrides"] == {} and doc["faults"] == []
    assert isinstance(doc["tick"], int) and doc["tick"] >= 0
    for name, device in READINGS[meter_type].items():
        value = doc["readings"][name]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (name, value)
        if "units" in doc and device is not None:  # SHOULD
            assert doc["units"][name] == device, name


def test_electric_meter_details(fleet):
    for port in range(fleet.port, fleet.port + 3):
        doc = fleet.meter(port)
        check_details(doc, "electric", port)
        assert_registers_show(doc["readings"], modbus_image(port)["regs"], "electric")


@pytest.mark.parametrize("meter_type", ["water", "gas"])
def test_flow_meter_details(flow_meters, meter_type):
    program = flow_meters[meter_type]
    doc = program.meter(program.port)
    check_details(doc, meter_type, program.port)
    assert not {"voltage_l1", "power_total"} & {name for name, value in doc["readings"].items() if value}
    assert_registers_show(doc["readings"], modbus_image(program.port)["regs"], meter_type)


def test_tick_counts_up_and_an_answer_shows_one_tick(fast):
    first = fast.meter(fast.port)["tick"]

    def later() -> bool:
        doc = fast.meter(fast.port)
        readings = doc["readings"]  # the power and the phases that make it come from one tick
        phases_w = sum(readings[f"voltage_l{k}"] * readings[f"current_l{k}"] * readings[f"power_factor_l{k}"]
                       for k in (1, 2, 3))
        assert close_to(readings["power_total"], phases_w), readings
        return doc["tick"] >= first + 5
    wait_for(later, timeout=10)


@pytest.fixture(scope="module")
def solar():
    """An electric meter with 10 kWp of panels, not ticking."""
    with ControlProcess("--pv-kwp", "10", "--interval", "3600", "--seed", "3") as program:
        yield program


def test_solar_power_is_signed_and_registers_show_max_p_0(solar):
    meter_id = str(solar.port)
    doc = solar.meter(meter_id)
    assert_registers_show(doc["readings"], modbus_image(solar.port)["regs"], "electric")
    try:
        doc = solar.pin(meter_id, power_total=-3000)
        assert close_to(doc["readings"]["power_total"], -3000), doc["readings"]["power_total"]
        summary = solar.get("/api/meters")["meters"][0]
        assert summary["rate"] < 0 and close_to(summary["rate"], -3000)
        regs = modbus_image(solar.port)["regs"]
        assert regs[2:4] == [0, 0]  # an exporting meter's registers 2-3 show 0
        assert_registers_show(doc["readings"], regs, "electric")
        solar.pin(meter_id, power_total=-100000)
        refused(solar.call("PUT", f"/api/meters/{meter_id}/overrides", {"power_total": -100000.5}), 400)
        doc = solar.pin(meter_id, power_total=2500)
        assert close_to(power_w(modbus_image(solar.port)["regs"]), 2500)
    finally:
        solar.change("DELETE", f"/api/meters/{meter_id}/overrides")


# --- section 4: changing ---------------------------------------------------------------------

def test_pin_power_total_scales_the_currents(fleet, meter):
    before = modbus_image(fleet.port)["regs"]
    doc = fleet.pin(meter, power_total=3000)
    assert doc["overrides"] == {"power_total": 3000}
    regs = modbus_image(fleet.port)["regs"]
    assert close_to(power_w(regs), 3000), power_w(regs)
    assert close_to(phase_power_w(regs, doc["readings"]), 3000), regs
    assert regs[10:13] == before[10:13]  # the voltages stay; the currents carry the power
    assert_registers_show(doc["readings"], regs, "electric")
    assert doc["readings"]["power_total"] == pytest.approx(3000, rel=0.01, abs=5)


def test_pin_voltage_l2_lowers_the_power(fleet, meter):
    doc = fleet.pin(meter, current_l2=10.0)  # a load on L2, so that a sag shows
    before = modbus_image(fleet.port)["regs"]
    doc = fleet.pin(meter, voltage_l2=115.0)
    regs = modbus_image(fleet.port)["regs"]
    assert regs[11] == 1150 and regs[13:16] == before[13:16]
    sag_w = (before[11] / 10 - 115.0) * 10.0 * doc["readings"]["power_factor_l2"]
    assert close_to(power_w(regs), power_w(before) - sag_w), (power_w(before), power_w(regs))
    assert close_to(power_w(regs), phase_power_w(regs, doc["readings"]))


def test_pin_power_factor_total_sets_every_phase(fleet, meter):
    doc = fleet.pin(meter, power_factor_total=0.85)
    regs = modbus_image(fleet.port)["regs"]
    assert regs[17] == 850
    assert [doc["readings"][f"power_factor_l{k}"] for k in (1, 2, 3)] == pytest.approx([0.85] * 3)
    volt_amperes = sum(regs[10 + k] / 10 * regs[13 + k] / 100 for k in range(3))
    assert close_to(power_w(regs), 0.85 * volt_amperes)


def test_null_releases_one_pin_and_delete_releases_every_pin(fleet, meter):
    model = modbus_image(fleet.port)
    doc = fleet.pin(meter, voltage_l1=240.0, frequency=50.4)
    assert doc["overrides"] == {"voltage_l1": 240.0, "frequency": 50.4}
    assert [modbus_image(fleet.port)["regs"][a] for a in (10, 16)] == [2400, 5040]
    doc = fleet.pin(meter, voltage_l1=None)
    assert doc["overrides"] == {"frequency": 50.4}
    regs = modbus_image(fleet.port)["regs"]
    assert (regs[10], regs[16]) == (model["regs"][10], 5040)  # the model's own voltage at once
    summary = fleet.get("/api/meters?limit=1")["meters"][0]
    assert summary["overrides"] == ["frequency"]
    doc = fleet.change("DELETE", f"/api/meters/{meter}/overrides")
    assert doc["overrides"] == {}
    after = modbus_image(fleet.port)  # a meter that did not tick shows what it showed; its total
    # (registers 0-1) has grown by what it showed while the test ran, as a release integrates it
    assert after["regs"][2:] == model["regs"][2:] and after["coils"] == model["coils"]
    assert u32(after["regs"][0:2]) >= u32(model["regs"][0:2])


def test_no_alarm_coil_follows_pins_out_of_band(fleet, meter):
    assert modbus_image(fleet.port)["coils"] == [True, True, True]
    for pins in ({"voltage_l1": 300.0}, {"frequency": 49.0}, {"power_factor_total": 0.5},
                 {"current_l3": 80.0}, {"power_total": 100000}):
        doc = fleet.pin(meter, **pins)
        assert doc["no_alarm"] is False, pins
        assert modbus_image(fleet.port)["coils"] == [True, False, True], pins
        doc = fleet.change("DELETE", f"/api/meters/{meter}/overrides")
        assert doc["no_alarm"] is True
        assert modbus_image(fleet.port)["coils"] == [True, True, True], pins
    fleet.pin(meter, voltage_l1=207.0, frequency=50.5)  # the band's ends are inside it
    assert modbus_image(fleet.port)["coils"][1] is True


def test_online_is_coil_0_and_register_100(fleet, meter):
    before = modbus_image(fleet.port)
    doc = fleet.change("PUT", f"/api/meters/{meter}/online", {"online": False})
    assert doc["online"] is False
    image = modbus_image(fleet.port)
    assert (image["status"], image["coils"]) == ([0, 0], [False, True, True])
    assert image["regs"] == before["regs"]  # offline: stale data
    doc = fleet.change("PUT", f"/api/meters/{meter}/online", {"online": True})
    assert doc["online"] is True and modbus_image(fleet.port) == before
    write_coil(fleet.port, 0, False)  # the other way round: a Modbus write shows in the API
    assert fleet.meter(meter)["online"] is False
    assert fleet.get("/api/meters?limit=1")["meters"][0]["online"] is False


def test_reset_is_coil_10(fleet, meter):
    fleet.change("PUT", f"/api/meters/{meter}/total", {"total": 12.34})
    assert register(modbus_image(fleet.port)["regs"], 0) == 1234
    doc = fleet.change("POST", f"/api/meters/{meter}/reset")
    assert doc["readings"]["energy_import"] < 0.01
    image = modbus_image(fleet.port)
    assert register(image["regs"], 0) <= 1 and image["status"] == [1, 0]
    fleet.change("PUT", f"/api/meters/{meter}/total", {"total": 5})
    doc = fleet.change("POST", f"/api/meters/{meter}/reset", {})
    assert register(modbus_image(fleet.port)["regs"], 0) <= 1


@pytest.mark.parametrize("jump, counts", [(42949672.0, 4294967200), (42949672.95, 4294967295),
                                          (42949673.0, 4), (1e9, round(1e11) % 2**32), (0, 0),
                                          (123.456, 12346)])
def test_total_jump_shows_round_x100_mod_2_32_low_word_first(fleet, meter, jump, counts):
    doc = fleet.change("PUT", f"/api/meters/{meter}/total", {"total": jump})
    assert doc["readings"]["energy_import"] == pytest.approx(jump, abs=0.01)
    regs = modbus_image(fleet.port)["regs"]
    assert regs[0:2] == [counts & 0xFFFF, counts >> 16]


def fresh(program: ControlProcess, meter_id: str, after_tick: int) -> tuple[float, dict]:
    """(when, the meter) from the first answer that shows a tick after after_tick: read so soon
    after the tick that the answer's time is the tick's, give or take a poll."""
    def newer():
        doc = program.meter(meter_id)
        return (time.monotonic(), doc) if doc["tick"] > after_tick else None
    return wait_for(newer, timeout=10, interval=0.005)


@pytest.mark.slow
def test_the_total_integrates_the_pinned_power(fast, fast_meter):
    doc = fast.pin(fast_meter, power_total=0)
    _, start = fresh(fast, fast_meter, doc["tick"] + 1)
    _, end = fresh(fast, fast_meter, start["tick"] + 10)
    assert end["readings"]["energy_import"] == pytest.approx(start["readings"]["energy_import"], abs=0.01)
    doc = fast.pin(fast_meter, power_total=36000)  # 36 kWh a real second at speed 3600
    t0, start = fresh(fast, fast_meter, doc["tick"] + 1)
    t1, end = fresh(fast, fast_meter, start["tick"] + 15)
    assert close_to(end["readings"]["power_total"], 36000)
    grown = end["readings"]["energy_import"] - start["readings"]["energy_import"]
    expected = 36.0 * (t1 - t0)
    assert grown == pytest.approx(expected, rel=0.2), (grown, expected, t1 - t0)
    regs = modbus_image(fast.port)["regs"]
    assert total(regs) >= end["readings"]["energy_import"] - 0.01  # the registers move on too


def test_the_total_rolls_over_at_2_32_counts(fast, fast_meter):
    fast.pin(fast_meter, power_total=36000)  # 3,600 counts a real second
    start = 4294960000  # 7,296 counts, about 2 real seconds, before 2^32
    fast.change("PUT", f"/api/meters/{fast_meter}/total", {"total": start / 100})
    # a loaded machine may read after the roll-over: count modulo 2^32
    assert (register(modbus_image(fast.port)["regs"], 0) - start) % 2**32 < 3600 * 30
    wait_for(lambda: register(modbus_image(fast.port)["regs"], 0) < start, timeout=30)


@pytest.mark.slow
def test_pins_hold_through_ticks_while_the_rest_moves(fast, fast_meter):
    doc = fast.pin(fast_meter, voltage_l1=231.7)
    volts_l2 = set()

    def held(pinned_from: int) -> bool:
        image = modbus_image(fast.port)
        assert image["regs"][10] == 2317
        volts_l2.add(image["regs"][11])
        return fast.meter(fast_meter)["tick"] >= pinned_from + 10
    wait_for(lambda: held(doc["tick"]), timeout=10)
    assert len(volts_l2) > 1  # the other readings go on moving
    doc = fast.pin(fast_meter, voltage_l1=None, power_total=4000)

    def power_held() -> bool:
        assert close_to(power_w(modbus_image(fast.port)["regs"]), 4000)
        shown = fast.meter(fast_meter)
        readings = shown["readings"]
        assert close_to(sum(readings[f"voltage_l{k}"] * readings[f"current_l{k}"]
                            * readings[f"power_factor_l{k}"] for k in (1, 2, 3)), 4000), readings
        return shown["tick"] >= doc["tick"] + 10
    wait_for(power_held, timeout=10)


def test_a_jump_or_a_reset_is_never_lost_to_a_tick(fast, fast_meter):
    fast.pin(fast_meter, power_total=1000)  # 1 kWh a real second
    path = f"/api/meters/{fast_meter}"
    for _ in range(10):  # each right after the answer, with ticks every 50 ms
        fast.change("PUT", path + "/total", {"total": 500.0})
        assert 500.0 <= total(modbus_image(fast.port)["regs"]) < 510.0
        fast.change("POST", path + "/reset")
        assert total(modbus_image(fast.port)["regs"]) < 10.0
    fast.pin(fast_meter, power_total=36000)
    fast.change("PUT", path + "/total", {"total": 500.0})
    started = time.monotonic()
    wait_for(lambda: total(modbus_image(fast.port)["regs"]) >= 505.0, timeout=10)
    assert total(modbus_image(fast.port)["regs"]) <= 500.0 + 36.0 * (time.monotonic() - started) + 2.0


@pytest.mark.parametrize("meter_type", ["water", "gas"])
def test_flow_meter_pins(flow_meters, meter_type):
    program = flow_meters[meter_type]
    meter_id, port = str(program.port), program.port
    model = modbus_image(port)
    try:
        doc = program.pin(meter_id, flow=12.5)
        regs = modbus_image(port)["regs"]
        assert (register(regs, 2), regs[20]) == (125, 125)  # flow sets registers 2-3 and 20 alike
        assert doc["readings"]["flow"] == 12.5
        doc = program.pin(meter_id, temperature=-12.5, pressure=3.25)
        regs = modbus_image(port)["regs"]
        assert (regs[21], regs[22]) == (375, 325)
        assert_registers_show(doc["readings"], regs, meter_type)
        doc = program.pin(meter_id, pressure=300.0)  # outside either type's band
        assert doc["no_alarm"] is False and modbus_image(port)["coils"] == [True, False, True]
        for body in ({"voltage_l1": 230}, {"power_total": 100}, {"frequency": 50},
                     {"flow": 6553.6}, {"flow": -1}, {"temperature": -50.1}, {"temperature": 6503.6},
                     {"pressure": 655.36}, {"pressure": -1}, {"flow": "1"}):
            before = snapshot(program, meter_id)
            refused(program.call("PUT", f"/api/meters/{meter_id}/overrides", body), 400)
            assert snapshot(program, meter_id) == before, body
        doc = program.pin(meter_id, flow=None, temperature=None, pressure=None)
        assert doc["overrides"] == {} and modbus_image(port) == model
    finally:
        program.change("DELETE", f"/api/meters/{meter_id}/overrides")


# --- section 7: health ---------------------------------------------------------------------------

def test_healthz_answers_ok_and_head_has_no_body(fleet):
    reply = fleet.call("GET", "/healthz")
    assert reply.status == 200 and reply.doc["status"] == "ok"
    head = fleet.call("HEAD", "/healthz")
    assert head.status == 200 and head.body == b""
    assert head.headers["Content-Type"].split(";")[0] == "application/json"
    head = fleet.call("HEAD", f"/api/meters/{fleet.port}")
    assert head.status == 200 and head.body == b""


# --- section 8: logging ------------------------------------------------------------------------

def test_changes_and_refusals_are_logged_at_info_and_reads_are_not(fleet, meter):
    path = f"/api/meters/{meter}"
    fleet.get(path)
    fleet.get("/api/meters")
    changes = [("PUT", "/overrides", {"frequency": 50.125}), ("DELETE", "/overrides", None),
               ("PUT", "/online", {"online": False}), ("PUT", "/online", {"online": True}),
               ("PUT", "/total", {"total": 7.5}), ("POST", "/reset", None)]
    logged = [rf"INFO {PEER}{method} {path}{tail} -> 200 \S" for method, tail, _ in changes]
    counts = Counter(logged)
    before = {pattern: len(fleet.matching(pattern)) for pattern in counts}
    for method, tail, body in changes:
        fleet.change(method, path + tail, body)
    error = refused(fleet.call("PUT", path + "/overrides", {"frequency": "fast"}), 400)
    fleet.wait_line(rf"INFO {PEER}PUT {path}/overrides -> 400 {re.escape(error)}$")
    for pattern, count in counts.items():  # one line each, all logged before the 400's
        assert len(fleet.matching(pattern)) == before[pattern] + count, (pattern, fleet.err)
    assert fleet.matching(rf"{PEER}PUT {path}/overrides -> 200 .*frequency.*50\.125")
    assert not fleet.matching(r"INFO control .*: (GET|HEAD) \S+ -> [23]\d\d")  # reads: debug
