"""A site's inverter served through a map file (site-contract B7): a user's map with vendor battery
registers and control entries, on the real server, read and written with pymodbus; the built-in
Huawei SUN2000 map as evcc's huawei-sun2000-hybrid template reads and writes it, against the
balance B3 demands; and the invalid control entries and site options that exit 2."""
from __future__ import annotations

import struct

import pytest

from meter_simulator.app.options import UsageError, parse_args
from meter_simulator.testing import MeterSimulator
from support import pymodbus_client, run_program, unit_kw, wait_for

STILL = 3600  # an interval no test waits for: every read shows the same tick
BRISK = 0.1  # ticks a test sees run
BMAX_W = 5000  # a 10 kWh battery's largest power (half its capacity)
ILLEGAL_ADDRESS, ILLEGAL_VALUE = 0x02, 0x03
USER_MAP = """\
name = "vendor-battery"
type = "electric"
word_order = "big"
write_functions = [6, 16]

[[block]]                 # the battery block, read in one request
space = "holding"
start = 37760
end = 37783

[[register]]
address = 37760           # SoC, 0.1 %
type = "uint16"
quantity = "battery_soc"
scale = 10

[[register]]
address = 37765           # battery power, W, + = charging
type = "int32"
quantity = "battery_power"
scale = -1

[[register]]
address = 37113           # grid power, W, + = export
type = "int32"
quantity = "grid_power"
scale = -1

[[register]]
address = 47075           # maximum charge power, W
type = "uint32"
control = "battery_charge_limit_w"

[[register]]
address = 47077           # maximum discharge power, W
type = "uint32"
control = "battery_discharge_limit_w"

[[register]]
address = 47082           # reserve, 0.1 %, narrowed to 10-80 %
type = "uint16"
control = "reserve_soc_pct"
scale = 10
min = 10
max = 80

[[register]]
address = 47087           # charge from grid: 0 off, 1 on
type = "uint16"
control = "grid_charge"

[[register]]
address = 47090           # the limits' revert time, s
type = "uint16"
control = "revert_s"
"""


@pytest.fixture
def user_map(tmp_path):
    path = tmp_path / "vendor.toml"
    path.write_text(USER_MAP, encoding="utf-8")
    return path


def served(inverter_profile, start: str, interval: float, speed: float = 1) -> MeterSimulator:
    return MeterSimulator(site=True, pv_kwp=8, battery_kwh=10, inverter_profile=str(inverter_profile),
                          start_time=start, interval=interval, speed=speed)


def int32(words) -> int:
    return struct.unpack(">i", struct.pack(">2H", *words))[0]


def uint32(words) -> int:
    return words[0] << 16 | words[1]


def read(client, address: int, count: int) -> list[int]:
    answer = client.read_holding_registers(address, count=count, **unit_kw(client.read_holding_registers))
    assert not answer.isError(), (address, answer)
    return answer.registers


def refused(answer) -> int | None:
    """The exception code of a write's answer, None when it was taken."""
    return answer.exception_code if answer.isError() else None


def write(client, address: int, words) -> int | None:
    """FC 0x10 for a list of words, FC 0x06 for one int; the exception code (None: taken)."""
    if isinstance(words, int):
        return refused(client.write_register(address, words, **unit_kw(client.write_register)))
    return refused(client.write_registers(address, words, **unit_kw(client.write_registers)))


def settles(sim: MeterSimulator, shows, timeout: float = 10.0) -> dict:
    """The site once shows(site) holds, asserted to be within 2 ticks of now (site-contract B1)."""
    first = sim.site()["tick"]

    def shown() -> dict | None:
        site = sim.site()
        return site if shows(site) else None

    site = wait_for(shown, timeout=timeout)
    assert site["tick"] - first <= 2, (first, site)
    return site


# --- a user's map on the real server ----------------------------------------------------------

