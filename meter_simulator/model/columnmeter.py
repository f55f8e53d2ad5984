"""ColumnMeter: one meter of columns (model.columns), seen as a Meter.

It holds nothing but its columns and its row: what it shows is read from the tick the columns
published last, when asked, so a fleet's memory is its arrays and not a model per meter. It
takes what a state file resumes (a total, saved counters and maxima) in place; anything that
changes how the meter itself behaves (a pin, a reset, a write, a catch-up) first detach()es it
into the model of its row (an ElectricMeter, a WaterMeter, a GasMeter), which steps on its own
from then on.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .columns import Columns, Tick
from .meter import Meter, restore_counters, split_total
from .reading import Reading

NO_PINS: Mapping[str, float] = MappingProxyType({})


class ColumnDemand:
    """What a Device asks of a meter's demand model, for one row at one tick."""

    __slots__ = ("_columns", "_row")

    def __init__(self, columns: Columns, row: int) -> None:
        self._columns, self._row = columns, row

    @property
    def values(self) -> dict[str, float]:
        return self._columns.reading(self._row, self._columns.tick)[2]

    @property
    def period_min(self) -> int:
        return self._columns.demand.period_min

    @property
    def time_min(self) -> float:
        return self._columns.tick.demand_time_min


class ColumnMeter:
    """Row row of columns, with the Meter interface a Device, the state file and the control
    API use; the updater detach()es it before anything that changes the meter's behaviour."""

    __slots__ = ("columns", "row")
    lazy = True
    overrides = NO_PINS

    def __init__(self, columns: Columns, row: int) -> None:
        self.columns, self.row = columns, row

    # what its model says of every meter of its type
    meter_type = property(lambda self: self.columns.model.meter_type)
    counter_names = property(lambda self: self.columns.model.counter_names)
    total_counter = property(lambda self: self.columns.model.total_counter)
    total_parts = property(lambda self: self.columns.model.total_parts)

    @property
    def tick(self) -> Tick:
        """The tick the columns published last: what the meter shows now."""
        return self.columns.tick

    def shown(self, tick: Tick) -> tuple[Reading, dict[str, float], dict[str, float]]:
        """(reading, counters, demands) at tick."""
        return self.columns.reading(self.row, tick)

    @property
    def reading(self) -> Reading:
        return self.shown(self.columns.tick)[0]

    @property
    def counters(self) -> dict[str, float]:
        """The counters by name, a copy."""
        return self.shown(self.columns.tick)[1]

    @property
    def total(self) -> float:
        return self.counters[self.total_counter]

    def total_and_rate(self) -> tuple[float, float]:
        """The total and the rate (electric: the net power, W) shown now."""
        return self.columns.total_and_rate(self.row, self.columns.tick)

    @property
    def demand(self) -> ColumnDemand | None:
        return ColumnDemand(self.columns, self.row) if self.columns.has_demand else None

    @property
    def time_of_day_s(self) -> float:
        return self.columns.tick.time_of_day_s

    @property
    def pv_kwp(self) -> float:
        return getattr(self.columns, "pv_kwp", 0.0)

    @property
    def panels(self) -> bool | None:
        """Not None when the meter has solar panels (as ElectricMeter.panels)."""
        return True if self.pv_kwp else None

    def state_values(self) -> dict[str, float]:
        """Every counter (and maximum demand) by name, for the state file."""
        return self.columns.state_values(self.row)

    def restore_values(self, values: Mapping[str, float]) -> Reading:
        """Meter.restore_values, in the row."""
        counters = self.counters
        self.columns.resume(self.row, counters, restore_counters(counters, values))
        return self.reading

    def set_total(self, total: float, proportional: bool = False) -> Reading:
        """Meter.set_total, in the row."""
        counters = self.counters
        split_total(counters, self.total_counter, self.total_parts, total, proportional)
        self.columns.resume(self.row, counters)
        return self.reading

    def detach(self) -> Meter:
        """The ElectricMeter of this row, in its state; the row is left out from now on."""
        return self.columns.detach(self.row)
