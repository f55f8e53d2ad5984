"""The Python API and the pytest plugin (control contract section 10), through real clients:
MeterSimulator's ports, readings and changes seen over Modbus (pymodbus), its errors beside the
HTTP API's, its keywords beside the command line's, its reproducibility, what it leaves behind in
the process (threads, file descriptors, signal handlers, logging), and the fixtures
meter_simulator and meter_simulator_factory in a user's test run, the documented example included.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from pymodbus.client import ModbusTcpClient

from meter_simulator.app import options
from meter_simulator.testing import MeterSimulator
from support import (
    ROOT,
    MeterProcess,
    accepts,
    closed_by_server,
    modbus_exchange,
    pymodbus_client,
    run_python,
    u32,
    unit_kw,
    wait_for,
)

pytest_plugins = ["pytester"]  # this module's plugin (a conftest's would load it for every test)

HOST = "127.0.0.1"
STILL = 3600  # seconds between ticks: no tick runs during a test, what is published stays
READ_HOLDING = 0x03
WRITE_COIL = 0x05

# the readings of contract section 3 that the seed map carries: (first register, words, scale)
ELECTRIC_REGISTERS = {
    "energy_import": (0, 2, 100), "power_total": (2, 2, 10),
    "voltage_l1": (10, 1, 10), "voltage_l2": (11, 1, 10), "voltage_l3": (12, 1, 10),
    "current_l1": (13, 1, 100), "current_l2": (14, 1, 100), "current_l3": (15, 1, 100),
    "frequency": (16, 1, 100), "power_factor_total": (17, 1, 1000),
}
FLOW_REGISTERS = {"volume_total": (0, 2, 100), "flow": (2, 2, 10), "pressure": (22, 1, 100)}
REGISTERS = {"electric": ELECTRIC_REGISTERS, "water": FLOW_REGISTERS, "gas": FLOW_REGISTERS}
KEYS = {  # contract section 3: at least these
    "electric": {"energy_import", "power_total", "voltage_l1", "voltage_l2", "voltage_l3",
                 "current_l1", "current_l2", "current_l3", "frequency", "power_factor_total"},
    "water": {"volume_total", "flow", "temperature", "pressure"},
    "gas": {"volume_total", "flow", "temperature", "pressure"},
}


# --- clients ----------------------------------------------------------------------------------

def holding(client: ModbusTcpClient, address: int = 0, count: int = 23, unit_id: int = 1) -> list[int]:
    method = client.read_holding_registers
    result = method(address, count=count, **unit_kw(method, unit_id))
    assert not result.isError(), result
    return list(result.registers)


def read_exception(client: ModbusTcpClient, address: int = 0, count: int = 4) -> int:
    method = client.read_holding_registers
    result = method(address, count=count, **unit_kw(method))
    assert result.isError(), f"expected an exception answer, got {result}"
    return result.exception_code


def coil(client: ModbusTcpClient, address: int) -> bool:
    method = client.read_coils
    result = method(address, count=1, **unit_kw(method))
    assert not result.isError(), result
    return bool(result.bits[0])


def decoded(regs: list[int], meter_type: str) -> dict[str, float]:
    """The readings registers 0-22 of the seed map carry, in physical units."""
    values = {}
    for name, (address, words, scale) in REGISTERS[meter_type].items():
        raw = u32(regs[address:address + 2]) if words == 2 else regs[address]
        values[name] = raw / scale
    if meter_type != "electric":
        values["temperature"] = regs[21] / 10 - 50
    return values


def assert_registers_show(readings: dict, regs: list[int], meter_type: str) -> None:
    """Every register-borne reading equals the registers within one count of their scale."""
    shown = decoded(regs, meter_type)
    scales = {name: scale for name, (_, _, scale) in REGISTERS[meter_type].items()}
    scales["temperature"] = 10
    for name, value in shown.items():
        assert abs(readings[name] - value) <= 1.0001 / scales[name], (name, readings[name], value)


class Http:
    """One keep-alive HTTP/1.1 connection to a simulator's control port."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)

    def __call__(self, method: str, path: str, body=None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body)
        self.connection.request(method, path, body=data)
        answer = self.connection.getresponse()
        return answer.status, json.loads(answer.read() or b"null")

    def close(self) -> None:
        self.connection.close()


