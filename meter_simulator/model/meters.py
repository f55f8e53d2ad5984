"""ElectricMeter, WaterMeter and GasMeter: a household's consumption, step by step.

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

from .demand import Demand, neutral_current
from .processes import DAY_S, Drift, OnOff, clamp, household_activity
from .quantities import ELECTRIC_COUNTERS, FLOW_COUNTERS, MAX_DEMANDS, PHASES
from .reading import Reading
from .solar import MAX_KWP, SolarPanels

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


def in_band(meter_type: str, reading: Reading, panels: bool = False) -> bool:
    """Every reading of this meter type inside its normal band.

    Electric: every phase's voltage, current and |PF| (the PF only without solar panels,
    whose export takes |PF| anywhere in 0..1), and the frequency.
    """
    bands = BANDS[meter_type]
    if meter_type == "electric":
        return (all(inside(v, bands["voltage_v"]) for v in reading.voltages_v)
                and all(inside(i, bands["current_a"]) for i in reading.currents_a)
                and inside(reading.frequency_hz, bands["frequency_hz"])
                and (panels or all(inside(abs(pf), bands["power_factor"])
                                   for pf in reading.power_factors)))
    return (inside(reading.flow_l_min, bands["flow_l_min"])
            and inside(reading.temperature_c, bands["temperature_c"])
            and inside(reading.pressure, bands["pressure"]))


def finite_non_negative(value) -> bool:
    """A value a counter may hold: a finite real number >= 0."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0.0)


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
        total = float(total)
        if not math.isfinite(total):
            raise ValueError(f"a total must be a finite number, not {total!r}")
        total = max(total, 0.0)
        counters = self.counters
        parts = self.total_parts
        if parts:
            present = [counters[name] for name in parts]
            whole = sum(present)
            shares = ([value / whole for value in present] if proportional and whole > 0.0
                      else [1.0 / len(parts)] * len(parts))
            for name, share in zip(parts, shares):
                counters[name] = total * share
        counters[self.total_counter] = total
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
        counters = self.counters
        valid = {name: float(value) for name, value in values.items() if finite_non_negative(value)}
        for name, value in valid.items():
            if name in counters:
                counters[name] = value
        if self.demand is not None:
            self.demand.restore_maxima(valid)
        self.reading = self._with_total(self.reading)
        return self.reading

    def _with_total(self, reading: Reading) -> Reading:
        fields = dict(reading.__dict__, total=self.total)
        return Reading(**fields)

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
# (the phases it draws on, W, var per W, follows the day) of each appliance
LOADS = tuple(((0, 1, 2) if phase is None else (phase,), power_w, var_per_w, follows_day)
              for (phase, power_w, _, _, _, follows_day), var_per_w in zip(APPLIANCES, VAR_PER_W))


NOMINAL_V = 230.0
LINE_OHM = 0.05  # the supply's resistance: a phase's voltage sags by 0.05 V per A drawn
# the shown voltage stays inside the 207-253 V band, also with measurement noise
VOLTAGE_LOW_V, VOLTAGE_HIGH_V = 210.0, 250.0
PF_LOW = 0.8  # the loads' power factor, shown in 0.8..1.0 without solar panels
MAX_CURRENT_A = 63.0
KWH_PER_WS = 1.0 / S_PER_H / WH_PER_KWH
AH_PER_AS = 1.0 / S_PER_H


def energy_names(suffix: str) -> tuple[str, ...]:
    """The counters one phase (suffix '_l1') or the total (suffix '') integrates, in the order
    ElectricMeter._accumulate takes them."""
    return tuple(f"{stem}{suffix}" for stem in (
        "energy_import", "energy_export", "reactive_energy_import", "reactive_energy_export",
        "apparent_energy", "apparent_energy_import", "apparent_energy_export",
        "reactive_energy_q1", "reactive_energy_q2", "reactive_energy_q3", "reactive_energy_q4"))


# L1, L2, L3, then the total (which integrates the net P, Q, S, not the phase counters' sum)
ENERGY_NAMES = (*(energy_names(f"_{phase}") for phase in PHASES), energy_names(""))


