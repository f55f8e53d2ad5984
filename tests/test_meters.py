"""The meter models (contract section 6), checked through the registers they encode to.

Every meter type, several seeds, steps from 50 ms to eleven days: readings in their
bands, P = sum(V*I*PF), flow in both places, the total as the exact left Riemann sum
of the shown rate, reset, set, roll-over, reproducibility and realistic magnitudes.
"""
from __future__ import annotations

import random

import pytest

from meter_simulator.model.bands import BANDS
from meter_simulator.model.flow import GasMeter
from meter_simulator.model.meters import METER_TYPES, make_meter
from support import METER_TYPE_CODES, TOTAL_SCALE, seed_image, total_counts, words_u32

STEPS_S = (0.05, 1.0, 60.0, 3600.0, 1e6)
SEEDS = range(4)
# the statistical tests that simulate days or weeks: seed 0 in the fast part, the other seeds
# (the same property for other meters) marked slow
SEEDS_0_FAST = [0, *(pytest.param(seed, marks=pytest.mark.slow) for seed in SEEDS[1:])]
NOON_S = 12 * 3600.0
# physical units of the total per (rate unit * s): kWh per W*s, m3 per (L/min)*s
TOTAL_PER_RATE_S = {"electric": 1 / 3600.0 / 1000.0, "water": 1 / 60.0 / 1000.0,
                    "gas": 1 / 60.0 / 1000.0}


def decode(words: list[int]) -> dict:
    """Physical values as a client reads them from the registers."""
    return {
        "total_counts": words_u32(words[0], words[1]),
        "rate": words_u32(words[2], words[3]) / 10.0,
        "voltages_v": [w / 10.0 for w in words[10:13]],
        "currents_a": [w / 100.0 for w in words[13:16]],
        "frequency_hz": words[16] / 100.0,
        "power_factor": words[17] / 1000.0,
        "flow_l_min": words[20] / 10.0,
        "temperature_c": words[21] / 10.0 - 50.0,
        "pressure": words[22] / 100.0,
    }


def within(value: float, band: tuple[float, float]) -> bool:
    return band[0] <= value <= band[1]


def check_bands(meter_type: str, shown: dict) -> None:
    bands = BANDS[meter_type]
    if meter_type == "electric":
        assert all(within(v, (207.0, 253.0)) for v in shown["voltages_v"]), shown
        assert all(within(i, (0.0, 63.0)) for i in shown["currents_a"]), shown
        assert within(shown["frequency_hz"], (49.5, 50.5)), shown
        assert within(shown["power_factor"], (0.8, 1.0)), shown
    else:
        flow_band, temperature_band, pressure_band = {
            "water": ((0.0, 40.0), (0.0, 30.0), (1.0, 8.0)),
            "gas": ((0.0, 100.0), (-20.0, 40.0), (17.0, 25.0)),
        }[meter_type]
        assert (flow_band, temperature_band, pressure_band) == (
            bands["flow_l_min"], bands["temperature_c"], bands["pressure"])  # the contract's table
        assert within(shown["flow_l_min"], flow_band), shown
        assert within(shown["temperature_c"], temperature_band), shown
        assert within(shown["pressure"], pressure_band), shown


def check_consistent(meter_type: str, shown: dict) -> None:
    if meter_type == "electric":
        phases_w = sum(v * i * shown["power_factor"]
                       for v, i in zip(shown["voltages_v"], shown["currents_a"]))
        assert abs(shown["rate"] - phases_w) <= max(0.01 * phases_w, 5.0), shown
    else:
        assert shown["rate"] == shown["flow_l_min"], shown


@pytest.mark.parametrize("dt_s", STEPS_S)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("meter_type", METER_TYPES)
def test_every_tick_in_band_consistent_and_exactly_integrated(meter_type, seed, dt_s):
    rng = random.Random(seed)
    meter = make_meter(meter_type, rng, rng.uniform(0.0, 86400.0))
    per_rate_s = TOTAL_PER_RATE_S[meter_type]
    expected_total = 0.0
    assert meter.total == 0.0  # a new meter starts from 0
    for _ in range(150):
        shown_before = meter.reading
        previous_total = meter.total
        reading = meter.step(dt_s)
        # the rate shown during the tick is what is integrated over it (left Riemann sum)
        expected_total += shown_before.rate * dt_s * per_rate_s
        assert meter.total == pytest.approx(expected_total, rel=1e-9, abs=1e-12)
        assert reading.total == meter.total
        assert meter.total >= previous_total
        assert reading.in_band  # coil 1 stays ON
        shown = decode(seed_image(reading, meter_type, online=True))
        check_bands(meter_type, shown)
        check_consistent(meter_type, shown)


