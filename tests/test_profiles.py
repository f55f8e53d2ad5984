"""--profile and --pv-kwp from the command line to the wire: refusals, the start line, a user's map
file served to a real client, gateway mode, read-only, and what a device profile refuses."""
from __future__ import annotations

import math
import random
import struct

import pytest
from pymodbus.client import ModbusTcpClient

from meter_simulator.app.options import UsageError, parse_args
from meter_simulator.app.sizing import SizeError, check_fleet_size, meter_bytes
from meter_simulator.device.updater import Updater
from meter_simulator.maps import profiles
from meter_simulator.modbus.server import new_device
from meter_simulator.model import quantities
from meter_simulator.model.meters import make_meter
from support import ROOT, FakeClock, MeterProcess, free_port, run_program, unit_kw

WATER_MAP = ROOT / "docs" / "examples" / "water-meter.toml"
ELECTRIC_MAP = ROOT / "docs" / "examples" / "electric-meter.toml"
USAGE_FIRST = "Usage:\n  meter-simulator [options]\n"


# --- refusals: exit 2, one line, the usage, nothing started ---

@pytest.mark.parametrize("args, reason", [
    (["--profile", "sdm120"], "--profile must be seed, sdm630, sunspec, sunspec-float or a map file "
                              "(.toml), not 'sdm120'"),
    (["--profile", "sdm630", "--type", "water"],
     "--profile sdm630 is an electric meter's map: it cannot serve --type water"),
    (["--profile", "sunspec-float", "-t", "gas"],
     "--profile sunspec-float is an electric meter's map: it cannot serve --type gas"),
    (["--pv-kwp", "41"], "--pv-kwp must be from 0 to 40, not 41"),
    (["--pv-kwp", "-1"], "--pv-kwp must be from 0 to 40, not -1"),
    (["--pv-kwp", "sunny"], "--pv-kwp must be a number, not 'sunny'"),
    (["--pv-kwp", "5", "--type", "water"],
     "--pv-kwp puts solar panels behind an electric meter, not a water meter"),
])
def test_refusals(args, reason):
    with pytest.raises(UsageError) as refused:
        parse_args(args)
    assert str(refused.value) == reason


def test_a_missing_map_file_is_named():
    with pytest.raises(UsageError) as refused:
        parse_args(["--profile", "no/such/map.toml"])
    assert str(refused.value) == "profile no/such/map.toml: cannot read it: No such file or directory"


def test_a_map_file_of_another_meter_type_is_refused():
    with pytest.raises(UsageError) as refused:
        parse_args(["--profile", str(WATER_MAP), "--type", "electric"])
    assert str(refused.value).endswith('type "water" does not match --type electric')


