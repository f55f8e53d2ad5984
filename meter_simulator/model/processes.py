"""Random processes the meter models are built from, exact for any time step.

Every step takes simulated seconds and an injected random.Random, so a step of an
hour is as correct as sixty steps of a minute and the same seed gives the same
sequence.
"""
from __future__ import annotations

import math
import random
from typing import NamedTuple

S_PER_MIN = 60.0
S_PER_H = 3600.0
DAY_S = 86400.0


def clamp(value: float, low: float, high: float) -> float:
    """value limited to low..high."""
    return min(max(value, low), high)


class Drift:
    """Ornstein-Uhlenbeck drift around a mean: slow, mean-reverting, never runs away."""

    def __init__(self, mean: float, sigma: float, tau_s: float, rng: random.Random,
                 low: float, high: float) -> None:
        self.mean, self.sigma, self.tau_s = mean, sigma, tau_s
        self.low, self.high = low, high
        self._rng = rng
        self.value = clamp(rng.gauss(mean, sigma), low, high)

    def step(self, dt_s: float) -> float:
        """Advance dt_s simulated seconds (exact discretisation) and return the value."""
        decay = math.exp(-dt_s / self.tau_s)
        spread = self.sigma * math.sqrt(1.0 - decay * decay)
        value = self.mean + (self.value - self.mean) * decay + spread * self._rng.gauss(0.0, 1.0)
        self.value = clamp(value, self.low, self.high)
        return self.value


class DriftSpec(NamedTuple):
    """A Drift's parameters: a model's one definition of a drifting quantity, which its scalar
    meters (drift()) and its columns of meters (model.columns) both step."""

    mean: float
    sigma: float
    tau_s: float
    low: float
    high: float

    def drift(self, rng: random.Random) -> Drift:
        return Drift(self.mean, self.sigma, self.tau_s, rng, self.low, self.high)


class OnOff:
    """An appliance or tap switching on and off: a two-state Markov chain.

    On periods last mean_on_s on average; off periods mean_off_s / activity, so a
    busier time of day switches it on more often.
    """

    def __init__(self, mean_on_s: float, mean_off_s: float, rng: random.Random) -> None:
        self.mean_on_s, self.mean_off_s = mean_on_s, mean_off_s
        self._rng = rng
        self.on = rng.random() < mean_on_s / (mean_on_s + mean_off_s)

    def step(self, dt_s: float, activity: float = 1.0) -> bool:
        """Advance dt_s simulated seconds; True when this step switched it on."""
        rate_on = max(activity, 0.0) / self.mean_off_s
        rate_off = 1.0 / self.mean_on_s
        total = rate_on + rate_off
        stationary_on = rate_on / total
        decay = math.exp(-total * dt_s)
        p_on = stationary_on + ((1.0 if self.on else 0.0) - stationary_on) * decay
        was_on = self.on
        self.on = self._rng.random() < p_on
        return self.on and not was_on


def household_activity(time_of_day_s: float) -> float:
    """How busy a household is at a time of day: ~0.15 at night, peaks at 07:30 and 19:30."""
    hour = (time_of_day_s % DAY_S) / 3600.0
    morning = math.exp(-((hour - 7.5) / 1.2) ** 2)
    evening = math.exp(-((hour - 19.5) / 2.0) ** 2)
    daytime = 0.5 if 9.0 <= hour <= 17.0 else 0.0
    return 0.15 + 1.6 * morning + 1.8 * evening + daytime
