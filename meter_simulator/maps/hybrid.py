"""The hybrid inverter's SunSpec chain for one site's configuration (site-contract A4).

The chain is data: the built-in map sunspec-hybrid (builtin/sunspec-hybrid.toml) is the layout
with a battery. chain() turns it into the configuration's profile:

- without a battery it drops models 124 and 802 and model 160's battery modules 3 and 4, moves
  what follows down to close the gaps, sets 160's L and N for the two PV strings, shows DERTyp 4
  (PV) in model 120 and every remaining battery point as SunSpec's "not implemented";
- every scale factor is the map's, raised one decade at a time only while the largest value the
  configuration can produce (WRtg, Bmax, E_max and what follows from them) does not fit a point
  that names it (the map's scale_factor links: the points and their sunssf are data).

A profile is built once per configuration and kept, so a hundred sites share one (and its compiled
encoder); its scale factors never change while the process runs.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Callable

from ..model.site import BATTERY_V_EMPTY, INVERTER_EFFICIENCY, STRING_SHARES, STRING_V_DIM, Site
from . import profiles
from .codec import NOMINAL_AC_V, NOMINAL_BATTERY_V
from .points import Point, Profile
from .schema import INTEGER_RANGES, SCALE_FACTOR_RANGE

BUILT_IN_CHAIN = "sunspec-hybrid"
FIRST_MODEL = 40002  # after "SunS"
END_MODEL_ID = 0xFFFF
NAMEPLATE_MODEL, MPPT_MODEL = 120, 160
BATTERY_MODELS = (124, 802)  # storage and battery base: only with a battery
DER_TYPE_OFFSET = 2  # model 120's DERTyp: after ID and L
MPPT_COUNT_OFFSET = 8  # model 160's N: after ID, L, four scale factors and Evt (2 registers)
MPPT_FIXED = 10  # model 160's registers before its modules
MODULE_REGISTERS = 20
PV_STRINGS = 2  # model 160's modules 1 and 2; 3 and 4 carry the battery
PV_ONLY, PV_STORAGE = 4, 82  # DERTyp
NOT_IMPLEMENTED = {"uint16": 0xFFFF, "int16": -0x8000, "uint32": 0xFFFFFFFF, "int32": -0x80000000,
                   "acc32": 0, "string": ""}  # SunSpec's "not implemented" of each type the map uses
LOWEST_AC_V = 207.0  # the grid's band bottom (230 V - 10 %): the largest AC current of a power


def largest(rated_w: float, battery_max_w: float, capacity_wh: float) -> dict[str, float]:
    """The largest magnitude of each scaled quantity of the chain a configuration can produce:
    powers up to WRtg and Bmax, the PV's DC up to (WRtg + Bmax) / 0.97 (the battery charging
    from the PV besides a full output), currents from those at the lowest voltages."""
    pv_dc_w = (rated_w + battery_max_w) / INVERTER_EFFICIENCY
    string_w = pv_dc_w * max(STRING_SHARES)
    phase_a = rated_w / 3.0 / LOWEST_AC_V
    battery_a = battery_max_w / BATTERY_V_EMPTY
    return {
        "inverter_power": rated_w, "inverter_apparent_power": rated_w, "inverter_rated_power": rated_w,
        "current_l1": phase_a, "current_l2": phase_a, "current_l3": phase_a, "current_sum": 3.0 * phase_a,
        "inverter_rated_current": rated_w / (3.0 * NOMINAL_AC_V),
        "pv_dc_power": pv_dc_w, "pv_dc_power_1": string_w, "pv_dc_power_2": string_w,
        "pv_dc_current": pv_dc_w / STRING_V_DIM, "pv_dc_current_1": string_w / STRING_V_DIM,
        "pv_dc_current_2": string_w / STRING_V_DIM,
        "battery_power": battery_max_w, "battery_charge_power": battery_max_w,
        "battery_discharge_power": battery_max_w, "battery_max_power": battery_max_w,
        "battery_current": battery_a, "battery_charge_current": battery_a,
        "battery_discharge_current": battery_a,
        "battery_capacity": capacity_wh / 1000.0, "battery_capacity_ah": capacity_wh / NOMINAL_BATTERY_V,
    }


@functools.cache  # one profile a configuration: every site of a run shares it
def chain(battery: bool, rated_w: float, battery_max_w: float = 0.0, capacity_wh: float = 0.0) -> Profile:
    """The inverter's chain for a configuration: with or without a battery, WRtg (W), Bmax (W) and
    E_max (Wh) deciding the scale factors; checked to encode every reachable tick."""
    if not battery:
        battery_max_w = capacity_wh = 0.0
    profile = profiles.built_in(BUILT_IN_CHAIN)
    found = profile.points if battery else without_battery(profile.points)
    found = raised(found, largest(rated_w, battery_max_w, capacity_wh))
    profile = dataclasses.replace(profile, points=found)
    profiles.check(profile)  # compiles it once, for every device that serves it
    return profile


def site_chain(site: Site) -> Profile:
    """The chain of a site's inverter."""
    battery = site.battery
    if battery is None:
        return chain(False, site.rated_w)
    return chain(True, site.rated_w, battery.max_w, battery.capacity_wh)