# the electric pins that replace one phase's raw value, per phase L1..L3
VOLTAGE_PINS = tuple(f"voltage_{phase}" for phase in PHASES)
CURRENT_PINS = tuple(f"current_{phase}" for phase in PHASES)
POWER_FACTOR_PINS = tuple(f"power_factor_{phase}" for phase in PHASES)


def scaled_to_power(power_w: float, voltages_v: list[float], currents_a: list[float],
                    factors: list[float]) -> tuple[list[float], list[float]]:
    """(currents, signed power factors) that make sum(V*I*PF) = power_w, keeping the voltages
    and each phase's |PF|: the currents are scaled alike, the PFs take the sign of power_w."""
    power_w += 0.0  # -0.0 would sign the power factors as export
    magnitudes = [abs(pf) for pf in factors]
    whole_w = sum(v * i * m for v, i, m in zip(voltages_v, currents_a, magnitudes))
    if whole_w == 0.0 and power_w != 0.0:  # no current or PF to scale: 1 A on every phase
        currents_a = [1.0, 1.0, 1.0]
        if not any(magnitudes):
            magnitudes = [1.0, 1.0, 1.0]
        whole_w = sum(v * m for v, m in zip(voltages_v, magnitudes))
    if whole_w > 0.0:  # else power_w is 0 and every phase's V*I*PF is 0 already
        k = abs(power_w) / whole_w
        currents_a = [amps * k for amps in currents_a]
    return currents_a, [math.copysign(m, power_w) for m in magnitudes]


def pinned_phases(raw: tuple, overrides: Mapping[str, float]) -> tuple:
    """(voltages, currents, signed power factors, frequency, pinned total PF or None) shown with
    these pins over the raw values of ElectricMeter._draw; the pinned values as given."""
    voltages_v, currents_a, factors, frequency_hz, _ = raw
    get = overrides.get
    voltages_v = [get(name, volts) for name, volts in zip(VOLTAGE_PINS, voltages_v)]
    currents_a = [get(name, amps) for name, amps in zip(CURRENT_PINS, currents_a)]
    power_factor = get("power_factor_total")
    if power_factor is not None:
        factors = [power_factor] * 3
    else:
        factors = [get(name, pf) for name, pf in zip(POWER_FACTOR_PINS, factors)]
    power_w = get("power_total")
    if power_w is not None:
        currents_a, factors = scaled_to_power(power_w, voltages_v, currents_a, factors)
    return (tuple(voltages_v), tuple(currents_a), tuple(factors), get("frequency", frequency_hz),
            power_factor)


