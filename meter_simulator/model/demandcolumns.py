"""DemandColumns: demand.Demand for many meters that step together, one row a meter.

The meters of a column share their steps and their demand period, so the bookkeeping of the
sliding window (the running sub-interval's seconds, the buckets closed) is one for all and
only the sums are arrays: the same window, means and maxima as Demand, row by row.
"""
from __future__ import annotations

from array import array
from collections.abc import Mapping

import numpy as np

from .demand import BUCKETS, DEFAULT_PERIOD_MIN, INPUTS, Demand
from .processes import S_PER_MIN
from .quantities import DEMANDS, MAX_DEMANDS


class DemandColumns:
    """The demands of count meters: add() the shown readings over time, update() the values."""

    def __init__(self, count: int, period_min: int = DEFAULT_PERIOD_MIN) -> None:
        self.period_min = period_min
        self._bucket_s = period_min * S_PER_MIN / BUCKETS
        self._ring = np.zeros((BUCKETS, count, INPUTS))  # full buckets' sums (value * s)
        self._closed = 0  # buckets completed since the start
        self._partial = np.zeros((count, INPUTS))  # the running bucket's sums
        self._partial_s = 0.0
        self._recent = np.zeros((count, INPUTS))  # sums of the newest BUCKETS - 1 full buckets
        self._oldest = np.zeros((count, INPUTS))  # the full bucket before those, once there are BUCKETS
        self._demands = np.zeros((count, len(DEMANDS)))
        self._maxima = np.zeros((count, len(DEMANDS)))

    @property
    def time_min(self) -> float:
        """Simulated minutes elapsed in the current demand period."""
        return ((self._closed % BUCKETS) * self._bucket_s + self._partial_s) / S_PER_MIN

    def add(self, dt_s: float, inputs: np.ndarray) -> None:
        """Average in dt_s simulated seconds of these (count, INPUTS) readings (Demand.add)."""
        bucket_s = self._bucket_s
        if dt_s <= 0.0 or bucket_s == 0.0:
            return
        room_s = bucket_s - self._partial_s
        if dt_s < room_s:  # the usual tick: inside the running bucket
            self._partial = self._partial + inputs * dt_s
            self._partial_s += dt_s
            return
        self._partial = self._partial + inputs * room_s
        self._close()
        dt_s -= room_s
        whole = int(dt_s // bucket_s)
        for _ in range(min(whole, BUCKETS)):  # older whole buckets would leave the window anyway
            self._partial = inputs * bucket_s
            self._close()
        self._closed += max(whole - BUCKETS, 0)
        rest_s = min(max(dt_s - whole * bucket_s, 0.0), bucket_s)
        self._partial = inputs * rest_s
        self._partial_s = rest_s

    def _close(self) -> None:
        """The running bucket is full: store it and sum the window's buckets afresh."""
        self._ring[self._closed % BUCKETS] = self._partial
        self._closed += 1
        self._partial = np.zeros_like(self._partial)
        self._partial_s = 0.0
        full = min(self._closed, BUCKETS)
        ages = [(self._closed - 1 - age) % BUCKETS for age in range(min(full, BUCKETS - 1))]
        self._recent = self._ring[ages].sum(axis=0)
        if full == BUCKETS:
            self._oldest = self._ring[self._closed % BUCKETS].copy()

    def update(self, inputs: np.ndarray) -> np.ndarray:
        """Refresh the demands and maxima from the window (inputs: the readings shown now, the
        demands while no time has passed); the published demands then maxima, (count, 16)."""
        closed = self._closed
        if closed >= BUCKETS:  # a full period: the running bucket, the 9 newest, the oldest's share
            share = 1.0 - self._partial_s / self._bucket_s
            means = (self._partial + self._recent + share * self._oldest) * (1.0 / (BUCKETS * self._bucket_s))
        elif closed or self._partial_s > 0.0:  # the first period: the mean since the start
            means = (self._partial + self._recent) * (1.0 / (self._partial_s + closed * self._bucket_s))
        else:
            means = inputs
        demands = np.maximum(np.column_stack((means[:, 0] - means[:, 1], means)), 0.0)
        self._demands = demands
        self._maxima = np.maximum(demands, self._maxima)
        return self.published()

    def published(self) -> np.ndarray:
        """The demands and maxima (quantities.DEMANDS, MAX_DEMANDS) as one new array."""
        return np.concatenate((self._demands, self._maxima), axis=1)

    def restore_maxima(self, row: int, maxima: Mapping[str, float]) -> None:
        """Demand.restore_maxima for one row."""
        for index, name in enumerate(MAX_DEMANDS):
            if name in maxima:
                self._maxima[row, index] = max(float(maxima[name]), self._demands[row, index])

    def maxima(self, row: int) -> np.ndarray:
        return self._maxima[row]

    def copy_to(self, row: int, demand: Demand) -> None:
        """Give a Demand (of the same period) exactly this row's window, demands and maxima."""
        demand._ring = array("d", self._ring[:, row, :].ravel().tolist())
        demand._closed = self._closed
        demand._partial = self._partial[row].tolist()
        demand._partial_s = self._partial_s
        demand._recent = self._recent[row].tolist()
        demand._oldest = self._oldest[row].tolist()
        demand._demands = self._demands[row].tolist()
        demand._maxima = self._maxima[row].tolist()