@contextmanager
def http_client(sim: MeterSimulator):
    client = Http(sim.http_url)
    try:
        yield client
    finally:
        client.close()


# --- process-wide state -----------------------------------------------------------------------

def threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def signal_handlers() -> dict:
    return {sig: signal.getsignal(sig) for sig in signal.valid_signals()}


def wakeup_fd() -> int:
    previous = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(previous)
    return previous


def logging_config() -> dict:
    loggers = {"": logging.getLogger()}
    loggers.update((name, logger) for name, logger in logging.Logger.manager.loggerDict.items()
                   if isinstance(logger, logging.Logger))
    config = {name: (logger.level, tuple(logger.handlers), logger.propagate, logger.disabled)
              for name, logger in loggers.items()}
    config["<disable>"] = logging.Logger.manager.disable
    return config


def process_settings() -> dict:
    """What a library must leave alone: signals, logging, the GIL's switch interval, hooks."""
    return {"signals": signal_handlers(), "wakeup_fd": wakeup_fd(), "logging": logging_config(),
            "switch_interval": sys.getswitchinterval(), "socket_timeout": socket.getdefaulttimeout(),
            "excepthook": sys.excepthook, "thread_excepthook": threading.excepthook}


def logging_unchanged(before: dict, after: dict) -> None:
    """Loggers that existed keep their configuration; loggers first made in between (a module's
    getLogger) are left at the defaults."""
    for name, config in after.items():
        if name in before:
            assert config == before[name], f"logger {name!r} changed: {before[name]} -> {config}"
        else:
            assert config == (logging.NOTSET, (), True, False), f"logger {name!r} configured: {config}"


def assert_settings_unchanged(before: dict, after: dict) -> None:
    logging_unchanged(before.pop("logging"), after.pop("logging"))
    assert after == before


# --- ports and meter ids ----------------------------------------------------------------------

def test_a_with_block_serves_one_meter_on_a_free_loopback_port():
    with MeterSimulator(interval=STILL) as sim:
        assert sim.host == HOST
        assert 1024 <= sim.port <= 65535
        assert sim.ports == [sim.port]
        assert sim.meter_ids == [str(sim.port)]
        assert sim.http_url is None  # http=False by default
        with pymodbus_client(sim.port) as client:
            assert holding(client, 100, 2) == [1, 0]  # online, electric
        port = sim.port
    assert not accepts(HOST, port)


def test_count_3_binds_three_free_ports_and_names_the_meters_after_them():
    with MeterSimulator(count=3, seed=4, interval=STILL) as sim:
        ports = sim.ports
        assert len(ports) == 3 and len(set(ports)) == 3, ports
        assert all(1024 <= port <= 65535 for port in ports), f"not ports the system gave: {ports}"
        assert sim.port == ports[0]
        assert sorted(sim.meter_ids) == sorted(str(port) for port in ports)  # a meter a port
        totals = set()
        for port in ports:
            with pymodbus_client(port) as client:
                regs = holding(client)
            assert_registers_show(sim.read(str(port)), regs, "electric")
            totals.add(tuple(regs[2:18]))
        assert len(totals) == 3, "each port serves a meter of its own"
    assert not any(accepts(HOST, port) for port in ports)


def test_the_default_meter_is_the_one_on_sim_port():
    """sim.read() reads the meter sim.port serves (contract: sim.read("5021") for another); a few
    fleets, so that an answer depending on the order the system hands out free ports shows."""
    for seed in range(8):
        with MeterSimulator(count=3, seed=seed, interval=STILL) as sim, pymodbus_client(sim.port) as client:
            regs = holding(client)
            assert sim.read() == sim.read(str(sim.port)), f"seed {seed}: ports {sim.ports}"
            assert_registers_show(sim.read(), regs, "electric")


def test_gateway_mode_names_meters_port_dash_unit_id():
    with MeterSimulator(unit_ids=[1, 2, 7], seed=3, interval=STILL) as sim:
        assert sim.meter_ids == [f"{sim.port}-{unit_id}" for unit_id in (1, 2, 7)]
        with pymodbus_client(sim.port) as client:
            for unit_id in (1, 2, 7):
                assert_registers_show(sim.read(f"{sim.port}-{unit_id}"), holding(client, unit_id=unit_id),
                                      "electric")


