"""The sdm630 profile read from outside: sdm_modbus (a client library for Eastron meters) decodes the
measurements and settings, raw pymodbus requests check the writes and refusals.

sdm_modbus 0.7.0 works with pymodbus 3.5-3.6 only, so this module runs in its own tox environment
(`tox -e sdm630`) and skips wherever sdm_modbus cannot be imported.

Read-only tests share module-scoped programs: `still` never ticks after its start (one image),
`running` ticks every 0.25 s at speed 600 (150 simulated seconds a tick). Reads that must come
from one tick read the block 0x0000-0x006B again after the others and retry when it changed (its
voltages move every tick).
"""
from __future__ import annotations

import math
import random
import struct
import time
from contextlib import contextmanager

import pytest
from pymodbus.client import ModbusTcpClient

from support import MeterProcess, unit_kw, wait_for

try:
    import sdm_modbus
    from sdm_modbus.meter import registerType
except ImportError as error:  # not installed, or with a pymodbus it cannot use (3.7 on)
    pytest.skip(f"sdm_modbus is not usable here ({error}); tox -e sdm630 runs this module",
                allow_module_level=True)

EXC_ILLEGAL_FUNCTION, EXC_ILLEGAL_ADDRESS, EXC_ILLEGAL_VALUE = 0x01, 0x02, 0x03
SPEED = 600
TICK_S = 0.25


def phased(stem: str, address: int) -> dict[str, int]:
    """stem_l1..l3 at three consecutive float32 addresses."""
    return {f"{stem}_l{phase}": address + 2 * (phase - 1) for phase in (1, 2, 3)}


# the contract's input table (profiles-contract section 3): name -> address of its float32
INPUT = {
    **phased("voltage", 0x0000), **phased("current", 0x0006), **phased("power", 0x000C),
    **phased("apparent_power", 0x0012), **phased("reactive_power", 0x0018),
    **phased("power_factor", 0x001E), **phased("phase_angle", 0x0024),
    "voltage_avg": 0x002A, "current_avg": 0x002E, "current_sum": 0x0030, "power_total": 0x0034,
    "apparent_power_total": 0x0038, "reactive_power_total": 0x003C, "power_factor_total": 0x003E,
    "phase_angle_total": 0x0042, "frequency": 0x0046,
    "energy_import": 0x0048, "energy_export": 0x004A, "reactive_energy_import": 0x004C,
    "reactive_energy_export": 0x004E, "apparent_energy": 0x0050, "ampere_hours": 0x0052,
    "demand_power_total": 0x0054, "max_demand_power_total": 0x0056,
    "demand_power_import": 0x0058, "max_demand_power_import": 0x005A,
    "demand_power_export": 0x005C, "max_demand_power_export": 0x005E,
    "demand_apparent": 0x0064, "max_demand_apparent": 0x0066,
    "demand_current_neutral": 0x0068, "max_demand_current_neutral": 0x006A,
    "voltage_l1_l2": 0x00C8, "voltage_l2_l3": 0x00CA, "voltage_l3_l1": 0x00CC, "voltage_ll_avg": 0x00CE,
    "current_neutral": 0x00E0, **phased("thd_voltage", 0x00EA), **phased("thd_current", 0x00F0),
    "thd_voltage_avg": 0x00F8, "thd_current_avg": 0x00FA, "power_factor_total_again": 0x00FE,
    **phased("demand_current", 0x0102), **phased("max_demand_current", 0x0108),
    "thd_voltage_l1_l2": 0x014E, "thd_voltage_l2_l3": 0x0150, "thd_voltage_l3_l1": 0x0152,
    "thd_voltage_ll_avg": 0x0154, "energy_total": 0x0156, "reactive_energy_total": 0x0158,
    **phased("energy_import", 0x015A), **phased("energy_export", 0x0160), **phased("energy_total", 0x0166),
    **phased("reactive_energy_import", 0x016C), **phased("reactive_energy_export", 0x0172),
    **phased("reactive_energy_total", 0x0178),
}
INPUT_BLOCKS = ((0x0000, 108), (0x00C8, 70), (0x014E, 48))  # every listed address, one read each
HOLDING = {"demand_time": 0x0000, "demand_period": 0x0002, "system_voltage": 0x0006,
           "system_current": 0x0008, "system_type": 0x000A, "relay_pulse_width": 0x000C,
           "network_parity_stop": 0x0012, "meter_id": 0x0014, "baud": 0x001C, "system_power": 0x0024,
           "serial_high": 0x002A, "serial_low": 0x002C}
