"""WaterColumns and GasColumns: the water and gas meters of flow.py for many meters at once, one
row a meter, with the same fixtures, burner, drifts, bands, rounding and exact integration."""
from __future__ import annotations

import random

import numpy as np

from .bands import BANDS
from .columns import Columns, Tick
from .flow import GAS_FIXTURES, L_PER_M3, WATER_FIXTURES, FlowMeter, GasMeter, WaterMeter
from .meter import fast_reading
from .processcolumns import DriftColumns, OnOffColumns
from .processes import S_PER_H, S_PER_MIN, household_activity
from .reading import Reading

# the shown values, a column each in Tick.table
FLOW_COLUMN, TEMPERATURE_COLUMN, PRESSURE_COLUMN, BAND_COLUMN = range(4)
FIXTURE_SPREAD = (0.8, 1.2)  # a fixture's flow, drawn when it opens, of its nominal flow


class FlowColumns(Columns):
    """count water or gas meters: flow in L/min from fixtures in use, volume in m3."""

    model: type[WaterMeter | GasMeter] = WaterMeter  # its drifts and pressure rule: the model's
    fixtures: tuple = ()

    def __init__(self, count: int, rng: random.Random, time_of_day_s: float = 12 * S_PER_H) -> None:
        super().__init__(count, rng, time_of_day_s)
        generator = self._generator
        self._fixtures = OnOffColumns([on_s for _, on_s, _ in self.fixtures],
                                      [off_s for _, _, off_s in self.fixtures], generator, count)
        self._nominal = np.array([nominal for nominal, _, _ in self.fixtures])
        self._fixture_flow = np.zeros(self._fixtures.on.shape)  # L/min of each fixture that is on
        self._temperature = DriftColumns(self.model.temperature, generator, count)
        self._pressure = DriftColumns(self.model.pressure, generator, count)
        self._init_more(generator)
        self.tick = self._publish(self._shown(self._draw(0.0)))

    def _init_more(self, generator: np.random.Generator) -> None:
        """The processes a type has besides the fixtures, temperature and pressure."""

    def _integrate(self, dt_s: float) -> None:
        """FlowMeter._accumulate for every meter."""
        volume = self.tick.table[:, FLOW_COLUMN] * dt_s / S_PER_MIN / L_PER_M3
        self._counters = self._counters + volume[:, None]

    def _fixtures_flow(self, dt_s: float) -> np.ndarray:
        """Step the fixtures; the sum of the flows of those that are on (FlowMeter._fixtures_flow):
        each draws its flow when it opens and keeps it while on."""
        generator = self._generator
        opened = self._fixtures.on.copy()
        self._fixtures.step(dt_s, household_activity(self.time_of_day_s), generator)
        on = self._fixtures.on
        drawn = self._nominal * generator.uniform(*FIXTURE_SPREAD, on.shape)
        kept = opened & (self.tick is not None)  # the first draw draws every open fixture's flow
        self._fixture_flow = np.where(on, np.where(kept, self._fixture_flow, drawn), 0.0)
        return np.minimum(self._fixture_flow.sum(axis=1), self.model.max_flow_l_min)

    def _with_pressure(self, dt_s: float, flow: np.ndarray) -> tuple:
        generator = self._generator
        model = self.model
        pressure = (self._pressure.step(dt_s, generator) - model.pressure_per_l_min * flow
                    + generator.normal(0.0, model.pressure_noise, self.count))
        temperature = self._temperature.step(dt_s, generator)
        return flow, temperature, np.clip(pressure, *model.pressure_limits)

    def _shown(self, raw: tuple) -> np.ndarray:
        """The rounded values shown (FlowMeter._store_raw) and their bands (bands.flow_in_band)."""
        flow, temperature, pressure = raw
        table = np.empty((self.count, 4))
        table[:, FLOW_COLUMN] = np.round(flow, 1)
        table[:, TEMPERATURE_COLUMN] = np.round(temperature, 1)
        table[:, PRESSURE_COLUMN] = np.round(pressure, 2)
        inside = np.ones(self.count, dtype=bool)
        for column, name in ((FLOW_COLUMN, "flow_l_min"), (TEMPERATURE_COLUMN, "temperature_c"),
                             (PRESSURE_COLUMN, "pressure")):
            low, high = BANDS[self.model.meter_type][name]
            inside &= (table[:, column] >= low) & (table[:, column] <= high)
        table[:, BAND_COLUMN] = inside
        return table

    def reading(self, row: int, tick: Tick) -> tuple[Reading, dict, dict]:
        flow_l_min, temperature_c, pressure, in_band = tick.table[row].tolist()
        total = float(tick.counters[row, 0])
        return (fast_reading(total=total, rate=flow_l_min, flow_l_min=flow_l_min,
                             temperature_c=temperature_c, pressure=pressure, in_band=bool(in_band)),
                {"volume_total": total}, {})

    def total_and_rate(self, row: int, tick: Tick) -> tuple[float, float]:
        return float(tick.counters[row, 0]), float(tick.table[row, FLOW_COLUMN])

    def _copy_state(self, row: int, meter: FlowMeter) -> None:
        flows = self._fixture_flow[row].tolist()
        for index, (fixture, on) in enumerate(zip(meter._fixtures, self._fixtures.on[row].tolist())):
            fixture.on = on
            if on:
                meter._fixture_flow[index] = flows[index]
            else:
                meter._fixture_flow.pop(index, None)
        meter._temperature.value = float(self._temperature.value[row])
        meter._pressure.value = float(self._pressure.value[row])
        meter._raw = tuple(self.tick.table[row, :BAND_COLUMN].tolist())


class WaterColumns(FlowColumns):
    """count cold-water meters (flow.WaterMeter)."""

    model = WaterMeter
    fixtures = WATER_FIXTURES

    def _draw(self, dt_s: float) -> tuple:
        return self._with_pressure(dt_s, self._fixtures_flow(dt_s))


class GasColumns(FlowColumns):
    """count gas meters of houses with a boiler (flow.GasMeter)."""

    model = GasMeter
    fixtures = GAS_FIXTURES

    def _init_more(self, generator: np.random.Generator) -> None:
        on_s, off_s = GasMeter.burner
        self._burner = OnOffColumns(on_s, off_s, generator, self.count)
        self._outdoor_c = DriftColumns(GasMeter.outdoor, generator, self.count)
        self._burner_flow = np.zeros(self.count)

    def _draw(self, dt_s: float) -> tuple:
        """GasMeter._draw for every meter."""
        generator = self._generator
        demand = GasMeter.heating_share(self.time_of_day_s, self._outdoor_c.step(dt_s, generator), np.clip)
        lit = self._burner.step(dt_s, demand * GasMeter.burner_activity, generator)
        fresh = GasMeter.burner_flow(demand, generator.uniform(*FIXTURE_SPREAD, self.count))
        self._burner_flow = np.where(lit, fresh, self._burner_flow)
        flow = self._fixtures_flow(dt_s)
        burning = self._burner_flow * generator.uniform(0.97, 1.03, self.count)
        flow = np.where(self._burner.on, np.minimum(flow + burning, GasMeter.max_flow_l_min), flow)
        return self._with_pressure(dt_s, flow)

    def _copy_state(self, row: int, meter: GasMeter) -> None:
        super()._copy_state(row, meter)
        meter._burner.on = bool(self._burner.on[row])
        meter._burner_flow = float(self._burner_flow[row])
        meter._outdoor_c.value = float(self._outdoor_c.value[row])
