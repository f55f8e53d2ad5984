"""Meter: what every meter model shares: the counters, the time of day and the step rule.

A meter is stepped by simulated seconds. Each step first integrates the readings it
showed since the previous step into its counters (so every counter is exactly the
integral of what was shown), then draws the new instantaneous readings. Models take a
random.Random and the simulated time of day; they never read a clock.

A step draws the model's raw values (_draw: every random draw) and then derives the
shown Reading from them (_derive: deterministic). Readings pinned at run time
(Meter.overrides, set by Meter.pin) replace raw values in the derivation only, so a pin
changes what is shown and integrated but never the model's random sequence.
"""
from __future__ import annotations

import math
import random
from collections.abc import Mapping

from .demand import Demand
from .processes import DAY_S, S_PER_H
from .quantities import MAX_DEMANDS
from .reading import Reading


def finite_non_negative(value) -> bool:
    """A value a counter may hold: a finite real number >= 0."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0.0)


def split_total(counters: dict[str, float], total_counter: str, parts: tuple[str, ...], total: float,
                proportional: bool = False) -> None:
    """Meter.set_total on a meter's counters: the total, and the parts (the phases' import
    energy) total / len(parts) each, or the total split in their present proportions."""
    total = float(total)
    if not math.isfinite(total):
        raise ValueError(f"a total must be a finite number, not {total!r}")
    total = max(total, 0.0)
    if parts:
        present = [counters[name] for name in parts]
        whole = sum(present)
        shares = ([value / whole for value in present] if proportional and whole > 0.0
                  else [1.0 / len(parts)] * len(parts))
        for name, share in zip(parts, shares):
            counters[name] = total * share
    counters[total_counter] = total


def restore_counters(counters: dict[str, float], values: Mapping[str, float]) -> dict[str, float]:
    """Meter.restore_values on a meter's counters: the valid values (finite, >= 0) by name, of
    which those naming a counter are stored."""
    valid = {name: float(value) for name, value in values.items() if finite_non_negative(value)}
    for name, value in valid.items():
        if name in counters:
            counters[name] = value
    return valid


def fast_reading(**fields) -> Reading:
    """Reading(**fields) without the frozen dataclass's __init__, whose object.__setattr__ per
    field is most of a tick's cost of building it; fields left out read their class defaults."""
    reading = object.__new__(Reading)
    reading.__dict__.update(fields)
    return reading


class Meter:
    """What every meter shares: the counters, the time of day and the step rule."""

    meter_type = ""
    counter_names: tuple[str, ...] = ()
    total_counter = ""  # the counter the seed map's total shows
    total_parts: tuple[str, ...] = ()  # counters that set_total splits the total over
    demand: Demand | None = None
    _raw: tuple = ()  # the model's values of the last step, before any pin (set by _draw)
    lazy = False  # a view of one row of columns (model.columnmeter) rather than a model of its own

    def __init__(self, rng: random.Random, time_of_day_s: float = 12 * S_PER_H) -> None:
        self._rng = rng
        self.time_of_day_s = time_of_day_s % DAY_S
        # kWh, kvarh, kVAh, Ah or m3, never rounded: registers round, the meter does not
        self.counters: dict[str, float] = dict.fromkeys(self.counter_names, 0.0)
        # readings pinned at run time, name (pins.PINNABLE) -> value; validated by pins.merged
        self.overrides: dict[str, float] = {}
        self.reading = self._sample(0.0)

    @property
    def total(self) -> float:
        """The seed map's total: import energy (kWh) or volume (m3)."""
        return self.counters[self.total_counter]

    @total.setter
    def total(self, total: float) -> None:
        self.counters[self.total_counter] = total

    def step(self, dt_s: float, integrated_s: float = 0.0) -> Reading:
        """Advance dt_s simulated seconds: integrate the shown readings, then draw new ones.

        integrated_s: the part of dt_s that integrate() already added to the counters.
        """
        dt_s = max(dt_s, 0.0)
        self.integrate(dt_s - integrated_s)
        self.time_of_day_s = (self.time_of_day_s + dt_s) % DAY_S
        self.reading = self._sample(dt_s)
        return self.reading

    def pin(self, overrides: Mapping[str, float]) -> Reading:
        """Replace every pin with these (name -> value; None releases) and show them at once.

        The reading is derived again from the last raw values: nothing is drawn and nothing is
        integrated, so the caller integrate()s the time elapsed under the old pins first. The
        values are not checked here: pins.merged validates them against the meter type.
        """
        self.overrides = {name: float(value) for name, value in overrides.items() if value is not None}
        self.reading = self._derive()
        return self.reading

    def integrate(self, dt_s: float) -> None:
        """Add dt_s simulated seconds of the shown readings to the counters, drawing nothing new."""
        if dt_s > 0.0:
            self._accumulate(dt_s)

    def reset_total(self) -> Reading:
        """The total restarts from 0 (electric: also the phases' import energy); readings stay."""
        for name in (self.total_counter, *self.total_parts):
            self.counters[name] = 0.0
        self.reading = self._with_total(self.reading)
        return self.reading

    def set_total(self, total: float, proportional: bool = False) -> Reading:
        """Resume from a saved total (kWh or m3); below 0 counts as 0.

        Electric: the phases' import energy becomes total / 3 each, or with proportional
        the total split in the phases' present proportions (equally while they are all 0).
        """
        split_total(self.counters, self.total_counter, self.total_parts, total, proportional)
        self.reading = self._with_total(self.reading)
        return self.reading

    def reset_counters(self) -> Reading:
        """Every counter restarts from 0 and the maximum demands from the present demands."""
        for name in self.counters:
            self.counters[name] = 0.0
        if self.demand is not None:
            self.demand.clear_maxima()
        self.reading = self._with_total(self.reading)
        return self.reading

    def state_values(self) -> dict[str, float]:
        """Every counter and every maximum demand by name, for the state file."""
        values = dict(self.counters)
        if self.demand is not None:
            demands = self.demand.values
            values.update((name, demands[name]) for name in MAX_DEMANDS)
        return values

    def restore_values(self, values: Mapping[str, float]) -> Reading:
        """The inverse of state_values(): unknown names, values below 0 and non-finite ones are
        ignored; names not given keep their values."""
        valid = restore_counters(self.counters, values)
        if self.demand is not None:
            self.demand.restore_maxima(valid)
        self.reading = self._with_total(self.reading)
        return self.reading

    def _with_total(self, reading: Reading) -> Reading:
        """The reading with the total as it is now; every other field kept, also those only some
        meters' readings carry (an inverter's site)."""
        return fast_reading(**dict(reading.__dict__, total=self.total))

    def _accumulate(self, dt_s: float) -> None:
        raise NotImplementedError

    def _sample(self, dt_s: float) -> Reading:
        """Advance the model dt_s simulated seconds and derive the reading it shows."""
        self._draw(dt_s)
        return self._derive()

    def _draw(self, dt_s: float) -> None:
        """Every random draw of a step: the model's raw values into self._raw."""
        raise NotImplementedError

    def _derive(self) -> Reading:
        """The shown reading from self._raw and self.overrides, drawing nothing."""
        raise NotImplementedError