SETTINGS = {"demand_period": 60, "system_voltage": 230, "system_current": 100, "system_type": 3,
            "relay_pulse_width": 100, "network_parity_stop": 0, "meter_id": 1, "baud": 2,
            "system_power": 0}
COUNTERS = [name for name in INPUT if "energy" in name or name == "ampere_hours"]
DEMANDS = [name for name in INPUT if "demand" in name]
MAX_CURRENT_A = 63.0


# --- encoding and requests ---

def floats(words) -> list[float]:
    """float32 values from big-endian registers, high word first."""
    return list(struct.unpack(f">{len(words) // 2}f", struct.pack(f">{len(words)}H", *words)))


def float_words(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


@contextmanager
def connected(port: int):
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=5)
    try:
        assert client.connect(), f"cannot connect to port {port}"
        yield client
    finally:
        client.close()


@contextmanager
def sdm630(port: int, unit: int = 1):
    meter = sdm_modbus.SDM630(host="127.0.0.1", port=port, unit=unit, timeout=5)
    try:
        assert meter.connected(), f"sdm_modbus cannot connect to port {port}"
        yield meter
    finally:
        meter.disconnect()


def call(client, method: str, *args, unit_id: int = 1, **kwargs):
    bound = getattr(client, method)
    return bound(*args, **kwargs, **unit_kw(bound, unit_id))


def words(client, method: str, address: int, count: int, unit_id: int = 1) -> list[int]:
    result = call(client, method, address, count=count, unit_id=unit_id)
    assert not result.isError(), f"{method}({address:#06x}, {count}): {result}"
    return list(result.registers)


def write(client, address: int, values: list[int], unit_id: int = 1):
    """FC 0x10."""
    return call(client, "write_registers", address, values, unit_id=unit_id)


def exception_code(result) -> int:
    assert result.isError(), f"expected an exception, got {result}"
    return result.exception_code


def snapshot(client, unit_id: int = 1, timeout: float = 10.0) -> dict[str, float]:
    """Every listed input value, all from one tick, by the contract's names."""
    def attempt():
        first = words(client, "read_input_registers", *INPUT_BLOCKS[0], unit_id=unit_id)
        blocks = [first] + [words(client, "read_input_registers", *block, unit_id=unit_id)
                            for block in INPUT_BLOCKS[1:]]
        if words(client, "read_input_registers", *INPUT_BLOCKS[0], unit_id=unit_id) != first:
            return None  # a tick came between the reads
        by_address = {}
        for (start, _), block in zip(INPUT_BLOCKS, blocks):
            by_address.update({start + 2 * k: value for k, value in enumerate(floats(block))})
        return {name: by_address[address] for name, address in INPUT.items()}
    return wait_for(attempt, timeout, interval=0.002)


def next_snapshot(client, previous: dict[str, float], timeout: float = 10.0) -> dict[str, float]:
    """The first snapshot of a tick after previous's (the voltages move every tick)."""
    return wait_for(lambda: (reading := snapshot(client)) != previous and reading, timeout,
                    interval=0.01)


