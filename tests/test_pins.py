"""Readings pinned at run time (contract section 4): Meter.pin's physics and pins.merged's checks.

Without pins a meter draws and shows bit for bit what it did before pins existed (a digest
of 2,000 steps per meter type, taken from the code before the split into _draw and
_derive). With pins the physics stays consistent (P = sum V*I*PF), the counters integrate
what is shown, and pinning never draws a random number. All seeded, no clock, no sockets.
"""
from __future__ import annotations

import hashlib
import math
import random

import pytest

from meter_simulator.model import meters, pins
from meter_simulator.model.electric import pinned_phases, scaled_to_power
from meter_simulator.model.meters import make_meter
from meter_simulator.model.pins import PINNABLE, PinError, merged, value_range
from support import seed_image

NOON_S = 12 * 3600.0
ELECTRIC = PINNABLE["electric"]
ELECTRIC_LIST = ", ".join(ELECTRIC)
FLOW_LIST = "flow, temperature, pressure"

# --- without pins: bit for bit as before ---------------------------------------------------

DIGEST_STEPS_S = (1.0, 0.05, 10.0, 60.0, 0.0, 300.0, 2.5, 900.0, 3600.0, 30.0)
# sha256 of 2,000 steps' readings, counters and demands, computed with the meters.py of
# commit 583b02c (before _sample split into _draw and _derive), on CPython 3.11 / x86-64
BEFORE_PINS = {
    ("electric", 0.0, 11): "5ae2fe15254abd2495d176cc2c86df029c16ed6f8b3e09ac415c77754c40a700",
    ("electric", 6.0, 12): "afb6a7fceacf0ee6a962bdf92f5c554486f32e3c986ae570fa7707ac67499ee3",
    ("water", 0.0, 13): "a013bd763439b4b9b02c4bfc9493bdab6c6de071eb416748263e6bcfb4fe71d0",
    ("gas", 0.0, 14): "07524c3f7d6eea666399ba0280975b2bef3c90b52af33b98b66aab8acafb0ae3",
}


def readings_digest(meter_type: str, pv_kwp: float, seed: int, steps: int = 2000, pin_each=None) -> str:
    """sha256 over every step's reading, counters and demands, and the generator's next draw."""
    rng = random.Random(seed)
    kwargs = {"pv_kwp": pv_kwp} if pv_kwp else {}
    meter = make_meter(meter_type, rng, 6 * 3600.0, **kwargs)
    digest = hashlib.sha256()
    for index in range(steps):
        if pin_each is not None:
            pin_each(meter)
        digest.update(repr(sorted(meter.reading.__dict__.items())).encode())
        digest.update(repr(sorted(meter.counters.items())).encode())
        if meter.demand is not None:
            digest.update(repr(sorted(meter.demand.values.items())).encode())
        meter.step(DIGEST_STEPS_S[index % len(DIGEST_STEPS_S)])
    digest.update(repr(sorted(meter.reading.__dict__.items())).encode())
    digest.update(repr(rng.random()).encode())  # the same number of draws, too
    return digest.hexdigest()


@pytest.mark.parametrize("case", sorted(BEFORE_PINS), ids=lambda case: f"{case[0]}-{case[1]:g}kWp")
def test_without_pins_readings_counters_and_draws_are_bit_for_bit_as_before(case):
    assert readings_digest(*case) == BEFORE_PINS[case]


@pytest.mark.parametrize("case", sorted(BEFORE_PINS), ids=lambda case: f"{case[0]}-{case[1]:g}kWp")
def test_an_empty_pin_before_every_step_changes_nothing(case):
    assert readings_digest(*case, steps=300, pin_each=lambda meter: meter.pin({})) == \
        readings_digest(*case, steps=300)


# --- helpers --------------------------------------------------------------------------------

def electric(seed: int = 1, time_of_day_s: float = 19 * 3600.0, pv_kwp: float = 0.0):
    return make_meter("electric", random.Random(seed), time_of_day_s, pv_kwp)


def phase_power_w(reading) -> float:
    return sum(v * i * pf for v, i, pf in zip(reading.voltages_v, reading.currents_a, reading.power_factors))


