"""The fleet engine: a run's meters step as columns of arrays (numpy), one row a meter.

columns.py (what every type's columns share, and the electric household), flowcolumns.py
(water, gas), demandcolumns.py (the demand window), processcolumns.py (drifts and switches);
each meter a ColumnMeter (columnmeter.py) that detach()es into its scalar model (meters.py)
when something changes how it behaves.
"""
from __future__ import annotations

import random

from .columnmeter import ColumnMeter
from .columns import Columns, ElectricColumns
from .flowcolumns import GasColumns, WaterColumns
from .processes import S_PER_H

__all__ = ["ColumnMeter", "Columns", "make_columns"]


def make_columns(meter_type: str, count: int, rng: random.Random, time_of_day_s: float = 12 * S_PER_H,
                 pv_kwp: float = 0.0) -> Columns:
    """count new meters of the given type stepping together as columns, every counter at 0;
    pv_kwp: each electric meter's solar panels (kWp, 0 for none)."""
    if meter_type == "electric":
        return ElectricColumns(count, rng, time_of_day_s, pv_kwp)
    if pv_kwp:
        raise ValueError(f"only an electric meter has solar panels, not a {meter_type} meter")
    return {"water": WaterColumns, "gas": GasColumns}[meter_type](count, rng, time_of_day_s)
