"""The random processes: Drift stays in its limits and reverts, OnOff keeps its on-fraction at any step."""
from __future__ import annotations

import math
import random

import pytest

from meter_simulator.model.processes import DAY_S, Drift, OnOff, clamp, household_activity

STEPS_S = (0.05, 1.0, 60.0, 3600.0, 1e6)


@pytest.mark.parametrize("dt_s", STEPS_S)
@pytest.mark.parametrize("seed", range(5))
def test_drift_stays_in_its_limits(seed, dt_s):
    # a wide sigma pushes it against both limits often
    drift = Drift(10.0, 20.0, 30.0, random.Random(seed), low=0.0, high=15.0)
    for _ in range(500):
        assert 0.0 <= drift.step(dt_s) <= 15.0


def test_drift_without_noise_decays_exactly_to_its_mean():
    drift = Drift(230.0, 0.0, 300.0, random.Random(1), low=0.0, high=1000.0)
    drift.value = 250.0
    assert drift.step(300.0) == pytest.approx(230.0 + 20.0 * math.exp(-1.0), rel=1e-12)
    # exact for any step: one step of 600 s == two steps of 300 s
    other = Drift(230.0, 0.0, 300.0, random.Random(1), low=0.0, high=1000.0)
    other.value = 250.0
    assert other.step(600.0) == pytest.approx(230.0 + 20.0 * math.exp(-2.0), rel=1e-12)


@pytest.mark.parametrize("dt_s", (1.0, 60.0, 1e6))
def test_drift_reverts_to_its_mean(dt_s):
    rng = random.Random(42)
    drift = Drift(50.0, 2.0, 60.0, rng, low=0.0, high=100.0)
    drift.value = 95.0  # far from the mean
    steps = int(min(50 * 60.0 / dt_s, 2000)) + 1
    for _ in range(steps):
        drift.step(dt_s)
    assert abs(drift.value - 50.0) < 10.0  # 5 sigma
    samples = [drift.step(dt_s) for _ in range(3000)]
    mean = sum(samples) / len(samples)
    assert mean == pytest.approx(50.0, abs=0.5)
    spread = math.sqrt(sum((x - mean) ** 2 for x in samples) / len(samples))
    assert 1.5 < spread < 2.5  # the stationary spread is sigma


def test_drift_step_zero_changes_nothing():
    drift = Drift(5.0, 1.0, 10.0, random.Random(3), low=0.0, high=10.0)
    before = drift.value
    assert drift.step(0.0) == before


def on_fraction(dt_s: float, steps: int, seed: int, mean_on_s: float = 60.0,
                mean_off_s: float = 180.0, activity: float = 1.0) -> float:
    switch = OnOff(mean_on_s, mean_off_s, random.Random(seed))
    on = 0
    for _ in range(steps):
        switch.step(dt_s, activity)
        on += switch.on
    return on / steps


@pytest.mark.parametrize("dt_s, steps, tolerance", [
    (1.0, 100_000, 0.04),  # ~400 on/off cycles
    (10.0, 40_000, 0.03),
    (3600.0, 20_000, 0.02),  # every step an independent draw
    (1e6, 20_000, 0.02),
])
@pytest.mark.parametrize("seed", (1, 2))
def test_on_off_long_run_fraction(dt_s, steps, tolerance, seed):
    assert on_fraction(dt_s, steps, seed) == pytest.approx(60.0 / (60.0 + 180.0), abs=tolerance)


@pytest.mark.parametrize("activity", (0.5, 3.0))
def test_on_off_activity_shortens_the_off_periods(activity):
    # off periods last mean_off_s / activity
    expected = 60.0 / (60.0 + 180.0 / activity)
    assert on_fraction(1e6, 20_000, 5, activity=activity) == pytest.approx(expected, abs=0.02)


def test_on_off_without_activity_stays_off_once_off():
    switch = OnOff(60.0, 180.0, random.Random(8))
    for _ in range(100):
        switch.step(1e6, 0.0)
    assert not switch.on
    assert not any(switch.step(dt_s, 0.0) for dt_s in (1.0, 60.0, 1e6) for _ in range(100))


def test_on_off_reports_switching_on():
    switch = OnOff(60.0, 180.0, random.Random(11))
    for _ in range(2000):
        was_on = switch.on
        switched_on = switch.step(30.0)
        assert switched_on == (switch.on and not was_on)


@pytest.mark.parametrize("make", [
    lambda rng: Drift(10.0, 3.0, 100.0, rng, 0.0, 20.0),
    lambda rng: OnOff(60.0, 180.0, rng),
])
def test_same_seed_same_sequence(make):
    def sequence(seed):
        process = make(random.Random(seed))
        return [process.step(dt_s) for dt_s in (0.05, 1.0, 60.0, 3600.0, 1e6) * 40]

    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)


def test_household_activity_shape():
    by_hour = [household_activity(h * 3600.0) for h in range(24)]
    assert all(0.1 < a < 3.0 for a in by_hour)
    assert by_hour[3] < 0.2  # night
    assert by_hour[7] > 1.0 and by_hour[19] > 1.0 and by_hour[20] > 1.0  # morning and evening peaks
    assert household_activity(7.5 * 3600.0 + DAY_S) == household_activity(7.5 * 3600.0)  # daily


@pytest.mark.parametrize("value, expected", [(-1.0, 0.0), (0.5, 0.5), (2.0, 1.0), (0.0, 0.0), (1.0, 1.0)])
def test_clamp(value, expected):
    assert clamp(value, 0.0, 1.0) == expected
