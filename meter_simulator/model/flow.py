"""WaterMeter and GasMeter: flow in L/min from fixtures in use (and a gas boiler's burner), the
volume in m3, temperature and pressure drifting around their means."""
from __future__ import annotations

import random

from .bands import flow_in_band
from .meter import Meter, fast_reading
from .processes import S_PER_H, S_PER_MIN, DriftSpec, OnOff, clamp, household_activity
from .quantities import FLOW_COUNTERS
from .reading import Reading

L_PER_M3 = 1000.0


class FlowMeter(Meter):
    """A water or gas meter: flow in L/min from fixtures in use, volume in m3."""

    max_flow_l_min = 0.0
    counter_names = FLOW_COUNTERS
    total_counter = "volume_total"

    def __init__(self, rng: random.Random, time_of_day_s: float = 12 * S_PER_H) -> None:
        self._fixture_flow = {}  # index -> L/min drawn when it switched on
        super().__init__(rng, time_of_day_s)

    def _accumulate(self, dt_s: float) -> None:
        self.counters["volume_total"] += self.reading.flow_l_min * dt_s / S_PER_MIN / L_PER_M3

    def _fixtures_flow(self, fixtures, specs) -> float:
        """Sum of the flows of the fixtures that are on; each draws its flow when it opens."""
        flow = 0.0
        for index, (fixture, spec) in enumerate(zip(fixtures, specs)):
            nominal_l_min = spec[0]
            if fixture.on and index not in self._fixture_flow:
                self._fixture_flow[index] = nominal_l_min * self._rng.uniform(0.8, 1.2)
            if not fixture.on:
                self._fixture_flow.pop(index, None)
            else:
                flow += self._fixture_flow[index]
        return min(flow, self.max_flow_l_min)

    def _store_raw(self, flow_l_min: float, temperature_c: float, pressure: float) -> None:
        """The model's values, rounded as shown, into self._raw."""
        self._raw = (round(flow_l_min, 1), round(temperature_c, 1), round(pressure, 2))

    def _derive(self) -> Reading:
        flow_l_min, temperature_c, pressure = self._raw
        overrides = self.overrides
        if overrides:  # pinned values as given: the registers round them
            flow_l_min = overrides.get("flow", flow_l_min)
            temperature_c = overrides.get("temperature", temperature_c)
            pressure = overrides.get("pressure", pressure)
        return fast_reading(total=self.counters["volume_total"], rate=flow_l_min, flow_l_min=flow_l_min,
                            temperature_c=temperature_c, pressure=pressure,
                            in_band=flow_in_band(self.meter_type, flow_l_min, temperature_c, pressure))


# (nominal L/min, mean on s, mean off s)
WATER_FIXTURES = (
    (9.0, 40, 2 * 3600),  # toilet flush
    (6.0, 45, 40 * 60),  # kitchen tap
    (5.0, 30, 60 * 60),  # bathroom tap
    (9.0, 7 * 60, 12 * 3600),  # shower
    (8.0, 3 * 60, 24 * 3600),  # washing machine filling
    (6.0, 2 * 60, 24 * 3600),  # dishwasher filling
    (15.0, 20 * 60, 72 * 3600),  # garden hose
)


class WaterMeter(FlowMeter):
    """Cold-water meter: use comes in events (flushes, taps, showers); pressure dips with flow."""

    meter_type = "water"
    max_flow_l_min = 40.0
    temperature = DriftSpec(12.0, 1.5, 3600.0, 4.0, 22.0)
    pressure = DriftSpec(3.5, 0.15, 600.0, 2.5, 4.5)  # bar
    pressure_per_l_min = 0.02  # the pressure dips with the flow
    pressure_noise = 0.01
    pressure_limits = (1.5, 7.5)

    def __init__(self, rng: random.Random, time_of_day_s: float = 12 * S_PER_H) -> None:
        self._fixtures = [OnOff(on_s, off_s, rng) for _, on_s, off_s in WATER_FIXTURES]
        self._temperature = self.temperature.drift(rng)
        self._pressure = self.pressure.drift(rng)
        super().__init__(rng, time_of_day_s)

    def _draw(self, dt_s: float) -> None:
        activity = household_activity(self.time_of_day_s)
        for fixture in self._fixtures:
            fixture.step(dt_s, activity)
        flow = self._fixtures_flow(self._fixtures, WATER_FIXTURES)
        pressure = (self._pressure.step(dt_s) - self.pressure_per_l_min * flow
                    + self._rng.gauss(0.0, self.pressure_noise))
        self._store_raw(flow, self._temperature.step(dt_s), clamp(pressure, *self.pressure_limits))


