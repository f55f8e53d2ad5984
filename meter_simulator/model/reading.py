"""Reading: one tick of one meter in physical units, what a register map encodes."""
from __future__ import annotations

from dataclasses import dataclass

NO_TEMPERATURE_C = -50.0  # a meter without a thermometer: the seed map's offset encodes it as 0


@dataclass(frozen=True)
class Reading:
    """One tick's readings in physical units; fields a meter type lacks stay 0."""

    total: float  # kWh (electric) or m3 (water, gas)
    rate: float  # W (electric) or L/min (water, gas)
    voltages_v: tuple[float, float, float] = (0.0, 0.0, 0.0)
    currents_a: tuple[float, float, float] = (0.0, 0.0, 0.0)
    frequency_hz: float = 0.0
    power_factor: float = 0.0  # electric: the total P / S, signed
    flow_l_min: float = 0.0
    temperature_c: float = NO_TEMPERATURE_C
    pressure: float = 0.0  # bar (water) or mbar (gas)
    in_band: bool = True  # every reading inside its normal band: coil 1
    # electric, per phase L1..L3, derived from the shown V, I and PF so P = V*I*PF and S = V*I hold
    power_factors: tuple[float, float, float] = (0.0, 0.0, 0.0)  # signed: negative while exporting
    powers_w: tuple[float, float, float] = (0.0, 0.0, 0.0)  # active power, import positive
    reactive_var: tuple[float, float, float] = (0.0, 0.0, 0.0)  # positive: inductive
    apparent_va: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pv_w: float = 0.0  # the solar panels' generation (electric meters with panels)
    current_neutral_a: float = 0.0  # neutral current of the shown phase currents