def window_growth(meter_type: str, seed: int, dt_s: float, min_counts: float,
                  max_steps: int) -> tuple[int, float]:
    """(growth of the total register in counts, the shown rate's time integral in counts)
    over a window that starts after a warm-up and runs until min_counts are expected."""
    meter = make_meter(meter_type, random.Random(seed), NOON_S)
    for _ in range(20):
        meter.step(dt_s)
    meter.set_total(987654.32)  # a window that does not start from 0
    counts_per_rate_s = TOTAL_PER_RATE_S[meter_type] * TOTAL_SCALE
    words = seed_image(meter.reading, meter_type, online=True)
    first = decode(words)["total_counts"]
    expected = 0.0
    for _ in range(max_steps):
        shown_rate = decode(words)["rate"]
        words = seed_image(meter.step(dt_s), meter_type, online=True)
        expected += shown_rate * dt_s * counts_per_rate_s
        if expected >= min_counts:
            break
    assert expected >= min_counts, "the window is too short"
    return decode(words)["total_counts"] - first, expected


# Seeds 5 and 8 start near noon with loads running, so the short-step windows fill in
# a few thousand steps; the exact per-step test above covers the other seeds.
@pytest.mark.parametrize("meter_type, dt_s, min_counts", [
    ("electric", 0.05, 10), ("electric", 1.0, 100), ("electric", 60.0, 1000),
    ("electric", 3600.0, 1000), ("electric", 1e6, 1000),
    ("water", 1.0, 10), ("water", 60.0, 50), ("water", 3600.0, 500), ("water", 1e6, 1000),
    ("gas", 1.0, 10), ("gas", 60.0, 100), ("gas", 3600.0, 1000), ("gas", 1e6, 1000),
])
@pytest.mark.parametrize("seed", (5, 8))
def test_window_growth_matches_the_shown_readings(meter_type, dt_s, min_counts, seed):
    growth, expected = window_growth(meter_type, seed, dt_s, min_counts, max_steps=20_000)
    assert abs(growth - expected) <= 0.02 * expected + 1


@pytest.mark.parametrize("meter_type", METER_TYPES)
def test_reset_total_restarts_from_zero(meter_type):
    meter = make_meter(meter_type, random.Random(5), NOON_S)
    for _ in range(50):
        meter.step(3600.0)
    assert meter.total > 0.0
    before = meter.reading
    after = meter.reset_total()
    assert meter.total == 0.0 and after.total == 0.0
    assert after.rate == before.rate  # the instantaneous readings stay
    assert seed_image(after, meter_type, online=True)[0:2] == [0, 0]
    shown_rate = after.rate
    meter.step(60.0)
    assert meter.total == pytest.approx(shown_rate * 60.0 * TOTAL_PER_RATE_S[meter_type])


@pytest.mark.parametrize("meter_type", METER_TYPES)
@pytest.mark.parametrize("saved, total", [(1234.5, 1234.5), (0.0, 0.0), (-3.0, 0.0)])
def test_set_total(meter_type, saved, total):
    meter = make_meter(meter_type, random.Random(6), NOON_S)
    meter.step(60.0)
    assert meter.set_total(saved).total == total
    assert meter.total == total
    shown_rate = meter.reading.rate
    meter.step(10.0)
    assert meter.total == pytest.approx(total + shown_rate * 10.0 * TOTAL_PER_RATE_S[meter_type])


@pytest.mark.parametrize("meter_type", METER_TYPES)
def test_total_register_rolls_over_and_keeps_counting(meter_type):
    meter = make_meter(meter_type, random.Random(2), NOON_S)
    meter.set_total((2**32 - 50) / TOTAL_SCALE)  # 50 counts before the roll-over
    words = seed_image(meter.reading, meter_type, online=True)
    rolled = False
    for _ in range(10_000):
        counts_before = decode(words)["total_counts"]
        words = seed_image(meter.step(3600.0), meter_type, online=True)
        counts = decode(words)["total_counts"]
        assert counts == total_counts(meter.total) % 2**32
        rolled = rolled or counts < counts_before
        if rolled and counts > 0:
            break
    assert rolled and counts < 2**31  # wrapped to a small value, as a real meter's register does


@pytest.mark.parametrize("meter_type", METER_TYPES)
def test_step_of_zero_or_negative_time_adds_nothing(meter_type):
    meter = make_meter(meter_type, random.Random(4), NOON_S)
    meter.step(600.0)
    total = meter.total
    meter.step(0.0)
    meter.step(-5.0)  # a clock that went backwards never takes energy away
    assert meter.total == total


