"""The site's physics without sockets or clocks: the balance, the battery's limits, the counters,
the grid meter's phases and the inverter's state (site contract section A3)."""
from __future__ import annotations

import math
import random

import pytest

from meter_simulator.model.site import (
    BATTERY_EFFICIENCY,
    CHARGING,
    DISCHARGING,
    EMPTY,
    FULL,
    HOLDING,
    INVERTER_EFFICIENCY,
    MPPT,
    SLEEPING,
    STANDBY,
    STRING_SHARES,
    THROTTLED,
    Battery,
    Site,
    battery_window,
    inverter_state,
    split,
)
from meter_simulator.model.sitecolumns import SiteColumns

ETA = INVERTER_EFFICIENCY
HOUR_S = 3600.0


def site(pv_kwp=8.0, battery_kwh=10.0, battery_kw=None, time_of_day_s=12 * HOUR_S, seed=1) -> Site:
    return Site(random.Random(seed), time_of_day_s, pv_kwp=pv_kwp, battery_kwh=battery_kwh,
                battery_kw=battery_kw)


def assert_identities(s: Site) -> None:
    """Every identity of section A3 on the balance as published, and the grid meter's phases."""
    b = s.balance
    assert b.grid_w == pytest.approx(b.load_w - b.inverter_w, abs=1e-6)
    assert b.inverter_w == pytest.approx(b.pv_ac_w + b.battery_w, abs=1e-6)
    assert b.pv_ac_w == pytest.approx(ETA * b.pv_dc_w, abs=1e-6)
    assert b.pv_dc_w <= b.pv_available_w + 1e-6
    assert abs(b.battery_w) <= (s.battery.max_w if s.battery else 0.0) + 1e-9
    assert b.inverter_w <= s.rated_w + 1e-6
    assert b.pv_dc_w_1 + b.pv_dc_w_2 == pytest.approx(b.pv_dc_w)
    grid = s.grid.reading
    total_w = grid.powers_w[0] + grid.powers_w[1] + grid.powers_w[2]
    assert total_w == pytest.approx(b.grid_w, rel=1e-12, abs=1e-9)
    assert total_w == 0.0 or b.grid_w != 0.0  # a grid at 0 W shows exactly 0, not rounding noise
    for load_w, power_w in zip(b.loads_w, grid.powers_w):
        assert power_w == pytest.approx(load_w - b.inverter_w / 3.0, abs=1e-6)
    assert s.inverter.reading.rate == b.inverter_w


# --- split: the balance of one moment ---------------------------------------------------------

def test_noon_surplus_charges_the_battery_and_the_grid_stays_at_zero():
    pv_ac_w, battery_w = split(2000.0, 6000.0, 8000.0, (-5000.0, 5000.0))
    assert pv_ac_w == pytest.approx(5820.0)
    assert battery_w == pytest.approx(-3820.0)


def test_night_deficit_is_covered_by_the_battery_up_to_its_power():
    assert split(11000.0, 0.0, 8000.0, (-5000.0, 5000.0)) == (0.0, 5000.0)
    assert split(300.0, 0.0, 8000.0, (-5000.0, 5000.0)) == (0.0, 300.0)


def test_a_battery_charging_from_the_pv_takes_its_power_before_the_cap():
    pv_ac_w, battery_w = split(0.0, 10000.0, 8000.0, (-5000.0, 5000.0))
    assert battery_w == -5000.0
    assert pv_ac_w == pytest.approx(9700.0)  # more than the cap: W = 4700 is not


def test_the_cap_throttles_the_pv_when_the_battery_is_full():
    pv_ac_w, battery_w = split(0.0, 20000.0, 8000.0, (0.0, 5000.0))
    assert (pv_ac_w, battery_w) == (8000.0, 0.0)
    assert inverter_state(20000.0, pv_ac_w, battery_w) == THROTTLED