def assert_phases_consistent(reading) -> None:
    """P = V*I*PF, S = V*I, Q = sqrt(S^2 - P^2) per phase, the total's rate and PF from them."""
    for v, i, pf, p, q, s in zip(reading.voltages_v, reading.currents_a, reading.power_factors,
                                 reading.powers_w, reading.reactive_var, reading.apparent_va):
        assert p == pytest.approx(v * i * pf, abs=1e-9)
        assert s == pytest.approx(v * i, abs=1e-9)
        assert q == pytest.approx(math.sqrt(max(s * s - p * p, 0.0)), abs=1e-6)
    powers = reading.powers_w  # summed as the meter sums them (sum() compensates from Python 3.12)
    assert reading.rate == max(powers[0] + powers[1] + powers[2], 0.0)


def without_total(reading) -> dict:
    fields = dict(reading.__dict__)
    del fields["total"]
    return fields


# --- electric: power_total ------------------------------------------------------------------

@pytest.mark.parametrize("power_w", (0.0, 1.0, 250.0, 3000.0, 12345.678, 100000.0))
def test_power_total_scales_the_currents_so_the_phases_sum_to_it(power_w):
    meter = electric()
    before = meter.reading
    reading = meter.pin({"power_total": power_w})
    assert abs(phase_power_w(reading) - power_w) < 1e-6
    assert abs(sum(reading.powers_w) - power_w) < 1e-6
    assert reading.voltages_v == before.voltages_v  # only the currents move
    assert [abs(pf) for pf in reading.power_factors] == [abs(pf) for pf in before.power_factors]
    assert reading.frequency_hz == before.frequency_hz
    if power_w:  # the currents keep their proportions
        ratios = [i / i0 for i, i0 in zip(reading.currents_a, before.currents_a)]
        assert max(ratios) == pytest.approx(min(ratios), rel=1e-12)
    else:
        assert reading.currents_a == (0.0, 0.0, 0.0)
    assert_phases_consistent(reading)


@pytest.mark.parametrize("power_w", (3.0, 480.0, 3000.0, 45678.9, 100000.0))
def test_pinned_power_total_read_through_the_registers_is_within_1_percent_or_5_w(power_w):
    meter = electric(seed=3)
    for _ in range(5):
        words = seed_image(meter.pin({"power_total": power_w}), "electric", online=True)
        assert (words[2] | words[3] << 16) == round(power_w * 10)  # the rate register: exact
        # a client multiplying the registers' rounded V, I and PF lands within the contract's margin
        rounded_w = sum(round(v, 1) * round(i, 2) * round(pf, 3) for v, i, pf in zip(
            meter.reading.voltages_v, meter.reading.currents_a, meter.reading.power_factors))
        assert abs(rounded_w - power_w) <= max(0.01 * power_w, 5.0)
        meter.step(60.0)


def test_power_total_stays_pinned_over_steps_while_the_voltages_move():
    meter = electric()
    meter.pin({"power_total": 4200.0})
    voltages = set()
    for _ in range(50):
        reading = meter.step(30.0)
        assert abs(phase_power_w(reading) - 4200.0) < 1e-6
        assert reading.rate == pytest.approx(4200.0, abs=1e-6)
        assert meter.overrides == {"power_total": 4200.0}
        voltages.add(reading.voltages_v)
    assert len(voltages) > 40  # the other readings go on moving


def test_power_total_with_power_factor_total_scales_the_currents_at_that_pf():
    reading = electric().pin({"power_total": 5000.0, "power_factor_total": 0.9})
    assert reading.power_factors == (0.9, 0.9, 0.9)
    assert reading.power_factor == 0.9
    assert abs(phase_power_w(reading) - 5000.0) < 1e-6
    assert sum(reading.apparent_va) == pytest.approx(5000.0 / 0.9, rel=1e-12)
    assert_phases_consistent(reading)


def test_power_total_0_at_power_factor_0_keeps_the_currents():
    meter = electric()
    currents = meter.reading.currents_a
    reading = meter.pin({"power_total": 0.0, "power_factor_total": 0.0})
    assert reading.currents_a == currents and reading.power_factors == (0.0, 0.0, 0.0)
    assert reading.powers_w == (0.0, 0.0, 0.0) and reading.rate == 0.0 and reading.power_factor == 0.0


def test_scaling_without_current_starts_from_1_a_per_phase():
    currents, factors = scaled_to_power(690.0, [230.0, 230.0, 230.0], [0.0, 0.0, 0.0], [0.5, 1.0, 1.0])
    assert currents == pytest.approx([690.0 / 575.0] * 3, rel=1e-12)
    assert factors == [0.5, 1.0, 1.0]
    assert sum(230.0 * i * pf for i, pf in zip(currents, factors)) == pytest.approx(690.0, rel=1e-12)


