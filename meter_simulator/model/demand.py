"""Demand: the mean of power and currents over the demand period, and the highest such mean.

A sliding window of period_min simulated minutes, kept as BUCKETS sub-interval sums so a
meter holds a few hundred bytes whatever its step: the window is the running sub-interval,
the newest full ones and the share of the oldest that still falls inside the period.
Before one period has passed the mean runs over the time since the (re)start; with a
period of 0 every demand is the instantaneous value. Maxima are the highest demands since
start; a change of period restarts the averaging and keeps them.
"""
from __future__ import annotations

import math
from array import array
from collections.abc import Mapping

from .processes import S_PER_MIN
from .quantities import DEMANDS, MAX_DEMANDS

PERIODS_MIN = (0, 5, 8, 10, 15, 20, 30, 60)  # the SDM630's choices
DEFAULT_PERIOD_MIN = 60
BUCKETS = 10  # sub-intervals per period
# what is averaged, in this order: W imported, W exported, VA, A on L1, L2, L3 and neutral;
# quantities.DEMANDS lists the net power (import - export) first, then one demand per input
INPUTS = 7


def neutral_current(i1_a: float, i2_a: float, i3_a: float) -> float:
    """|I1 + a*I2 + a^2*I3| (a: 120 degrees) for currents in phase with their voltages, in A."""
    square = i1_a * i1_a + i2_a * i2_a + i3_a * i3_a - i1_a * i2_a - i2_a * i3_a - i3_a * i1_a
    return math.sqrt(square) if square > 0.0 else 0.0


