"""The site's controls without sockets or clocks (site-contract B1, B3-B5): what each face's names
read and set, the window each combination of limits leaves the battery, the output cap, the
watchdogs on simulated time, and the reserve held over simulated hours."""
from __future__ import annotations

import random

import pytest

from meter_simulator.model.controls import (
    CHARGE_BIT,
    CONTROL_NAMES,
    CONTROLS,
    DISCHARGE_BIT,
    FULL_RATE_PCT,
    LIMITS,
    Controls,
)
from meter_simulator.model.site import INVERTER_EFFICIENCY, MPPT, SLEEPING, THROTTLED, Battery, Site

NIGHT_S, NOON_S = 0.0, 12 * 3600.0
BMAX_W = 5000.0


def home(load_w: float, pv_w: float, *, pv_kwp=8.0, battery_kwh=10.0, soc_pct=None) -> Site:
    """A site with its load and PV pinned (so every balance is predictable)."""
    found = Site(random.Random(3), NOON_S, pv_kwp=pv_kwp, battery_kwh=battery_kwh)
    found.pin({"load_w": load_w, "pv_available_w": pv_w})
    if soc_pct is not None:
        found.set_soc(soc_pct)
    return found


def written(found: Site, now_s: float = 0.0, **changes) -> Site:
    found.control(changes, now_s)
    return found


# --- the names: what each reads, what a write sets ---------------------------------------------

def test_the_defaults_are_the_contracts_and_every_limit_reads_full_while_it_does_not_act():
    controls = Controls(Battery(10.0))
    values = controls.values()
    assert tuple(values) == CONTROL_NAMES
    assert values["battery_charge_limit_pct"] == values["battery_discharge_limit_pct"] == 100.0
    assert values["battery_charge_limit_w"] == values["battery_discharge_limit_w"] == BMAX_W
    assert values["pv_limit_pct"] == values["pv_limit_setting_pct"] == 100.0
    assert (values["grid_charge"], values["reserve_soc_pct"], values["revert_s"]) == (0, 5.0, 0)
    assert controls.view(0.0) == {
        "battery_charge_limit_pct": None, "battery_discharge_limit_pct": None, "grid_charge": False,
        "reserve_soc_pct": 5.0, "revert_s": 0, "revert_in_s": None, "pv_limit_pct": None,
        "pv_limit_revert_s": 0, "pv_limit_revert_in_s": None}


def test_a_limit_name_sets_the_rate_and_its_bit_and_reads_back_what_was_written():
    controls = Controls(Battery(10.0))
    controls.set({"battery_discharge_limit_w": 1250.0}, 0.0)
    assert controls.storage_mode == DISCHARGE_BIT
    assert controls.discharge_rate_pct == 25.0
    assert controls.value("battery_discharge_limit_pct") == 25.0
    assert controls.value("battery_discharge_limit_w") == 1250.0
    controls.set({"battery_charge_limit_pct": -40.0}, 0.0)
    assert controls.storage_mode == CHARGE_BIT | DISCHARGE_BIT
    assert controls.view(0.0)["battery_charge_limit_pct"] == -40.0


def test_sunspecs_own_points_keep_a_rate_written_while_its_bit_is_off():
    controls = Controls(Battery(10.0))
    controls.set({"discharge_rate_pct": 30.0}, 0.0)  # OutWRte alone: written, not acting
    assert controls.value("discharge_rate_pct") == 30.0
    assert controls.value("battery_discharge_limit_pct") == FULL_RATE_PCT
    controls.set({"storage_control_mode": 2}, 0.0)
    assert controls.value("battery_discharge_limit_pct") == 30.0


def test_a_pv_limit_of_100_switches_the_limit_off_and_null_switches_any_limit_off():
    controls = Controls(Battery(10.0))
    controls.set({"pv_limit_pct": 40.0, "battery_charge_limit_pct": 0.0}, 0.0)
    assert (controls.pv_limit_enabled, controls.value("pv_limit_pct")) == (1, 40.0)
    controls.set({"pv_limit_pct": 100.0}, 0.0)
    assert (controls.pv_limit_enabled, controls.pv_limit_setting_pct) == (0, 100.0)
    controls.set(dict.fromkeys(LIMITS), 0.0)
    assert (controls.storage_mode, controls.pv_limit_enabled) == (0, 0)
    assert controls.charge_rate_pct == 0.0  # the setting stays; only its bit is off


