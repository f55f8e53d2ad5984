"""The electric meter's physics (profiles contract section 2): per-phase V, I, PF and the P, Q, S
derived from them, the bands, every counter as the integral of the shown readings, solar panels,
the state values; and the counters of the water and gas meters."""
from __future__ import annotations

import math
import random

import pytest

from meter_simulator.model import electric
from meter_simulator.model.bands import electric_in_band
from meter_simulator.model.demand import neutral_current
from meter_simulator.model.electric import ElectricMeter
from meter_simulator.model.meter import fast_reading
from meter_simulator.model.meters import make_meter
from meter_simulator.model.processes import DAY_S
from meter_simulator.model.quantities import ELECTRIC_COUNTERS, FLOW_COUNTERS, MAX_DEMANDS, PHASES
from meter_simulator.model.reading import Reading

STEPS_S = (0.05, 1.0, 60.0, 3600.0, 1e6)
NOON_S = 12 * 3600.0
KWH_PER_WS = 1.0 / 3600.0 / 1000.0


def close(value: float, expected: float, rel: float = 1e-12, tol: float = 1e-9) -> bool:
    """Equal up to float rounding: relative rel, absolute tol."""
    return math.isclose(value, expected, rel_tol=rel, abs_tol=tol)


def shown_decimals(value: float, decimals: int) -> bool:
    """value is shown with at most this many decimals (as rounded by the meter)."""
    return round(value, decimals) == value


def check_identities(reading: Reading) -> None:
    """Per phase P = V*I*PF, S = V*I, P^2 + Q^2 = S^2 from the shown values; totals are sums."""
    for phase in range(3):
        volts, amps = reading.voltages_v[phase], reading.currents_a[phase]
        pf = reading.power_factors[phase]
        power_w, var, va = reading.powers_w[phase], reading.reactive_var[phase], reading.apparent_va[phase]
        assert shown_decimals(volts, 1) and shown_decimals(amps, 2) and shown_decimals(pf, 3), reading
        assert close(power_w, volts * amps * pf)
        assert close(va, volts * amps)
        assert var >= 0.0  # the household is inductive
        assert close(power_w ** 2 + var ** 2, va ** 2, rel=1e-9, tol=1e-6)
        assert power_w * pf >= 0.0  # PF carries the sign of P: negative while exporting
        assert -1.0 <= pf <= 1.0
    power_w, va = sum(reading.powers_w), sum(reading.apparent_va)
    assert close(reading.rate, max(power_w, 0.0))
    if va > 0.0:
        assert close(reading.power_factor, power_w / va, tol=1e-12)
    else:
        assert reading.power_factor == 1.0
    assert close(reading.current_neutral_a, neutral_current(*reading.currents_a))
    values = [reading.total, reading.rate, reading.power_factor, reading.frequency_hz, reading.pv_w,
              reading.current_neutral_a, *reading.voltages_v, *reading.currents_a,
              *reading.power_factors, *reading.powers_w, *reading.reactive_var, *reading.apparent_va]
    assert all(math.isfinite(value) for value in values), reading


def in_band(reading: Reading, panels: bool = False) -> bool:
    """The electric meter's band rule asked of a whole reading."""
    return electric_in_band(reading.voltages_v, reading.currents_a, reading.frequency_hz,
                            reading.power_factors, panels)


def check_bands(reading: Reading, panels: bool) -> None:
    assert all(207.0 <= volts <= 253.0 for volts in reading.voltages_v), reading
    assert all(0.0 <= amps <= 63.0 for amps in reading.currents_a), reading
    assert 49.5 <= reading.frequency_hz <= 50.5, reading
    if not panels:
        assert all(0.8 <= pf <= 1.0 for pf in reading.power_factors), reading
        assert 0.8 <= round(reading.power_factor, 3) <= 1.0, reading  # what register 17 shows
        assert all(power_w > 0.0 for power_w in reading.powers_w), reading
    assert reading.in_band and in_band(reading, panels=panels)


@pytest.mark.parametrize("pv_kwp", (0.0, 10.0, 40.0))
@pytest.mark.parametrize("seed", range(8))
def test_a_day_in_band_with_exact_identities(seed, pv_kwp):
    rng = random.Random(seed)
    meter = make_meter("electric", rng, rng.uniform(0.0, DAY_S), pv_kwp=pv_kwp)
    readings = [meter.reading] + [meter.step(300.0) for _ in range(288)]
    for reading in readings:
        check_identities(reading)
        check_bands(reading, panels=pv_kwp > 0.0)