class Demand:
    """Demand values of one meter: add() the shown readings over time, update() the values."""

    def __init__(self, period_min: int = DEFAULT_PERIOD_MIN) -> None:
        self._demands = [0.0] * len(DEMANDS)  # in the order of quantities.DEMANDS
        self._maxima = [0.0] * len(DEMANDS)
        self._period_min = self._checked(period_min)
        self._restart()

    @property
    def values(self) -> dict[str, float]:
        """The demands and maximum demands by name (quantities.DEMANDS and MAX_DEMANDS), a copy."""
        values = dict(zip(DEMANDS, self._demands))
        values.update(zip(MAX_DEMANDS, self._maxima))
        return values

    @staticmethod
    def _checked(period_min) -> int:
        if period_min not in PERIODS_MIN or isinstance(period_min, bool):
            raise ValueError(f"demand period {period_min!r} min is not one of {PERIODS_MIN}")
        return int(period_min)

    @property
    def period_min(self) -> int:
        """The demand period in simulated minutes (0: demands are instantaneous)."""
        return self._period_min

    @period_min.setter
    def period_min(self, period_min: int) -> None:
        self._period_min = self._checked(period_min)
        self._restart()

    @property
    def time_min(self) -> float:
        """Simulated minutes elapsed in the current demand period (0 with a period of 0)."""
        return ((self._closed % BUCKETS) * self._bucket_s + self._partial_s) / S_PER_MIN

    def _restart(self) -> None:
        self._bucket_s = self._period_min * S_PER_MIN / BUCKETS
        self._ring = array("d", bytes(8 * BUCKETS * INPUTS))  # full buckets' sums (value * s)
        self._closed = 0  # buckets completed since the restart
        self._partial = [0.0] * INPUTS  # the running bucket's sums
        self._partial_s = 0.0
        self._recent = [0.0] * INPUTS  # sums of the newest BUCKETS - 1 full buckets
        self._oldest = [0.0] * INPUTS  # the full bucket before those, once there are BUCKETS

    def clear_maxima(self) -> None:
        """The maxima restart from the present demands."""
        self._maxima = list(self._demands)

    def zero_maxima(self) -> None:
        """The maxima restart from 0 (an operator's reset); the next update raises them again."""
        self._maxima = [0.0] * len(DEMANDS)

    def restore_maxima(self, maxima: Mapping[str, float]) -> None:
        """Maximum demands by name (MAX_DEMANDS), as saved; never below the present demands,
        names not given keep theirs, unknown names are ignored."""
        for index, name in enumerate(MAX_DEMANDS):
            if name in maxima:
                self._maxima[index] = max(float(maxima[name]), self._demands[index])

    def add(self, dt_s: float, power_w: float, apparent_va: float, current_l1_a: float,
            current_l2_a: float, current_l3_a: float, current_neutral_a: float) -> None:
        """Average in dt_s simulated seconds of these readings (power signed, import positive)."""
        bucket_s = self._bucket_s
        if dt_s <= 0.0 or bucket_s == 0.0:
            return
        import_w = power_w if power_w > 0.0 else 0.0
        export_w = -power_w if power_w < 0.0 else 0.0
        room_s = bucket_s - self._partial_s
        if dt_s < room_s:  # the usual tick: inside the running bucket
            part = self._partial
            part[0] += import_w * dt_s
            part[1] += export_w * dt_s
            part[2] += apparent_va * dt_s
            part[3] += current_l1_a * dt_s
            part[4] += current_l2_a * dt_s
            part[5] += current_l3_a * dt_s
            part[6] += current_neutral_a * dt_s
            self._partial_s += dt_s
            return
        inputs = (import_w, export_w, apparent_va, current_l1_a, current_l2_a, current_l3_a,
                  current_neutral_a)
        self._fill(inputs, room_s)
        self._close()
        dt_s -= room_s
        whole = int(dt_s // bucket_s)
        for _ in range(min(whole, BUCKETS)):  # older whole buckets would leave the window anyway
            self._fill(inputs, bucket_s)
            self._close()
        self._closed += max(whole - BUCKETS, 0)
        rest_s = min(max(dt_s - whole * bucket_s, 0.0), bucket_s)
        self._fill(inputs, rest_s)
        self._partial_s = rest_s

    def _fill(self, inputs: tuple[float, ...], dt_s: float) -> None:
        part = self._partial
        for index, value in enumerate(inputs):
            part[index] += value * dt_s

    def _close(self) -> None:
        """The running bucket is full: store it and sum the window's buckets afresh."""
        ring = self._ring
        slot = self._closed % BUCKETS
        ring[slot * INPUTS:(slot + 1) * INPUTS] = array("d", self._partial)
        self._closed += 1
        self._partial = [0.0] * INPUTS
        self._partial_s = 0.0
        full = min(self._closed, BUCKETS)
        recent = [0.0] * INPUTS
        for age in range(min(full, BUCKETS - 1)):  # age 0: the newest
            base = ((self._closed - 1 - age) % BUCKETS) * INPUTS
            for index in range(INPUTS):
                recent[index] += ring[base + index]
        self._recent = recent
        if full == BUCKETS:
            base = (self._closed % BUCKETS) * INPUTS  # the oldest: the slot written next
            self._oldest = list(ring[base:base + INPUTS])

    def update(self, power_w: float, apparent_va: float, current_l1_a: float, current_l2_a: float,
               current_l3_a: float, current_neutral_a: float) -> None:
        """Refresh the demands (and maxima) from the window; these readings are the ones shown now,
        the demands when the period is 0 or no time has passed yet."""
        closed = self._closed
        if closed >= BUCKETS:  # a full period: the running bucket, the 9 newest, the oldest's share
            share = 1.0 - self._partial_s / self._bucket_s
            per_s = 1.0 / (BUCKETS * self._bucket_s)
            means = [(part + recent + share * oldest) * per_s
                     for part, recent, oldest in zip(self._partial, self._recent, self._oldest)]
        elif closed or self._partial_s > 0.0:  # the first period: the mean since the start
            per_s = 1.0 / (self._partial_s + closed * self._bucket_s)
            means = [(part + recent) * per_s for part, recent in zip(self._partial, self._recent)]
        else:  # no time yet, or a period of 0: the readings shown now
            means = [power_w if power_w > 0.0 else 0.0, -power_w if power_w < 0.0 else 0.0,
                     apparent_va, current_l1_a, current_l2_a, current_l3_a, current_neutral_a]
        demands = [value if value > 0.0 else 0.0 for value in (means[0] - means[1], *means)]
        self._demands = demands
        self._maxima = [new if new > old else old for new, old in zip(demands, self._maxima)]