@pytest.mark.parametrize("name, value", [
    ("battery_charge_limit_pct", -100.01), ("battery_discharge_limit_pct", 100.5),
    ("battery_discharge_limit_w", BMAX_W + 1), ("grid_charge", 2), ("grid_charge", 0.5),
    ("storage_control_mode", 4), ("pv_limit_pct", -1), ("pv_limit_setting_pct", 100.01),
    ("pv_limit_enabled", 2), ("reserve_soc_pct", 100.01), ("revert_s", 65535), ("revert_s", 1.5),
    ("pv_limit_revert_s", -1), ("charge_rate_pct", float("nan")),
])
def test_a_value_outside_a_controls_range_is_refused_with_one_line(name, value):
    refusal = Controls(Battery(10.0)).refusal(name, value)
    assert refusal is not None and "\n" not in refusal and refusal.startswith(name)


def test_every_control_takes_both_ends_of_its_range():
    controls = Controls(Battery(10.0))
    for name, control in CONTROLS.items():
        scale = BMAX_W if control.watts else 1.0
        assert controls.refusal(name, control.low * scale) is None, name
        assert controls.refusal(name, control.high * scale) is None, name


def test_without_a_battery_the_watt_limits_take_only_0_and_the_reserve_is_kept_apart():
    controls = Controls(None)
    assert controls.refusal("battery_discharge_limit_w", 0.0) is None
    assert controls.refusal("battery_discharge_limit_w", 1.0) is not None
    controls.set({"reserve_soc_pct": 30.0, "battery_discharge_limit_w": 0.0}, 0.0)
    assert controls.reserve_pct == 30.0
    assert controls.value("battery_discharge_limit_w") == 0.0


def test_the_reserve_is_the_batterys_own():
    battery = Battery(10.0)
    Controls(battery).set({"reserve_soc_pct": 42.0}, 0.0)
    assert battery.reserve_pct == 42.0


# --- the window (B3) and evcc's four modes ----------------------------------------------------

@pytest.mark.parametrize("mode, changes, load_w, pv_w, battery_w", [
    # normal: self-consumption
    ("normal", {"storage_control_mode": 0, "discharge_rate_pct": 100.0}, 1000.0, 0.0, 1000.0),
    # hold: no discharge with a deficit; a PV surplus still charges
    ("hold", {"storage_control_mode": 2, "discharge_rate_pct": 0.0}, 1000.0, 0.0, 0.0),
    ("hold", {"storage_control_mode": 2, "discharge_rate_pct": 0.0}, 1000.0, 4000.0, 1000.0 - 3880.0),
    # charge at 50 % of 5 kW from the grid at night, more from a larger PV surplus
    ("charge", {"grid_charge": 1, "storage_control_mode": 2, "discharge_rate_pct": -50.0}, 800.0, 0.0,
     -2500.0),
    ("charge", {"grid_charge": 1, "storage_control_mode": 2, "discharge_rate_pct": -50.0}, 800.0,
     5000.0, 800.0 - 4850.0),
    # without ChaGriSet a negative OutWRte charges from the PV only: nothing at night
    ("pv charge", {"storage_control_mode": 2, "discharge_rate_pct": -50.0}, 800.0, 0.0, 0.0),
    ("pv charge", {"storage_control_mode": 2, "discharge_rate_pct": -50.0}, 800.0, 1000.0, -970.0),
    # holdcharge: no charging, a deficit still discharges
    ("holdcharge", {"storage_control_mode": 1, "charge_rate_pct": 0.0}, 1000.0, 6000.0, 0.0),
    ("holdcharge", {"storage_control_mode": 1, "charge_rate_pct": 0.0}, 1000.0, 0.0, 1000.0),
    # force discharge at 40 % into a surplus, exporting it
    ("force discharge", {"storage_control_mode": 1, "charge_rate_pct": -40.0}, 500.0, 3000.0, 2000.0),
    # both limits at once: charge at most 20 %, discharge at most 10 %
    ("both", {"storage_control_mode": 3, "charge_rate_pct": 20.0, "discharge_rate_pct": 10.0}, 3000.0,
     0.0, 500.0),
    ("both", {"storage_control_mode": 3, "charge_rate_pct": 20.0, "discharge_rate_pct": 10.0}, 0.0,
     6000.0, -1000.0),
])
def test_each_mode_leaves_the_battery_the_contracts_power(mode, changes, load_w, pv_w, battery_w):
    found = written(home(load_w, pv_w), **changes)
    balance = found.balance
    assert balance.battery_w == pytest.approx(battery_w), mode
    assert balance.grid_w == pytest.approx(load_w - balance.pv_ac_w - balance.battery_w)
    assert balance.controls == found.controls.values()  # what a map's control entries read


def test_an_empty_window_is_no_flow_at_the_limits_of_the_state_of_charge():
    forced = {"storage_control_mode": 1, "charge_rate_pct": -40.0}
    assert written(home(500.0, 0.0, soc_pct=5.0), **forced).balance.battery_w == 0.0
    charging = {"grid_charge": 1, "storage_control_mode": 2, "discharge_rate_pct": -50.0}
    assert written(home(500.0, 0.0, soc_pct=100.0), **charging).balance.battery_w == 0.0