def test_scaling_without_current_or_power_factor_takes_pf_1():
    currents, factors = scaled_to_power(-690.0, [230.0, 230.0, 230.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    assert currents == pytest.approx([1.0, 1.0, 1.0], rel=1e-12) and factors == [-1.0, -1.0, -1.0]


def test_scaling_to_0_w_with_nothing_to_scale_changes_nothing():
    assert scaled_to_power(0.0, [230.0] * 3, [0.0, 2.0, 0.0], [0.9, 0.0, 0.9]) == (
        [0.0, 2.0, 0.0], [0.9, 0.0, 0.9])
    assert scaled_to_power(-0.0, [230.0] * 3, [1.0] * 3, [-0.9] * 3)[1] == [0.9, 0.9, 0.9]  # no export


# --- electric: phase values, power factor, frequency ----------------------------------------

def test_a_voltage_sag_on_l2_lowers_the_power():
    meter = electric()
    before = meter.reading
    reading = meter.pin({"voltage_l2": 180.0})
    assert reading.voltages_v == (before.voltages_v[0], 180.0, before.voltages_v[2])
    assert reading.currents_a == before.currents_a and reading.power_factors == before.power_factors
    assert reading.powers_w[1] == 180.0 * before.currents_a[1] * before.power_factors[1]
    assert reading.powers_w[0] == before.powers_w[0] and reading.powers_w[2] == before.powers_w[2]
    assert sum(reading.powers_w) < sum(before.powers_w)
    assert reading.power_factor == pytest.approx(sum(reading.powers_w) / sum(reading.apparent_va))
    assert_phases_consistent(reading)
    assert not reading.in_band  # 180 V is below the 207 V band


def test_pinned_currents_and_phase_power_factors_set_that_phase_only():
    meter = electric()
    before = meter.reading
    reading = meter.pin({"current_l1": 12.5, "power_factor_l3": 0.85})
    assert reading.currents_a == (12.5, *before.currents_a[1:])
    assert reading.power_factors == (*before.power_factors[:2], 0.85)
    assert reading.powers_w[0] == before.voltages_v[0] * 12.5 * before.power_factors[0]
    assert reading.powers_w[2] == before.voltages_v[2] * before.currents_a[2] * 0.85
    assert_phases_consistent(reading)


def test_power_factor_total_sets_every_phase_and_is_shown_as_pinned():
    meter = electric()
    reading = meter.pin({"power_factor_total": 0.93})
    assert reading.power_factors == (0.93, 0.93, 0.93) and reading.power_factor == 0.93
    assert_phases_consistent(reading)
    for v, i, q in zip(reading.voltages_v, reading.currents_a, reading.reactive_var):
        assert q == pytest.approx(v * i * math.sqrt(1 - 0.93 ** 2), rel=1e-9)


def test_the_frequency_is_replaced():
    reading = electric().pin({"frequency": 49.9})
    assert reading.frequency_hz == 49.9 and reading.in_band


def test_pinned_values_are_not_rounded():
    reading = electric().pin({"voltage_l1": 231.2345, "current_l2": 3.14159, "frequency": 50.0123})
    assert reading.voltages_v[0] == 231.2345 and reading.currents_a[1] == 3.14159
    assert reading.frequency_hz == 50.0123


def test_pin_stores_floats_and_drops_releases():
    meter = electric()
    meter.pin({"voltage_l1": 230, "current_l1": None})
    assert meter.overrides == {"voltage_l1": 230.0} and type(meter.overrides["voltage_l1"]) is float


@pytest.mark.parametrize("name, value, field", [
    ("power_total", 2500.0, lambda r: sum(r.powers_w)),
    ("voltage_l1", 221.0, lambda r: r.voltages_v[0]), ("voltage_l2", 222.0, lambda r: r.voltages_v[1]),
    ("voltage_l3", 223.0, lambda r: r.voltages_v[2]), ("current_l1", 4.0, lambda r: r.currents_a[0]),
    ("current_l2", 5.0, lambda r: r.currents_a[1]), ("current_l3", 6.0, lambda r: r.currents_a[2]),
    ("frequency", 50.2, lambda r: r.frequency_hz), ("power_factor_total", 0.95, lambda r: r.power_factor),
    ("power_factor_l1", 0.81, lambda r: r.power_factors[0]),
    ("power_factor_l2", 0.82, lambda r: r.power_factors[1]),
    ("power_factor_l3", 0.83, lambda r: r.power_factors[2]),
])
def test_every_pinnable_electric_reading_is_shown_as_pinned(name, value, field):
    meter = electric()
    assert field(meter.pin({name: value})) == pytest.approx(value, abs=1e-9)
    assert field(meter.step(60.0)) == pytest.approx(value, abs=1e-9)  # and stays pinned
    assert meter.reading.in_band  # every value here lies in its band


def test_every_pinnable_electric_name_changes_the_shown_phases():
    raw = ((230.0,) * 3, (1.0,) * 3, (1.0,) * 3, 50.0, 0.0)
    for name in ELECTRIC:
        assert pinned_phases(raw, {name: 0.5}) != pinned_phases(raw, {}), name


# --- electric: in band ----------------------------------------------------------------------

@pytest.mark.parametrize("name, outside, inside", [
    ("voltage_l1", 206.9, 207.0), ("voltage_l3", 253.1, 253.0), ("current_l2", 63.01, 63.0),
    ("frequency", 50.51, 50.5), ("frequency", 49.49, 49.5), ("power_factor_total", 0.79, 0.8),
    ("power_factor_l1", 0.5, 1.0), ("power_total", 100000.0, None),
])
def test_a_pin_outside_the_band_clears_in_band_and_releasing_restores_it(name, outside, inside):
    meter = electric()
    assert meter.reading.in_band
    assert not meter.pin({name: outside}).in_band
    assert not meter.step(10.0).in_band  # every later step shows the pin too
    if inside is not None:
        assert meter.pin({name: inside}).in_band  # the band's ends are inside
    assert meter.pin({}).in_band


def test_with_solar_panels_the_power_factor_band_does_not_count():
    meter = electric(time_of_day_s=NOON_S, pv_kwp=8.0)
    assert meter.pin({"power_factor_total": 0.3}).in_band
    assert not meter.pin({"voltage_l1": 260.0}).in_band


# --- electric: counters and demand integrate what is shown ---------------------------------

@pytest.mark.parametrize("steps", (1, 4, 60))
def test_the_counters_integrate_the_pinned_power(steps):
    meter = electric()
    meter.pin({"power_total": 3600.0})  # pinned first: a step integrates what was shown before it
    before = dict(meter.counters)
    dt_s = 3600.0 / steps
    va_s = amp_s = 0.0  # the power factors move, so S and I do: integrate what each step showed
    for _ in range(steps):
        va_s += sum(meter.reading.apparent_va) * dt_s
        amp_s += sum(meter.reading.currents_a) * dt_s
        meter.step(dt_s)
    grown = {name: meter.counters[name] - before[name] for name in before}
    assert grown["energy_import"] == pytest.approx(3.6, abs=1e-9)
    assert grown["energy_export"] == 0.0
    assert sum(grown[f"energy_import_l{n}"] for n in (1, 2, 3)) == pytest.approx(3.6, abs=1e-9)
    assert grown["apparent_energy"] == pytest.approx(va_s / 3.6e6, rel=1e-9)
    assert grown["ampere_hours"] == pytest.approx(amp_s / 3600.0, rel=1e-9)
    assert meter.total == meter.reading.total == meter.counters["energy_import"]


def test_a_pinned_voltage_is_integrated_as_shown():
    meter = electric()
    reading = meter.pin({"voltage_l2": 150.0})
    before = meter.counters["energy_import_l2"]
    meter.step(1800.0)
    grown_kwh = meter.counters["energy_import_l2"] - before
    assert grown_kwh == pytest.approx(reading.powers_w[1] / 2000.0, rel=1e-12)


def test_the_demand_follows_the_pinned_power():
    meter = electric()
    meter.demand.period_min = 0  # instantaneous: the demand is the shown value
    meter.pin({"power_total": 7000.0})
    assert meter.demand.values["demand_power_total"] == pytest.approx(7000.0, abs=1e-6)
    meter.demand.period_min = 5  # ten buckets of 30 s
    shown_a = []
    for _ in range(20):
        shown_a.append(meter.reading.currents_a[0])
        meter.step(30.0)  # ten minutes at 7 kW: the 5-minute mean is 7 kW
    assert meter.demand.values["demand_power_total"] == pytest.approx(7000.0, abs=1e-6)
    # the currents follow the model's power factors: their mean over the last 5 minutes shown
    assert meter.demand.values["demand_current_l1"] == pytest.approx(sum(shown_a[-10:]) / 10, rel=1e-9)


def test_pin_neither_integrates_nor_moves_time():
    meter = electric()
    meter.step(60.0)
    counters, time_s = dict(meter.counters), meter.time_of_day_s
    meter.pin({"power_total": 9000.0})
    meter.pin({"current_l1": 20.0})
    assert meter.counters == counters and meter.time_of_day_s == time_s


# --- no draws: pins leave the model's random sequence alone ---------------------------------

@pytest.mark.parametrize("meter_type, changes", [
    ("electric", {"power_total": 5000.0}), ("electric", {"voltage_l2": 150.0, "frequency": 52.0}),
    ("water", {"flow": 30.0}), ("gas", {"flow": 80.0, "pressure": 10.0}),
])
def test_pinning_and_releasing_draws_no_random_numbers(meter_type, changes):
    rng_free, rng_pinned = random.Random(5), random.Random(5)
    free = make_meter(meter_type, rng_free, 7 * 3600.0)
    pinned = make_meter(meter_type, rng_pinned, 7 * 3600.0)
    for index in range(60):
        if index % 20 == 5:
            pinned.pin(changes)
        elif index % 20 == 15:
            pinned.pin({})
        if not pinned.overrides:  # released: the model's own values at once
            assert without_total(pinned.reading) == without_total(free.reading)
        assert pinned._raw == free._raw
        assert rng_pinned.getstate() == rng_free.getstate()
        free.step(120.0)
        pinned.step(120.0)


def test_releasing_shows_the_model_value_at_once():
    meter = electric()
    model = meter.reading
    meter.pin({"power_total": 20000.0, "power_factor_total": 0.85})
    assert meter.pin({}).__dict__ == model.__dict__


def test_pin_replaces_the_whole_set():
    meter = electric()
    model = meter.reading
    meter.pin({"voltage_l1": 200.0})
    reading = meter.pin({"current_l2": 5.0})
    assert meter.overrides == {"current_l2": 5.0}
    assert reading.voltages_v == model.voltages_v and reading.currents_a[1] == 5.0


def test_counter_changes_keep_the_pinned_readings():
    meter = electric()
    meter.pin({"power_total": 1234.0})
    meter.step(3600.0)
    assert meter.reset_total().rate == pytest.approx(1234.0, abs=1e-6)
    assert meter.set_total(42.0).rate == pytest.approx(1234.0, abs=1e-6)
    assert meter.reading.total == 42.0


# --- solar panels: export ------------------------------------------------------------------

def test_negative_power_total_exports_through_negative_power_factors():
    meter = electric(time_of_day_s=NOON_S, pv_kwp=6.0)
    reading = meter.pin({"power_total": -2500.0})
    assert abs(phase_power_w(reading) + 2500.0) < 1e-6
    assert all(pf < 0.0 for pf in reading.power_factors)
    assert reading.rate == 0.0 and reading.power_factor < 0.0
    assert_phases_consistent(reading)
    before = dict(meter.counters)
    for _ in range(6):
        meter.step(600.0)
    assert meter.counters["energy_export"] - before["energy_export"] == pytest.approx(2.5, abs=1e-9)
    assert meter.counters["energy_import"] == before["energy_import"]


def test_a_positive_power_total_imports_while_the_panels_would_export():
    meter = electric(seed=3, time_of_day_s=NOON_S, pv_kwp=20.0)
    assert sum(meter.reading.powers_w) < 0.0  # a sunny noon: the model exports
    reading = meter.pin({"power_total": 1500.0})
    assert all(pf > 0.0 for pf in reading.power_factors)
    assert reading.rate == pytest.approx(1500.0, abs=1e-6)
    assert reading.pv_w == meter.pin({}).pv_w  # the generation is the model's


# --- water and gas --------------------------------------------------------------------------

@pytest.mark.parametrize("meter_type", ("water", "gas"))
def test_a_pinned_flow_is_shown_in_both_places_and_integrated(meter_type):
    meter = make_meter(meter_type, random.Random(2), 8 * 3600.0)
    reading = meter.pin({"flow": 12.34})
    assert reading.flow_l_min == reading.rate == 12.34
    words = seed_image(reading, meter_type, online=True)
    assert (words[2] | words[3] << 16) == words[20] == 123
    before = meter.total
    for _ in range(3):
        assert meter.step(200.0).flow_l_min == 12.34
    assert meter.total - before == pytest.approx(12.34 * 600.0 / 60.0 / 1000.0, rel=1e-12)


@pytest.mark.parametrize("meter_type, name, outside", [
    ("water", "flow", 40.5), ("water", "temperature", -1.0), ("water", "pressure", 0.5),
    ("gas", "flow", 150.0), ("gas", "temperature", 41.0), ("gas", "pressure", 30.0),
])
def test_a_flow_meter_pin_outside_the_band_clears_in_band(meter_type, name, outside):
    meter = make_meter(meter_type, random.Random(4), 3 * 3600.0)
    assert meter.reading.in_band
    reading = meter.pin({name: outside})
    assert not reading.in_band
    assert getattr(reading, {"flow": "flow_l_min", "temperature": "temperature_c"}.get(name, name)) == outside
    assert meter.pin({}).in_band


def test_temperature_and_pressure_pins_leave_the_flow_moving():
    meter = make_meter("water", random.Random(6), 19 * 3600.0)
    meter.pin({"temperature": 15.55, "pressure": 3.333})
    flows = set()
    for _ in range(200):
        reading = meter.step(30.0)
        assert (reading.temperature_c, reading.pressure) == (15.55, 3.333)
        flows.add(reading.flow_l_min)
    assert len(flows) > 1


# --- pins.merged: what is accepted ----------------------------------------------------------

def test_pinnable_names():
    assert ELECTRIC == ("power_total", "voltage_l1", "voltage_l2", "voltage_l3", "current_l1",
                        "current_l2", "current_l3", "frequency", "power_factor_total",
                        "power_factor_l1", "power_factor_l2", "power_factor_l3")
    assert PINNABLE["water"] == PINNABLE["gas"] == ("flow", "temperature", "pressure")
    # a site's grid meter and inverter: their powers follow the site's balance
    assert set(PINNABLE) == {*meters.METER_TYPES, "grid", "inverter"}
    assert PINNABLE["grid"] == tuple(name for name in ELECTRIC
                                     if name != "power_total" and not name.startswith("current"))
    assert PINNABLE["inverter"] == ()
    assert {name for names in PINNABLE.values() for name in names} == set(pins.RANGES)


@pytest.mark.parametrize("name", ["power_total", "current_l2"])
def test_a_sites_balance_refuses_pins_of_its_powers_and_names_the_site_pin(name):
    with pytest.raises(PinError, match=f"^{name} of a site's grid meter follows the site's balance: "
                                       "pin load_w or pv_available_w of the site"):
        merged("grid", {}, {name: 100.0})


@pytest.mark.parametrize("name", ["voltage_l1", "battery_soc", "power_total"])
def test_a_sites_inverter_has_no_pins(name):
    with pytest.raises(PinError, match="^a site's inverter has no readings to pin: pin load_w or "
                                       "pv_available_w of the site"):
        merged("inverter", {}, {name: 10.0})


def test_empty_changes_return_the_present_pins_as_a_new_dict():
    current = {"voltage_l1": 220.0}
    result = merged("electric", current, {})
    assert result == current and result is not current


def test_merged_adds_replaces_and_releases_without_changing_current():
    current = {"voltage_l1": 220.0, "frequency": 50.0}
    result = merged("electric", current, {"voltage_l1": 215, "frequency": None, "current_l3": 2.5,
                                          "current_l1": None})
    assert result == {"voltage_l1": 215.0, "current_l3": 2.5}
    assert type(result["voltage_l1"]) is float
    assert current == {"voltage_l1": 220.0, "frequency": 50.0}


def test_the_result_lists_names_in_pinnable_order():
    result = merged("electric", {"frequency": 50.0}, {"power_factor_l2": 0.9, "voltage_l3": 230.0})
    assert list(result) == ["voltage_l3", "frequency", "power_factor_l2"]


def test_releasing_power_total_and_pinning_a_phase_in_one_request_is_fine():
    assert merged("electric", {"power_total": 100.0}, {"power_total": None, "voltage_l2": 200.0}) == {
        "voltage_l2": 200.0}


@pytest.mark.parametrize("name", sorted(pins.RANGES))
def test_both_ends_of_every_range_are_accepted(name):
    meter_type = "water" if name in PINNABLE["water"] else "electric"
    low, high = value_range(name)
    assert merged(meter_type, {}, {name: low}) == {name: low}
    assert merged(meter_type, {}, {name: high}) == {name: high}


@pytest.mark.parametrize("name", sorted(pins.RANGES))
def test_just_outside_every_range_is_refused(name):
    meter_type = "water" if name in PINNABLE["water"] else "electric"
    low, high = value_range(name)
    for value in (low - 0.01, high + 0.01):
        with pytest.raises(PinError, match=f"^{name} must be from "):
            merged(meter_type, {}, {name: value})


def test_ranges():
    assert value_range("power_total") == (0.0, 100000.0)
    assert value_range("power_total", panels=True) == (-100000.0, 100000.0)
    assert value_range("voltage_l2", panels=True) == (0.0, 6553.5)
    assert value_range("current_l3") == value_range("frequency") == (0.0, 655.35)
    assert value_range("power_factor_total") == value_range("power_factor_l1") == (0.0, 1.0)
    assert value_range("flow") == (0.0, 6553.5)
    assert value_range("temperature") == (-50.0, 6503.5)
    assert value_range("pressure") == (0.0, 655.35)


def test_export_only_with_solar_panels():
    assert merged("electric", {}, {"power_total": -100000}, panels=True) == {"power_total": -100000.0}
    assert merged("electric", {}, {"power_total": -0.5}, panels=1) == {"power_total": -0.5}


def test_huge_integers_are_compared_exactly():
    with pytest.raises(PinError) as caught:
        merged("electric", {}, {"power_total": 10 ** 5000})
    assert str(caught.value) == "power_total must be from 0 to 100000, not a number of more than 40 digits"


# --- pins.merged: what is refused, with the exact messages ----------------------------------

def refused(meter_type: str, changes, current=None, panels: bool = False) -> str:
    current = {} if current is None else current
    kept = dict(current)
    with pytest.raises(PinError) as caught:
        merged(meter_type, current, changes, panels)
    assert current == kept  # nothing changed
    message = str(caught.value)
    assert "\n" not in message and isinstance(caught.value, ValueError)
    return message


@pytest.mark.parametrize("body, shown", [
    ([1, 2], "[1, 2]"), ("power_total", '"power_total"'), (None, "null"), (5, "5"),
])
def test_a_body_that_is_not_an_object_is_refused(body, shown):
    assert refused("electric", body) == (
        f"overrides must be an object of reading names and values, not {shown}")


def test_an_unknown_name_is_refused_with_the_pinnable_ones():
    assert refused("electric", {"voltage_l4": 230}) == (
        f'unknown reading "voltage_l4": pinnable are {ELECTRIC_LIST}')
    assert ELECTRIC_LIST.startswith("power_total, voltage_l1, voltage_l2, voltage_l3, current_l1")


@pytest.mark.parametrize("meter_type, name, pinnable", [
    ("electric", "flow", ELECTRIC_LIST), ("electric", "temperature", ELECTRIC_LIST),
    ("water", "voltage_l1", FLOW_LIST), ("gas", "power_total", FLOW_LIST), ("water", "total", FLOW_LIST),
    ("electric", "power_factor", ELECTRIC_LIST), ("gas", "Flow", FLOW_LIST),
])
def test_a_quantity_the_meter_type_does_not_pin_is_unknown(meter_type, name, pinnable):
    assert refused(meter_type, {name: 1.0}) == f'unknown reading "{name}": pinnable are {pinnable}'


def test_an_unknown_name_is_refused_even_when_released():
    assert refused("water", {"flow": 3.0, "voltage_l1": None}).startswith('unknown reading "voltage_l1"')


def test_an_echoed_name_stays_on_one_short_line():
    message = refused("water", {"bad\nname" + "x" * 100: 1})
    assert message.startswith('unknown reading "bad\\nnamexxx') and "...: pinnable are flow" in message


@pytest.mark.parametrize("value, shown", [
    (True, "true"), (False, "false"), ("230", '"230"'), (float("nan"), "NaN"),
    (float("inf"), "Infinity"), (float("-inf"), "-Infinity"), ([230], "[230]"), ({"v": 1}, '{"v": 1}'),
])
def test_a_value_that_is_not_a_finite_number_is_refused(value, shown):
    assert refused("electric", {"voltage_l1": value}) == f"voltage_l1 must be a finite number, not {shown}"


@pytest.mark.parametrize("meter_type, name, value, message", [
    ("electric", "power_total", 150000, "power_total must be from 0 to 100000, not 150000"),
    ("electric", "power_total", 100000.5, "power_total must be from 0 to 100000, not 100000.5"),
    ("electric", "voltage_l1", 6553.6, "voltage_l1 must be from 0 to 6553.5, not 6553.6"),
    ("electric", "current_l2", -1, "current_l2 must be from 0 to 655.35, not -1"),
    ("electric", "frequency", 700.0, "frequency must be from 0 to 655.35, not 700"),
    ("electric", "power_factor_total", 1.2, "power_factor_total must be from 0 to 1, not 1.2"),
    ("electric", "power_factor_l3", -0.5, "power_factor_l3 must be from 0 to 1, not -0.5"),
    ("water", "flow", 7000, "flow must be from 0 to 6553.5, not 7000"),
    ("gas", "temperature", -50.1, "temperature must be from -50 to 6503.5, not -50.1"),
    ("water", "pressure", 655.36, "pressure must be from 0 to 655.35, not 655.36"),
])
def test_a_value_out_of_range_is_refused(meter_type, name, value, message):
    assert refused(meter_type, {name: value}) == message


def test_export_without_solar_panels_is_refused():
    assert refused("electric", {"power_total": -5}) == (
        "power_total must be from 0 to 100000, not -5 (below 0 is export: only a meter with solar panels)")
    assert refused("electric", {"power_total": -100001}, panels=True) == (
        "power_total must be from -100000 to 100000, not -100001")


def test_power_total_with_phase_values_is_refused():
    assert refused("electric", {"power_total": 3000, "voltage_l2": 200}) == (
        "power_total cannot be pinned together with voltage_l2")
    assert refused("electric", {"current_l1": 5, "power_factor_l3": 0.9}, {"power_total": 100.0}) == (
        "power_total cannot be pinned together with current_l1, power_factor_l3")
    assert refused("electric", {"power_total": 3000}, {"voltage_l1": 220.0}) == (
        "power_total cannot be pinned together with voltage_l1")


def test_power_total_with_the_frequency_or_total_pf_is_fine():
    assert merged("electric", {"frequency": 50.3}, {"power_total": 3000, "power_factor_total": 0.9}) == {
        "power_total": 3000.0, "frequency": 50.3, "power_factor_total": 0.9}


def test_power_factor_total_with_phase_power_factors_is_refused():
    assert refused("electric", {"power_factor_total": 0.9, "power_factor_l1": 0.8}) == (
        "power_factor_total cannot be pinned together with power_factor_l1")
    assert refused("electric", {"power_factor_total": 0.9}, {"power_factor_l2": 0.8}) == (
        "power_factor_total cannot be pinned together with power_factor_l2")


def test_power_at_power_factor_0_is_refused():
    assert refused("electric", {"power_total": 3000, "power_factor_total": 0}) == (
        "power_total 3000 cannot flow at power_factor_total 0")
    assert refused("electric", {"power_factor_total": 0}, {"power_total": -12.5}, panels=True) == (
        "power_total -12.5 cannot flow at power_factor_total 0")
    assert merged("electric", {}, {"power_total": 0, "power_factor_total": 0}) == {
        "power_total": 0.0, "power_factor_total": 0.0}


def test_the_first_bad_entry_is_reported():
    assert refused("electric", {"voltage_l1": "x", "bogus": 1}) == (
        'voltage_l1 must be a finite number, not "x"')


def test_an_unknown_meter_type_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown meter type 'heat'"):
        merged("heat", {}, {})


@pytest.mark.parametrize("meter_type", ("electric", "water", "gas"))
def test_a_merged_pin_set_is_what_the_meter_shows(meter_type):
    meter = make_meter(meter_type, random.Random(8), NOON_S)
    name = PINNABLE[meter_type][1]
    pinned = merged(meter_type, meter.overrides, {name: 5.5})
    reading = meter.pin(pinned)
    assert meter.overrides == pinned
    assert 5.5 in (*reading.voltages_v, reading.temperature_c)