class ElectricMeter(Meter):
    """Three-phase household meter, optionally with solar panels of pv_kwp kWp.

    Per phase P = V*I*PF, S = V*I and Q = sqrt(S^2 - P^2) from the shown V, I and PF (the
    model's rounded ones, or the pinned ones as given); the totals are the phases' sums and the
    counters grow by exactly P*dt, Q*dt, S*dt.
    """

    meter_type = "electric"
    counter_names = ELECTRIC_COUNTERS
    total_counter = "energy_import"
    total_parts = ("energy_import_l1", "energy_import_l2", "energy_import_l3")

    def __init__(self, rng: random.Random, time_of_day_s: float = 12 * S_PER_H,
                 pv_kwp: float = 0.0) -> None:
        pv_kwp = float(pv_kwp)
        if not (math.isfinite(pv_kwp) and 0.0 <= pv_kwp <= MAX_KWP):
            raise ValueError(f"solar panels of {pv_kwp!r} kWp: 0 to {MAX_KWP:g} kWp")
        self._voltages = [Drift(230.0, 2.5, 300.0, rng, 218.0, 242.0) for _ in range(3)]
        self._frequency = Drift(50.0, 0.02, 60.0, rng, 49.8, 50.2)
        self._standby = [Drift(60.0, 10.0, 600.0, rng, 30.0, 90.0) for _ in range(3)]
        self._appliances = [OnOff(on_s, off_s, rng) for _, _, _, on_s, off_s, _ in APPLIANCES]
        self.pv_kwp = pv_kwp
        # the clouds draw from their own generator, seeded here only when there are panels,
        # so a meter without panels draws exactly what it always drew
        self.panels = SolarPanels(pv_kwp, random.Random(rng.getrandbits(64))) if pv_kwp > 0.0 else None
        self.demand = Demand()
        self._shown = ()  # what _accumulate integrates: P, Q, S per phase and total, sum of I
        super().__init__(rng, time_of_day_s)

    def _accumulate(self, dt_s: float) -> None:
        counters = self.counters
        k = dt_s * KWH_PER_WS
        powers, reactive, apparent, amps_sum, currents, neutral_a = self._shown
        for names, power_w, var, va in zip(ENERGY_NAMES, powers, reactive, apparent):
            energy, reactive_energy, apparent_energy = power_w * k, var * k, va * k
            (import_name, export_name, var_import_name, var_export_name, va_name, va_import_name,
             va_export_name, q1_name, q2_name, q3_name, q4_name) = names
            counters[va_name] += apparent_energy
            if energy >= 0.0:
                counters[import_name] += energy
                counters[va_import_name] += apparent_energy
                quadrant_name = q1_name if reactive_energy >= 0.0 else q4_name
            else:
                counters[export_name] -= energy
                counters[va_export_name] += apparent_energy
                quadrant_name = q2_name if reactive_energy >= 0.0 else q3_name
            if reactive_energy >= 0.0:
                counters[var_import_name] += reactive_energy
                counters[quadrant_name] += reactive_energy
            else:
                counters[var_export_name] -= reactive_energy
                counters[quadrant_name] -= reactive_energy
        counters["ampere_hours"] += amps_sum * dt_s * AH_PER_AS
        self.demand.add(dt_s, powers[3], apparent[3], *currents, neutral_a)

    def _draw(self, dt_s: float) -> None:
        rng = self._rng
        activity = household_activity(self.time_of_day_s)
        real_w = [drift.step(dt_s) for drift in self._standby]
        reactive_var = [w * STANDBY_VAR_PER_W for w in real_w]
        uniform = rng.uniform
        for (phases, power_w, var_per_w, follows_day), appliance in zip(LOADS, self._appliances):
            appliance.step(dt_s, activity if follows_day else 1.0)
            if appliance.on:
                load_w = power_w * uniform(0.97, 1.03)  # a motor or heater never draws flat
                load_var = load_w * var_per_w
                for ph in phases:
                    real_w[ph] += load_w
                    reactive_var[ph] += load_var
        panels = self.panels
        pv_w = 0.0 if panels is None else panels.step(dt_s, self.time_of_day_s)
        pv_phase_w = pv_w / 3.0  # a three-phase inverter at unity power factor
        gauss = rng.gauss
        hypot = math.hypot
        voltages, currents, factors = [], [], []
        for net_w, var, voltage in zip(real_w, reactive_var, self._voltages):
            net_w -= pv_phase_w
            load_va = hypot(net_w, var)
            if panels is None:
                pf = net_w / load_va
                pf = round(PF_LOW if pf < PF_LOW else 1.0 if pf > 1.0 else pf, 3)
                line_a = net_w / (NOMINAL_V * pf)
            else:  # exporting: PF < 0 and |PF| anywhere in 0..1; the voltage rises with export
                pf = round(net_w / load_va, 3) + 0.0 if load_va > 0.0 else 1.0
                line_a = (load_va if net_w >= 0.0 else -load_va) / NOMINAL_V
            jitter_v = gauss(0.0, 0.15)  # measurement noise: the display moves every tick
            volts = voltage.step(dt_s) + jitter_v - LINE_OHM * line_a
            volts = round(VOLTAGE_LOW_V if volts < VOLTAGE_LOW_V
                          else VOLTAGE_HIGH_V if volts > VOLTAGE_HIGH_V else volts, 1)
            amps = net_w / (volts * pf) if panels is None else load_va / volts
            amps = round(0.0 if amps < 0.0 else MAX_CURRENT_A if amps > MAX_CURRENT_A else amps, 2)
            voltages.append(volts)
            currents.append(amps)
            factors.append(pf)
        frequency_hz = round(self._frequency.step(dt_s) + gauss(0.0, 0.003), 2)
        # (V, A and signed PF per phase, Hz, W generated): the shown values while nothing is pinned
        self._raw = (tuple(voltages), tuple(currents), tuple(factors), frequency_hz, pv_w)

    def _derive(self) -> Reading:
        voltages, currents_a, factors, frequency_hz, pv_w = self._raw
        power_factor = None  # the pinned power_factor_total, else P / S below
        if self.overrides:
            voltages, currents_a, factors, frequency_hz, power_factor = pinned_phases(
                self._raw, self.overrides)
        sqrt = math.sqrt
        powers, reactive, apparent = [], [], []
        for volts, amps, pf in zip(voltages, currents_a, factors):
            va = volts * amps
            power_w = va * pf
            square = va * va - power_w * power_w
            powers.append(power_w)
            apparent.append(va)
            reactive.append(sqrt(square) if square > 0.0 else 0.0)
        power_total_w = powers[0] + powers[1] + powers[2]
        apparent_total_va = apparent[0] + apparent[1] + apparent[2]
        i1_a, i2_a, i3_a = currents_a
        neutral_a = neutral_current(i1_a, i2_a, i3_a)
        in_band = (207.0 <= min(voltages) and max(voltages) <= 253.0 and 0.0 <= min(currents_a)
                   and max(currents_a) <= MAX_CURRENT_A and 49.5 <= frequency_hz <= 50.5
                   and (self.panels is not None or (PF_LOW <= min(factors) and max(factors) <= 1.0)))
        self._shown = (
            (*powers, power_total_w), (*reactive, reactive[0] + reactive[1] + reactive[2]),
            (*apparent, apparent_total_va), i1_a + i2_a + i3_a, currents_a, neutral_a)
        self.demand.update(power_total_w, apparent_total_va, i1_a, i2_a, i3_a, neutral_a)
        if power_factor is None:
            power_factor = power_total_w / apparent_total_va if apparent_total_va > 0.0 else 1.0
        return fast_reading(
            total=self.counters["energy_import"], rate=power_total_w if power_total_w > 0.0 else 0.0,
            voltages_v=voltages, currents_a=currents_a, frequency_hz=frequency_hz,
            power_factor=power_factor, in_band=in_band, power_factors=factors, powers_w=tuple(powers),
            reactive_var=tuple(reactive), apparent_va=tuple(apparent), pv_w=pv_w,
            current_neutral_a=neutral_a,
        )


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
        bands = BANDS[self.meter_type]
        return fast_reading(total=self.counters["volume_total"], rate=flow_l_min, flow_l_min=flow_l_min,
                            temperature_c=temperature_c, pressure=pressure,
                            in_band=(inside(flow_l_min, bands["flow_l_min"])
                                     and inside(temperature_c, bands["temperature_c"])
                                     and inside(pressure, bands["pressure"])))


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

    def _draw(self, dt_s: float) -> None:
        activity = household_activity(self.time_of_day_s)
        for fixture in self._fixtures:
            fixture.step(dt_s, activity)
        flow = self._fixtures_flow(self._fixtures, WATER_FIXTURES)
        pressure = self._pressure.step(dt_s) - 0.02 * flow + self._rng.gauss(0.0, 0.01)
        self._store_raw(flow, self._temperature.step(dt_s), clamp(pressure, 1.5, 7.5))


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

    def _draw(self, dt_s: float) -> None:
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
        self._store_raw(flow, self._temperature.step(dt_s), clamp(pressure, 17.5, 24.5))


METER_CLASSES = {"electric": ElectricMeter, "water": WaterMeter, "gas": GasMeter}


def make_meter(meter_type: str, rng: random.Random, time_of_day_s: float = 12 * S_PER_H,
               pv_kwp: float = 0.0) -> Meter:
    """A new meter of the given type ('electric', 'water' or 'gas') with every counter at 0;
    pv_kwp: the electric meter's solar panels (kWp, 0 for none)."""
    if meter_type == "electric":
        return ElectricMeter(rng, time_of_day_s, pv_kwp)
    if pv_kwp:
        raise ValueError(f"only an electric meter has solar panels, not a {meter_type} meter")
    return METER_CLASSES[meter_type](rng, time_of_day_s)