# --- readings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("meter_type", ["electric", "water", "gas"])
def test_read_has_the_contracts_keys_and_equals_the_registers(meter_type):
    with MeterSimulator(type=meter_type, seed=11, interval=STILL) as sim:
        readings = sim.read()
        assert KEYS[meter_type] <= set(readings), KEYS[meter_type] - set(readings)
        assert all(isinstance(value, (int, float)) for value in readings.values())
        assert sim.read(sim.meter_ids[0]) == readings
        with pymodbus_client(sim.port) as client:
            regs = holding(client)
        assert_registers_show(readings, regs, meter_type)
        if meter_type != "electric":
            assert abs(readings["flow"] - regs[20] / 10) <= 0.1001, "register 20 is the flow too"


def test_set_release_online_reset_and_total_show_over_modbus_at_once():
    with MeterSimulator(seed=5, interval=STILL) as sim, pymodbus_client(sim.port) as client:
        own_power = sim.read()["power_total"]
        sim.set(power_total=5000)
        power = u32(holding(client, 2, 2)) / 10
        assert abs(power - 5000) <= max(50, 5), power  # within 1 % or 5 W
        assert abs(sim.read()["power_total"] - power) <= 0.1001

        sim.set(power_total=None, voltage_l2=190.0)  # None releases one name
        regs = holding(client)
        assert regs[11] == 1900
        assert u32(regs[2:4]) / 10 < own_power, "a sag on L2 lowers the power"
        assert_registers_show(sim.read(), regs, "electric")

        sim.release("voltage_l2")
        regs = holding(client)
        assert_registers_show(sim.read(), regs, "electric")
        assert regs[11] != 1900 and abs(u32(regs[2:4]) / 10 - own_power) <= 0.1001, "the model's own"

        sim.set(power_total=7000, frequency=49.5)
        sim.release()  # every pin
        assert abs(u32(holding(client, 2, 2)) / 10 - own_power) <= 0.1001
        assert holding(client, 16, 1) != [4950]

        sim.set_total(1234.56)
        assert u32(holding(client, 0, 2)) == 123456
        sim.set_total(42949672.0)
        assert u32(holding(client, 0, 2)) == 4294967200
        sim.set_total(42949673.0)  # round(X x 100) mod 2**32: the roll-over
        assert u32(holding(client, 0, 2)) == 4

        frozen = holding(client, 0, 23)
        sim.set_online(False)
        assert holding(client, 100, 1) == [0] and not coil(client, 0)
        sim.set(power_total=9000)  # offline: changes the model, shows only when back
        assert holding(client, 0, 23) == frozen
        sim.set_online(True)
        assert holding(client, 100, 1) == [1] and coil(client, 0)
        assert abs(u32(holding(client, 2, 2)) / 10 - 9000) <= 90

        sim.reset()
        assert u32(holding(client, 0, 2)) == 0
        assert sim.read()["energy_import"] == 0


def test_a_device_profiles_reset_zeroes_every_counter_and_maximum_demand():
    with MeterSimulator(profile="sdm630", interval=STILL, seed=1) as sim:
        sim.set_total(300.0)  # energy_import, split over the phases in their proportions
        readings = sim.read()
        assert readings["energy_import"] == pytest.approx(300.0)
        phases = [readings[f"energy_import_l{phase}"] for phase in (1, 2, 3)]
        assert sum(phases) == pytest.approx(300.0) and all(phase > 0 for phase in phases)
        assert readings["max_demand_power_total"] > 0
        sim.reset()
        readings = sim.read()
        counters = {name: value for name, value in readings.items()
                    if "energy" in name or name.startswith("max_demand") or name == "ampere_hours"}
        assert len(counters) > 20 and not any(counters.values()), {n: v for n, v in counters.items() if v}