def models(found: Iterable[Point]) -> list[tuple[int, int, int]]:
    """(model id, first address, address after its last register) of each model of the chain, walked
    from 40002 by the constant ID and L points, as a SunSpec client walks it, up to the end model."""
    values = {point.address: point.value for point in found if point.quantity is None}
    chain_models, address = [], FIRST_MODEL
    while values[address] != END_MODEL_ID:
        end = address + 2 + values[address + 1]
        chain_models.append((values[address], address, end))
        address = end
    return chain_models


def without_battery(found: tuple[Point, ...]) -> tuple[Point, ...]:
    """The chain's points without a battery: models 124 and 802 and model 160's modules 3 and 4
    dropped and the gaps closed, 160's L and N for the PV strings, DERTyp 4, and every other
    battery point (and its scale factor) not implemented."""
    starts = {model_id: (start, end) for model_id, start, end in models(found)}
    removed = [starts[model_id] for model_id in BATTERY_MODELS]
    mppt_start, mppt_end = starts[MPPT_MODEL]
    modules_end = mppt_start + MPPT_FIXED + PV_STRINGS * MODULE_REGISTERS
    removed.append((modules_end, mppt_end))
    constants = {starts[NAMEPLATE_MODEL][0] + DER_TYPE_OFFSET: PV_ONLY,
                 mppt_start + 1: modules_end - mppt_start - 2,  # L
                 mppt_start + MPPT_COUNT_OFFSET: PV_STRINGS}  # N
    kept = [dataclasses.replace(point, value=constants[point.address]) if point.address in constants
            else point for point in found
            if not any(start <= point.address < end for start, end in removed)]
    return closed_up(not_implemented(kept, is_battery), removed)


def is_battery(point: Point) -> bool:
    return point.quantity is not None and point.quantity.startswith("battery_")


def not_implemented(found: list[Point], which: Callable[[Point], bool]) -> list[Point]:
    """The points for which which(point) holds shown as SunSpec's "not implemented", and so their
    scale factors unless another point still names them."""
    gone = [point for point in found if which(point)]
    kept = [point for point in found if not which(point)]
    factors = {point.scale_factor for point in gone} - {point.scale_factor for point in kept}
    return [blank(point) if which(point) or point.address in factors else point for point in found]


def blank(point: Point) -> Point:
    """A point as a constant of SunSpec's "not implemented" value of its type."""
    return dataclasses.replace(point, quantity=None, value=NOT_IMPLEMENTED[point.type], scale=1.0,
                               offset=0.0, scale_factor=None, writable=False, allowed=None,
                               minimum=None, maximum=None, control=None)


def closed_up(found: list[Point], removed: list[tuple[int, int]]) -> tuple[Point, ...]:
    """The points moved down over the removed ranges [start, end), and their scale factor links."""
    def moved(address: int) -> int:
        return address - sum(end - start for start, end in removed if end <= address)

    out = []
    for point in found:
        address = moved(point.address)
        link = None if point.scale_factor is None else moved(point.scale_factor)
        if address != point.address or link != point.scale_factor:
            point = dataclasses.replace(point, address=address, scale_factor=link,
                                        label=f"{point.label} moved to {address}")
        out.append(point)
    return tuple(out)


def raised(found: tuple[Point, ...], bounds: dict[str, float]) -> tuple[Point, ...]:
    """The points with each scale factor raised one decade at a time while a point that names it
    could not show the largest value of its quantity (bounds) in its type."""
    decades: dict[int, int] = {}
    for point in found:
        if point.scale_factor is not None and point.quantity in bounds:
            needed = decades_needed(point, bounds[point.quantity])
            decades[point.scale_factor] = max(decades.get(point.scale_factor, 0), needed)
    out = []
    for point in found:
        if decades.get(point.address):
            factor = point.value + decades[point.address]
            if factor > SCALE_FACTOR_RANGE[1]:
                raise ValueError(f"{point.label}: a scale factor of {factor} is past SunSpec's")
            point = dataclasses.replace(point, value=factor)
        elif decades.get(point.scale_factor):
            point = dataclasses.replace(point, scale=point.scale / 10 ** decades[point.scale_factor])
        out.append(point)
    return tuple(out)


def decades_needed(point: Point, largest_value: float) -> int:
    """How many decades a point's scale factor must rise for the largest value to fit its type."""
    top = INTEGER_RANGES[point.type][1]
    most = SCALE_FACTOR_RANGE[1] - SCALE_FACTOR_RANGE[0]  # past it raised() refuses the factor
    decades = 0
    while decades <= most and not round(largest_value * abs(point.scale) / 10 ** decades) <= top:
        decades += 1
    return decades