def readings(meter_type: str, seed: int, start_s: float = NOON_S) -> list:
    meter = make_meter(meter_type, random.Random(seed), start_s)
    return [meter.reading] + [meter.step(dt_s) for dt_s in STEPS_S * 30]


@pytest.mark.parametrize("meter_type", METER_TYPES)
def test_same_seed_same_readings_different_seed_different(meter_type):
    assert readings(meter_type, 11) == readings(meter_type, 11)
    assert readings(meter_type, 11) != readings(meter_type, 12)


def test_meter_types_have_their_classes():
    for meter_type in METER_TYPES:
        meter = make_meter(meter_type, random.Random(0))
        assert meter.meter_type == meter_type
        assert seed_image(meter.reading, meter_type, online=True)[101] == METER_TYPE_CODES[meter_type]


@pytest.mark.parametrize("seed", SEEDS)
def test_electric_readings_move_at_almost_every_tick(seed):
    meter = make_meter("electric", random.Random(seed), NOON_S)
    words = seed_image(meter.reading, "electric", online=True)
    moved = 0
    ticks = 600
    for _ in range(ticks):
        new = seed_image(meter.step(1.0), "electric", online=True)
        moved += new[2:18] != words[2:18]
        words = new
    assert moved >= 0.95 * ticks


@pytest.mark.parametrize("seed", SEEDS_0_FAST)
def test_water_flows_in_events_with_zero_between(seed):
    meter = make_meter("water", random.Random(seed), 0.0)
    flows = [meter.step(30.0).flow_l_min for _ in range(2 * 2880)]  # two days
    zero = sum(1 for flow in flows if flow == 0.0)
    starts = sum(1 for before, after in zip(flows, flows[1:]) if before == 0.0 and after > 0.0)
    assert 0.5 * len(flows) < zero < len(flows)  # idle most of the time, but not always
    assert starts >= 10  # uses come as separate events
    assert max(flows) <= 40.0


@pytest.mark.parametrize("seed", SEEDS)
def test_flow_meter_temperature_and_pressure_drift(seed):
    for meter_type in ("water", "gas"):
        meter = make_meter(meter_type, random.Random(seed), NOON_S)
        shown = [meter.step(60.0) for _ in range(200)]
        assert len({r.temperature_c for r in shown}) > 5
        assert len({r.pressure for r in shown}) > 5


def pin_outdoor(meter: GasMeter, outdoor_c: float) -> None:
    """Hold the gas meter's outdoor temperature still, to compare a cold and a warm spell."""
    drift = meter._outdoor_c
    drift.mean = drift.low = drift.high = drift.value = outdoor_c


@pytest.mark.parametrize("seed", SEEDS_0_FAST)
def test_gas_draws_more_when_cold_outside(seed):
    used = {}
    for outdoor_c in (-10.0, 5.0, 20.0):
        meter = make_meter("gas", random.Random(seed), 0.0)
        pin_outdoor(meter, outdoor_c)
        for _ in range(3 * 720):  # three days in two-minute steps
            meter.step(120.0)
        used[outdoor_c] = meter.total
    assert used[-10.0] > used[5.0] > used[20.0]
    assert used[-10.0] > 1.5 * used[20.0]


@pytest.mark.parametrize("seed", SEEDS)
def test_gas_heating_demand_follows_the_cold(seed):
    meter = make_meter("gas", random.Random(seed), 9 * 3600.0)
    pin_outdoor(meter, -10.0)
    cold = meter.heating_demand()
    pin_outdoor(meter, 25.0)
    assert 0.0 <= meter.heating_demand() < cold <= 1.0


@pytest.mark.parametrize("seed", SEEDS_0_FAST)
def test_realistic_household_magnitudes(seed):
    week_s = 7 * 86400.0
    daily = {}
    for meter_type in METER_TYPES:
        meter = make_meter(meter_type, random.Random(seed), 0.0)
        for _ in range(int(week_s / 300.0)):
            meter.step(300.0)
        daily[meter_type] = meter.total / 7.0
    mean_power_w = daily["electric"] * 1000.0 / 24.0
    assert 200.0 <= mean_power_w <= 4000.0  # hundreds of W to a few kW on average
    assert 0.05 <= daily["water"] <= 2.0  # 50 to 2000 L a day
    assert 0.5 <= daily["gas"] <= 40.0  # m3 a day, a house heated by gas in the cold season


def test_realistic_instantaneous_power():
    meter = make_meter("electric", random.Random(1), NOON_S)
    powers = [meter.step(60.0).rate for _ in range(1440)]
    assert min(powers) >= 50.0  # standby never stops
    assert max(powers) <= 3 * 230.0 * 63.0
    assert 200.0 <= sum(powers) / len(powers) <= 5000.0
