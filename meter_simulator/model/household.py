"""HouseholdColumns: the random part of many households' electricity at once, one row a house.

What ElectricMeter and a site's GridMeter draw each step, for every house in one go: the
appliances switching and their spread, the standby draw, the supply's voltage per phase (its
drift and the display's noise, before the line's drop), the frequency and, with panels, the
clouds and the generation. The meters derive what they show from these.
"""
from __future__ import annotations

import numpy as np

from .electric import (
    APPLIANCE_SPREAD,
    APPLIANCES,
    FREQUENCY_DRIFT,
    FREQUENCY_JITTER_HZ,
    LOADS,
    STANDBY_DRIFT,
    STANDBY_VAR_PER_W,
    VOLTAGE_DRIFT,
    VOLTAGE_JITTER_V,
    ElectricMeter,
)
from .processcolumns import DriftColumns, OnOffColumns
from .processes import household_activity
from .solar import CLOUD_MAX, CLOUD_MIN, CLOUDS_DRIFT, PEAK_PER_KWP, W_PER_KW, WEATHER_DRIFT, clear_sky

MEAN_ON_S = [on_s for *_, on_s, _, _ in APPLIANCES]
MEAN_OFF_S = [off_s for *_, off_s, _ in APPLIANCES]
FOLLOWS_DAY = np.array([follows for *_, follows in APPLIANCES])
# an appliance's W on each phase it draws on (heat pump, EV charger: their power on each phase)
LOAD_W = np.array([[power_w if ph in phases else 0.0 for ph in range(3)]
                   for phases, power_w, _, _ in LOADS])
LOAD_VAR = np.array([[var_per_w * row for row in phase_w]
                     for phase_w, (_, _, var_per_w, _) in zip(LOAD_W, LOADS)])


class HouseholdColumns:
    """count houses, each with panels of pv_kwp kWp (0: none), drawn from generator."""

    def __init__(self, count: int, generator: np.random.Generator, pv_kwp: float = 0.0) -> None:
        self.count, self.pv_kwp, self._generator = count, pv_kwp, generator
        self._voltages = DriftColumns(VOLTAGE_DRIFT, generator, (count, 3))
        self._frequency = DriftColumns(FREQUENCY_DRIFT, generator, count)
        self._standby = DriftColumns(STANDBY_DRIFT, generator, (count, 3))
        self._appliances = OnOffColumns(MEAN_ON_S, MEAN_OFF_S, generator, count)
        self._weather = self._clouds = None
        if pv_kwp:
            self._weather = DriftColumns(WEATHER_DRIFT, generator, count)
            self._clouds = DriftColumns(CLOUDS_DRIFT, generator, count)

    @property
    def panels(self) -> bool:
        return self._weather is not None

    def draw(self, dt_s: float, time_of_day_s: float) -> tuple:
        """Advance dt_s simulated seconds to time_of_day_s: (W, var per phase; W generated;
        the supply's V per phase before the line's drop; Hz as shown)."""
        generator = self._generator
        real_w, reactive_var = self._loads(dt_s, time_of_day_s)
        if self._weather is None:
            pv_w = np.zeros(self.count)
        else:
            cloud = np.clip(self._weather.step(dt_s, generator) + self._clouds.step(dt_s, generator),
                            CLOUD_MIN, CLOUD_MAX)
            pv_w = cloud * (self.pv_kwp * PEAK_PER_KWP * W_PER_KW * clear_sky(time_of_day_s))
        supply_v = self._voltages.step(dt_s, generator) + generator.normal(0.0, VOLTAGE_JITTER_V,
                                                                          (self.count, 3))
        hz = self._frequency.step(dt_s, generator) + generator.normal(0.0, FREQUENCY_JITTER_HZ, self.count)
        return real_w, reactive_var, pv_w, supply_v, np.round(hz, 2)

    def _loads(self, dt_s: float, time_of_day_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Every household's draw this step, (W, var) per phase: ElectricMeter._loads."""
        generator = self._generator
        activity = household_activity(time_of_day_s)
        self._appliances.step(dt_s, np.where(FOLLOWS_DAY, activity, 1.0), generator)
        drawn = generator.uniform(*APPLIANCE_SPREAD, self._appliances.on.shape)
        drawn *= self._appliances.on
        standby_w = self._standby.step(dt_s, generator)
        return standby_w + drawn @ LOAD_W, standby_w * STANDBY_VAR_PER_W + drawn @ LOAD_VAR

    def copy_to(self, row: int, meter: ElectricMeter) -> None:
        """Give an electric meter (or a site's grid meter) exactly this row's processes."""
        for drift, value in zip((*meter._voltages, meter._frequency, *meter._standby),
                                (*self._voltages.value[row], self._frequency.value[row],
                                 *self._standby.value[row])):
            drift.value = float(value)
        for appliance, on in zip(meter._appliances, self._appliances.on[row].tolist()):
            appliance.on = on
        if meter.panels is not None:
            meter.panels._weather.value = float(self._weather.value[row])
            meter.panels._clouds.value = float(self._clouds.value[row])
            meter.panels.cloud_factor = meter.panels._factor()