def test_a_discharge_is_cut_first_by_the_cap():
    pv_ac_w, battery_w = split(20000.0, 7000.0, 8000.0, (-5000.0, 5000.0))
    assert pv_ac_w == pytest.approx(6790.0)
    assert battery_w == pytest.approx(1210.0)
    assert pv_ac_w + battery_w == pytest.approx(8000.0)


def test_an_empty_window_means_no_battery_flow():
    assert split(3000.0, 0.0, 8000.0, (1.0, 0.0)) == (0.0, 0.0)


def test_the_window_closes_at_the_reserve_and_when_full():
    assert battery_window(-5000.0, 5000.0, 50.0, 5.0) == (-5000.0, 5000.0)
    assert battery_window(-5000.0, 5000.0, 5.0, 5.0) == (-5000.0, 0.0)
    assert battery_window(-5000.0, 5000.0, 3.0, 5.0) == (-5000.0, 0.0)
    assert battery_window(-5000.0, 5000.0, 100.0, 5.0) == (0.0, 5000.0)


@pytest.mark.parametrize("pv_available_w, pv_ac_w, battery_w, state", [
    (5000.0, ETA * 5000.0, 0.0, MPPT), (5000.0, 1000.0, 0.0, THROTTLED),
    (0.0, 0.0, 0.0, SLEEPING), (0.0, 0.0, 300.0, STANDBY), (0.0, 0.0, -300.0, STANDBY)])
def test_inverter_states(pv_available_w, pv_ac_w, battery_w, state):
    assert inverter_state(pv_available_w, pv_ac_w, battery_w) == state


# --- the battery ----------------------------------------------------------------------------------

def test_a_new_battery_is_half_full_with_half_its_capacity_as_power():
    battery = Battery(10.0)
    assert battery.soc_pct == 50.0
    assert battery.max_w == 5000.0
    assert Battery(0.1).max_w == 100.0  # at least 0.1 kW
    assert battery.reserve_pct == 5.0


@pytest.mark.parametrize("kwh, kw", [(0.0, None), (-1.0, None), (201.0, None), (math.nan, None),
                                     (10.0, 0.05), (10.0, 101.0)])
def test_a_battery_out_of_range_is_refused(kwh, kw):
    with pytest.raises(ValueError):
        Battery(kwh, kw)


def test_discharging_loses_the_cell_efficiency_and_counts_what_flowed():
    battery = Battery(10.0)
    flowed_wh = battery.flow(1000.0, HOUR_S)
    assert flowed_wh == pytest.approx(1000.0)
    assert battery.energy_wh == pytest.approx(5000.0 - 1000.0 / BATTERY_EFFICIENCY)


def test_charging_stores_the_cell_efficiency_of_what_flowed():
    battery = Battery(10.0)
    flowed_wh = battery.flow(-1000.0, HOUR_S)
    assert flowed_wh == pytest.approx(-1000.0)
    assert battery.energy_wh == pytest.approx(5000.0 + 1000.0 * BATTERY_EFFICIENCY)


def test_a_discharge_stops_at_the_reserve_within_the_tick_and_counts_only_what_flowed():
    battery = Battery(10.0)
    battery.soc_pct = 6.0  # 100 Wh above the reserve
    flowed_wh = battery.flow(5000.0, HOUR_S)
    assert battery.soc_pct == pytest.approx(5.0)
    assert flowed_wh == pytest.approx(100.0 * BATTERY_EFFICIENCY)
    assert battery.charge_state(0.0) == EMPTY


def test_a_charge_stops_at_full_within_the_tick_and_counts_only_what_flowed():
    battery = Battery(10.0)
    battery.soc_pct = 99.0  # 100 Wh below full
    flowed_wh = battery.flow(-5000.0, HOUR_S)
    assert battery.soc_pct == 100.0
    assert flowed_wh == pytest.approx(-100.0 / BATTERY_EFFICIENCY)
    assert battery.charge_state(0.0) == FULL