def test_a_fault_acts_on_the_wire_until_its_block_ends():
    with MeterSimulator(seed=5, interval=STILL) as sim, pymodbus_client(sim.port) as client:
        with sim.fault("exception", code=6, count=2):
            assert [read_exception(client), read_exception(client)] == [6, 6]
            holding(client)  # the count is used up
        with sim.fault("exception", code=4) as fault:
            assert fault.id == "f2"
            assert [f["id"] for f in sim.faults()] == ["f2"]
            assert read_exception(client) == 4
        assert sim.faults() == []
        holding(client)
        sim.fault("exception", code=6, functions=[4])
        sim.fault("freeze")
        holding(client)  # FC 3 is not in the first one's functions
        assert sim.clear_faults() == 2
        assert sim.faults() == []


# --- errors: the HTTP API's messages ------------------------------------------------------------

BAD_CALLS = [
    # (what the Python API calls, the HTTP request, its status)
    (lambda sim, m: sim.set(m, power_total=-5), lambda m: ("PUT", f"/api/meters/{m}/overrides",
                                                           {"power_total": -5}), 400),
    (lambda sim, m: sim.set(m, bogus=1), lambda m: ("PUT", f"/api/meters/{m}/overrides", {"bogus": 1}), 400),
    (lambda sim, m: sim.set(m, flow=3), lambda m: ("PUT", f"/api/meters/{m}/overrides", {"flow": 3}), 400),
    (lambda sim, m: sim.set(m, power_total=3000, current_l1=3),
     lambda m: ("PUT", f"/api/meters/{m}/overrides", {"power_total": 3000, "current_l1": 3}), 400),
    (lambda sim, m: sim.set(m, frequency="50"),
     lambda m: ("PUT", f"/api/meters/{m}/overrides", {"frequency": "50"}), 400),
    (lambda sim, m: sim.release("bogus", meter=m),
     lambda m: ("PUT", f"/api/meters/{m}/overrides", {"bogus": None}), 400),
    (lambda sim, m: sim.set_total(-1, meter=m),
     lambda m: ("PUT", f"/api/meters/{m}/total", {"total": -1}), 400),
    (lambda sim, m: sim.set_total(2e9, meter=m),
     lambda m: ("PUT", f"/api/meters/{m}/total", {"total": 2e9}), 400),
    (lambda sim, m: sim.set_online("yes", meter=m),
     lambda m: ("PUT", f"/api/meters/{m}/online", {"online": "yes"}), 400),
    (lambda sim, m: sim.read("999"), lambda m: ("GET", "/api/meters/999", None), 404),
    (lambda sim, m: sim.set("999", power_total=1), lambda m: ("PUT", "/api/meters/999/overrides",
                                                               {"power_total": 1}), 404),
    (lambda sim, m: sim.reset("999"), lambda m: ("POST", "/api/meters/999/reset", None), 404),
    (lambda sim, m: sim.fault("slow"), lambda m: ("POST", "/api/faults", {"type": "slow"}), 400),
    (lambda sim, m: sim.fault("delay"), lambda m: ("POST", "/api/faults", {"type": "delay"}), 400),
    (lambda sim, m: sim.fault("exception", code=300),
     lambda m: ("POST", "/api/faults", {"type": "exception", "code": 300}), 400),
    (lambda sim, m: sim.fault("freeze", count=2),
     lambda m: ("POST", "/api/faults", {"type": "freeze", "count": 2}), 400),
    (lambda sim, m: sim.fault("close", port=9),
     lambda m: ("POST", "/api/faults", {"type": "close", "scope": {"port": 9}}), 404),
    (lambda sim, m: sim.fault("close", meter="abc"),
     lambda m: ("POST", "/api/faults", {"type": "close", "scope": {"meter": "abc"}}), 404),
]


def test_bad_calls_raise_the_http_apis_one_line_messages():
    with MeterSimulator(seed=2, interval=STILL, http=True) as sim, http_client(sim) as client:
        meter = sim.meter_ids[0]
        before = sim.read()
        for index, (call, request, status) in enumerate(BAD_CALLS):
            expected = KeyError if status == 404 else ValueError
            with pytest.raises(expected) as refused:
                call(sim, meter)
            answer_status, answer = client(*request(meter))
            assert answer_status == status, (index, answer)
            message = str(refused.value)
            assert message == answer["error"], index
            assert message and "\n" not in message, index
        assert sim.read() == before, "a refused change changes nothing"
        assert sim.faults() == []


# --- keywords: the command line's -------------------------------------------------------------

