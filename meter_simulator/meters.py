"""ElectricMeter, WaterMeter and GasMeter: a household's consumption, step by step.

A meter is stepped by simulated seconds. Each step first integrates the rate it
showed since the previous step (so the total is exactly the integral of what was
shown), then draws the new instantaneous readings. Models take a random.Random
and the simulated time of day; they never read a clock.
"""
from __future__ import annotations

import math
import random

from .processes import DAY_S, Drift, OnOff, clamp, household_activity
from .registers import Reading

# Normal bands (contract section 6): coil 1 is ON while every reading is inside.
BANDS = {
    "electric": {"voltage_v": (207.0, 253.0), "frequency_hz": (49.5, 50.5),
                 "power_factor": (0.8, 1.0), "current_a": (0.0, 63.0)},
    "water": {"flow_l_min": (0.0, 40.0), "temperature_c": (0.0, 30.0), "pressure": (1.0, 8.0)},
    "gas": {"flow_l_min": (0.0, 100.0), "temperature_c": (-20.0, 40.0), "pressure": (17.0, 25.0)},
}
METER_TYPES = tuple(BANDS)

WH_PER_KWH = 1000.0
S_PER_H = 3600.0
L_PER_M3 = 1000.0
S_PER_MIN = 60.0


def inside(value: float, band: tuple[float, float]) -> bool:
    """True when value lies in the band, both ends included."""
    return band[0] <= value <= band[1]


def in_band(meter_type: str, reading: Reading) -> bool:
    """Every reading of this meter type inside its normal band."""
    bands = BANDS[meter_type]
    if meter_type == "electric":
        return (all(inside(v, bands["voltage_v"]) for v in reading.voltages_v)
                and all(inside(i, bands["current_a"]) for i in reading.currents_a)
                and inside(reading.frequency_hz, bands["frequency_hz"])
                and inside(reading.power_factor, bands["power_factor"]))
    return (inside(reading.flow_l_min, bands["flow_l_min"])
            and inside(reading.temperature_c, bands["temperature_c"])
            and inside(reading.pressure, bands["pressure"]))


class Meter:
    """What every meter shares: the total, the time of day and the step rule."""

    meter_type = ""

    def __init__(self, rng: random.Random, time_of_day_s: float = 12 * S_PER_H) -> None:
        self._rng = rng
        self.time_of_day_s = time_of_day_s % DAY_S
        self.total = 0.0  # kWh or m3, never rounded: registers round, the meter does not
        self.reading = self._sample(0.0)

    def step(self, dt_s: float, integrated_s: float = 0.0) -> Reading:
        """Advance dt_s simulated seconds: integrate the shown rate, then draw new readings.

        integrated_s: the part of dt_s that integrate() already added to the total.
        """
        dt_s = max(dt_s, 0.0)
        self.integrate(dt_s - integrated_s)
        self.time_of_day_s = (self.time_of_day_s + dt_s) % DAY_S
        self.reading = self._sample(dt_s)
        return self.reading

    def integrate(self, dt_s: float) -> None:
        """Add dt_s simulated seconds of the shown rate to the total, drawing nothing new."""
        self.total += self._consumed(self.reading.rate, max(dt_s, 0.0))

    def reset_total(self) -> Reading:
        """The total restarts from 0; the instantaneous readings stay."""
        self.total = 0.0
        self.reading = self._with_total(self.reading)
        return self.reading

    def set_total(self, total: float) -> Reading:
        """Resume from a saved total (kWh or m3)."""
        self.total = max(float(total), 0.0)
        self.reading = self._with_total(self.reading)
        return self.reading

    def _with_total(self, reading: Reading) -> Reading:
        fields = dict(reading.__dict__, total=self.total)
        return Reading(**fields)

    @staticmethod
    def _consumed(rate: float, dt_s: float) -> float:
        raise NotImplementedError

    def _sample(self, dt_s: float) -> Reading:
        raise NotImplementedError


