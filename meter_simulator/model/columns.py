"""Columns: many meters of one type at once, one row a meter; ElectricColumns: the electric
household of electric.py so.

A fleet's meters share their clock, their step and (with panels) their kWp, so their states
are columns of arrays and one step draws, derives and integrates every meter in a few
vectorised operations: the same processes (drifts, appliances switching, clouds), bands,
rounding and exact integration as ElectricMeter, drawn from one numpy generator seeded from
the fleet's random.Random. What a step shows is published as one Tick: new arrays, never
changed afterwards, so a reader that holds a Tick reads one tick of one meter whole.

A meter that a pin, a reset, a write or a catch-up touches leaves the columns: detach() gives
the ElectricMeter in exactly the row's state, which from then on steps on its own.
"""
from __future__ import annotations

import itertools
import math
import random

import numpy as np

from .bands import CURRENT_BAND_A, FREQUENCY_BAND_HZ, POWER_FACTOR_BAND, VOLTAGE_BAND_V
from .demandcolumns import DemandColumns
from .electric import (
    AH_PER_AS,
    ENERGY_NAMES,
    KWH_PER_WS,
    LINE_OHM,
    MAX_CURRENT_A,
    NOMINAL_V,
    PF_LOW,
    VOLTAGE_HIGH_V,
    VOLTAGE_LOW_V,
    ElectricMeter,
)
from .household import HouseholdColumns
from .meter import Meter, fast_reading
from .processes import DAY_S, S_PER_H
from .quantities import DEMANDS, ELECTRIC_COUNTERS, MAX_DEMANDS
from .reading import Reading
from .solar import MAX_KWP

COUNTER_INDEX = {name: index for index, name in enumerate(ELECTRIC_COUNTERS)}
# per kind of energy (electric.energy_names' order), the counter of L1, L2, L3 and the total
ENERGY_INDEX = np.array([[COUNTER_INDEX[name] for name in group] for group in ENERGY_NAMES]).T
(IMPORT, EXPORT, VAR_IMPORT, VAR_EXPORT, VA, VA_IMPORT, VA_EXPORT, Q1, Q2, Q3, Q4) = ENERGY_INDEX
AMPERE_HOURS = COUNTER_INDEX["ampere_hours"]

# the shown values of one tick, a column each in Tick.table
VOLTS, AMPS, FACTORS = slice(0, 3), slice(3, 6), slice(6, 9)
WATTS, VARS, VOLTAMPS = slice(9, 12), slice(12, 15), slice(15, 18)
HERTZ, PF_TOTAL, GENERATION, NEUTRAL, IN_BAND = 18, 19, 20, 21, 22
COLUMNS = 23
ELECTRIC_STATE = ELECTRIC_COUNTERS + MAX_DEMANDS  # what the state file keeps of an electric meter
MAXIMA = slice(len(DEMANDS), None)  # a tick's maximum demands, after the demands

TICK_NUMBERS = itertools.count()  # every Tick's number, distinct in the process


class Tick:
    """One published step of the columns: the shown table, counters and demands (never changed
    once published) and the time of day."""

    __slots__ = ("number", "table", "counters", "demands", "time_of_day_s", "demand_time_min")

    def __init__(self, table, counters, demands, time_of_day_s: float,
                 demand_time_min: float = 0.0) -> None:
        # what an image built of this tick keeps of it: a reference would keep its arrays alive
        self.number = next(TICK_NUMBERS)
        self.table, self.counters, self.demands = table, counters, demands
        self.time_of_day_s = time_of_day_s
        self.demand_time_min = demand_time_min  # minutes into the demand period


