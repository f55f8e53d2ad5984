"""ElectricMeter: a three-phase household, its appliances switching on and off, optionally with
solar panels; the shown V, I and PF give P, Q and S per phase and the counters integrate them."""
from __future__ import annotations

import math
import random
from collections.abc import Mapping

from .bands import CURRENT_BAND_A, POWER_FACTOR_BAND, electric_in_band
from .demand import Demand, neutral_current
from .meter import Meter, fast_reading
from .processes import S_PER_H, DriftSpec, OnOff, household_activity
from .quantities import ELECTRIC_COUNTERS, PHASES
from .reading import Reading
from .solar import MAX_KWP, SolarPanels

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
VOLTAGE_DRIFT = DriftSpec(230.0, 2.5, 300.0, 218.0, 242.0)  # each phase's supply voltage
FREQUENCY_DRIFT = DriftSpec(50.0, 0.02, 60.0, 49.8, 50.2)
STANDBY_DRIFT = DriftSpec(60.0, 10.0, 600.0, 30.0, 90.0)  # each phase's always-on draw, W
VOLTAGE_JITTER_V = 0.15  # measurement noise: the display moves every tick
FREQUENCY_JITTER_HZ = 0.003
APPLIANCE_SPREAD = (0.97, 1.03)  # a motor or heater never draws flat
# var per W at each appliance's power factor, computed once: tan(acos(pf))
VAR_PER_W = tuple(math.tan(math.acos(pf)) for _, _, pf, _, _, _ in APPLIANCES)
STANDBY_VAR_PER_W = math.tan(math.acos(STANDBY_PF))
# (the phases it draws on, W, var per W, follows the day) of each appliance
LOADS = tuple(((0, 1, 2) if phase is None else (phase,), power_w, var_per_w, follows_day)
              for (phase, power_w, _, _, _, follows_day), var_per_w in zip(APPLIANCES, VAR_PER_W))


WH_PER_KWH = 1000.0
NOMINAL_V = 230.0
LINE_OHM = 0.05  # the supply's resistance: a phase's voltage sags by 0.05 V per A drawn
# the shown voltage stays inside the 207-253 V band, also with measurement noise
VOLTAGE_LOW_V, VOLTAGE_HIGH_V = 210.0, 250.0
PF_LOW = POWER_FACTOR_BAND[0]  # the loads' power factor, shown in its band without solar panels
MAX_CURRENT_A = CURRENT_BAND_A[1]
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
    feeds_in = False  # an inverter behind the meter: it exports without panels of its own
    counter_names = ELECTRIC_COUNTERS
    total_counter = "energy_import"
    total_parts = ("energy_import_l1", "energy_import_l2", "energy_import_l3")

    def __init__(self, rng: random.Random, time_of_day_s: float = 12 * S_PER_H,
                 pv_kwp: float = 0.0) -> None:
        pv_kwp = float(pv_kwp)
        if not (math.isfinite(pv_kwp) and 0.0 <= pv_kwp <= MAX_KWP):
            raise ValueError(f"solar panels of {pv_kwp!r} kWp: 0 to {MAX_KWP:g} kWp")
        self._voltages = [VOLTAGE_DRIFT.drift(rng) for _ in range(3)]
        self._frequency = FREQUENCY_DRIFT.drift(rng)
        self._standby = [STANDBY_DRIFT.drift(rng) for _ in range(3)]
        self._appliances = [OnOff(on_s, off_s, rng) for _, _, _, on_s, off_s, _ in APPLIANCES]
        self.pv_kwp = pv_kwp
        # the clouds draw from their own generator, seeded here only when there are panels,
        # so a meter without panels draws exactly what it always drew
        self.panels = SolarPanels(pv_kwp, random.Random(rng.getrandbits(64))) if pv_kwp > 0.0 else None
        self.demand = Demand()
        # export (panels, or an inverter behind the meter) takes the power factor anywhere
        self.exports = self.panels is not None or self.feeds_in
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

    def _loads(self, dt_s: float) -> tuple[list[float], list[float]]:
        """The household's draw this step: (W, var) per phase, every random draw of its appliances."""
        rng = self._rng
        activity = household_activity(self.time_of_day_s)
        real_w = [drift.step(dt_s) for drift in self._standby]
        reactive_var = [w * STANDBY_VAR_PER_W for w in real_w]
        uniform = rng.uniform
        for (phases, power_w, var_per_w, follows_day), appliance in zip(LOADS, self._appliances):
            appliance.step(dt_s, activity if follows_day else 1.0)
            if appliance.on:
                load_w = power_w * uniform(*APPLIANCE_SPREAD)
                load_var = load_w * var_per_w
                for ph in phases:
                    real_w[ph] += load_w
                    reactive_var[ph] += load_var
        return real_w, reactive_var

    def _draw(self, dt_s: float) -> None:
        rng = self._rng
        real_w, reactive_var = self._loads(dt_s)
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
            jitter_v = gauss(0.0, VOLTAGE_JITTER_V)
            volts = voltage.step(dt_s) + jitter_v - LINE_OHM * line_a
            volts = round(VOLTAGE_LOW_V if volts < VOLTAGE_LOW_V
                          else VOLTAGE_HIGH_V if volts > VOLTAGE_HIGH_V else volts, 1)
            amps = net_w / (volts * pf) if panels is None else load_va / volts
            amps = round(0.0 if amps < 0.0 else MAX_CURRENT_A if amps > MAX_CURRENT_A else amps, 2)
            voltages.append(volts)
            currents.append(amps)
            factors.append(pf)
        frequency_hz = round(self._frequency.step(dt_s) + gauss(0.0, FREQUENCY_JITTER_HZ), 2)
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
        return self._reading(voltages, currents_a, factors, frequency_hz, power_factor,
                             powers, reactive, apparent, pv_w)

    def _reading(self, voltages, currents_a, factors, frequency_hz: float,
                 power_factor: float | None, powers: list[float], reactive: list[float],
                 apparent: list[float], pv_w: float) -> Reading:
        """The Reading of these per-phase values (power_factor: a pinned total PF, else P / S),
        and what the counters and the demand integrate from it."""
        power_total_w = powers[0] + powers[1] + powers[2]
        apparent_total_va = apparent[0] + apparent[1] + apparent[2]
        i1_a, i2_a, i3_a = currents_a
        neutral_a = neutral_current(i1_a, i2_a, i3_a)
        in_band = electric_in_band(voltages, currents_a, frequency_hz, factors, self.exports)
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