def test_a_user_map_reads_the_battery_with_its_signs_turned(user_map):
    with served(user_map, "12:00", STILL) as sim, pymodbus_client(sim.port) as client:
        for pins in ({"load_w": 1500, "pv_available_w": 0}, {"load_w": 1000, "pv_available_w": 6000},
                     {"load_w": 9000, "pv_available_w": 0}):
            site = sim.set_site(**pins)
            battery = read(client, 37760, 24)  # the whole block in one request
            grid = int32(read(client, 37113, 2))
            assert sim.site()["tick"] == site["tick"]  # the reads show this balance
            assert battery[0] == round(site["soc_pct"] * 10)
            assert int32(battery[5:7]) == -round(site["battery_w"])  # + = charging
            assert grid == -round(site["grid_w"])  # + = export
            assert battery[1:5] + battery[7:] == [0] * 21  # no entries there: they read 0
        assert write(client, 37760, 1) == write(client, 37765, [0, 0]) == ILLEGAL_ADDRESS
        assert client.read_holding_registers(37784, count=1, **unit_kw(
            client.read_holding_registers)).exception_code == ILLEGAL_ADDRESS


def test_a_discharge_limit_of_0_w_stops_the_battery_at_night_and_reads_back(user_map):
    with served(user_map, "23:00", BRISK) as sim, pymodbus_client(sim.port) as client:
        sim.set_site(load_w=1500)
        assert sim.site()["battery_w"] == pytest.approx(1500)
        assert read(client, 47075, 4) == [0, BMAX_W, 0, BMAX_W]  # limits that do not act read Bmax
        assert write(client, 47077, [0, 0]) is None
        site = settles(sim, lambda now: now["battery_w"] == 0.0)
        assert site["grid_w"] == pytest.approx(1500)
        assert site["controls"]["battery_discharge_limit_pct"] == 0.0
        assert read(client, 47077, 2) == [0, 0]
        assert uint32(read(client, 47075, 2)) == BMAX_W


def test_a_refused_write_changes_nothing(user_map):
    with served(user_map, "23:00", BRISK) as sim, pymodbus_client(sim.port) as client:
        sim.set_site(load_w=1500)
        assert write(client, 47077, [0, 0]) is None
        before = sim.site()["controls"]
        assert write(client, 47077, [0, BMAX_W + 1]) == ILLEGAL_VALUE  # above Bmax
        assert write(client, 47075, [0, 1000, 0, BMAX_W + 1]) == ILLEGAL_VALUE  # all or nothing
        assert write(client, 47087, 2) == ILLEGAL_VALUE  # grid_charge is 0 or 1
        assert write(client, 47087, [2]) == ILLEGAL_VALUE
        assert write(client, 47077, 0) == ILLEGAL_ADDRESS  # FC 0x06 on half a uint32
        assert write(client, 47087, [1, 0]) == ILLEGAL_ADDRESS  # 47088 is no control
        assert write(client, 47081, 1) == ILLEGAL_ADDRESS
        assert read(client, 47075, 4) == [0, BMAX_W, 0, 0]
        assert read(client, 47087, 1) == [0]
        site = sim.site()
        assert site["controls"] == before
        assert site["battery_w"] == 0.0 and site["grid_w"] == pytest.approx(1500)


def test_a_limit_written_through_the_map_reverts_and_reads_bmax_again(user_map):
    with served(user_map, "23:00", 0.05, speed=1000) as sim, pymodbus_client(sim.port) as client:
        sim.set_site(load_w=1500)
        assert write(client, 47090, 60) is None  # 60 simulated seconds: 60 ms here
        assert write(client, 47077, [0, 0]) is None  # restarts the watchdog
        controls = sim.site()["controls"]
        assert controls["revert_s"] == 60 and 0 < controls["revert_in_s"] <= 60
        site = wait_for(lambda: (now := sim.site())["controls"]["revert_in_s"] is None and now)
        assert site["controls"]["battery_discharge_limit_pct"] is None
        assert site["battery_w"] == pytest.approx(1500)
        assert read(client, 47077, 2) == [0, BMAX_W] and read(client, 47090, 1) == [60]


