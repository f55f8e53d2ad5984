"""Extremes: a map must encode every tick the simulator can reach, checked before it is served.

check_encodes() compiles a map for a meter type and encodes a tick with every source (the
reading, the counters, the demands, the device's settings and stored values) at its lowest,
its highest and zero; a point that cannot encode one is named in a one-line EncodeError.
"""
from __future__ import annotations

import dataclasses

from ..model import controls, pins, quantities
from ..model.demand import PERIODS_MIN
from ..model.meter import fast_reading
from ..model.reading import Reading
from ..model.site import MAX_SITE_PIN_W, Balance
from .codec import INTEGER_CODES, CompiledMap, compile_map, space_points
from .points import FLOAT_MAX, FLOAT_TYPES, Point, Profile


class EncodeError(ValueError):
    """A map that cannot encode a reachable tick; the message is one line naming the register."""


PHASE_VA_MAX = pins.RANGES["voltage_l1"][1] * pins.RANGES["current_l1"][1]  # a pinned phase: 4.3e6
# (lowest, highest) of each Reading field a map reads, over every meter type, pin and solar panel
READING_RANGES = {
    "total": (0.0, quantities.COUNTER_MAX), "rate": (0.0, 3 * PHASE_VA_MAX),
    "voltages_v": pins.RANGES["voltage_l1"], "currents_a": pins.RANGES["current_l1"],
    "frequency_hz": pins.RANGES["frequency"], "power_factor": (-1.0, 1.0),
    "flow_l_min": pins.RANGES["flow"], "temperature_c": pins.RANGES["temperature"],
    "pressure": pins.RANGES["pressure"], "power_factors": (-1.0, 1.0),
    "powers_w": (-PHASE_VA_MAX, PHASE_VA_MAX), "reactive_var": (-PHASE_VA_MAX, PHASE_VA_MAX),
    "apparent_va": (0.0, PHASE_VA_MAX), "pv_w": (0.0, 3 * PHASE_VA_MAX),
    "current_neutral_a": pins.RANGES["current_l1"],
}
# the largest magnitude of a site's values (W, V, A, %, a state code): above the pins' 100 kW
SITE_VALUE_MAX = 10 * MAX_SITE_PIN_W
DEMAND_MAX = 3 * PHASE_VA_MAX  # the largest demand: a total power (W, VA); currents are far below
SERIAL_NUMBER_MAX = 65535 * 1000 + quantities.UNIT_ID_MAX  # device.serial_number of the last port
EXTREMES = ("lowest", "highest", "zero")


class _Device:
    """What a map reads of a device (the m of the expressions), at one extreme."""

    def __init__(self, extreme: str, stored: dict) -> None:
        index = EXTREMES.index(extreme)
        self.online = (0, 1, 0)[index]
        self.unit_id = (0, quantities.UNIT_ID_MAX, 0)[index]
        self.serial_number = (0, SERIAL_NUMBER_MAX, 0)[index]
        self.demand_period = (min(PERIODS_MIN), max(PERIODS_MIN), 0)[index]
        self.demand_time = (0.0, float(max(PERIODS_MIN)), 0.0)[index]
        self.stored = stored


def stored_extreme(point: Point, extreme: str) -> float | int | str:
    """A value a client can write into a writable constant, at one extreme of its type."""
    if point.type == "string":
        return "~" * (2 * point.length) if extreme == "highest" else ""
    if extreme == "zero":
        return 0
    if point.type in FLOAT_TYPES:
        top = FLOAT_MAX[point.type]
    else:
        _, bits, signed = INTEGER_CODES[point.type]
        top = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        if extreme == "lowest":
            return -top - 1 if signed else 0
    return top if extreme == "highest" else -top


def extreme_tick(compiled: CompiledMap, extreme: str) -> tuple:
    """(r, c, d, m) with every source at its lowest, its highest or zero."""
    index = EXTREMES.index(extreme)
    fields = {}
    for field in dataclasses.fields(Reading):
        if field.name in READING_RANGES:
            value = (*READING_RANGES[field.name], 0.0)[index]
            fields[field.name] = (value,) * 3 if isinstance(field.default, tuple) else value
    inverter = compiled.meter_type == "inverter"  # a site's: its counters, and the balance
    names = quantities.SITE_COUNTERS if inverter else quantities.ELECTRIC_COUNTERS + quantities.FLOW_COUNTERS
    counters = dict.fromkeys(names, (0.0, quantities.COUNTER_MAX, 0.0)[index])
    demands = dict.fromkeys(quantities.DEMANDS + quantities.MAX_DEMANDS, (0.0, DEMAND_MAX, 0.0)[index])
    stored = {address: stored_extreme(point, extreme) for address, point in compiled.writable.items()
              if point.quantity is None}
    reading = fast_reading(**fields, site=site_extreme(extreme))  # a site's devices carry a balance
    return reading, counters, demands, _Device(extreme, stored)


def site_extreme(extreme: str) -> Balance:
    """A site's balance (a Reading's site) with every value at -SITE_VALUE_MAX, +SITE_VALUE_MAX or 0."""
    value = (-SITE_VALUE_MAX, SITE_VALUE_MAX, 0.0)[EXTREMES.index(extreme)]
    fields = dict.fromkeys(Balance.__slots__, value)
    fields.update(loads_w=(value,) * 3, has_battery=extreme != "zero",
                  controls=dict.fromkeys(controls.CONTROL_NAMES, value))
    return Balance(**fields)


def check_encodes(profile: Profile, meter_type: str) -> CompiledMap:
    """The profile compiled for a meter type, once it has encoded a tick with every source at its
    lowest, its highest and zero; EncodeError naming the register that fails (or the map)."""
    try:
        compiled = compile_map(profile, meter_type)
    except Exception as exc:  # validation: whatever stops the generated code, the map cannot be served
        raise EncodeError(f"cannot be compiled for {meter_type} meters ({reason(exc)})") from None
    for extreme in EXTREMES:
        tick = extreme_tick(compiled, extreme)
        try:
            compiled.encode(*tick)
        except Exception as exc:  # as above
            raise EncodeError(f"{culprit(profile, meter_type, tick)}: cannot be encoded for {meter_type} "
                              f"meters with every reading at its {extreme} ({reason(exc)})") from None
    return compiled


def culprit(profile: Profile, meter_type: str, tick: tuple) -> str:
    """The label of the first point that cannot encode tick alone, or 'the map'."""
    for space in ("holding", "input"):
        for point in space_points(profile, meter_type, space):
            alone = dataclasses.replace(profile, points=(point,), blocks=())
            try:
                compile_map(alone, meter_type).encode(*tick)
            except Exception:  # the point that fails is the one to name
                return point.label or f"the point at address {point.address}"
    return "the map"


def reason(exc: BaseException) -> str:
    """An exception as one line: 'OverflowError: float too large to pack with f format'."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())