class Columns:
    """What the columns of every meter type share: the rows, the generator, the clock, the step
    rule (integrate what was shown, then draw and publish) and the rows that left."""

    model: type = Meter  # the scalar model a row is, and detach()es into
    has_demand = False

    def __init__(self, count: int, rng: random.Random, time_of_day_s: float) -> None:
        self.count = count
        self._rng = rng  # seeds the meters that leave the columns
        self._generator = np.random.default_rng(rng.getrandbits(64))
        self.time_of_day_s = time_of_day_s % DAY_S
        self._counters = np.zeros((count, len(self.model.counter_names)))
        self.detached = np.zeros(count, dtype=bool)
        self.tick: Tick | None = None

    def step(self, dt_s: float) -> Tick:
        """Advance every meter dt_s simulated seconds: integrate what each showed, then draw
        and publish the new readings."""
        dt_s = max(dt_s, 0.0)
        if dt_s > 0.0:
            self._integrate(dt_s)
        self.time_of_day_s = (self.time_of_day_s + dt_s) % DAY_S
        self.tick = self._publish(self._shown(self._draw(dt_s)))
        return self.tick

    def _integrate(self, dt_s: float) -> None:
        raise NotImplementedError

    def _draw(self, dt_s: float) -> tuple:
        raise NotImplementedError

    def _shown(self, raw: tuple) -> np.ndarray:
        raise NotImplementedError

    def _publish(self, table: np.ndarray) -> Tick:
        return Tick(table, self._counters, None, self.time_of_day_s)

    def reading(self, row: int, tick: Tick) -> tuple[Reading, dict, dict]:
        """(reading, counters, demands) of one meter at one tick, as its model shows them."""
        raise NotImplementedError

    def total_and_rate(self, row: int, tick: Tick) -> tuple[float, float]:
        """One meter's total and rate at one tick (electric: the net power, W), read cheaply."""
        raise NotImplementedError

    def state_values(self, row: int) -> dict[str, float]:
        """Every counter (and maximum demand) of one meter by name, for the state file."""
        return dict(zip(self.model.counter_names, self.tick.counters[row].tolist()))

    def resume(self, row: int, counters: dict, maxima: dict | None = None) -> None:
        """One meter's saved counters (and maximum demands by name), written in place into the
        tick published last: resuming from a state file, before clients read (a device that
        publishes afterwards builds its image again)."""
        self._counters[row] = [counters[name] for name in self.model.counter_names]

    def detach(self, row: int) -> Meter:
        """The model in exactly this row's state; the row is left out from now on."""
        self.detached[row] = True
        meter = self._new_model(random.Random(self._rng.getrandbits(64)))
        meter.counters.update(zip(self.model.counter_names, self._counters[row].tolist()))
        self._copy_state(row, meter)
        meter.reading = meter._derive()
        return meter

    def _new_model(self, rng: random.Random) -> Meter:
        return self.model(rng, self.time_of_day_s)

    def _copy_state(self, row: int, meter: Meter) -> None:
        """Give meter the row's processes and the raw values of the tick published last."""
        raise NotImplementedError


