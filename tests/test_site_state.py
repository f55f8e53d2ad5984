"""A site in the state file (site-contract A9): the inverter's values (key PORT-1: its counters,
the battery's state of charge and reserve) saved, checked and resumed beside the grid meter's
(PORT-200), a restore published by both devices, a file without site data starting the devices
new, and the real program resuming a site after SIGTERM."""
from __future__ import annotations

import json

import pytest
from test_control_http import ControlProcess

from meter_simulator.app import options
from meter_simulator.app.simulator import build_server
from meter_simulator.model.site import INVERTER_COUNTERS, NEW_SOC_PCT
from meter_simulator.ops import state
from meter_simulator.ops.saver import Saver
from support import u32, wait_for

PORT = 5020
INVERTER, GRID = f"{PORT}-1", f"{PORT}-200"
ELECTRIC = state.counter_names("electric")
COUNTERS = dict(zip(INVERTER_COUNTERS, (12.5, 9.75, 6.5, 3.25, 2.0)))
WITH_BATTERY = {**COUNTERS, "battery_soc": 33.3, "battery_reserve": 20.0}


def document_bytes(meters) -> bytes:
    """An electric version-2 file's bytes as they are given, unchecked."""
    return json.dumps({"format": state.FORMAT, "version": 2, "meter_type": "electric", "units": "",
                       "saved_at": "2024-05-01T12:00:00Z", "meters": meters}).encode()


# --- the file ---

@pytest.mark.parametrize("values", [WITH_BATTERY, COUNTERS, {**COUNTERS, "battery_soc": 0.1 + 0.2,
                                                            "battery_reserve": 0.0}],
                         ids=["battery", "no-battery", "odd"])
def test_an_inverters_values_come_back_bit_for_bit(values):
    grid = dict.fromkeys(ELECTRIC, 0.5)
    data = state.encode("electric", {INVERTER: values, GRID: grid}, 1.7e9)
    loaded = state.decode(data, "electric")
    assert list(loaded) == [INVERTER, GRID]
    assert list(loaded[INVERTER]) == list(values)
    assert all(loaded[INVERTER][name].hex() == value.hex() for name, value in values.items())
    assert loaded[GRID] == grid
    assert "battery_soc" in json.loads(data)["units"]


def test_the_units_note_names_the_inverter_only_in_a_file_with_one():
    data = state.encode("electric", {"5021": dict.fromkeys(ELECTRIC, 0.0)}, 1.7e9)
    assert json.loads(data)["units"] == state.UNITS["electric"]


def test_missing_counters_load_as_0_and_a_missing_soc_stays_out():
    loaded = state.decode(document_bytes({INVERTER: {"inverter_energy": 4, "battery_reserve": 10}}),
                          "electric")
    assert loaded[INVERTER] == {**dict.fromkeys(INVERTER_COUNTERS, 0.0), "inverter_energy": 4.0,
                                "battery_reserve": 10.0}


@pytest.mark.parametrize(("values", "problem"), [
    ({**WITH_BATTERY, "battery_soc": 100.5}, "the battery_soc of meter '5020-1' is 100.5, not a percentage"),
    ({**WITH_BATTERY, "battery_soc": -1}, "the battery_soc of meter '5020-1' is -1, not a percentage"),
    ({**WITH_BATTERY, "battery_soc": "50"}, "the battery_soc of meter '5020-1' is '50', not a percentage"),
    ({**WITH_BATTERY, "battery_soc": None}, "the battery_soc of meter '5020-1' is None"),
    ({**WITH_BATTERY, "battery_reserve": 101}, "the battery_reserve of meter '5020-1' is 101"),
    ({**WITH_BATTERY, "battery_reserve": True}, "the battery_reserve of meter '5020-1' is True"),
    ({**WITH_BATTERY, "inverter_energy": -0.5}, "the inverter_energy of meter '5020-1' is -0.5"),
    ({**WITH_BATTERY, "pv_energy_1": 1e16}, "the pv_energy_1 of meter '5020-1' is 1e+16, above"),
    ({**WITH_BATTERY, "energy_import": 1.0}, "meter '5020-1' has 'energy_import' beside a site inverter's"),
    ({"battery_soc": 50, "volts": 230}, "meter '5020-1' has 'volts' beside a site inverter's"),
])
def test_an_inverter_value_the_file_cannot_hold_is_refused(tmp_path, values, problem):
    path = tmp_path / "state.json"
    path.write_bytes(document_bytes({INVERTER: values}))
    with pytest.raises(state.StateError) as refused:
        state.load(str(path), "electric")
    assert problem in str(refused.value)
    assert "\n" not in str(refused.value)
    with pytest.raises(ValueError, match="5020-1"):  # and a save never writes it
        state.encode("electric", {INVERTER: values}, 1.7e9)


