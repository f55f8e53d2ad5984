"""A site's quantities in the one vocabulary (site-contract A7): their units, their expressions
over the inverter's reading (r.site, the tick's Balance) and counters, the readings an inverter
shows, and the rule that only a site's maps show them (pure: no sockets)."""
from __future__ import annotations

import random
import struct

import pytest

from meter_simulator.app import options
from meter_simulator.maps import codec, extremes, mapfile, points, readings, schema
from meter_simulator.model import quantities, site
from meter_simulator.model.site import Site
from support import ROOT

# site-contract A7's table: quantity -> unit
A7_UNITS = {
    "load_power": "W", "pv_available_power": "W", "pv_dc_power": "W", "pv_dc_power_1": "W",
    "pv_dc_power_2": "W", "pv_ac_power": "W", "battery_power": "W", "inverter_power": "W",
    "grid_power": "W", "battery_soc": "%", "inverter_state": "-", "battery_capacity": "kWh",
    "battery_max_power": "W", "inverter_rated_power": "W", "battery_voltage": "V", "battery_current": "A",
    "battery_energy_charged": "kWh", "battery_energy_discharged": "kWh", "pv_energy": "kWh",
    "inverter_energy": "kWh",
}


class Shown:
    """The device side a map reads (codec's m)."""

    online, unit_id, serial_number, demand_period, demand_time = 1, 1, 5020001, 0, 0.0
    stored: dict = {}


def pinned_site(battery_kwh: float = 10.0, **pins) -> Site:
    home = Site(random.Random(1), 12 * 3600.0, pv_kwp=8.0, battery_kwh=battery_kwh)
    home.pin(pins or {"load_w": 2000.0, "pv_available_w": 6000.0})
    return home


def test_the_a7_quantities_are_in_the_vocabulary_with_their_units():
    assert {name: quantities.SITE_UNITS[name] for name in A7_UNITS} == A7_UNITS
    assert quantities.SITE <= quantities.NAME_SET
    assert len(quantities.NAMES) == len(quantities.NAME_SET)  # one name per concept


def test_the_inverters_counters_wrap_like_meter_counters():
    assert set(site.INVERTER_COUNTERS) < set(quantities.SITE_COUNTERS)
    assert set(quantities.SITE_COUNTERS) <= quantities.COUNTERS
    assert not set(quantities.SITE_INSTANTANEOUS) & quantities.COUNTERS


def test_every_site_quantity_has_an_inverter_expression_and_a_grid_meter_the_balances():
    for name in quantities.SITE:
        assert codec.expression(name, "inverter") != "0.0", name
        # a site's grid meter carries the balance, not the inverter's counters (site-contract B7)
        expected = "0.0" if name in quantities.SITE_COUNTERS else codec.expression(name, "inverter")
        assert codec.expression(name, "electric") == expected, name
        assert codec.expression(name, "water") == "0.0", name
    assert codec.expression("voltage_l2", "inverter") == "r.voltages_v[1]"
    assert codec.expression("frequency", "inverter") == "r.frequency_hz"
    assert codec.expression("pv_energy", "inverter") == "(c['pv_energy_1'] + c['pv_energy_2'])"


def inverter_values(home: Site) -> dict[str, float]:
    inverter = home.inverter
    return readings.values("inverter", (inverter.reading, inverter.counters, {}), Shown())


def test_the_inverters_readings_are_the_balance_in_the_a7_units():
    home = pinned_site()
    home.step(3600.0)
    balance = home.balance
    values = inverter_values(home)
    assert tuple(values) == readings.names("inverter")
    assert set(values) == set(A7_UNITS) | {"pv_energy_1", "pv_energy_2"}
    assert dict(readings.symbols("inverter")) == {name: quantities.SITE_UNITS[name] for name in values}
    assert values["load_power"] == balance.load_w == 2000.0
    assert values["pv_dc_power"] == balance.pv_dc_w == 6000.0
    assert values["battery_power"] == balance.battery_w == pytest.approx(-3820.0)
    assert values["inverter_power"] == balance.inverter_w == pytest.approx(2000.0)
    assert values["grid_power"] == pytest.approx(0.0, abs=1e-9)
    assert values["inverter_state"] == site.MPPT
    assert (values["battery_capacity"], values["battery_max_power"], values["inverter_rated_power"]) == (
        10.0, 5000.0, 8000.0)
    assert values["battery_current"] == pytest.approx(balance.battery_w / balance.battery_v)
    assert values["pv_energy"] == pytest.approx(6.0)  # kWh: an hour at 6 kW
    assert values["pv_energy"] == values["pv_energy_1"] + values["pv_energy_2"]
    assert values["inverter_energy"] == pytest.approx(2.0)
    assert values["battery_energy_charged"] == pytest.approx(3.82)