class ElectricColumns(Columns):
    """count electric households, optionally each with solar panels of pv_kwp kWp."""

    model = ElectricMeter
    has_demand = True

    def __init__(self, count: int, rng: random.Random, time_of_day_s: float = 12 * S_PER_H,
                 pv_kwp: float = 0.0) -> None:
        pv_kwp = float(pv_kwp)
        if not (math.isfinite(pv_kwp) and 0.0 <= pv_kwp <= MAX_KWP):
            raise ValueError(f"solar panels of {pv_kwp!r} kWp: 0 to {MAX_KWP:g} kWp")
        super().__init__(count, rng, time_of_day_s)
        self.pv_kwp = pv_kwp
        self._household = HouseholdColumns(count, self._generator, pv_kwp)
        self.demand = DemandColumns(count)
        self.tick = self._publish(self._shown(self._draw(0.0)))

    def _integrate(self, dt_s: float) -> None:
        """Add dt_s of the shown readings to new counters: exactly ElectricMeter._accumulate."""
        table = self.tick.table
        counters = self._counters.copy()  # the published tick keeps the old ones unchanged
        k = dt_s * KWH_PER_WS
        energy = _with_total(table[:, WATTS]) * k
        reactive = _with_total(table[:, VARS]) * k
        apparent = _with_total(table[:, VOLTAMPS]) * k
        imports = energy >= 0.0
        inductive = reactive >= 0.0
        counters[:, VA] += apparent
        counters[:, IMPORT] += np.where(imports, energy, 0.0)
        counters[:, EXPORT] -= np.where(imports, 0.0, energy)
        counters[:, VA_IMPORT] += np.where(imports, apparent, 0.0)
        counters[:, VA_EXPORT] += np.where(imports, 0.0, apparent)
        counters[:, VAR_IMPORT] += np.where(inductive, reactive, 0.0)
        counters[:, VAR_EXPORT] -= np.where(inductive, 0.0, reactive)
        magnitude = np.abs(reactive)
        counters[:, Q1] += np.where(imports & inductive, magnitude, 0.0)
        counters[:, Q4] += np.where(imports & ~inductive, magnitude, 0.0)
        counters[:, Q2] += np.where(~imports & inductive, magnitude, 0.0)
        counters[:, Q3] += np.where(~imports & ~inductive, magnitude, 0.0)
        counters[:, AMPERE_HOURS] += table[:, AMPS].sum(axis=1) * (dt_s * AH_PER_AS)
        self._counters = counters
        self.demand.add(dt_s, _demand_inputs(table))

    def _draw(self, dt_s: float) -> tuple:
        """The raw values of a step, (V, A, signed PF per phase, Hz, W generated): ElectricMeter._draw."""
        real_w, reactive_var, pv_w, supply_v, hz = self._household.draw(dt_s, self.time_of_day_s)
        net_w = real_w - (pv_w / 3.0)[:, None]  # a three-phase inverter at unity power factor
        load_va = np.hypot(net_w, reactive_var)
        if not self._household.panels:
            pf = np.round(np.clip(net_w / load_va, PF_LOW, 1.0), 3)
            line_a = net_w / (NOMINAL_V * pf)
        else:  # exporting: PF < 0 and |PF| anywhere in 0..1; the voltage rises with export
            with np.errstate(invalid="ignore", divide="ignore"):
                pf = np.where(load_va > 0.0, np.round(net_w / load_va, 3) + 0.0, 1.0)
            line_a = np.where(net_w >= 0.0, load_va, -load_va) / NOMINAL_V
        volts = np.round(np.clip(supply_v - LINE_OHM * line_a, VOLTAGE_LOW_V, VOLTAGE_HIGH_V), 1)
        amps = net_w / (volts * pf) if not self._household.panels else load_va / volts
        amps = np.round(np.clip(amps, 0.0, MAX_CURRENT_A), 2)
        return volts, amps, pf, hz, pv_w

    def _shown(self, raw: tuple) -> np.ndarray:
        """The shown table of raw values: P = V*I*PF, S = V*I, Q = sqrt(S^2 - P^2) per phase,
        the total PF, the neutral current and the bands (ElectricMeter._derive, unpinned)."""
        volts, amps, pf, hz, pv_w = raw
        table = np.empty((self.count, COLUMNS))
        table[:, VOLTS], table[:, AMPS], table[:, FACTORS] = volts, amps, pf
        apparent = table[:, VOLTAMPS] = volts * amps
        power = table[:, WATTS] = apparent * pf
        table[:, VARS] = np.sqrt(np.maximum(apparent * apparent - power * power, 0.0))
        power_total, apparent_total = power.sum(axis=1), apparent.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            table[:, PF_TOTAL] = np.where(apparent_total > 0.0, power_total / apparent_total, 1.0)
        table[:, HERTZ], table[:, GENERATION] = hz, pv_w
        table[:, NEUTRAL] = _neutral(amps)
        table[:, IN_BAND] = self._in_band(volts, amps, pf, hz)
        return table

    def _in_band(self, volts, amps, pf, hz) -> np.ndarray:
        """bands.electric_in_band for every meter."""
        inside = ((volts.min(axis=1) >= VOLTAGE_BAND_V[0]) & (volts.max(axis=1) <= VOLTAGE_BAND_V[1])
                  & (amps.min(axis=1) >= CURRENT_BAND_A[0]) & (amps.max(axis=1) <= CURRENT_BAND_A[1])
                  & (hz >= FREQUENCY_BAND_HZ[0]) & (hz <= FREQUENCY_BAND_HZ[1]))
        if not self._household.panels:  # export (panels) takes the power factor anywhere
            inside &= (pf.min(axis=1) >= POWER_FACTOR_BAND[0]) & (pf.max(axis=1) <= POWER_FACTOR_BAND[1])
        return inside

    def _publish(self, table: np.ndarray) -> Tick:
        demands = self.demand.update(_demand_inputs(table))
        return Tick(table, self._counters, demands, self.time_of_day_s, self.demand.time_min)

    # --- one meter ---
    def reading(self, row: int, tick: Tick) -> tuple[Reading, dict, dict]:
        """(reading, counters, demands) of one meter at one tick, as ElectricMeter shows them."""
        values = tick.table[row].tolist()
        counters = dict(zip(ELECTRIC_COUNTERS, tick.counters[row].tolist()))
        demands = dict(zip(DEMANDS + MAX_DEMANDS, tick.demands[row].tolist()))
        power_total = values[9] + values[10] + values[11]
        reading = fast_reading(
            total=counters["energy_import"], rate=power_total if power_total > 0.0 else 0.0,
            voltages_v=tuple(values[VOLTS]), currents_a=tuple(values[AMPS]),
            frequency_hz=values[HERTZ], power_factor=values[PF_TOTAL], in_band=bool(values[IN_BAND]),
            power_factors=tuple(values[FACTORS]), powers_w=tuple(values[WATTS]),
            reactive_var=tuple(values[VARS]), apparent_va=tuple(values[VOLTAMPS]),
            pv_w=values[GENERATION], current_neutral_a=values[NEUTRAL])
        return reading, counters, demands

    def total_and_rate(self, row: int, tick: Tick) -> tuple[float, float]:
        return float(tick.counters[row, 0]), sum(tick.table[row, WATTS].tolist())

    def state_values(self, row: int) -> dict[str, float]:
        tick = self.tick
        return dict(zip(ELECTRIC_STATE, tick.counters[row].tolist() + tick.demands[row, MAXIMA].tolist()))

    def resume(self, row: int, counters: dict, maxima: dict | None = None) -> None:
        super().resume(row, counters)
        if maxima:
            self.demand.restore_maxima(row, maxima)
            self.tick.demands[row, MAXIMA] = self.demand.maxima(row)

    def _new_model(self, rng: random.Random) -> ElectricMeter:
        return ElectricMeter(rng, self.time_of_day_s, self.pv_kwp)

    def _copy_state(self, row: int, meter: ElectricMeter) -> None:
        self._household.copy_to(row, meter)
        self.demand.copy_to(row, meter.demand)
        values = self.tick.table[row].tolist()
        meter._raw = (tuple(values[VOLTS]), tuple(values[AMPS]), tuple(values[FACTORS]), values[HERTZ],
                      values[GENERATION])


def _with_total(per_phase: np.ndarray) -> np.ndarray:
    """(N, 3) per-phase values and their sum: (N, 4), L1 to L3 then the total."""
    return np.concatenate((per_phase, per_phase.sum(axis=1, keepdims=True)), axis=1)


def _neutral(amps: np.ndarray) -> np.ndarray:
    """demand.neutral_current for every meter."""
    i1, i2, i3 = amps[:, 0], amps[:, 1], amps[:, 2]
    square = i1 * i1 + i2 * i2 + i3 * i3 - i1 * i2 - i2 * i3 - i3 * i1
    return np.sqrt(np.maximum(square, 0.0))


def _demand_inputs(table: np.ndarray) -> np.ndarray:
    """What the demand averages (demand.INPUTS' order) from a shown table."""
    power = table[:, WATTS].sum(axis=1)
    return np.column_stack((np.maximum(power, 0.0), np.maximum(-power, 0.0),
                            table[:, VOLTAMPS].sum(axis=1), table[:, AMPS], table[:, NEUTRAL]))