def test_an_inverters_values_belong_to_electric_files_only():
    data = json.dumps({"format": state.FORMAT, "version": 2, "meter_type": "water",
                       "meters": {INVERTER: {"battery_soc": 50.0}}}).encode()
    with pytest.raises(ValueError, match="not a counter of water meters"):
        state.decode(data, "water")


# --- the saver, driven by hand ---

def site_server(*args: str):
    """A site's server (not bound): --site, a 10 kWh battery and 8 kWp, at 23:00 unless given."""
    config = options.parse_args(["--site", "--battery-kwh", "10", "--pv-kwp", "8", "--seed", "1",
                                 "--port", str(PORT), "--start-time", "23:00", *args])
    return build_server(config)


def make_saver(tmp_path, server) -> Saver:
    return Saver(str(tmp_path / "state.json"), "electric", server.plan, server.updater)


def test_a_site_saves_and_resumes_its_soc_reserve_and_counters(tmp_path):
    server = site_server("--speed", "1000")
    site = server.plan[0].site.site
    site.battery.reserve_pct = 15.0
    for _ in range(3):
        server.updater.tick()
    saver = make_saver(tmp_path, server)
    assert saver.save()
    saver.close()
    saved = state.load(saver.path, "electric")
    assert list(saved) == [INVERTER, GRID]
    assert saved[INVERTER]["battery_soc"] == site.battery.soc_pct == site.balance.soc_pct
    assert saved[INVERTER]["battery_reserve"] == 15.0
    assert saved[INVERTER] == site.inverter.state_values()
    assert saved[GRID] == site.grid.state_values()

    resumed = site_server()
    again = resumed.plan[0].site.site
    saver = make_saver(tmp_path, resumed)
    assert saver.restore() == 0
    saver.close()
    # The battery keeps its charge in Wh: percent to Wh and back may move the last bit.
    assert again.battery.soc_pct == pytest.approx(site.battery.soc_pct, rel=1e-12)
    assert again.battery.reserve_pct == 15.0
    assert again.balance.soc_pct == pytest.approx(site.battery.soc_pct, rel=1e-12)
    assert again.inverter.counters == site.inverter.counters
    assert again.grid.counters == site.grid.counters


def shown_grid_w(site_devices) -> float:
    """The grid meter's power as its device published it."""
    return site_devices.grid.shown[0].rate


def test_a_restored_soc_is_published_by_both_devices(tmp_path):
    """At 23:00 a new battery (50 %) covers the load; restored at its reserve it rests, and both
    devices publish the balance that follows: the inverter's state of charge and the grid's
    import of the whole load."""
    server = site_server()
    devices = server.plan[0].site
    assert devices.site.balance.battery_w > 0.0
    assert shown_grid_w(devices) < devices.site.balance.load_w
    state.save(str(tmp_path / "state.json"), "electric",
               {INVERTER: {**COUNTERS, "battery_soc": 5.0, "battery_reserve": 5.0}})
    saver = make_saver(tmp_path, server)
    assert saver.restore() == 1  # the grid meter starts from 0
    saver.close()
    balance = devices.site.balance
    assert balance.soc_pct == 5.0 and balance.battery_w == 0.0
    assert devices.inverter.shown[0].site is balance
    assert devices.inverter.shown[1]["inverter_energy"] == 12.5
    assert shown_grid_w(devices) == pytest.approx(balance.load_w)
    assert u32(devices.grid.bank.image.words(2, 2)) == round(balance.load_w * 10)  # seed map: W x 10


def test_a_file_without_site_data_starts_the_site_new_and_keeps_the_rest(tmp_path):
    plain = dict.fromkeys(ELECTRIC, 7.0)
    state.save(str(tmp_path / "state.json"), "electric", {str(PORT): plain})
    server = site_server()
    site = server.plan[0].site.site
    saver = make_saver(tmp_path, server)
    assert saver.restore() == 2
    assert site.battery.soc_pct == NEW_SOC_PCT
    assert set(site.inverter.counters.values()) == {0.0}
    assert saver.save()
    saver.close()
    assert state.load(saver.path, "electric")[str(PORT)] == plain


