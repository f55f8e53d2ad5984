"""The random processes of processes.py for arrays of meters: one element a meter (or a meter's
phase, appliance or fixture), every element stepped at once from one numpy generator, exact for
any time step as the scalar ones are."""
from __future__ import annotations

import math

import numpy as np

from .processes import DriftSpec


class DriftColumns:
    """processes.Drift for an array of values: one spec, one value per element."""

    def __init__(self, spec: DriftSpec, generator: np.random.Generator, shape) -> None:
        self.spec = spec
        self.value = np.clip(generator.normal(spec.mean, spec.sigma, shape), spec.low, spec.high)

    def step(self, dt_s: float, generator: np.random.Generator) -> np.ndarray:
        """Advance dt_s simulated seconds (exact discretisation); the new values."""
        spec = self.spec
        decay = math.exp(-dt_s / spec.tau_s)
        spread = spec.sigma * math.sqrt(1.0 - decay * decay)
        value = generator.standard_normal(self.value.shape)
        value *= spread
        value += spec.mean + (self.value - spec.mean) * decay
        self.value = np.clip(value, spec.low, spec.high, out=value)
        return value


class OnOffColumns:
    """processes.OnOff for count meters with one switch per mean pair (appliances, fixtures)."""

    def __init__(self, mean_on_s, mean_off_s, generator: np.random.Generator, count: int) -> None:
        self.mean_on_s = np.asarray(mean_on_s, dtype=float)
        self.mean_off_s = np.asarray(mean_off_s, dtype=float)
        shape = (count, *self.mean_on_s.shape)
        self.on = generator.random(shape) < self.mean_on_s / (self.mean_on_s + self.mean_off_s)

    def step(self, dt_s: float, activity, generator: np.random.Generator) -> np.ndarray:
        """Advance dt_s simulated seconds at this activity (a number, or one per switch or per
        meter as broadcasting takes it); True where this step switched one on."""
        rate_on = np.maximum(activity, 0.0) / self.mean_off_s
        rate_total = rate_on + 1.0 / self.mean_on_s
        stationary_on = rate_on / rate_total
        p_on = stationary_on + (self.on - stationary_on) * np.exp(-rate_total * dt_s)
        was_on = self.on
        self.on = generator.random(self.on.shape) < p_on
        return self.on & ~was_on