def test_fc_0x06_sets_a_uint16_control_and_min_and_max_narrow_its_range(user_map):
    with served(user_map, "23:00", STILL) as sim, pymodbus_client(sim.port) as client:
        assert write(client, 47087, 1) is None
        assert read(client, 47087, 1) == [1] and sim.site()["controls"]["grid_charge"] is True
        assert read(client, 47082, 1) == [50]  # the default 5 % reserve, below the entry's min
        for raw in (50, 99, 801, 1000):  # the control takes 0-100 %, the entry 10-80 %
            assert write(client, 47082, raw) == ILLEGAL_VALUE, raw
        assert sim.site()["controls"]["reserve_soc_pct"] == 5.0
        for raw, reserve in ((100, 10.0), (800, 80.0), (205, 20.5)):
            assert write(client, 47082, raw) is None
            assert read(client, 47082, 1) == [raw]
            assert sim.site()["controls"]["reserve_soc_pct"] == pytest.approx(reserve)
            assert sim.site()["battery"]["reserve_pct"] == pytest.approx(reserve)


# --- the built-in Huawei SUN2000 map, as evcc's huawei-sun2000-hybrid uses it ----------------

def evcc_reads(client) -> dict:
    """What evcc's template reads (each block in one request), decoded with its scales."""
    battery = read(client, 37760, 24)
    grid = read(client, 37101, 37)
    return {"soc": battery[0] * 0.1, "battery_raw": int32(battery[5:7]), "battery": -int32(battery[5:7]),
            "returnenergy": uint32(battery[20:22]) * 0.01, "energy": uint32(battery[22:24]) * 0.01,
            "grid_raw": int32(grid[12:14]), "grid": -int32(grid[12:14]),
            "voltages": [int32(grid[i:i + 2]) * 0.1 for i in (0, 2, 4)],
            "pv": int32(read(client, 32064, 2)), "pv_energy": uint32(read(client, 32108, 2)) * 0.01,
            "maxacpower": uint32(read(client, 30075, 2)), "capacity": uint32(read(client, 37758, 2)) * 0.001,
            "maxchargepower": uint32(read(client, 37046, 2)),
            "maxdischargepower": uint32(read(client, 37048, 2)),
            "minsoc": read(client, 47082, 1)[0] * 0.1, "maxsoc": read(client, 47081, 1)[0] * 0.1}


@pytest.mark.parametrize("pins", [
    {"load_w": 1000, "pv_available_w": 6000},  # charging from a surplus
    {"load_w": 1500, "pv_available_w": 0},  # discharging at night
    {"load_w": 300, "pv_available_w": 9000, "soc_pct": 100},  # full: exporting
    {"load_w": 9000, "pv_available_w": 500},  # importing beside the battery
], ids=["charging", "discharging", "exporting", "importing"])
def test_evccs_huawei_reads_agree_with_the_balance_on_one_tick(pins):
    with served("huawei-sun2000", "12:00", STILL) as sim, pymodbus_client(sim.port) as client:
        site = sim.set_site(**pins)
        view = evcc_reads(client)
        assert sim.site() == site  # no tick in between
        assert view["soc"] == pytest.approx(site["soc_pct"], abs=0.05)
        assert view["battery"] == pytest.approx(site["battery_w"], abs=0.5)
        assert view["grid"] == pytest.approx(site["grid_w"], abs=0.5)
        assert view["pv"] == pytest.approx(site["pv_dc_w"], abs=0.5)
        # Huawei's signs: + = charging, + = export
        assert (view["battery_raw"] > 0) == (site["battery_w"] < -0.5)
        assert (view["grid_raw"] > 0) == (site["grid_w"] < -0.5)
        assert view["returnenergy"] == pytest.approx(site["battery"]["charged_kwh"], abs=0.01)
        assert view["energy"] == pytest.approx(site["battery"]["discharged_kwh"], abs=0.01)
        assert all(200 < volts < 260 for volts in view["voltages"])
        assert view["pv_energy"] >= 0
        assert (view["maxacpower"], view["capacity"]) == (site["inverter"]["rated_w"], 10.0)
        assert view["maxchargepower"] == view["maxdischargepower"] == site["battery"]["max_w"] == BMAX_W
        assert (view["minsoc"], view["maxsoc"]) == (pytest.approx(5.0), pytest.approx(100.0))