def test_a_plain_meters_values_under_the_inverters_key_start_it_new(tmp_path):
    """A gateway run's meter at unit id 1 saved PORT-1 with a meter's counters: the inverter knows
    none of them."""
    state.save(str(tmp_path / "state.json"), "electric", {INVERTER: dict.fromkeys(ELECTRIC, 7.0)})
    server = site_server()
    site = server.plan[0].site.site
    saver = make_saver(tmp_path, server)
    assert saver.restore() == 1
    saver.close()
    assert site.battery.soc_pct == NEW_SOC_PCT
    assert set(site.inverter.counters.values()) == {0.0}


# --- the program ---

SITE_OPTIONS = ("--site", "--pv-kwp", "8", "--battery-kwh", "10")


def counters_of(process: ControlProcess) -> dict[str, float]:
    """Every counter of the site on the process's port: the inverter's and the grid meter's."""
    inverter = process.meter(f"{process.port}-1")["readings"]
    grid = process.meter(f"{process.port}-200")["readings"]
    names = (*INVERTER_COUNTERS, "pv_energy")
    return {**{f"inverter {name}": inverter[name] for name in names},
            **{f"grid {name}": grid[name] for name in ("energy_import", "energy_export")}}


def test_the_program_resumes_a_site_after_sigterm(tmp_path):
    path = str(tmp_path / "state.json")
    with ControlProcess(*SITE_OPTIONS, "--state-file", path, "--speed", "1000", "--interval", "0.1",
                        "--start-time", "10:00") as first:
        site_path = f"/api/sites/{first.port}"
        wait_for(lambda: (lambda site: site["battery"]["charged_kwh"] + site["battery"]["discharged_kwh"] > 0
                          and site["inverter"]["energy_kwh"] > 0)(first.get(site_path)), 20)
        # a load past the battery's power: the grid meter counts too
        first.change("PUT", site_path, {"load_w": 11000})
        wait_for(lambda: counters_of(first)["grid energy_import"] > 0, 20)
        # no load and no sun: the battery rests, so the state of charge shown now is the last one
        first.change("PUT", site_path, {"load_w": 0, "pv_available_w": 0})
        last = first.get(site_path)
        before = counters_of(first)
        status, err = first.stop()
    assert status == 0, err
    assert last["battery_w"] == 0.0
    assert state.load(path, "electric")[f"{first.port}-1"]["battery_soc"] == pytest.approx(
        last["soc_pct"], abs=0.1)
    with ControlProcess(*SITE_OPTIONS, "--state-file", path, "--interval", "3600",
                        port=first.port) as second:
        site = second.get(f"/api/sites/{second.port}")
        after = counters_of(second)
        status, err = second.stop()
    assert status == 0, err
    assert "2 meters resumed" in err
    assert abs(site["soc_pct"] - last["soc_pct"]) <= 0.1
    assert site["pins"] == {}  # pins are not kept: a restart is a power cycle
    assert site["battery"]["charged_kwh"] >= last["battery"]["charged_kwh"]
    assert site["inverter"]["energy_kwh"] >= last["inverter"]["energy_kwh"] > 0
    decreased = {name: (value, after[name]) for name, value in before.items() if after[name] < value}
    assert not decreased
    assert any(value > 0 for name, value in before.items() if name.startswith("grid"))


def test_the_program_starts_a_site_new_from_a_plain_meters_file(tmp_path):
    path = str(tmp_path / "state.json")
    with ControlProcess("--state-file", path, "--speed", "1000", "--interval", "0.1") as plain:
        wait_for(lambda: plain.meter(plain.port)["total"] > 0, 20)
        status, err = plain.stop()
    assert status == 0, err
    saved = state.load(path, "electric")
    assert list(saved) == [str(plain.port)]
    with ControlProcess(*SITE_OPTIONS, "--state-file", path, "--interval", "3600",
                        port=plain.port) as site_run:
        site = site_run.get(f"/api/sites/{site_run.port}")
        status, err = site_run.stop()
    assert status == 0, err
    assert site["soc_pct"] == NEW_SOC_PCT
    assert site["inverter"]["energy_kwh"] == 0.0
    assert state.load(path, "electric")[str(plain.port)] == saved[str(plain.port)]  # kept