def test_an_invalid_map_file_exits_2_with_one_line_naming_file_entry_and_problem(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text('[[register]]\naddress = 20\ntype = "float32"\nquantity = "frequencyy"\n')
    port = free_port()
    done = run_program("--port", str(port), "--profile", str(bad))
    assert done.returncode == 2
    first, rest = done.stderr.split("\n", 1)
    assert first == (f'meter-simulator: profile {bad}: register 1 (address 20): unknown quantity '
                     '"frequencyy" (did you mean "frequency"?)')
    assert rest.startswith(USAGE_FIRST)
    assert "Traceback" not in done.stderr


def test_the_profile_and_its_meter_type_come_from_the_command_line_or_the_file():
    assert parse_args([]).profile is None
    assert parse_args(["--profile", "seed", "--type", "gas"]).profile is None
    config = parse_args(["--profile", "SDM630"])
    assert config.profile is profiles.built_in("sdm630") and config.meter_type == "electric"
    assert parse_args(["--profile", str(WATER_MAP)]).meter_type == "water"  # the file names its type
    assert parse_args(["--pv-kwp", "10"]).pv_kwp == 10.0
    assert parse_args(["--pv-kwp", "0", "--type", "gas"]).pv_kwp == 0.0


# --- served ---

def client_of(meter: MeterProcess) -> ModbusTcpClient:
    client = ModbusTcpClient("127.0.0.1", port=meter.port, timeout=5)
    assert client.connect()
    return client


def exception_code(result) -> int | None:
    return getattr(result, "exception_code", None) if result.isError() else None


def floats(registers) -> list[float]:
    return list(struct.unpack(f">{len(registers) // 2}f", struct.pack(f">{len(registers)}H", *registers)))


def test_the_start_line_names_the_profile():
    with MeterProcess("--profile", "sdm630") as meter:
        _, _, err = meter.stop()
    assert f"electric meter (sdm630) serving Modbus/TCP on 127.0.0.1:{meter.port}" in err
    assert f"electric meter (sdm630) on 127.0.0.1:{meter.port} stopped" in err
    with MeterProcess("--profile", "sunspec", "--unit-ids", "1-3") as meter:
        _, _, err = meter.stop()
    assert f"3 electric meters (sunspec) serving Modbus/TCP on 127.0.0.1:{meter.port}, unit ids 1-3" in err


def test_a_users_water_map_is_served_as_written():
    with MeterProcess("--profile", str(WATER_MAP), "--seed", "4") as meter:
        client = client_of(meter)
        kw = unit_kw(client.read_input_registers)
        inputs = client.read_input_registers(0, count=16, **kw)
        assert not inputs.isError(), inputs
        litres = (inputs.registers[0] << 16) | inputs.registers[1]
        m3 = floats(inputs.registers[6:8])[0]
        assert litres == round(m3 * 1000) or abs(litres - m3 * 1000) < 1.0
        assert 1.0 <= inputs.registers[4] / 100 <= 8.0  # pressure, bar
        assert exception_code(client.read_input_registers(15, count=2, **kw)) == 0x02
        assert exception_code(client.read_holding_registers(0, count=1, **kw)) == 0x02
        holding = client.read_holding_registers(100, count=20, **kw)
        assert not holding.isError(), holding
        serial = struct.pack(">6H", *holding.registers[:6]).rstrip(b"\0").decode()
        assert serial == str(meter.port * 1000 + 1)
        assert holding.registers[19] == 1  # the constant status word
        assert exception_code(client.read_coils(0, count=1, **kw)) == 0x01
        # writes: a writable constant keeps what is written, the meter id takes 1-247 only
        assert not client.write_register(111, 4711, **kw).isError()
        assert client.read_holding_registers(111, count=1, **kw).registers == [4711]
        assert exception_code(client.write_register(111, 10000, **kw)) == 0x03
        assert exception_code(client.write_register(110, 0, **kw)) == 0x03
        assert not client.write_registers(110, [9, 12], **kw).isError()
        assert client.read_holding_registers(110, count=2, **kw).registers == [9, 12]
        assert exception_code(client.write_register(100, 1, **kw)) == 0x02  # the serial number
        assert exception_code(client.write_register(112, 1, **kw)) == 0x02  # a constant, not writable
        assert exception_code(client.write_coil(0, True, **kw)) == 0x01
        client.close()
        assert meter.stop()[0] == 0


def test_the_electric_example_map_is_served():
    with MeterProcess("--profile", str(ELECTRIC_MAP), "--seed", "2") as meter:
        client = client_of(meter)
        result = client.read_input_registers(0, count=6, **unit_kw(client.read_input_registers))
        assert not result.isError(), result
        assert all(207.0 <= volts <= 253.0 for volts in floats(result.registers))
        client.close()
        assert meter.stop()[0] == 0


def test_gateway_mode_gives_each_meter_its_unit_id_and_serial():
    with MeterProcess("--profile", "sdm630", "--unit-ids", "1-3") as meter:
        client = client_of(meter)
        for unit_id in (1, 2, 3):
            kw = unit_kw(client.read_holding_registers, unit_id)
            assert floats(client.read_holding_registers(0x14, count=2, **kw).registers) == [unit_id]
            serial = client.read_holding_registers(0xFC00, count=2, **kw).registers
            assert (serial[0] << 16) | serial[1] == meter.port * 1000 + unit_id
        kw4 = unit_kw(client.read_holding_registers, 4)
        assert exception_code(client.read_holding_registers(0x14, count=2, **kw4)) == 0x0B
        client.close()
        assert meter.stop()[0] == 0


def test_read_only_refuses_a_device_write_with_0x01():
    with MeterProcess("--profile", "sdm630", "--read-only") as meter:
        client = client_of(meter)
        kw = unit_kw(client.write_registers)
        assert exception_code(client.write_registers(0x0002, [0x4170, 0], **kw)) == 0x01
        assert floats(client.read_holding_registers(0x0002, count=2, **kw).registers) == [60.0]
        client.close()
        assert meter.stop()[0] == 0


def test_a_fleet_of_device_meters_is_counted_at_8_kb_a_meter_and_two_images():
    # 8 kB and 2 x 1,268 bytes of image: 10,728 bytes a meter
    with pytest.raises(UsageError) as caught:
        parse_args(["--count", "10000", "--profile", "sdm630"], memory_bytes=64 * 2 ** 20)
    assert str(caught.value) == ("--count 10000 makes 10,000 meters, which need about 102.3 MiB (10 kB "
                                 "a meter); this machine gives at most 64.0 MiB")
    # a site's devices step one at a time: 24 kB and 3 images each, two devices a site
    with pytest.raises(UsageError) as caught:
        parse_args(["--count", "2000", "--site", "--profile", "sdm630"], memory_bytes=64 * 2 ** 20)
    assert "which need about 108.3 MiB (27 kB a meter)" in str(caught.value)
    assert parse_args(["--count", "10000", "--pv-kwp", "5"], memory_bytes=235 * 2 ** 20).count == 10000


# --- maps that cannot break the encoder (the review's three maps) ---

@pytest.mark.parametrize("kind, scale", [("float32", "1e37"), ("float64", "1e307")])
def test_a_map_whose_floats_would_overflow_exits_2_with_one_line(tmp_path, kind, scale):
    bad = tmp_path / "huge.toml"
    bad.write_text(f'type = "electric"\n[[register]]\naddress = 0\ntype = "{kind}"\n'
                   f'quantity = "voltage_l1"\nscale = {scale}\n')
    done = run_program("--port", str(free_port()), "--profile", str(bad))
    assert done.returncode == 2
    first, rest = done.stderr.split("\n", 1)
    assert first == (f"meter-simulator: profile {bad}: register 1 (address 0): scale {float(scale)!r} is out "
                     "of range: its magnitude must be from 1e-10 to 1e+10")
    assert rest.startswith(USAGE_FIRST) and "Traceback" not in done.stderr


def test_the_largest_counter_on_a_float32_point_at_the_largest_scale_keeps_ticking(tmp_path):
    path = tmp_path / "counters.toml"
    entry = '[[register]]\naddress = {}\ntype = "float32"\nquantity = "{}"\nscale = {}\n'
    path.write_text('type = "electric"\n' + entry.format(0, "energy_total", "1e10")
                    + entry.format(2, "energy_import", "-1e10"))
    profile = parse_args(["--profile", str(path)]).profile
    clock = FakeClock()
    device = new_device(make_meter("electric", random.Random(1)), profile)
    updater = Updater([device], clock=clock, speed=100000.0)
    # every counter as large as a state file may hold, the readings as large as pins may make them
    updater.set_values(device, dict.fromkeys(device.meter.state_values(), quantities.COUNTER_MAX))
    updater.set_overrides(device, {"voltage_l1": 6553.5, "voltage_l2": 6553.5, "voltage_l3": 6553.5,
                                 "current_l1": 655.35, "current_l2": 655.35, "current_l3": 655.35})
    for _ in range(10):
        clock.now += 3600.0  # 100,000 hours a tick: 1.3e12 kVAh more
        updater.tick()
    assert not updater.failed and updater.ticks == 10
    total, imported = struct.unpack(">2f", device.bank.image.holding[0][2])
    assert math.isfinite(total) and math.isfinite(imported)
    assert total == pytest.approx(2e25, rel=0.01) and imported == pytest.approx(-1e25, rel=0.01)


def test_a_map_file_is_encoded_at_its_extremes_for_every_type_it_can_serve(tmp_path):
    path = tmp_path / "any.toml"  # no type: it may serve any meter type, and every one is checked
    path.write_text('[[register]]\naddress = 0\ntype = "float32"\nquantity = "volume_total"\n')
    profile = profiles.profile_named(str(path), None)
    assert {kind for (key, kind) in profiles._COMPILED if key == id(profile)} == {"electric", "water", "gas"}
    assert profiles.compiled(profile, "water").profile is profile  # compiled once, by the check


# --- the memory guard counts the map ---

def test_a_fleet_of_a_map_with_a_big_block_is_refused_on_a_small_machine(tmp_path):
    path = tmp_path / "block.toml"  # a 0-65535 block: a 128 kB image, three of them a meter at the peak
    path.write_text('type = "electric"\n[[block]]\nstart = 0\nend = 65535\n'
                    '[[register]]\naddress = 0\ntype = "float32"\nquantity = "voltage_l1"\n')
    with pytest.raises(UsageError) as caught:
        parse_args(["--count", "10000", "--profile", str(path)], memory_bytes=2 * 2**30)
    assert str(caught.value) == ("--count 10000 makes 10,000 meters, which need about 2.5 GiB (264 kB a "
                                 "meter); this machine gives at most 2.0 GiB")
    assert parse_args(["--count", "5000", "--profile", str(path)], memory_bytes=2 * 2**30).count == 5000
    with pytest.raises(SizeError, match=r"^--count 10000 makes 10,000 meters, which need about 102\.3 MiB"):
        check_fleet_size(10000, None, 2**26, meter_bytes(profiles.built_in("sdm630"), "electric"))