# evcc's batterymode writes (templates huawei-sun2000-hybrid): 47075 and 47077 with FC 0x10 (the
# rated maxima clamp its maxchargepower and maxdischargepower), then its watchdog's 47100 = 0
EVCC_MODES = {"normal": (BMAX_W, BMAX_W), "hold": (BMAX_W, 0), "holdcharge": (0, BMAX_W)}
SURPLUS = {"load_w": 1000, "pv_available_w": 6000}  # PV_AC 5820 W: 4820 W to spare
DEFICIT = {"load_w": 1500, "pv_available_w": 0}


def b3_battery_w(mode: str, pins: dict) -> float:
    """The battery's power B3 demands of an evcc mode (+ = discharge)."""
    need_w = pins["load_w"] - 0.97 * pins["pv_available_w"]
    if mode == "hold":
        return min(need_w, 0.0)  # no discharge; a surplus still charges
    if mode == "holdcharge":
        return max(need_w, 0.0)  # no charge; a deficit is still covered
    return need_w


@pytest.mark.parametrize("mode", list(EVCC_MODES))
def test_evccs_huawei_battery_modes_give_the_b3_balance(mode):
    charge_w, discharge_w = EVCC_MODES[mode]
    with served("huawei-sun2000", "12:00", BRISK) as sim, pymodbus_client(sim.port) as client:
        for pins in (SURPLUS, DEFICIT):
            sim.set_site(**pins)
            rated = uint32(read(client, 37046, 2)), uint32(read(client, 37048, 2))
            assert write(client, 47075, [0, min(charge_w, rated[0])]) is None
            assert write(client, 47077, [0, min(discharge_w, rated[1])]) is None
            assert write(client, 47100, 0) is None  # the watchdog's "stop"
            expected_w = b3_battery_w(mode, pins)
            site = settles(sim, lambda now, w=expected_w: abs(now["battery_w"] - w) <= 0.5)
            assert site["grid_w"] == pytest.approx(pins["load_w"] - site["pv_ac_w"] - expected_w, abs=0.5)
            assert read(client, 47075, 4) == [0, charge_w, 0, discharge_w]
            if mode == "holdcharge" and pins is SURPLUS:  # the surplus is exported
                assert site["battery_w"] == 0.0 and site["grid_w"] < -4000


def test_evccs_other_huawei_writes():
    with served("huawei-sun2000", "12:00", STILL) as sim, pymodbus_client(sim.port) as client:
        assert write(client, 47087, 1) is None  # undimmed with forceaccharging
        assert sim.site()["controls"]["grid_charge"] is True
        assert write(client, 47087, 0) is None  # dim: no charging from the grid
        assert sim.site()["controls"]["grid_charge"] is False and read(client, 47087, 1) == [0]
        assert write(client, 47082, 200) is None  # minsoc 20 %
        assert sim.site()["controls"]["reserve_soc_pct"] == pytest.approx(20.0)
        assert write(client, 47075, [0, BMAX_W + 1]) == ILLEGAL_VALUE  # above the rated maximum
        assert write(client, 47100, 1) == ILLEGAL_VALUE  # forcible charge: not simulated
        for address in (47083, 47246, 47247, 47415, 47418):  # charge mode's and curtailment's
            assert write(client, address, 0) == ILLEGAL_ADDRESS, address
        assert read(client, 47100, 1) == [0]


# --- invalid control entries and site options: exit 2 with one line --------------------------

def map_with(tmp_path, entry: str, name: str = "bad.toml"):
    path = tmp_path / name
    path.write_text(f'type = "electric"\n\n[[register]]\naddress = 47077\ntype = "uint32"\n{entry}\n',
                    encoding="utf-8")
    return path