@pytest.mark.parametrize("dt_s", STEPS_S)
@pytest.mark.parametrize("pv_kwp", (0.0, 10.0))
def test_identities_and_bands_at_every_step_length(dt_s, pv_kwp):
    for seed in range(3):
        meter = make_meter("electric", random.Random(seed), NOON_S, pv_kwp=pv_kwp)
        for _ in range(60):
            reading = meter.step(dt_s)
            check_identities(reading)
            check_bands(reading, panels=pv_kwp > 0.0)


def test_the_counter_names_cover_every_electric_counter_once():
    names = [name for side in electric.ENERGY_NAMES for name in side] + ["ampere_hours"]
    assert sorted(names) == sorted(ELECTRIC_COUNTERS) and len(set(names)) == len(names)


def expected_increments(reading: Reading, dt_s: float) -> dict[str, float]:
    """What each counter must grow by when this reading is shown for dt_s (written out plainly)."""
    grow = dict.fromkeys(ELECTRIC_COUNTERS, 0.0)
    sides = [(f"_{phase}", reading.powers_w[i], reading.reactive_var[i], reading.apparent_va[i])
             for i, phase in enumerate(PHASES)]
    sides.append(("", sum(reading.powers_w), sum(reading.reactive_var), sum(reading.apparent_va)))
    for suffix, power_w, var, va in sides:
        grow["apparent_energy" + suffix] += va * dt_s * KWH_PER_WS
        if power_w >= 0.0:
            grow["energy_import" + suffix] += power_w * dt_s * KWH_PER_WS
            grow["apparent_energy_import" + suffix] += va * dt_s * KWH_PER_WS
        else:
            grow["energy_export" + suffix] += -power_w * dt_s * KWH_PER_WS
            grow["apparent_energy_export" + suffix] += va * dt_s * KWH_PER_WS
        if var >= 0.0:
            grow["reactive_energy_import" + suffix] += var * dt_s * KWH_PER_WS
        else:
            grow["reactive_energy_export" + suffix] += -var * dt_s * KWH_PER_WS
        quadrant = {(True, True): 1, (False, True): 2, (False, False): 3, (True, False): 4}[
            (power_w >= 0.0, var >= 0.0)]
        grow[f"reactive_energy_q{quadrant}{suffix}"] += abs(var) * dt_s * KWH_PER_WS
    grow["ampere_hours"] += sum(reading.currents_a) * dt_s / 3600.0
    return grow


