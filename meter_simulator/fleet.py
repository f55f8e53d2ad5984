"""Which meters a run serves: one, N on consecutive ports, or a gateway of unit ids per port."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from .meters import make_meter
from .updater import MeterUnit


@dataclass
class Endpoint:
    """One listening port and the meters behind it."""

    port: int
    unit: MeterUnit | None = None  # a single meter answering every unit id
    units_by_id: dict[int, MeterUnit] | None = None  # gateway mode: unit id -> meter

    @property
    def units(self) -> list[MeterUnit]:
        return [self.unit] if self.unit is not None else list(self.units_by_id.values())


def plan(meter_type: str, port: int, count: int, unit_ids: Sequence[int] | None,
         rng: random.Random, time_of_day_s: float, new_unit) -> list[Endpoint]:
    """count ports from port, each one meter or (with unit_ids) one meter per unit id.

    Every meter draws its own random generator from rng, so the meters differ from
    one another and the whole fleet is reproducible from one seed. new_unit makes a
    MeterUnit (with its bank) from a meter.
    """
    endpoints = []
    for offset in range(count):
        def meter():
            return new_unit(make_meter(meter_type, random.Random(rng.getrandbits(64)), time_of_day_s))

        if unit_ids is None:
            endpoints.append(Endpoint(port + offset, unit=meter()))
        else:
            endpoints.append(Endpoint(port + offset, units_by_id={uid: meter() for uid in unit_ids}))
    return endpoints