def usage_error(*argv: str) -> str:
    with pytest.raises(UsageError) as caught:
        parse_args(list(argv))
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("entry, problem", [
    ('control = "battery_discharge_limit_ww"',
     'unknown control "battery_discharge_limit_ww" (did you mean "battery_discharge_limit_w"?)'),
    ('control = "grid_charge"\nquantity = "battery_soc"', "give one of quantity, value and control"),
    ('control = "grid_charge"\nvalue = 1', "give one of quantity, value and control"),
    ('control = "grid_charge"\nwritable = true', "a control entry is writable by itself: leave out writable"),
    ('control = "grid_charge"\nspace = "input"', "a control is written: it belongs in the holding registers"),
    ('control = "grid_charge"\nallowed = [0, 1]',
     "allowed applies to constants and settings: narrow a control with min and max"),
], ids=["unknown", "quantity", "value", "writable", "input", "allowed"])
def test_an_invalid_control_entry_names_the_file_the_entry_and_the_problem(tmp_path, entry, problem):
    path = map_with(tmp_path, entry)
    assert usage_error("--site", "--inverter-profile", str(path)) == (
        f"profile {path}: register 1 (address 47077): {problem}")


def test_a_control_on_a_string_is_invalid(tmp_path):
    path = tmp_path / "text.toml"
    path.write_text('[[register]]\naddress = 10\ntype = "string"\nlength = 2\ncontrol = "grid_charge"\n',
                    encoding="utf-8")
    assert usage_error("--site", "--inverter-profile", str(path)) == (
        f'profile {path}: register 1 (address 10): control "grid_charge" is a number: its type cannot '
        "be string")


def test_a_control_map_without_site_exits_2(tmp_path):
    path = map_with(tmp_path, 'control = "battery_discharge_limit_w"')
    assert usage_error("--profile", str(path)) == (
        f'profile {path}: register 1 (address 47077): control "battery_discharge_limit_w" belongs to a '
        "site: give --site too")
    assert usage_error("--inverter-profile", str(path)) == (
        "--inverter-profile sets a site's inverter: give --site too")
    result = run_program("--profile", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == f"meter-simulator: {usage_error('--profile', str(path))}"


def test_a_bad_control_entry_exits_2_on_the_command_line(tmp_path):
    path = map_with(tmp_path, 'control = "grid_chrage"')
    result = run_program("--site", "--inverter-profile", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == (
        f'meter-simulator: profile {path}: register 1 (address 47077): unknown control "grid_chrage" '
        '(did you mean "grid_charge"?)')


@pytest.mark.parametrize("argv, message", [
    (["--inverter-night", "silent"], "--inverter-night sets a site's inverter: give --site too"),
    (["--inverter-profile", "huawei-sun2000"], "--inverter-profile sets a site's inverter: give --site too"),
    (["--site", "--inverter-night", "loud"], "--inverter-night must be asleep or silent, not 'loud'"),
    (["--inverter-night", "loud"], "--inverter-night must be asleep or silent, not 'loud'"),
    (["--site", "--inverter-profile", "huawei"],
     "--inverter-profile must be sunspec-hybrid, huawei-sun2000 or a map file (.toml), not 'huawei'"),
])
def test_inverter_options_without_site_or_with_a_bad_value_exit_2(argv, message):
    assert usage_error(*argv) == message


def test_a_bad_inverter_night_exits_2_on_the_command_line():
    result = run_program("--site", "--inverter-night", "loud")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == (
        "meter-simulator: --inverter-night must be asleep or silent, not 'loud'")


def test_huawei_sun2000_names_the_built_in_map():
    profile = parse_args(["--site", "--inverter-profile", "HUAWEI-SUN2000"]).inverter_profile
    assert (profile.name, profile.meter_type) == ("huawei-sun2000", "inverter")
    assert parse_args(["--site"]).inverter_profile is None  # the SunSpec chain