def settings(client, unit_id: int = 1) -> dict[str, float]:
    """The holding registers 0x0000-0x002D by name, plus 0xF910 and 0xFC00-0xFC03 raw."""
    values = floats(words(client, "read_holding_registers", 0x0000, 46, unit_id=unit_id))
    named = {name: values[address // 2] for name, address in HOLDING.items()}
    named["pulse_constant"] = floats(words(client, "read_holding_registers", 0xF910, 2, unit_id=unit_id))[0]
    identity = words(client, "read_holding_registers", 0xFC00, 4, unit_id=unit_id)
    named["serial_number"] = (identity[0] << 16) | identity[1]
    named["meter_code"], named["reserved"] = identity[2], identity[3]
    return named


# --- the rules a reading keeps ---

def near(actual: float, expected: float, rel: float = 0.005, abs_tol: float = 2.0) -> bool:
    """Equal within float32 rounding as the contract counts it: 0.5 % and 2 W (or the unit given)."""
    return abs(actual - expected) <= rel * max(abs(actual), abs(expected)) + abs_tol


def tick_hours(before: dict[str, float], after: dict[str, float]) -> float:
    """The simulated hours from one reading to the next, from the apparent energy S dt that
    the tick between them integrated (before's S)."""
    return (after["apparent_energy"] - before["apparent_energy"]) * 1000.0 / before["apparent_power_total"]


def angle_deg(power_factor: float) -> float:
    return math.degrees(math.acos(min(abs(power_factor), 1.0)))


def check_reading(r: dict[str, float], panels: bool = False) -> None:
    """Bands and identities of profiles-contract section 2 on one tick's values."""
    assert all(math.isfinite(value) for value in r.values()), r
    assert 49.5 <= r["frequency"] <= 50.5, r["frequency"]
    for phase in ("l1", "l2", "l3"):
        v, i, pf = r[f"voltage_{phase}"], r[f"current_{phase}"], r[f"power_factor_{phase}"]
        p, s, q = r[f"power_{phase}"], r[f"apparent_power_{phase}"], r[f"reactive_power_{phase}"]
        assert 207.0 <= v <= 253.0, (phase, v)
        assert 0.0 <= i <= MAX_CURRENT_A, (phase, i)
        assert abs(pf) <= 1.0, (phase, pf)
        if not panels:
            assert 0.8 <= pf <= 1.0, (phase, pf)
            assert p >= 0.0, (phase, p)
        assert near(p, v * i * pf), (phase, p, v, i, pf)
        assert near(s, v * i), (phase, s, v, i)
        assert near(s, math.hypot(p, q)), (phase, s, p, q)
        assert q >= 0.0, (phase, q)  # the household is inductive
        assert p == 0.0 or math.copysign(1.0, pf) == math.copysign(1.0, p), (phase, p, pf)
        angle = r[f"phase_angle_{phase}"]
        assert 0.0 <= angle <= 90.0 and near(angle, angle_deg(pf), abs_tol=0.1), (phase, angle, pf)
    volts = [r[f"voltage_l{k}"] for k in (1, 2, 3)]
    amps = [r[f"current_l{k}"] for k in (1, 2, 3)]
    for name, stem in (("power_total", "power"), ("apparent_power_total", "apparent_power"),
                       ("reactive_power_total", "reactive_power")):
        parts = sum(r[f"{stem}_l{k}"] for k in (1, 2, 3))
        assert near(r[name], parts), (name, r[name], parts)
    assert near(r["voltage_avg"], sum(volts) / 3, abs_tol=0.01), (r["voltage_avg"], volts)
    assert near(r["current_sum"], sum(amps), abs_tol=0.01), (r["current_sum"], amps)
    assert near(r["current_avg"], sum(amps) / 3, abs_tol=0.01), (r["current_avg"], amps)
    assert r["apparent_power_total"] > 0.0
    assert near(r["power_total"], r["power_factor_total"] * r["apparent_power_total"]), r
    assert r["power_factor_total_again"] == r["power_factor_total"]
    assert near(r["phase_angle_total"], angle_deg(r["power_factor_total"]), abs_tol=0.1), r
    for (a, b), name in zip(((0, 1), (1, 2), (2, 0)), ("voltage_l1_l2", "voltage_l2_l3", "voltage_l3_l1")):
        expected = math.sqrt(volts[a] ** 2 + volts[b] ** 2 + volts[a] * volts[b])
        assert near(r[name], expected, abs_tol=0.1), (name, r[name], expected)
    ll = [r["voltage_l1_l2"], r["voltage_l2_l3"], r["voltage_l3_l1"]]
    assert near(r["voltage_ll_avg"], sum(ll) / 3, abs_tol=0.01), (r["voltage_ll_avg"], ll)
    rotation = complex(math.cos(2 * math.pi / 3), math.sin(2 * math.pi / 3))
    neutral = abs(amps[0] + amps[1] * rotation + amps[2] * rotation ** 2)
    assert near(r["current_neutral"], neutral, abs_tol=0.02), (r["current_neutral"], amps)
    for stem in ("thd_voltage", "thd_current"):
        phases = [r[f"{stem}_l{k}"] for k in (1, 2, 3)]
        assert all(0.0 <= value < 10.0 for value in phases), (stem, phases)
        assert near(r[f"{stem}_avg"], sum(phases) / 3, abs_tol=0.01), (stem, r[f"{stem}_avg"], phases)
    ll_thd = [r["thd_voltage_l1_l2"], r["thd_voltage_l2_l3"], r["thd_voltage_l3_l1"]]
    assert all(0.0 <= value < 10.0 for value in ll_thd), ll_thd
    assert near(r["thd_voltage_ll_avg"], sum(ll_thd) / 3, abs_tol=0.01), ll_thd
    check_counters(r, panels)
    check_demands(r, panels)


def check_counters(r: dict[str, float], panels: bool) -> None:
    assert all(r[name] >= 0.0 for name in COUNTERS), {name: r[name] for name in COUNTERS}
    for suffix in ("", "_l1", "_l2", "_l3"):
        for stem in ("energy", "reactive_energy"):
            total = r[f"{stem}_import{suffix}"] + r[f"{stem}_export{suffix}"]
            assert near(r[f"{stem}_total{suffix}"], total, abs_tol=1e-3), (stem, suffix, r)
    if not panels:  # every phase imports: the totals are the sums of the phases
        assert [r[name] for name in COUNTERS if "export" in name and "reactive" not in name] == [0.0] * 4
        for stem in ("energy_import", "reactive_energy_import", "reactive_energy_export"):
            parts = sum(r[f"{stem}_l{k}"] for k in (1, 2, 3))
            assert near(r[stem], parts, abs_tol=1e-3), (stem, r[stem], parts)


def check_demands(r: dict[str, float], panels: bool) -> None:
    assert all(r[name] >= 0.0 for name in DEMANDS), {name: r[name] for name in DEMANDS}
    for name in DEMANDS:
        if name.startswith("max_"):
            current = name[len("max_"):]
            assert r[name] >= r[current] * (1 - 1e-6), (name, r[name], r[current])
    assert all(r[f"max_demand_current_l{k}"] <= MAX_CURRENT_A for k in (1, 2, 3)), r
    if not panels:
        assert r["demand_power_export"] == r["max_demand_power_export"] == 0.0


# --- programs ---

@pytest.fixture(scope="module")
def still():
    """A meter that does not tick again after its start: one image for the whole module."""
    with MeterProcess("--profile", "sdm630", "--interval", "3600", "--seed", "11") as meter:
        yield meter


@pytest.fixture(scope="module")
def running():
    """A meter that ticks every 0.25 s at speed 600 (150 simulated seconds a tick)."""
    with MeterProcess("--profile", "sdm630", "--interval", str(TICK_S), "--speed", str(SPEED),
                      "--seed", "12") as meter:
        yield meter


# --- sdm_modbus reads ---

def test_sdm_modbus_decodes_every_input_value(still):
    """read_all() reads the four blocks 0x0000+80, 0x0050+28, 0x00C8+70 and 0x014E+48 (across
    the gaps) and decodes each of its 90 values to what the contract's address holds."""
    with sdm630(still.port) as meter:
        values = meter.read_all()
        with connected(still.port) as client:
            reading = snapshot(client)
        inputs = {key: spec for key, spec in meter.registers.items() if spec[2] == registerType.INPUT}
    assert sorted(values) == sorted(inputs), "a block that fails leaves its values out"
    assert sorted(spec[0] for spec in inputs.values()) == sorted(INPUT.values())
    by_address = {address: name for name, address in INPUT.items()}
    for key, value in values.items():
        assert value == reading[by_address[inputs[key][0]]], key
    check_reading(reading)


def test_sdm_modbus_reads_named_values(still):
    """Single reads by sdm_modbus's names (one request each, as a poller asks for a few values)."""
    with sdm630(still.port) as meter:
        volts = [meter.read(f"l{k}_voltage") for k in (1, 2, 3)]
        total = meter.read("total_power_active")
        pf = meter.read("total_power_factor")
        frequency = meter.read("frequency")
    assert all(207.0 <= v <= 253.0 for v in volts), volts
    assert 0.0 < total <= 3 * 253.0 * MAX_CURRENT_A
    assert 0.8 <= pf <= 1.0
    assert 49.5 <= frequency <= 50.5


def test_sdm_modbus_reads_the_settings(still):
    with sdm630(still.port) as meter:
        values = meter.read_all(registerType.HOLDING)
    assert sorted(values) == sorted(key for key, spec in meter.registers.items()
                                    if spec[2] == registerType.HOLDING)
    assert {key: values[key] for key in SETTINGS} == SETTINGS
    assert values["p1_divisor"] == 0
    assert 0 <= values["demand_time"] <= 60
    assert values["serial_number"] > 0


def test_identity_registers(still):
    with connected(still.port) as client:
        named = settings(client)
    assert named["meter_code"] == 0x0070 and named["reserved"] == 0
    serial = named["serial_number"]
    assert named["serial_high"] == serial >> 16 and named["serial_low"] == serial & 0xFFFF


def test_unlisted_addresses_read_0(still):
    """Inside the readable ranges, every register the contract does not list reads 0."""
    listed = {address + k for address in INPUT.values() for k in (0, 1)}
    with connected(still.port) as client:
        inputs = [word for start in range(0, 0x017E, 125)
                  for word in words(client, "read_input_registers", start, min(125, 0x017E - start))]
        holding = words(client, "read_holding_registers", 0, 46)
    assert len(inputs) == 0x017E
    assert {address: inputs[address] for address in range(0x017E)
            if address not in listed and inputs[address]} == {}
    listed = {address + k for address in HOLDING.values() for k in (0, 1)}
    assert {address: holding[address] for address in range(46)
            if address not in listed and holding[address]} == {}


# --- a running meter ---

def test_readings_keep_the_rules_tick_after_tick(running):
    with connected(running.port) as client:
        reading = snapshot(client)
        for _ in range(4):
            check_reading(reading)
            reading = next_snapshot(client, reading)


def test_counters_integrate_the_shown_values(running):
    """From one tick to the next each counter grows by the value the first tick showed times the
    tick's simulated time (read from the apparent energy, S dt), which is the tick's real time
    times --speed. Without panels the export counters stay 0."""
    with connected(running.port) as client:
        readings = [snapshot(client)]
        while len(readings) < 8:
            readings.append(next_snapshot(client, readings[-1]))
    tick_s = []
    for before, after in zip(readings, readings[1:]):
        assert all(after[name] >= before[name] for name in COUNTERS), "counters never decrease"
        check_counters(after, panels=False)
        dt_h = tick_hours(before, after)
        expected = {
            "energy_import": before["power_total"] * dt_h / 1000.0,
            "reactive_energy_import": before["reactive_power_total"] * dt_h / 1000.0,
            "ampere_hours": before["current_sum"] * dt_h,
            **{f"energy_import_l{k}": before[f"power_l{k}"] * dt_h / 1000.0 for k in (1, 2, 3)},
        }
        # a tick this poll missed would mix two ticks' values: most pairs are consecutive ticks
        if all(near(after[name] - before[name], value, rel=0.01, abs_tol=1e-5)
               for name, value in expected.items()):
            tick_s.append(dt_h * 3600.0 / SPEED)
    assert len(tick_s) >= 3, f"{len(tick_s)} of {len(readings) - 1} tick pairs integrate the shown values"
    median = sorted(tick_s)[len(tick_s) // 2]
    assert 0.4 * TICK_S <= median <= 2.5 * TICK_S, f"a tick of {median:.3f} s real time at speed {SPEED}"


def test_demands_follow_the_instantaneous_values_with_period_0():
    """Demand period 0 (written with FC 0x10): every demand is the tick's instantaneous value."""
    with MeterProcess("--profile", "sdm630", "--interval", str(TICK_S), "--speed", str(SPEED),
                      "--seed", "13") as program, connected(program.port) as client:
        assert not write(client, 0x0002, float_words(0.0)).isError()
        assert settings(client)["demand_period"] == 0.0
        reading = next_snapshot(client, next_snapshot(client, snapshot(client)))
    check_reading(reading)
    for demand, value in (("demand_power_total", reading["power_total"]),
                          ("demand_power_import", reading["power_total"]),
                          ("demand_apparent", reading["apparent_power_total"]),
                          ("demand_current_l1", reading["current_l1"]),
                          ("demand_current_l2", reading["current_l2"]),
                          ("demand_current_l3", reading["current_l3"]),
                          ("demand_current_neutral", reading["current_neutral"])):
        assert near(reading[demand], value, abs_tol=0.01), (demand, reading[demand], value)
    assert reading["demand_power_export"] == 0.0


# --- writes ---

REFUSED_VALUES = [(0x0002, 7.0), (0x0002, 15.5), (0x0002, -15.0), (0x0002, math.nan), (0x000C, 150.0),
                  (0x0012, 4.0), (0x0014, 0.0), (0x0014, 248.0), (0x0014, 1.5), (0x001C, 5.0),
                  (0xF910, 6.0)]
REFUSED_ADDRESSES = [(0x0006, float_words(230.0)), (0x0000, float_words(0.0)),  # not writable
                     (0x0002, float_words(15.0)[:1]), (0x0003, float_words(15.0)),  # part of a value
                     (0x0002, float_words(15.0) + [0, 0]), (0x0004, [0, 0]),  # into a gap
                     (0xFC00, [0, 1]), (0x002E, float_words(1.0)), (40000, float_words(1.0))]
STORED = [(0x000C, 200.0, "relay_pulse_width"), (0x0012, 3.0, "network_parity_stop"),
          (0x0014, 247.0, "meter_id"), (0x001C, 4.0, "baud"), (0xF910, 5.0, "pulse_constant"),
          (0x0002, 0.0, "demand_period")]


def test_writes_of_the_settings():
    """FC 0x10 stores an allowed float32 and reads it back; a value outside the list: 0x03;
    another write: 0x02; FC 0x06 and 0x17: 0x01. Nothing changes on a refusal."""
    with MeterProcess("--profile", "sdm630", "--interval", "3600", "--seed", "14") as program:
        with sdm630(program.port) as meter:
            assert not meter.write("demand_period", 15).isError()
            assert meter.read("demand_period") == 15
        with connected(program.port) as client:
            for address, value in REFUSED_VALUES:
                assert exception_code(write(client, address, float_words(value))) == EXC_ILLEGAL_VALUE, (
                    hex(address), value)
            before = settings(client)
            for address, values in REFUSED_ADDRESSES:
                assert exception_code(write(client, address, values)) == EXC_ILLEGAL_ADDRESS, (
                    hex(address), values)
            for address, value in ((0x0002, 0), (0x0014, 0x4120)):
                assert exception_code(call(client, "write_register", address, value)) == EXC_ILLEGAL_FUNCTION
            result = call(client, "readwrite_registers", read_address=0x0002, read_count=2,
                          write_address=0x0002, values=float_words(30.0))
            assert exception_code(result) == EXC_ILLEGAL_FUNCTION
            assert settings(client) == before, "a refused write changes nothing"
            assert before["demand_period"] == 15.0
            for address, value, name in STORED:
                assert not write(client, address, float_words(value)).isError(), name
                assert settings(client)[name] == value, name
        with sdm630(program.port) as meter:
            assert meter.read("meter_id") == 247
            assert meter.read_all(registerType.HOLDING)["relay_pulse_width"] == 200


def test_read_only_refuses_every_write():
    with MeterProcess("--profile", "sdm630", "--interval", "3600", "--read-only") as program, \
            connected(program.port) as client:
        assert exception_code(write(client, 0x0002, float_words(15.0))) == EXC_ILLEGAL_FUNCTION
        assert exception_code(call(client, "write_register", 0x0002, 0)) == EXC_ILLEGAL_FUNCTION
        assert settings(client)["demand_period"] == 60.0


# --- refusals ---

@pytest.mark.parametrize("method, address, count", [
    ("read_input_registers", 0x017C, 3), ("read_input_registers", 0x017E, 1),
    ("read_input_registers", 0x0102, 125), ("read_input_registers", 0xF910, 2),
    ("read_input_registers", 40000, 1), ("read_input_registers", 65535, 1),
    ("read_holding_registers", 0x002C, 3), ("read_holding_registers", 0x002E, 1),
    ("read_holding_registers", 0x0000, 47), ("read_holding_registers", 0xF90F, 2),
    ("read_holding_registers", 0xF910, 3), ("read_holding_registers", 0xF912, 1),
    ("read_holding_registers", 0xFBFF, 2), ("read_holding_registers", 0xFC00, 5),
    ("read_holding_registers", 0xFC04, 1), ("read_holding_registers", 0x0100, 1),
    ("read_holding_registers", 40000, 1), ("read_holding_registers", 50000, 2),
    ("read_holding_registers", 65535, 1),
])
def test_reads_outside_the_ranges_are_illegal_address(still, method, address, count):
    with connected(still.port) as client:
        assert exception_code(call(client, method, address, count=count)) == EXC_ILLEGAL_ADDRESS
        assert words(client, "read_holding_registers", 0x0004, 2) == [0, 0], "the connection still serves"


@pytest.mark.parametrize("method, address, count", [
    ("read_input_registers", 0x0000, 125), ("read_input_registers", 0x017D - 124, 125),
    ("read_input_registers", 0x017D, 1), ("read_holding_registers", 0x0000, 46),
    ("read_holding_registers", 0x002D, 1), ("read_holding_registers", 0xF910, 2),
    ("read_holding_registers", 0xF911, 1), ("read_holding_registers", 0xFC00, 4),
    ("read_holding_registers", 0xFC03, 1),
])
def test_reads_inside_the_ranges_are_answered(still, method, address, count):
    with connected(still.port) as client:
        assert len(words(client, method, address, count)) == count


def test_coils_and_discrete_inputs_do_not_exist(still):
    with connected(still.port) as client:
        for method, args in (("read_coils", (0,)), ("read_discrete_inputs", (0,)), ("write_coil", (0, False)),
                             ("write_coils", (0, [False]))):
            assert exception_code(call(client, method, *args)) == EXC_ILLEGAL_FUNCTION, method


# --- gateway mode, identity ---

def test_gateway_meter_ids_and_serial_numbers():
    """Behind --unit-ids each meter's id (holding 0x0014) is its unit id; serial numbers differ
    between the meters and stay the same when the program starts again on the same port."""
    args = ("--profile", "sdm630", "--interval", "3600", "--unit-ids", "1-3")
    serials = {}
    with MeterProcess(*args) as program:
        for unit in (1, 2, 3):
            with sdm630(program.port, unit=unit) as meter:
                assert meter.read("meter_id") == unit
                serials[unit] = meter.read("serial_number")
            with connected(program.port) as client:
                assert settings(client, unit_id=unit)["serial_number"] == serials[unit]
                check_reading(snapshot(client, unit_id=unit))
        port = program.port
    assert len(set(serials.values())) == 3, serials
    with MeterProcess(*args, port=port) as again:
        for unit in (1, 2, 3):
            with sdm630(again.port, unit=unit) as meter:
                assert meter.read("serial_number") == serials[unit]


# --- solar panels ---

def seed_starting_at(hour_from: float, hour_to: float) -> int:
    """A --seed whose simulated day starts between the two hours (cli.start_time_of_day_s draws
    the start from the seeded generator first)."""
    return next(seed for seed in range(1000)
                if hour_from * 3600 <= random.Random(seed).uniform(0.0, 86400.0) < hour_to * 3600)


def test_solar_panels_export_in_the_morning():
    """--pv-kwp 10 from sunrise (06:00) at speed 3000 (an hour in 1.2 s): the power turns
    negative as the sun rises; while it is, the export counter grows by it and the import
    counter stands still, and before, the export counter stood still."""
    seed = seed_starting_at(6.0, 6.5)
    with MeterProcess("--profile", "sdm630", "--pv-kwp", "10", "--speed", "3000", "--interval", "0.1",
                      "--seed", str(seed)) as program, connected(program.port) as client:
        readings = [snapshot(client)]
        deadline = time.monotonic() + 25.0  # the simulated morning, or most of a day
        while not (len(readings) > 2 and readings[-2]["power_total"] < 0.0
                   and readings[-1]["energy_export"] > readings[-2]["energy_export"]):
            assert time.monotonic() < deadline, "no export within the simulated daylight"
            readings.append(next_snapshot(client, readings[-1]))
    matched = []  # for each pair of consecutive ticks: was the first one exporting
    for before, after in zip(readings, readings[1:]):
        check_reading(after, panels=True)
        assert all(after[name] >= before[name] for name in COUNTERS), "counters never decrease"
        dt_h = tick_hours(before, after)
        power_w = before["power_total"]
        expected = {"energy_import": max(power_w, 0.0) * dt_h / 1000.0,
                    "energy_export": max(-power_w, 0.0) * dt_h / 1000.0}
        if all(near(after[name] - before[name], value, rel=0.01, abs_tol=1e-5)
               for name, value in expected.items()):
            matched.append(power_w < 0.0)
    assert False in matched, "a tick importing P >= 0 adds P dt to the import energy, nothing to export"
    assert True in matched, "a tick exporting P < 0 adds -P dt to the export energy, nothing to import"
    exporting = readings[-2]
    assert exporting["power_factor_total"] < 0.0
    assert any(exporting[f"power_l{k}"] < 0.0 for k in (1, 2, 3))