@pytest.mark.parametrize("pv_kwp", (0.0, 10.0))
@pytest.mark.parametrize("dt_s", (1.0, 60.0, 3600.0))
def test_every_counter_is_the_integral_of_the_shown_readings(dt_s, pv_kwp):
    meter = make_meter("electric", random.Random(3), 6 * 3600.0, pv_kwp=pv_kwp)
    assert set(meter.counters) == set(ELECTRIC_COUNTERS)
    assert all(value == 0.0 for value in meter.counters.values())  # a new meter starts from 0
    expected = dict.fromkeys(ELECTRIC_COUNTERS, 0.0)
    for _ in range(int(2 * DAY_S / dt_s) if dt_s > 1.0 else 500):
        shown = meter.reading
        before = dict(meter.counters)
        meter.step(dt_s)
        for name, grow in expected_increments(shown, dt_s).items():
            expected[name] += grow
        assert all(meter.counters[name] >= before[name] for name in ELECTRIC_COUNTERS)  # never decrease
    for name in ELECTRIC_COUNTERS:
        assert meter.counters[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name
    assert meter.total == meter.counters["energy_import"] == meter.reading.total


def test_integrate_then_step_counts_each_second_once():
    # the updater's reset path: part of the tick integrated early, the rest by step()
    split = make_meter("electric", random.Random(9), NOON_S, pv_kwp=5.0)
    whole = make_meter("electric", random.Random(9), NOON_S, pv_kwp=5.0)
    for _ in range(50):
        split.integrate(0.25)
        split.integrate(0.5)
        split.step(2.0, integrated_s=0.75)
        whole.step(2.0)
    assert split.counters == pytest.approx(whole.counters, rel=1e-12)
    assert split.demand.values == pytest.approx(whole.demand.values, rel=1e-9)


def test_without_panels_the_totals_are_the_phase_sums():
    meter = make_meter("electric", random.Random(4), 0.0)
    for _ in range(2 * 288):
        meter.step(300.0)
    counters = meter.counters
    for stem in ("energy_import", "reactive_energy_import", "apparent_energy", "apparent_energy_import",
                 "reactive_energy_q1"):
        phases = sum(counters[f"{stem}_{phase}"] for phase in PHASES)
        assert counters[stem] == pytest.approx(phases, rel=1e-9), stem
        assert counters[stem] > 0.0
    for name in ELECTRIC_COUNTERS:  # nothing exported, nothing capacitive
        if "export" in name or name.startswith(("reactive_energy_q2", "reactive_energy_q3",
                                                  "reactive_energy_q4")):
            assert counters[name] == 0.0, name
    assert counters["apparent_energy"] >= counters["energy_import"]
    assert counters["ampere_hours"] > 0.0


def test_with_panels_an_unbalanced_house_imports_and_exports_at_once():
    found = False
    for seed in range(10):
        meter = make_meter("electric", random.Random(seed), 10 * 3600.0, pv_kwp=6.0)
        for _ in range(6 * 60):
            reading = meter.step(60.0)
            powers = reading.powers_w
            found = found or (max(powers) > 0.0 > min(powers))
        phases = sum(meter.counters[f"energy_export_{phase}"] for phase in PHASES)
        assert meter.counters["energy_export"] <= phases + 1e-12  # net across phases, as grids bill
    assert found


def sunny(meter: ElectricMeter) -> None:
    """Hold the weather clear: the cloud factor stays 1."""
    for drift in (meter.panels._weather, meter.panels._clouds):
        value = 1.0 if drift is meter.panels._weather else 0.0
        drift.mean = drift.low = drift.high = drift.value = value


@pytest.mark.parametrize("seed", range(5))
def test_panels_export_around_noon_and_nothing_at_night(seed):
    meter = make_meter("electric", random.Random(seed), 21 * 3600.0, pv_kwp=10.0)
    sunny(meter)
    night = [meter.step(60.0) for _ in range(8 * 60)]  # 21:00 to 05:00
    assert all(reading.pv_w == 0.0 for reading in night)
    assert meter.counters["energy_export"] == 0.0
    assert all(0.8 <= pf <= 1.0 for reading in night for pf in reading.power_factors)
    for _ in range(7 * 60):  # to 12:00
        meter.step(60.0)
    export_before = meter.counters["energy_export"]
    midday = [meter.step(60.0) for _ in range(2 * 60)]  # 12:00 to 14:00
    assert all(reading.pv_w > 7000.0 for reading in midday)  # 0.8 x 10 kWp near the peak
    exporting = [reading for reading in midday if sum(reading.powers_w) < 0.0]
    assert len(exporting) > len(midday) / 2
    assert all(reading.power_factor < 0.0 and reading.rate == 0.0 for reading in exporting)
    assert all(pf < 0.0 for reading in exporting for pf, power_w in
               zip(reading.power_factors, reading.powers_w) if power_w < 0.0)
    assert meter.counters["energy_export"] > export_before
    assert meter.counters["apparent_energy_export"] > 0.0 and meter.counters["reactive_energy_q2"] > 0.0


class FixedGeneration:
    """Stands in for the panels: always generation_w."""

    def __init__(self, generation_w: float) -> None:
        self.generation_w = generation_w

    def step(self, dt_s: float, time_of_day_s: float) -> float:
        return self.generation_w


def quiet_house(meter: ElectricMeter, standby_w: float) -> None:
    """Every appliance off for good and a steady standby load of standby_w per phase."""
    for appliance in meter._appliances:
        appliance.on = False
        appliance.mean_off_s = math.inf
    for drift in meter._standby:
        drift.mean = drift.low = drift.high = drift.value = standby_w


@pytest.mark.parametrize("generation_w", (0.0, 1.0, 178.5, 179.9, 180.0, 180.1, 181.5, 200.0, 1e4))
def test_no_nan_when_the_net_power_is_zero(monkeypatch, generation_w):
    monkeypatch.setattr(electric, "STANDBY_VAR_PER_W", 0.0)  # no reactive load: S can reach 0
    meter = make_meter("electric", random.Random(1), NOON_S, pv_kwp=1.0)
    quiet_house(meter, 60.0)
    meter.panels = FixedGeneration(generation_w)
    for _ in range(20):
        reading = meter.step(1.0)
        check_identities(reading)
        assert all(math.isfinite(value) for value in meter.counters.values())
        assert all(math.isfinite(value) for value in meter.demand.values.values())
    if generation_w == 180.0:  # exactly the standby of 3 x 60 W: nothing flows
        assert reading.currents_a == (0.0, 0.0, 0.0) and reading.apparent_va == (0.0, 0.0, 0.0)
        assert reading.power_factors == (1.0, 1.0, 1.0) and reading.power_factor == 1.0


def run(seed: int, pv_kwp: float, steps=STEPS_S * 20) -> tuple[list, dict, dict]:
    meter = make_meter("electric", random.Random(seed), NOON_S, pv_kwp=pv_kwp)
    readings = [meter.reading] + [meter.step(dt_s) for dt_s in steps]
    return readings, dict(meter.counters), meter.demand.values


@pytest.mark.parametrize("pv_kwp", (0.0, 7.5))
def test_same_seed_same_readings_different_seed_different(pv_kwp):
    assert run(21, pv_kwp) == run(21, pv_kwp)
    assert run(21, pv_kwp)[0] != run(22, pv_kwp)[0]


def test_a_meter_without_panels_draws_what_it_always_drew():
    default_rng, explicit_rng = random.Random(5), random.Random(5)
    default = ElectricMeter(default_rng, NOON_S)
    explicit = make_meter("electric", explicit_rng, NOON_S, pv_kwp=0.0)
    assert default.panels is None and explicit.panels is None
    assert [default.step(60.0) for _ in range(50)] == [explicit.step(60.0) for _ in range(50)]
    assert default_rng.getstate() == explicit_rng.getstate()


def test_panels_take_their_seed_after_the_house_is_drawn():
    plain = ElectricMeter(random.Random(5), NOON_S)
    panelled = ElectricMeter(random.Random(5), NOON_S, pv_kwp=4.0)

    def house(meter):
        drifts = [*meter._voltages, meter._frequency, *meter._standby]
        return [drift.value for drift in drifts], [appliance.on for appliance in meter._appliances]

    assert house(plain) == house(panelled)  # the same house, with panels on the roof


@pytest.mark.parametrize("seed", range(4))
def test_realistic_per_phase_power_factors(seed):
    meter = make_meter("electric", random.Random(seed), 0.0)
    readings = [meter.step(120.0) for _ in range(720)]
    factors = {pf for reading in readings for pf in reading.power_factors}
    assert len(factors) > 20  # each phase follows its own loads
    assert any(len(set(reading.power_factors)) > 1 for reading in readings)


@pytest.mark.parametrize("pv_kwp", (-1.0, 40.5, math.nan, math.inf))
def test_panels_outside_0_to_40_kwp_are_refused(pv_kwp):
    with pytest.raises(ValueError):
        make_meter("electric", random.Random(0), NOON_S, pv_kwp=pv_kwp)


@pytest.mark.parametrize("meter_type", ("water", "gas"))
def test_only_an_electric_meter_has_panels(meter_type):
    with pytest.raises(ValueError):
        make_meter(meter_type, random.Random(0), NOON_S, pv_kwp=5.0)
    meter = make_meter(meter_type, random.Random(0), NOON_S, pv_kwp=0.0)
    assert meter.demand is None
    assert meter.reading.powers_w == (0.0, 0.0, 0.0) and meter.reading.pv_w == 0.0


def test_in_band_without_panels_checks_every_phase_power_factor():
    reading = make_meter("electric", random.Random(0), NOON_S).reading
    fields = dict(reading.__dict__)
    low_pf = Reading(**dict(fields, power_factors=(0.95, 0.79, 0.9)))
    exporting = Reading(**dict(fields, power_factors=(-0.95, -0.3, 0.9)))
    assert in_band(reading)
    assert not in_band(low_pf) and not in_band(exporting)
    assert in_band(exporting, panels=True)  # with panels |PF| may be anything
    high_v = Reading(**dict(fields, voltages_v=(230.0, 253.1, 230.0)))
    assert not in_band(high_v) and not in_band(high_v, panels=True)


def test_fast_reading_equals_the_dataclass():
    for meter_type in ("electric", "water", "gas"):
        reading = make_meter(meter_type, random.Random(2), NOON_S).step(60.0)
        fields = {name: getattr(reading, name) for name in Reading.__dataclass_fields__}
        assert reading == Reading(**fields) and hash(reading) == hash(Reading(**fields))
    assert fast_reading(total=1.0, rate=2.0) == Reading(total=1.0, rate=2.0)  # the rest: defaults
    with pytest.raises(AttributeError):
        fast_reading(total=1.0, rate=2.0).total = 3.0  # still frozen


@pytest.mark.parametrize("currents, expected", [
    ((10.0, 10.0, 10.0), 0.0), ((10.0, 0.0, 0.0), 10.0), ((10.0, 10.0, 0.0), 10.0),
    ((0.0, 0.0, 0.0), 0.0), ((16.0, 0.0, 8.0), math.sqrt(16.0 ** 2 + 8.0 ** 2 - 16.0 * 8.0)),
])
def test_neutral_current(currents, expected):
    assert neutral_current(*currents) == pytest.approx(expected, abs=1e-12)


# --- totals, resets, state values ---

def run_meter(meter_type: str = "electric", seed: int = 6, pv_kwp: float = 0.0, hours: int = 30):
    meter = make_meter(meter_type, random.Random(seed), 9 * 3600.0, pv_kwp=pv_kwp)
    for _ in range(hours * 12):
        meter.step(300.0)
    return meter


def test_set_total_splits_the_import_over_the_phases():
    meter = run_meter()
    meter.set_total(300.0)
    assert meter.total == meter.reading.total == meter.counters["energy_import"] == 300.0
    assert [meter.counters[f"energy_import_{phase}"] for phase in PHASES] == [100.0] * 3
    meter.counters.update(energy_import_l1=1.0, energy_import_l2=3.0, energy_import_l3=0.0)
    meter.set_total(40.0, proportional=True)
    assert [meter.counters[f"energy_import_{phase}"] for phase in PHASES] == [10.0, 30.0, 0.0]
    with pytest.raises(ValueError):
        meter.set_total(math.nan)


def test_reset_total_zeroes_the_import_only():
    meter = run_meter(pv_kwp=8.0)
    others = {name: value for name, value in meter.counters.items() if not name.startswith("energy_import")}
    assert meter.counters["energy_export"] > 0.0
    reading = meter.reset_total()
    assert reading.total == meter.total == 0.0
    assert all(meter.counters[f"energy_import_{phase}"] == 0.0 for phase in PHASES)
    assert {name: meter.counters[name] for name in others} == others


def test_reset_counters_zeroes_every_counter_and_restarts_the_maxima():
    meter = run_meter()
    meter.reset_counters()
    assert all(value == 0.0 for value in meter.counters.values())
    values = meter.demand.values
    assert all(values["max_" + name] == values[name] for name in values if not name.startswith("max_"))


def test_total_property_sets_the_import_counter():
    meter = make_meter("electric", random.Random(0))
    meter.total = 12.5
    assert meter.counters["energy_import"] == 12.5
    water = make_meter("water", random.Random(0))
    water.total = 2.0
    assert water.counters == {"volume_total": 2.0}


@pytest.mark.parametrize("pv_kwp", (0.0, 8.0))
def test_state_values_round_trip(pv_kwp):
    meter = run_meter(pv_kwp=pv_kwp)
    saved = meter.state_values()
    assert set(saved) == set(ELECTRIC_COUNTERS) | set(MAX_DEMANDS)
    assert saved["max_demand_power_import"] > 0.0
    fresh = make_meter("electric", random.Random(99), 3 * 3600.0, pv_kwp=pv_kwp)
    reading = fresh.restore_values(saved)
    assert reading.total == saved["energy_import"] == fresh.total
    restored = fresh.state_values()
    for name in ELECTRIC_COUNTERS:
        assert restored[name] == saved[name], name
    for name in MAX_DEMANDS:  # a maximum never falls below the present demand
        assert restored[name] == max(saved[name], fresh.demand.values[name[len("max_"):]])
    meter.restore_values(restored)
    assert meter.state_values() == restored


def test_restore_values_ignores_what_a_counter_cannot_hold():
    meter = run_meter(hours=2)
    before = meter.state_values()
    meter.restore_values({"energy_import": -1.0, "energy_export": math.nan, "apparent_energy": math.inf,
                          "ampere_hours": True, "reactive_energy_import": "3", "unknown": 5.0,
                          "max_demand_apparent": -2.0, "volume_total": 4.0})
    assert meter.state_values() == before
    meter.restore_values({"energy_export": 7, "max_demand_apparent": 1e6})
    assert meter.counters["energy_export"] == 7.0 and meter.demand.values["max_demand_apparent"] == 1e6


@pytest.mark.parametrize("meter_type", ("water", "gas"))
def test_flow_meter_counters(meter_type):
    meter = make_meter(meter_type, random.Random(3), NOON_S)
    assert meter.counters == {"volume_total": 0.0} and tuple(meter.counters) == FLOW_COUNTERS
    expected = 0.0
    for _ in range(500):
        shown = meter.reading
        meter.step(60.0)
        expected += shown.flow_l_min * 60.0 / 60.0 / 1000.0
    assert meter.total == meter.counters["volume_total"] == pytest.approx(expected, rel=1e-9)
    assert meter.state_values() == {"volume_total": meter.total}
    fresh = make_meter(meter_type, random.Random(4), NOON_S)
    fresh.restore_values({"volume_total": 5.5, "energy_import": 3.0, "max_demand_apparent": 1.0})
    assert fresh.state_values() == {"volume_total": 5.5} and fresh.reading.total == 5.5
    fresh.reset_total()
    assert fresh.total == 0.0