def test_charge_states():
    battery = Battery(10.0)
    assert battery.charge_state(-1.0) == CHARGING
    assert battery.charge_state(1.0) == DISCHARGING
    assert battery.charge_state(0.0) == HOLDING


# --- a site -----------------------------------------------------------------------------------------

def test_a_site_balances_on_every_tick_of_a_day():
    s = site()
    zero_grids = 0
    for _ in range(24 * 12):
        s.step(300.0)
        assert_identities(s)
        zero_grids += s.balance.grid_w == 0.0
    assert zero_grids > 10  # the battery covered the house on many ticks, the grid showing 0 W
    assert s.grid.counters["energy_import"] > 0.0


@pytest.mark.parametrize("kwargs", [dict(battery_kwh=0.0), dict(pv_kwp=0.0),
                                    dict(pv_kwp=40.0, battery_kwh=200.0, battery_kw=100.0)])
def test_every_configuration_balances(kwargs):
    s = site(**kwargs)
    for _ in range(100):
        s.step(900.0)
        assert_identities(s)


def test_pinned_noon_gives_the_contracts_example():
    s = site()
    s.pin({"load_w": 2000.0, "pv_available_w": 6000.0})
    b = s.balance
    assert (b.load_w, b.pv_available_w, b.pv_dc_w) == (2000.0, 6000.0, 6000.0)
    assert b.pv_ac_w == pytest.approx(5820.0)
    assert b.battery_w == pytest.approx(-3820.0)
    assert b.inverter_w == pytest.approx(2000.0)
    assert b.grid_w == 0.0  # exactly: the battery covers the house, rounding shows no flow
    assert b.state == MPPT
    assert s.grid.reading.rate == 0.0
    assert_identities(s)


def test_an_11_kw_load_at_night_takes_the_battery_and_the_grid():
    s = site(time_of_day_s=23 * HOUR_S)
    s.pin({"load_w": 11000.0})
    b = s.balance
    assert b.pv_available_w == 0.0
    assert (b.battery_w, b.inverter_w, b.grid_w, b.state) == (5000.0, 5000.0, 6000.0, STANDBY)
    assert_identities(s)


def test_a_pinned_load_keeps_the_households_phase_proportions():
    s = site()
    household = [w for w in s.balance.loads_w]
    s.pin({"load_w": 9000.0})
    loads = s.balance.loads_w
    assert sum(loads) == pytest.approx(9000.0)
    for shown, drawn in zip(loads, household):
        assert shown / 9000.0 == pytest.approx(drawn / sum(household))