@pytest.mark.parametrize(("keywords", "argv", "option"), [
    ({"type": "steam"}, ["--type", "steam"], "--type"),
    ({"count": 0}, ["--count", "0"], "--count"),
    ({"interval": 0.01}, ["--interval", "0.01"], "--interval"),
    ({"speed": "fast"}, ["--speed", "fast"], "--speed"),
    ({"seed": "x"}, ["--seed", "x"], "--seed"),
    ({"unit_ids": "1-300"}, ["--unit-ids", "1-300"], "--unit-ids"),
    ({"max_clients": 0}, ["--max-clients", "0"], "--max-clients"),
    ({"idle_timeout": -1}, ["--idle-timeout", "-1"], "--idle-timeout"),
    ({"allow": "not-a-network"}, ["--allow", "not-a-network"], "--allow"),
    ({"profile": "no-such-map"}, ["--profile", "no-such-map"], "--profile"),
    ({"type": "water", "pv_kwp": 5}, ["--type", "water", "--pv-kwp", "5"], "--pv-kwp"),
])
def test_a_bad_keyword_value_is_the_command_lines_value_error(keywords, argv, option):
    with pytest.raises(options.UsageError) as command_line:
        options.parse_args(argv)
    with pytest.raises(ValueError) as refused:
        MeterSimulator(**keywords)
    assert option in str(refused.value)
    assert str(refused.value) == str(command_line.value)


def test_an_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="colour"):
        MeterSimulator(colour="blue")


def test_a_token_without_the_control_port_is_a_value_error():
    # the Python face of the command line's usage error: --http-token-file without --http
    with pytest.raises(ValueError, match="http_token"):
        MeterSimulator(http_token="s3cret")


@pytest.mark.parametrize("token, problem", [("", "is empty"), ("   ", "is empty"), ("\n", "is empty"),
                                            ("two\nlines", "not printable"), ("nul\0", "not printable"),
                                            (1234, "not text")])
def test_a_token_the_command_line_would_refuse_is_a_value_error(token, problem):
    """An empty token would authorize "Authorization: Bearer" with nothing after it."""
    with pytest.raises(ValueError, match=f"^http_token .*{problem}"):
        MeterSimulator(http=True, http_token=token)


def test_a_token_is_taken_without_surrounding_whitespace():
    with MeterSimulator(http=True, http_token="  s3cret \n", interval=STILL) as sim:
        url = urlsplit(sim.http_url)
        for given, status in ((None, 401), ("", 401), ("s3cret", 200)):
            connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
            headers = {} if given is None else {"Authorization": f"Bearer {given}".rstrip()}
            connection.request("GET", "/api/meters", headers=headers)
            answer = connection.getresponse()
            answer.read()
            connection.close()
            assert answer.status == status, given


def test_a_port_that_cannot_be_bound_raises_and_leaves_nothing_behind():
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        taken = holder.getsockname()[1]
        threads_before, fds_before = threads(), fds()
        sim = MeterSimulator(port=taken, http=True)
        with pytest.raises(Exception, match=str(taken)):
            sim.start()
        assert threads() == threads_before
        assert fds() == fds_before


def test_keywords_take_python_values_and_act_as_their_options(tmp_path):
    with MeterSimulator(type="water", unit_ids=range(1, 4), read_only=True, interval=STILL,
                        idle_timeout=30, max_clients=2) as sim:
        assert sim.meter_ids == [f"{sim.port}-{unit_id}" for unit_id in (1, 2, 3)]
        with pymodbus_client(sim.port) as client:
            assert holding(client, 101, 1, unit_id=3) == [1]  # water
            method = client.write_coil
            assert method(0, False, **unit_kw(method)).exception_code == 0x01  # read-only
            sim.set_online(False, meter=sim.meter_ids[0])  # the Python API is no network client
            assert holding(client, 100, 1, unit_id=1) == [0]
    with MeterSimulator(allow="10.0.0.0/8", interval=STILL) as sim:
        with socket.create_connection((HOST, sim.port), timeout=5) as sock:
            assert closed_by_server(sock), "a peer outside --allow is closed at accept"


# --- reproducible -----------------------------------------------------------------------------

