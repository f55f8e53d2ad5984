"""SiteColumns: the households of a run's sites, drawn as columns with the fleet engine.

Each tick draws every site's household at once (HouseholdColumns: appliances, standby, the
supply's voltages, the frequency, the panels' generation) and hands each site's grid meter its
row; each site then balances, derives and integrates on its own (model.site), so its pins,
controls, battery and timers work exactly as they do for a site alone.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from .household import HouseholdColumns
from .processes import DAY_S
from .site import Site


class SiteColumns:
    """The households of these sites (all with the same panels, at the same time of day)."""

    def __init__(self, sites: Sequence[Site], rng: random.Random) -> None:
        self.sites = list(sites)
        generator = np.random.default_rng(rng.getrandbits(64))
        self._household = HouseholdColumns(len(self.sites), generator, self.sites[0].pv_kwp)
        self.time_of_day_s = self.sites[0].grid.time_of_day_s

    def step(self, dt_s: float) -> None:
        """Draw every household dt_s simulated seconds on: each grid meter's next step shows it."""
        dt_s = max(dt_s, 0.0)
        self.time_of_day_s = (self.time_of_day_s + dt_s) % DAY_S
        real_w, reactive_var, pv_w, supply_v, hz = self._household.draw(dt_s, self.time_of_day_s)
        for site, real, reactive, pv, supply, frequency in zip(
                self.sites, real_w.tolist(), reactive_var.tolist(), pv_w.tolist(), supply_v.tolist(),
                hz.tolist()):
            site.grid.drawn = (tuple(supply), (real, reactive), pv, frequency)