def test_a_pinned_load_over_a_household_drawing_nothing_is_split_in_thirds():
    s = site()
    s.pin({"load_w": 900.0})
    balance = s.balanced([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 0.0, 0.0)
    assert balance.loads_w == (300.0, 300.0, 300.0)


def test_without_a_battery_the_inverter_sleeps_at_night():
    s = site(battery_kwh=0.0, time_of_day_s=23 * HOUR_S)
    s.step(1.0)
    b = s.balance
    assert (b.battery_w, b.pv_dc_w, b.inverter_w, b.state) == (0.0, 0.0, 0.0, SLEEPING)
    assert b.grid_w == pytest.approx(b.load_w)


def test_the_battery_never_falls_below_the_reserve_over_a_night():
    s = site(time_of_day_s=20.5 * HOUR_S)
    s.pin({"load_w": 3000.0, "pv_available_w": 0.0})
    socs = []
    for _ in range(10 * 60):  # ten hours in minutes
        s.step(60.0)
        socs.append(s.balance.soc_pct)
        assert_identities(s)
    assert min(socs) >= 5.0 - 0.1
    assert socs[-1] == pytest.approx(5.0)
    assert s.balance.battery_w == 0.0
    assert s.balance.grid_w == pytest.approx(3000.0)


def test_the_battery_never_rises_above_full_on_a_sunny_day():
    s = site()
    s.pin({"load_w": 0.0, "pv_available_w": 8000.0})
    for _ in range(6 * 60):
        s.step(60.0)
        assert s.balance.soc_pct <= 100.0
    assert s.balance.soc_pct == 100.0
    assert s.balance.battery_w == 0.0
    assert s.balance.grid_w == pytest.approx(-8000.0 * ETA)


def test_the_counters_integrate_what_was_shown():
    s = site()
    s.pin({"load_w": 1000.0, "pv_available_w": 4000.0})
    shown = s.balance
    s.step(HOUR_S)
    counters = s.inverter.counters
    assert counters["inverter_energy"] == pytest.approx(shown.inverter_w / 1000.0)
    assert counters["pv_energy_1"] == pytest.approx(shown.pv_dc_w * STRING_SHARES[0] / 1000.0)
    assert counters["pv_energy_2"] == pytest.approx(shown.pv_dc_w * STRING_SHARES[1] / 1000.0)
    assert counters["battery_energy_charged"] == pytest.approx(-shown.battery_w / 1000.0)
    assert counters["battery_energy_discharged"] == 0.0
    assert s.battery.soc_pct == pytest.approx(50.0 - shown.battery_w * BATTERY_EFFICIENCY / 10000.0 * 100.0)


def test_setting_the_state_of_charge_rebalances_at_once():
    s = site(time_of_day_s=23 * HOUR_S)
    s.pin({"load_w": 2000.0})
    assert s.balance.battery_w == 2000.0
    s.set_soc(5.0)
    assert s.balance.battery_w == 0.0
    assert s.balance.grid_w == pytest.approx(2000.0)


def test_the_battery_does_not_depend_on_the_ticks_length():
    short, long = site(), site()
    for s in (short, long):
        s.pin({"load_w": 2500.0, "pv_available_w": 1000.0})
    short.step(1.0)
    long.step(600.0)
    assert short.balance.battery_w == long.balance.battery_w


def test_a_site_is_reproducible_from_its_seed():
    first, second = site(seed=5), site(seed=5)
    for _ in range(50):
        first.step(60.0)
        second.step(60.0)
    assert first.balance.flows() == second.balance.flows()
    assert first.inverter.counters == second.inverter.counters


def test_state_values_round_trip_the_soc_and_counters():
    s = site()
    s.step(HOUR_S)
    saved = s.inverter.state_values()
    again = site(seed=9)
    again.inverter.restore_values(saved)
    assert again.battery.soc_pct == pytest.approx(s.battery.soc_pct)
    assert again.inverter.counters == s.inverter.counters


def test_the_grid_meter_keeps_the_balance_under_voltage_and_power_factor_pins():
    s = site()
    s.pin({"load_w": 2500.0, "pv_available_w": 1000.0})
    s.grid.pin({"voltage_l1": 240.0, "power_factor_total": 0.9})
    grid = s.grid.reading
    assert grid.voltages_v[0] == 240.0
    assert sum(grid.powers_w) == pytest.approx(s.balance.grid_w)
    for factor in grid.power_factors:
        assert abs(factor) == pytest.approx(0.9)


def test_sites_drawn_as_columns_balance_on_every_tick_of_a_day():
    sites = [site(seed=seed, time_of_day_s=0.0) for seed in range(4)]
    columns = SiteColumns(sites, random.Random(7))
    zero_grids, exported = 0, 0
    for _ in range(24 * 12):
        columns.step(300.0)
        for each in sites:
            drawn = each.grid.drawn
            each.step(300.0)
            assert each.grid.drawn is None  # the step took the household the columns drew
            assert each.balance.load_w == pytest.approx(sum(drawn[1][0]))
            assert_identities(each)
            zero_grids += each.balance.grid_w == 0.0
            exported += each.balance.grid_w < 0.0
    assert zero_grids > 10 and exported > 10  # the battery covered the house; the noon surplus
    assert len({each.grid.counters["energy_import"] for each in sites}) == 4  # houses differ
