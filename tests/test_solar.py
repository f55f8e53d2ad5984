"""Solar panels: a clear-sky bell from 06:00 to 20:00 peaking at 13:00, times slowly drifting clouds."""
from __future__ import annotations

import math
import random

import pytest

from meter_simulator.model import solar
from meter_simulator.model.solar import PEAK_PER_KWP, SolarPanels, clear_sky

H = 3600.0
PEAK_H = 13.0  # midway between sunrise and sunset


def test_clear_sky_bell():
    assert (solar.SUNRISE_H, solar.SUNSET_H) == (6.0, 20.0)
    assert clear_sky(PEAK_H * H) == pytest.approx(1.0)
    for hour in (0.0, 3.0, 5.99, 6.0, 20.0, 20.5, 23.99):
        assert clear_sky(hour * H) == 0.0
    for offset in (0.5, 2.0, 4.5, 6.9):  # symmetric around the peak
        assert clear_sky((PEAK_H - offset) * H) == pytest.approx(clear_sky((PEAK_H + offset) * H))
    hours = [6.0 + i / 60.0 for i in range(14 * 60 + 1)]
    shape = [clear_sky(hour * H) for hour in hours]
    morning, afternoon = shape[:7 * 60 + 1], shape[7 * 60:]
    assert all(a < b for a, b in zip(morning, morning[1:]))  # rises smoothly to the peak
    assert all(a > b for a, b in zip(afternoon, afternoon[1:]))
    assert max(abs(a - b) for a, b in zip(shape, shape[1:])) < 0.01  # no jumps minute to minute
    assert clear_sky(13 * H + 86400.0) == clear_sky(13 * H)  # daily


@pytest.mark.parametrize("dt_s", (1.0, 60.0, 3600.0, 1e6))
@pytest.mark.parametrize("seed", range(4))
def test_generation_and_clouds_stay_in_their_ranges(seed, dt_s):
    panels = SolarPanels(10.0, random.Random(seed))
    time_s = 0.0
    for _ in range(400):
        time_s = (time_s + dt_s) % 86400.0
        generation_w = panels.step(dt_s, time_s)
        assert solar.CLOUD_MIN <= panels.cloud_factor <= solar.CLOUD_MAX
        assert 0.0 <= generation_w <= 10.0 * PEAK_PER_KWP * 1000.0
        clear_w = 10.0 * PEAK_PER_KWP * 1000.0 * clear_sky(time_s)
        assert generation_w == pytest.approx(clear_w * panels.cloud_factor)
        assert generation_w >= solar.CLOUD_MIN * clear_w - 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_clouds_drift_slowly_over_minutes_to_hours(seed):
    panels = SolarPanels(5.0, random.Random(seed))
    factors = []
    for _ in range(3 * 24 * 60):  # three days in minutes
        panels.step(60.0, 12 * H)
        factors.append(panels.cloud_factor)
    def mean_change(minutes: int) -> float:
        changes = [abs(a - b) for a, b in zip(factors, factors[minutes:])]
        return sum(changes) / len(changes)

    assert mean_change(1) < 0.05  # a minute changes little
    assert mean_change(1) < 0.25 * mean_change(180)  # hours change much more
    assert max(factors) - min(factors) > 0.4  # from overcast to clear over the days
    assert len(set(factors)) > 100


def test_same_seed_same_generation():
    def day(seed):
        panels = SolarPanels(3.0, random.Random(seed))
        return [panels.step(300.0, i * 300.0) for i in range(288)]

    assert day(4) == day(4)
    assert day(4) != day(5)
    assert max(day(4)) > 0.0 and day(4)[:60] == [0.0] * 60  # nothing before 05:00


def test_generation_scales_with_the_peak_power():
    small, large = SolarPanels(2.0, random.Random(1)), SolarPanels(20.0, random.Random(1))
    assert large.step(60.0, 13 * H) == pytest.approx(10.0 * small.step(60.0, 13 * H))
    assert small.generation_w(13 * H) == pytest.approx(2000.0 * PEAK_PER_KWP * small.cloud_factor)


@pytest.mark.parametrize("kwp", (0.0, -1.0, math.nan, math.inf))
def test_panels_need_a_positive_peak_power(kwp):
    with pytest.raises(ValueError):
        SolarPanels(kwp, random.Random(0))