def first_readings(**keywords) -> tuple[dict, list[dict]]:
    """As first published: the default meter's readings, and every meter's in sim.ports order
    (the k-th port is the command line's --port + k), then unit id order."""
    with MeterSimulator(interval=STILL, **keywords) as sim:
        ids = [meter for port in sim.ports for meter in sim.meter_ids if meter.split("-")[0] == str(port)]
        assert sorted(ids) == sorted(sim.meter_ids)
        return sim.read(), [sim.read(meter) for meter in ids]


@pytest.mark.parametrize("keywords", [
    {"type": "electric"}, {"type": "water", "count": 3}, {"type": "gas", "unit_ids": "1-3"},
    {"profile": "sdm630", "pv_kwp": 4},
])
def test_the_same_seed_and_keywords_give_the_same_readings(keywords):
    """Several runs, so that a result depending on which free ports the system gives shows."""
    first = first_readings(seed=42, **keywords)
    for _ in range(4):
        assert first_readings(seed=42, **keywords) == first
    assert first_readings(seed=43, **keywords) != first


def test_the_same_seed_gives_the_command_lines_registers():
    with MeterSimulator(seed=9, interval=STILL) as sim, pymodbus_client(sim.port) as client:
        ours = holding(client, 0, 102)
    with MeterProcess("--seed", "9", "--interval", str(STILL), host=HOST) as program:
        with pymodbus_client(program.port) as client:
            theirs = holding(client, 0, 102)
        status, _, err = program.stop()
    assert status == 0, err
    assert ours == theirs


# --- life: start once, stop everything --------------------------------------------------------

def test_a_simulator_starts_once():
    sim = MeterSimulator(interval=STILL)
    with sim:
        with pytest.raises(RuntimeError):
            sim.start()
        with pymodbus_client(sim.port) as client:
            holding(client)  # still serving
    with pytest.raises(RuntimeError):
        sim.start()
    with pytest.raises(RuntimeError), sim:
        pass
    sim.stop()  # a second stop does nothing


def test_exit_on_an_exception_in_the_block_stops_everything():
    threads_before, fds_before = threads(), fds()
    with pytest.raises(ZeroDivisionError):
        with MeterSimulator(http=True, interval=0.05) as sim:
            port, url = sim.port, urlsplit(sim.http_url)
            sim.fault("freeze", duration_s=600)  # a timer thread
            with pymodbus_client(port) as client:
                holding(client)
            1 / 0  # noqa: B018
    assert threads() == threads_before
    assert fds() == fds_before
    assert not accepts(HOST, port) and not accepts(HOST, url.port)


def modbus_read(sock: socket.socket) -> bytes:
    return modbus_exchange(sock, struct.pack(">BHH", READ_HOLDING, 0, 4))[3]


def test_exit_leaves_the_threads_and_file_descriptors_as_before_with_clients_connected():
    """A keep-alive HTTP connection and Modbus connections, one of them waiting for an answer a
    delay fault holds back, stay open across the exit: the server's ends close, the threads join."""
    settings_before = process_settings()
    threads_before, fds_before = threads(), fds()
    started = time.monotonic()
    with MeterSimulator(http=True, count=2, interval=0.05, seed=1) as sim:
        web = Http(sim.http_url)
        assert web("GET", "/api/meters")[0] == 200  # the connection stays open (keep-alive)
        idle = socket.create_connection((HOST, sim.ports[1]), timeout=10)
        assert modbus_read(idle)[0] == READ_HOLDING
        waiting = socket.create_connection((HOST, sim.port), timeout=10)
        fault = sim.fault("delay", delay_ms=30000, port=sim.port)
        waiting.sendall(struct.pack(">HHHB", 1, 0, 6, 1) + struct.pack(">BHH", READ_HOLDING, 0, 4))
        wait_for(lambda: fault.applied == 1)
        sim.fault("offline", duration_s=600)
        clients = {str(web.connection.sock.fileno()), str(idle.fileno()), str(waiting.fileno())}
    assert time.monotonic() - started < 10, "the exit does not wait for the delayed answer"
    assert threads() == threads_before
    assert fds() == fds_before | clients
    try:
        for sock in (web.connection.sock, idle, waiting):
            assert closed_by_server(sock, timeout=5), "the server closed its end"
    finally:
        web.close()
        idle.close()
        waiting.close()
    assert fds() == fds_before
    assert_settings_unchanged(settings_before, process_settings())