# (phase 0..2 or None for all three, power W, power factor, mean on s, mean off s, follows the day)
APPLIANCES = (
    (0, 120.0, 0.85, 15 * 60, 30 * 60, False),  # fridge compressor
    (1, 90.0, 0.85, 20 * 60, 40 * 60, False),  # freezer
    (2, 180.0, 0.95, 2 * 3600, 3 * 3600, True),  # lighting
    (1, 150.0, 0.92, 3 * 3600, 4 * 3600, True),  # TV and computers
    (0, 2000.0, 1.0, 3 * 60, 4 * 3600, True),  # kettle
    (1, 2400.0, 1.0, 40 * 60, 24 * 3600, True),  # oven
    (2, 1900.0, 0.9, 60 * 60, 36 * 3600, True),  # washing machine
    (0, 1500.0, 0.92, 90 * 60, 30 * 3600, True),  # dishwasher
    (None, 900.0, 0.88, 30 * 60, 90 * 60, False),  # heat pump, per phase
    (None, 3680.0, 0.99, 3 * 3600, 48 * 3600, False),  # EV charger, 16 A per phase
)
STANDBY_PF = 0.95
# var per W at each appliance's power factor, computed once: tan(acos(pf))
VAR_PER_W = tuple(math.tan(math.acos(pf)) for _, _, pf, _, _, _ in APPLIANCES)
STANDBY_VAR_PER_W = math.tan(math.acos(STANDBY_PF))


class ElectricMeter(Meter):
    """Three-phase household meter: P = sum(V*I*PF) and energy grows by exactly P*dt."""

    meter_type = "electric"

    def __init__(self, rng: random.Random, time_of_day_s: float = 12 * S_PER_H) -> None:
        self._voltages = [Drift(230.0, 2.5, 300.0, rng, 218.0, 242.0) for _ in range(3)]
        self._frequency = Drift(50.0, 0.02, 60.0, rng, 49.8, 50.2)
        self._standby = [Drift(60.0, 10.0, 600.0, rng, 30.0, 90.0) for _ in range(3)]
        self._appliances = [OnOff(on_s, off_s, rng) for _, _, _, on_s, off_s, _ in APPLIANCES]
        super().__init__(rng, time_of_day_s)

    @staticmethod
    def _consumed(rate: float, dt_s: float) -> float:
        return rate * dt_s / S_PER_H / WH_PER_KWH

    def _sample(self, dt_s: float) -> Reading:
        rng = self._rng
        activity = household_activity(self.time_of_day_s)
        real_w = [drift.step(dt_s) for drift in self._standby]
        reactive_var = [w * STANDBY_VAR_PER_W for w in real_w]
        for spec, var_per_w, appliance in zip(APPLIANCES, VAR_PER_W, self._appliances):
            phase, power_w, _, _, _, follows_day = spec
            appliance.step(dt_s, activity if follows_day else 1.0)
            if appliance.on:
                load_w = power_w * rng.uniform(0.97, 1.03)  # a motor or heater never draws flat
                for ph in (range(3) if phase is None else (phase,)):
                    real_w[ph] += load_w
                    reactive_var[ph] += load_w * var_per_w
        apparent_va = math.hypot(sum(real_w), sum(reactive_var))
        power_factor = round(clamp(sum(real_w) / apparent_va, 0.8, 1.0), 3)
        voltages = []
        currents = []
        for ph in range(3):
            jitter_v = rng.gauss(0.0, 0.15)  # measurement noise: the display moves every tick
            nominal_a = real_w[ph] / (230.0 * power_factor)
            volts = round(clamp(self._voltages[ph].step(dt_s) + jitter_v - 0.05 * nominal_a, 210.0, 250.0), 1)
            amps = round(clamp(real_w[ph] / (volts * power_factor), 0.0, 63.0), 2)
            voltages.append(volts)
            currents.append(amps)
        power_w = sum(v * i * power_factor for v, i in zip(voltages, currents))
        reading = Reading(
            total=self.total, rate=power_w, voltages_v=tuple(voltages), currents_a=tuple(currents),
            frequency_hz=round(self._frequency.step(dt_s) + rng.gauss(0.0, 0.003), 2),
            power_factor=power_factor,
        )
        return Reading(**dict(reading.__dict__, in_band=in_band(self.meter_type, reading)))