# (nominal L/min, mean on s, mean off s)
GAS_FIXTURES = (
    (35.0, 5 * 60, 6 * 3600),  # hot water from the combi boiler
    (8.0, 20 * 60, 12 * 3600),  # hob
)


class GasMeter(FlowMeter):
    """Gas meter of a house with a boiler: heating follows the outdoor cold and the time of day."""

    meter_type = "gas"
    max_flow_l_min = 100.0
    temperature = DriftSpec(10.0, 3.0, 2 * 3600.0, -15.0, 35.0)
    pressure = DriftSpec(21.0, 0.4, 300.0, 19.0, 23.0)  # mbar
    pressure_per_l_min = 0.015
    pressure_noise = 0.02
    pressure_limits = (17.5, 24.5)
    outdoor = DriftSpec(5.0, 4.0, 6 * 3600.0, -15.0, 25.0)  # deg C
    burner = (10 * 60, 20 * 60)  # mean on s, mean off s at full demand / burner_activity
    burner_activity = 1.5

    def __init__(self, rng: random.Random, time_of_day_s: float = 12 * S_PER_H) -> None:
        self._fixtures = [OnOff(on_s, off_s, rng) for _, on_s, off_s in GAS_FIXTURES]
        self._burner = OnOff(*self.burner, rng)
        self._outdoor_c = self.outdoor.drift(rng)
        self._temperature = self.temperature.drift(rng)
        self._pressure = self.pressure.drift(rng)
        self._burner_flow = 0.0
        super().__init__(rng, time_of_day_s)

    @staticmethod
    def heating_share(time_of_day_s: float, outdoor_c, clip=clamp):
        """0 (warm or night set-back) to 1 (cold morning): how hard the heating works at this
        outdoor temperature (a number, or an array with clip=numpy.clip)."""
        hour = time_of_day_s / 3600.0
        comfort_c = 20.0 if 6.0 <= hour < 23.0 else 16.0
        return clip((comfort_c - 2.0 - outdoor_c) / 20.0, 0.0, 1.0)

    @staticmethod
    def burner_flow(demand, spread):
        """The burner's L/min when it lights at this demand: a 24 kW boiler burns about 40 L/min
        at full power; spread: its draw of 0.8 to 1.2."""
        return 10.0 + 25.0 * demand * spread

    def heating_demand(self) -> float:
        """0 (warm or night set-back) to 1 (cold morning): how hard the heating works."""
        return self.heating_share(self.time_of_day_s, self._outdoor_c.value)

    def _draw(self, dt_s: float) -> None:
        self._outdoor_c.step(dt_s)
        demand = self.heating_demand()
        if self._burner.step(dt_s, demand * self.burner_activity):
            self._burner_flow = self.burner_flow(demand, self._rng.uniform(0.8, 1.2))
        activity = household_activity(self.time_of_day_s)
        for fixture in self._fixtures:
            fixture.step(dt_s, activity)
        flow = self._fixtures_flow(self._fixtures, GAS_FIXTURES)
        if self._burner.on:
            flow = min(flow + self._burner_flow * self._rng.uniform(0.97, 1.03), self.max_flow_l_min)
        pressure = (self._pressure.step(dt_s) - self.pressure_per_l_min * flow
                    + self._rng.gauss(0.0, self.pressure_noise))
        self._store_raw(flow, self._temperature.step(dt_s), clamp(pressure, *self.pressure_limits))