def test_the_chains_extra_quantities_split_the_battery_and_the_strings():
    home = pinned_site(load_w=7000.0, pv_available_w=2000.0)  # discharging
    expressions = {name: codec.expression(name, "inverter") for name in quantities.SITE_INSTANTANEOUS}
    values = codec.values_function(tuple(expressions), "inverter")(
        home.inverter.reading, home.inverter.counters, {}, Shown())
    balance = home.balance
    assert balance.battery_w == pytest.approx(5000.0)
    assert values["battery_discharge_power"] == balance.battery_w and values["battery_charge_power"] == 0.0
    assert values["battery_discharge_current"] == pytest.approx(balance.battery_w / balance.battery_v)
    assert values["pv_dc_current_1"] == pytest.approx(balance.pv_dc_w_1 / balance.string_v)
    assert values["pv_dc_current"] == pytest.approx(values["pv_dc_current_1"] + values["pv_dc_current_2"])
    assert values["battery_state"] == site.DISCHARGING and values["battery_reserve"] == 5.0
    assert values["battery_capacity_ah"] == pytest.approx(10000.0 / codec.NOMINAL_BATTERY_V)
    assert values["inverter_rated_current"] == pytest.approx(8000.0 / 690.0)
    assert values["inverter_apparent_power"] == abs(balance.inverter_w)
    assert values["inverter_temperature"] == balance.cabinet_c


def test_without_a_battery_its_currents_read_zero():
    home = pinned_site(battery_kwh=0.0, load_w=500.0, pv_available_w=0.0)
    values = inverter_values(home)
    assert values["battery_current"] == values["battery_voltage"] == values["battery_power"] == 0.0
    assert values["inverter_state"] == site.SLEEPING


@pytest.mark.parametrize("entry", [{"quantity": "battery_power"}, {"control": "grid_charge"}])
def test_a_map_showing_a_site_quantity_or_a_control_is_read_but_served_only_with_site(tmp_path, entry):
    path = tmp_path / "mine.toml"
    key, value = next(iter(entry.items()))
    path.write_text(f'type = "electric"\n[[register]]\naddress = 0\ntype = "int16"\n{key} = "{value}"\n',
                    encoding="utf-8")
    profile = mapfile.load_map(path)  # the file is valid: only a run without --site refuses it
    assert schema.site_entry(profile) == f'register 1 (address 0): {key} "{value}"'
    with pytest.raises(options.UsageError) as caught:
        options.parse_args(["--profile", str(path)])
    assert str(caught.value) == (f'profile {path}: register 1 (address 0): {key} "{value}" belongs to '
                                 "a site: give --site too")
    assert options.parse_args(["--profile", str(path), "--site"]).profile == profile


def every_site_quantity() -> points.Profile:
    """An inverter map of every site quantity as an int32 (x 10) and a uint16 (x 1000)."""
    names = sorted(quantities.SITE)
    found = [points.Point(address=3 * i + offset, space="holding", type=kind, quantity=name, scale=scale,
                          length=points.TYPE_REGISTERS[kind])
             for i, name in enumerate(names)
             for offset, kind, scale in ((0, "int32", 10.0), (2, "uint16", 1000.0))]
    return points.Profile(name="all", meter_type="inverter", points=tuple(found))


def test_an_inverter_map_encodes_every_site_quantity_at_the_extremes():
    profile = every_site_quantity()
    compiled = extremes.check_encodes(profile, "inverter")
    home = pinned_site()
    home.step(3600.0)
    image = compiled.encode(home.inverter.reading, home.inverter.counters, {}, Shown())
    names = sorted(quantities.SITE)
    raw = dict(zip(names, (struct.unpack(">i", struct.pack(">2H", *image.words(3 * i, 2)))[0]
                           for i in range(len(names)))))
    assert raw["battery_power"] == round(home.balance.battery_w * 10)
    assert raw["battery_energy_charged"] == round(home.inverter.counters["battery_energy_charged"] * 10)
    home.inverter.counters.update(pv_energy_1=70.0, pv_energy_2=1.5)  # kWh: 71,500 Wh in a uint16
    image = compiled.encode(home.inverter.reading, home.inverter.counters, {}, Shown())
    assert image.words(3 * names.index("pv_energy") + 2, 1) == [71500 % 65536]  # wraps, as meters do
    assert image.words(3 * names.index("load_power") + 2, 1) == [65535]  # an instantaneous value clamps


def test_the_map_format_page_lists_every_site_quantity():
    page = (ROOT / "docs" / "profiles.md").read_text(encoding="utf-8")
    assert not [name for name in sorted(quantities.SITE) if f"`{name}`" not in page]
