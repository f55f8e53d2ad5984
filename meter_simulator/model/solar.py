"""Solar panels behind the electric meter: generation in W from the time of day and drifting clouds.

A clear sky gives a smooth bell between sunrise (06:00) and sunset (20:00) that peaks at
13:00 at PEAK_PER_KWP of the panels' peak power; clouds scale it by a factor that drifts
between 0.1 and 1 over minutes to hours of simulated time. The clouds draw from their own
random.Random, so a meter with panels draws nothing more from the meter's generator
than the one seed it is given.
"""
from __future__ import annotations

import math
import random

from .processes import DAY_S, DriftSpec, clamp

SUNRISE_H = 6.0
SUNSET_H = 20.0
PEAK_PER_KWP = 0.8  # kW at the clear-sky peak per kWp: inverter and temperature losses
MAX_KWP = 40.0  # a house's grid connection (contract: --pv-kwp 0 to 40)
BELL_EXPONENT = 1.5  # sin**1.5: a flatter morning and evening than a plain sine
CLOUD_MIN = 0.1
CLOUD_MAX = 1.0
W_PER_KW = 1000.0
# the weather: clear, hazy or overcast for hours; passing clouds on top for tens of minutes
WEATHER_DRIFT = DriftSpec(0.7, 0.3, 4 * 3600.0, CLOUD_MIN, CLOUD_MAX)
CLOUDS_DRIFT = DriftSpec(0.0, 0.15, 45 * 60.0, -0.6, 0.4)


def clear_sky(time_of_day_s: float) -> float:
    """0 at night, 1 at the 13:00 peak: the clear-sky share of the peak generation."""
    hour = (time_of_day_s % DAY_S) / 3600.0
    if hour <= SUNRISE_H or hour >= SUNSET_H:
        return 0.0
    return math.sin(math.pi * (hour - SUNRISE_H) / (SUNSET_H - SUNRISE_H)) ** BELL_EXPONENT


class SolarPanels:
    """A roof of kwp kWp: step(dt_s, time_of_day_s) gives the generation in W."""

    def __init__(self, kwp: float, rng: random.Random) -> None:
        kwp = float(kwp)
        if not (math.isfinite(kwp) and kwp > 0.0):
            raise ValueError(f"solar panels need a positive peak power in kWp, not {kwp!r}")
        self.kwp = kwp
        self._weather = WEATHER_DRIFT.drift(rng)
        self._clouds = CLOUDS_DRIFT.drift(rng)
        self.cloud_factor = self._factor()

    def _factor(self) -> float:
        return clamp(self._weather.value + self._clouds.value, CLOUD_MIN, CLOUD_MAX)

    def step(self, dt_s: float, time_of_day_s: float) -> float:
        """Advance the clouds dt_s simulated seconds; the generation (W) at time_of_day_s."""
        self._weather.step(dt_s)
        self._clouds.step(dt_s)
        self.cloud_factor = self._factor()
        return self.generation_w(time_of_day_s)

    def generation_w(self, time_of_day_s: float) -> float:
        """The generation (W) at time_of_day_s under the present clouds, drawing nothing."""
        return self.kwp * PEAK_PER_KWP * W_PER_KW * clear_sky(time_of_day_s) * self.cloud_factor