class FlowMeter(Meter):
    """A water or gas meter: flow in L/min from fixtures in use, volume in m3."""

    max_flow_l_min = 0.0

    def __init__(self, rng: random.Random, time_of_day_s: float = 12 * S_PER_H) -> None:
        self._fixture_flow = {}  # index -> L/min drawn when it switched on
        super().__init__(rng, time_of_day_s)

    @staticmethod
    def _consumed(rate: float, dt_s: float) -> float:
        return rate * dt_s / S_PER_MIN / L_PER_M3

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

    def _flow_reading(self, flow_l_min: float, temperature_c: float, pressure: float) -> Reading:
        flow_l_min = round(flow_l_min, 1)
        reading = Reading(total=self.total, rate=flow_l_min, flow_l_min=flow_l_min,
                          temperature_c=round(temperature_c, 1), pressure=round(pressure, 2))
        return Reading(**dict(reading.__dict__, in_band=in_band(self.meter_type, reading)))


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

    def __init__(self, rng: random.Random, time_of_day_s: float = 12 * S_PER_H) -> None:
        self._fixtures = [OnOff(on_s, off_s, rng) for _, on_s, off_s in WATER_FIXTURES]
        self._temperature = Drift(12.0, 1.5, 3600.0, rng, 4.0, 22.0)
        self._pressure = Drift(3.5, 0.15, 600.0, rng, 2.5, 4.5)
        super().__init__(rng, time_of_day_s)

    def _sample(self, dt_s: float) -> Reading:
        activity = household_activity(self.time_of_day_s)
        for fixture in self._fixtures:
            fixture.step(dt_s, activity)
        flow = self._fixtures_flow(self._fixtures, WATER_FIXTURES)
        pressure = self._pressure.step(dt_s) - 0.02 * flow + self._rng.gauss(0.0, 0.01)
        return self._flow_reading(flow, self._temperature.step(dt_s), clamp(pressure, 1.5, 7.5))


# (nominal L/min, mean on s, mean off s)
GAS_FIXTURES = (
    (35.0, 5 * 60, 6 * 3600),  # hot water from the combi boiler
    (8.0, 20 * 60, 12 * 3600),  # hob
)


class GasMeter(FlowMeter):
    """Gas meter of a house with a boiler: heating follows the outdoor cold and the time of day."""

    meter_type = "gas"
    max_flow_l_min = 100.0

    def __init__(self, rng: random.Random, time_of_day_s: float = 12 * S_PER_H) -> None:
        self._fixtures = [OnOff(on_s, off_s, rng) for _, on_s, off_s in GAS_FIXTURES]
        self._burner = OnOff(10 * 60, 20 * 60, rng)
        self._outdoor_c = Drift(5.0, 4.0, 6 * 3600.0, rng, -15.0, 25.0)
        self._temperature = Drift(10.0, 3.0, 2 * 3600.0, rng, -15.0, 35.0)
        self._pressure = Drift(21.0, 0.4, 300.0, rng, 19.0, 23.0)
        self._burner_flow = 0.0
        super().__init__(rng, time_of_day_s)

    def heating_demand(self) -> float:
        """0 (warm or night set-back) to 1 (cold morning): how hard the heating works."""
        hour = self.time_of_day_s / 3600.0
        comfort_c = 20.0 if 6.0 <= hour < 23.0 else 16.0
        return clamp((comfort_c - 2.0 - self._outdoor_c.value) / 20.0, 0.0, 1.0)

    def _sample(self, dt_s: float) -> Reading:
        self._outdoor_c.step(dt_s)
        demand = self.heating_demand()
        if self._burner.step(dt_s, demand * 1.5):  # a 24 kW boiler burns about 40 L/min at full power
            self._burner_flow = 10.0 + 25.0 * demand * self._rng.uniform(0.8, 1.2)
        activity = household_activity(self.time_of_day_s)
        for fixture in self._fixtures:
            fixture.step(dt_s, activity)
        flow = self._fixtures_flow(self._fixtures, GAS_FIXTURES)
        if self._burner.on:
            flow = min(flow + self._burner_flow * self._rng.uniform(0.97, 1.03), self.max_flow_l_min)
        pressure = self._pressure.step(dt_s) - 0.015 * flow + self._rng.gauss(0.0, 0.02)
        return self._flow_reading(flow, self._temperature.step(dt_s), clamp(pressure, 17.5, 24.5))


METER_CLASSES = {"electric": ElectricMeter, "water": WaterMeter, "gas": GasMeter}


def make_meter(meter_type: str, rng: random.Random, time_of_day_s: float = 12 * S_PER_H) -> Meter:
    """A new meter of the given type ('electric', 'water' or 'gas') with a total of 0."""
    return METER_CLASSES[meter_type](rng, time_of_day_s)