def test_a_raised_reserve_stops_discharging_and_holds_over_simulated_hours():
    found = home(1500.0, 0.0, soc_pct=40.0)
    assert found.balance.battery_w == 1500.0
    written(found, reserve_soc_pct=60.0)
    assert found.balance.battery_w == 0.0 and found.balance.grid_w == 1500.0  # no charging to it
    written(found, reserve_soc_pct=30.0)
    for _ in range(6 * 60):  # six simulated hours in minutes: discharging down to 30 %, no further
        found.step(60.0)
        assert found.battery.soc_pct >= 30.0 - 0.1
    assert found.battery.soc_pct == pytest.approx(30.0)
    assert found.balance.battery_w == 0.0


# --- curtailment (B5) --------------------------------------------------------------------------

def test_a_pv_limit_caps_the_output_and_throttles_the_pv():
    found = written(home(500.0, 8000.0, battery_kwh=0.0), pv_limit_pct=25.0)
    balance = found.balance
    assert balance.inverter_w == pytest.approx(2000.0)  # 25 % of WRtg 8 kW
    assert balance.state == THROTTLED and balance.pv_dc_w < balance.pv_available_w
    assert balance.grid_w == pytest.approx(-1500.0)
    written(found, pv_limit_enabled=0)
    assert found.balance.inverter_w == pytest.approx(INVERTER_EFFICIENCY * 8000.0)
    assert found.balance.state == MPPT


def test_a_battery_still_charges_from_the_pv_before_the_cap_and_a_zero_cap_stops_the_output():
    found = written(home(500.0, 6000.0, soc_pct=50.0), pv_limit_pct=0.0)
    balance = found.balance
    assert balance.inverter_w == pytest.approx(0.0, abs=1e-9)
    assert balance.battery_w < 0.0  # charging from the PV on the DC side
    assert balance.grid_w == pytest.approx(500.0)


# --- revert timers (B4) ------------------------------------------------------------------------

def test_the_rates_revert_at_the_first_tick_at_or_after_their_deadline_and_settings_stay():
    found = home(1000.0, 0.0)
    written(found, 10.0, revert_s=60, grid_charge=1, storage_control_mode=2, discharge_rate_pct=0.0)
    assert found.controls.view(30.0)["revert_in_s"] == 40.0
    found.step(69.0)  # simulated time 69: one second before the deadline
    assert found.controls.storage_mode == 2 and found.balance.battery_w == 0.0
    found.step(1.0)
    controls = found.controls
    assert (controls.storage_mode, controls.discharge_rate_pct, controls.charge_rate_pct) == (0, 100.0, 100.0)
    assert (controls.grid_charge, controls.revert_s) == (1, 60)  # settings do not revert
    assert found.balance.battery_w == 1000.0  # self-consumption again
    assert controls.view(found.time_s)["revert_in_s"] is None


def test_a_watchdog_that_rewrites_every_half_period_keeps_the_limits_and_0_stops_the_timer():
    found = written(home(1000.0, 0.0), revert_s=60, storage_control_mode=2, discharge_rate_pct=0.0)
    for _ in range(10):
        found.step(30.0)
        written(found, found.time_s, storage_control_mode=2)
        assert found.controls.storage_mode == 2
    written(found, found.time_s, revert_s=0)
    found.step(10_000.0)
    assert found.controls.storage_mode == 2 and found.controls.deadlines == {}


def test_the_pv_limit_has_its_own_watchdog_and_keeps_its_setting():
    found = written(home(500.0, 8000.0), pv_limit_revert_s=120, pv_limit_setting_pct=30.0,
                    pv_limit_enabled=1)
    found.step(60.0)
    assert found.controls.view(found.time_s)["pv_limit_revert_in_s"] == 60.0
    found.step(60.0)
    assert (found.controls.pv_limit_enabled, found.controls.pv_limit_setting_pct) == (0, 30.0)
    assert found.balance.state != THROTTLED


def test_a_write_to_a_setting_restarts_no_watchdog():
    found = written(home(1000.0, 0.0), revert_s=60, storage_control_mode=2, discharge_rate_pct=0.0)
    found.step(50.0)
    written(found, found.time_s, grid_charge=1, reserve_soc_pct=10.0)
    found.step(10.0)
    assert found.controls.storage_mode == 0


def test_a_site_held_at_night_sleeps():
    found = written(home(1000.0, 0.0), storage_control_mode=2, discharge_rate_pct=0.0)
    assert found.balance.state == SLEEPING  # no PV and no battery flow (B6 acts on this)
