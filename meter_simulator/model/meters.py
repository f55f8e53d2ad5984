"""The meter types and make_meter: a new electric, water or gas meter with every counter at 0.

The models themselves: meter.py (what every meter shares), electric.py, flow.py (water,
gas); their normal bands: bands.py. A fleet of them stepping as arrays: engine.py.
"""
from __future__ import annotations

import random

from .electric import ElectricMeter
from .flow import GasMeter, WaterMeter
from .meter import Meter
from .processes import S_PER_H

__all__ = ["METER_TYPES", "Meter", "make_meter"]

METER_CLASSES = {"electric": ElectricMeter, "water": WaterMeter, "gas": GasMeter}
METER_TYPES = tuple(METER_CLASSES)


def make_meter(meter_type: str, rng: random.Random, time_of_day_s: float = 12 * S_PER_H,
               pv_kwp: float = 0.0) -> Meter:
    """A new meter of the given type ('electric', 'water' or 'gas') with every counter at 0;
    pv_kwp: the electric meter's solar panels (kWp, 0 for none)."""
    if meter_type == "electric":
        return ElectricMeter(rng, time_of_day_s, pv_kwp)
    if pv_kwp:
        raise ValueError(f"only an electric meter has solar panels, not a {meter_type} meter")
    return METER_CLASSES[meter_type](rng, time_of_day_s)