def test_exit_joins_connections_that_are_ending_or_just_accepted():
    """Clients that hung up a moment before the exit (their threads still ending) and connections
    accepted just before it (their threads not serving yet): every thread is joined by then. A
    few runs, each with many such connections, as the window is short."""
    threads_before = threads()
    for run in range(10):
        with MeterSimulator(interval=STILL, http=True) as sim:
            for _ in range(10):
                with socket.create_connection((HOST, sim.port), timeout=10) as sock:
                    assert modbus_read(sock)[0] == READ_HOLDING
                with http_client(sim) as web:
                    assert web("GET", "/healthz")[0] == 200
            pending = [socket.create_connection((HOST, sim.port), timeout=10) for _ in range(3)]
        left = threads() - threads_before
        for sock in pending:
            sock.close()
        assert not left, f"run {run}: threads left running: {sorted(t.name for t in left)}"


@pytest.mark.parametrize("step", ["finish_request", "shutdown_request"])
def test_exit_joins_a_connection_thread_caught_before_or_after_serving(monkeypatch, step):
    """White-box, to hold the window open: a connection thread stopped in socketserver's
    finish_request (accepted, not serving yet) or shutdown_request (its client hung up, its
    handler done) when the exit comes. The exit joins it all the same (it lets go within 0.3 s)."""
    from meter_simulator.modbus import tcp as transport

    entered, release = threading.Event(), threading.Event()
    original = getattr(transport.MeterTCPServer, step)

    def held(self, request, *args):
        entered.set()
        release.wait(0.3)
        return original(self, request, *args)

    threads_before = threads()
    try:
        with MeterSimulator(interval=STILL) as sim:
            monkeypatch.setattr(transport.MeterTCPServer, step, held)
            sock = socket.create_connection((HOST, sim.port), timeout=10)
            try:
                if step == "shutdown_request":
                    assert modbus_read(sock)[0] == READ_HOLDING
                    sock.close()  # the client hangs up: its thread ends the connection
                assert entered.wait(10)
            finally:
                sock.close()
        left = threads() - threads_before
        assert not left, f"threads left running: {sorted(t.name for t in left)}"
    finally:
        release.set()


def test_a_state_file_run_leaves_nothing_behind_and_saves(tmp_path):
    path = tmp_path / "state.json"
    settings_before = process_settings()
    threads_before, fds_before = threads(), fds()
    with MeterSimulator(state_file=str(path), save_interval=1, interval=0.05, seed=2) as sim:
        sim.set_total(500.25)
        meter = sim.meter_ids[0]
    assert threads() == threads_before
    assert fds() == fds_before
    assert_settings_unchanged(settings_before, process_settings())
    saved = path.read_text(encoding="utf-8")
    assert meter in saved and "500.2" in saved, saved


def test_a_run_changes_no_process_wide_setting():
    before = process_settings()
    with MeterSimulator(http=True, interval=0.05, http_token="s3cret") as sim, http_client(sim) as client:
        client("GET", "/healthz")
        sim.wait_ticks(2)
    assert_settings_unchanged(before, process_settings())


# --- the pytest plugin ------------------------------------------------------------------------

USER_TESTS = '''
import socket

from pyModbusTCP.client import ModbusClient

seen = []


def test_one_started_electric_meter(meter_simulator):
    client = ModbusClient(host="127.0.0.1", port=meter_simulator.port, timeout=5)
    regs = client.read_holding_registers(0, 102)
    client.close()
    assert regs[100] == 1 and regs[101] == 0  # online, electric
    assert "energy_import" in meter_simulator.read()
    seen.append((meter_simulator, meter_simulator.port))


def test_a_new_meter_for_each_test(meter_simulator):
    first, first_port = seen[0]
    assert meter_simulator is not first
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", first_port)) != 0, "the first test's meter stopped"
    meter_simulator.set(power_total=4000)
    client = ModbusClient(host="127.0.0.1", port=meter_simulator.port, timeout=5)
    regs = client.read_holding_registers(2, 2)
    client.close()
    assert abs(((regs[1] << 16) | regs[0]) / 10 - 4000) <= 40


def test_the_factory_takes_the_keywords(meter_simulator_factory):
    water = meter_simulator_factory(type="water", seed=3, interval=3600)
    fleet = meter_simulator_factory(count=2, http=True)
    assert "volume_total" in water.read()
    assert len(fleet.ports) == 2 and fleet.http_url.startswith("http://127.0.0.1:")
    with water.fault("exception", code=6):
        client = ModbusClient(host="127.0.0.1", port=water.port, timeout=5)
        assert client.read_holding_registers(0, 4) is None
        assert client.last_except == 6
        client.close()
'''

FAILING_TESTS = '''
import socket


def test_fails_with_simulators_running(meter_simulator_factory, meter_simulator, held):
    sims = [meter_simulator_factory(http=True, interval=0.05), meter_simulator_factory(count=2)]
    sims[0].fault("freeze", duration_s=600)
    for port in [meter_simulator.port, *sims[1].ports]:
        held.append(socket.create_connection(("127.0.0.1", port)))
    assert False, "the user's test fails"


def test_fails_in_the_factory(meter_simulator_factory):
    meter_simulator_factory(type="water")
    meter_simulator_factory(type="steam")
'''


class Holder:
    """A plugin for the inner run: the fixture held keeps the user's client sockets here, so the
    outer test sees that teardown closed the server's ends, and closes them itself."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []

    @pytest.fixture
    def held(self) -> list[socket.socket]:
        return self.sockets


def test_the_fixtures_run_a_users_tests(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    threads_before = threads()
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert threads() == threads_before


def test_teardown_after_a_failing_test_stops_everything(pytester):
    pytester.makepyfile(test_user=FAILING_TESTS)
    holder = Holder()
    threads_before = threads()
    try:
        result = pytester.runpytest("-p", "no:cacheprovider", plugins=[holder])
        result.assert_outcomes(failed=2)  # and no error in a teardown
        result.stdout.fnmatch_lines(["*ValueError: --type must be one of electric, water, gas, not 'steam'*"])
        assert threads() == threads_before
        assert len(holder.sockets) == 3
        for sock in holder.sockets:
            assert closed_by_server(sock, timeout=5), "teardown closed the server's end"
    finally:
        for sock in holder.sockets:
            sock.close()


@pytest.mark.slow
def test_a_run_that_uses_no_fixture_loads_nothing_of_the_server(pytester):
    pytester.makepyfile(test_plain='''
import sys


def test_nothing_loaded(request):
    assert request.config.pluginmanager.has_plugin("meter_simulator"), "the entry point's plugin"
    assert "meter_simulator.modbus.server" not in sys.modules
    assert "pyModbusTCP" not in sys.modules
    assert "prometheus_client" not in sys.modules


def test_the_fixture_works_afterwards(meter_simulator):
    assert meter_simulator.read()
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_importing_the_plugin_loads_neither_the_server_nor_pymodbustcp():
    code = ("import meter_simulator.testing.plugin, sys; "
            "print('meter_simulator.modbus.server' in sys.modules, 'pyModbusTCP' in sys.modules)")
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False False"


def test_the_plugin_is_registered_as_a_pytest11_entry_point():
    from importlib.metadata import entry_points

    found = entry_points()
    group = found.select(group="pytest11") if hasattr(found, "select") else found.get("pytest11", [])
    assert any(point.name == "meter_simulator" and point.value == "meter_simulator.testing.plugin"
               for point in group)


@pytest.mark.slow
def test_the_documented_poller_example_passes():
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "docs" / "examples" / "test_poller.py")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout


@pytest.mark.slow
def test_the_documented_battery_mode_example_passes():
    """docs/examples/battery_mode.py writes evcc's charge and normal modes and checks the grid."""
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / "battery_mode.py")],
                          capture_output=True, text=True, timeout=20, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    seen = {match[1]: float(match[2]) for match in
            re.finditer(r"^(charge|normal): grid ([+-]\d+) W", done.stdout, re.MULTILINE)}
    assert seen.keys() == {"charge", "normal"}, done.stdout
    assert seen["charge"] == pytest.approx(1500 + 2500, abs=21), "the load plus half of 5 kW"
    assert seen["normal"] == pytest.approx(0, abs=1), "the battery covers the load"
