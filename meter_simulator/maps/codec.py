"""Codec: a register map compiled into one function that encodes a whole tick.

Every type's encoding lives here: uint16, int16, uint32, int32, acc32, uint64,
int64, acc64, float32, float64 and string, in either word order. A point stores
(quantity + offset) x scale: integers rounded, then clamped to the type's range
(instantaneous values) or wrapped modulo 2**bits (counters and accumulators, as
a real meter's registers roll over); floats as they are; strings NUL-padded,
first character in the high byte.

No float register holds an infinity or a NaN, and struct never refuses a value:
every tick source is finite (pins, state files and the API check theirs), and
a point whose largest value, (QUANTITY_BOUND + |offset|) x |scale|, cannot be
shown to fit its float type is clamped to the type's largest finite value, NaN
stored as 0.0. A map file's bounds on scale and offset make every point of a
valid map fit, so no clamp costs a tick anything (clamping every float point
would cost an SDM630 meter's tick about 5 %). extremes.check_encodes() encodes a map
at the extremes of every source before it is served.

compile_map() turns a profile's points, for one meter type, into Python source
for a single function (as collections.namedtuple did): one struct.pack call a
readable segment, the value expressions inline. A tick of an SDM630 then costs
one call, not a call a point. values_function() turns the same expressions, unscaled,
into one function that gives a meter's readings by name. Each takes the tick's sources:

    r  the Reading (model.reading)         c  the meter's counters (a dict)
    d  the demands (a dict, empty if none)  m  the device (unit id, serial, stored values)
"""
from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

from .. import __version__
from ..model import quantities
from .image import Image
from .points import FLOAT_MAX, FLOAT_TYPES, WRAPPING_TYPES, Point, Profile

# struct codes and bits of the numeric types; signed types clamp to their own range
INTEGER_CODES = {"uint16": ("H", 16, False), "int16": ("h", 16, True), "uint32": ("I", 32, False),
                 "int32": ("i", 32, True), "acc32": ("I", 32, False), "uint64": ("Q", 64, False),
                 "int64": ("q", 64, True), "acc64": ("Q", 64, False)}
FLOAT_CODES = {"float32": ("f", "I", 32), "float64": ("d", "Q", 64)}
NAN_STORED = 0.0  # what a float register shows for a value that is not a number
# The largest magnitude a numeric quantity takes: a derived counter, the sum of two counters of at
# most COUNTER_MAX each. Every reading is far below it (the largest, the total power of three phases
# pinned at 6553.5 V and 655.35 A, is 1.3e7 W), and so is a serial number (6.6e7).
QUANTITY_BOUND = 2 * quantities.COUNTER_MAX
THD_VOLTAGE_PCT = 1.5  # harmonic distortion is not simulated: small constants, as a quiet grid shows
THD_CURRENT_PCT = 4.0
METER_TYPE_CODES = {"electric": 0, "water": 1, "gas": 2, "inverter": 3}
NOMINAL_AC_V = 230.0  # the inverter's nameplate: its rated current at three times this voltage
NOMINAL_BATTERY_V = 385.0  # the battery's nameplate: the middle of its 350-420 V (model.site)


def _phase_expressions() -> dict[str, str]:
    """Python expressions of every quantity an electric meter shows, over r, c, d and m."""
    expressions: dict[str, str] = {}
    for i, phase in enumerate(quantities.PHASES):
        expressions[f"voltage_{phase}"] = f"r.voltages_v[{i}]"
        expressions[f"current_{phase}"] = f"r.currents_a[{i}]"
        expressions[f"power_{phase}"] = f"r.powers_w[{i}]"
        expressions[f"apparent_power_{phase}"] = f"r.apparent_va[{i}]"
        expressions[f"reactive_power_{phase}"] = f"r.reactive_var[{i}]"
        expressions[f"power_factor_{phase}"] = f"r.power_factors[{i}]"
        expressions[f"phase_angle_{phase}"] = f"_angle(r.power_factors[{i}])"
        expressions[f"thd_voltage_{phase}"] = repr(THD_VOLTAGE_PCT)
        expressions[f"thd_current_{phase}"] = repr(THD_CURRENT_PCT)
        expressions[f"energy_total_{phase}"] = f"(c['energy_import_{phase}'] + c['energy_export_{phase}'])"
        expressions[f"reactive_energy_total_{phase}"] = \
            f"(c['reactive_energy_import_{phase}'] + c['reactive_energy_export_{phase}'])"
    for pair, (a, b) in (("l1_l2", (0, 1)), ("l2_l3", (1, 2)), ("l3_l1", (2, 0))):
        expressions[f"voltage_{pair}"] = f"_line(r.voltages_v[{a}], r.voltages_v[{b}])"
        expressions[f"thd_voltage_{pair}"] = repr(THD_VOLTAGE_PCT)
    expressions.update({
        "voltage_avg": "(r.voltages_v[0] + r.voltages_v[1] + r.voltages_v[2]) / 3.0",
        "voltage_ll_avg": "_line_mean(r.voltages_v)",
        "current_sum": "(r.currents_a[0] + r.currents_a[1] + r.currents_a[2])",
        "current_avg": "(r.currents_a[0] + r.currents_a[1] + r.currents_a[2]) / 3.0",
        "current_neutral": "_neutral(r.currents_a)",
        "power_total": "(r.powers_w[0] + r.powers_w[1] + r.powers_w[2])",
        "power_import": "r.rate",  # what the import energy integrates: P, or 0 while exporting
        "apparent_power_total": "(r.apparent_va[0] + r.apparent_va[1] + r.apparent_va[2])",
        "reactive_power_total": "(r.reactive_var[0] + r.reactive_var[1] + r.reactive_var[2])",
        "power_factor_total": "r.power_factor",
        "phase_angle_total": "_angle(r.power_factor)",
        "frequency": "r.frequency_hz",
        "thd_voltage_avg": repr(THD_VOLTAGE_PCT),
        "thd_voltage_ll_avg": repr(THD_VOLTAGE_PCT),
        "thd_current_avg": repr(THD_CURRENT_PCT),
        "pv_power": "r.pv_w",
        "energy_total": "(c['energy_import'] + c['energy_export'])",
        "reactive_energy_total": "(c['reactive_energy_import'] + c['reactive_energy_export'])",
    })
    for name in quantities.ELECTRIC_COUNTERS:
        expressions[name] = f"c[{name!r}]"
    for name in quantities.DEMANDS + quantities.MAX_DEMANDS:
        expressions[name] = f"d[{name!r}]"
    expressions["demand_period"] = "m.demand_period"
    expressions["demand_time"] = "m.demand_time"
    return expressions


ELECTRIC_EXPRESSIONS = _phase_expressions()
FLOW_EXPRESSIONS = {"flow": "r.flow_l_min", "temperature": "r.temperature_c", "pressure": "r.pressure",
        "volume_total": "c['volume_total']"}
COMMON_EXPRESSIONS = {"online": "m.online", "unit_id": "m.unit_id", "serial_number": "m.serial_number",
          "serial_number_high": "(m.serial_number >> 16)", "serial_number_low": "(m.serial_number & 0xFFFF)"}


def _per(numerator: str, denominator: str) -> str:
    """The expression numerator / denominator, 0 where the denominator is 0 (no voltage, no current)."""
    return f"({numerator} / {denominator} if {denominator} else 0.0)"


def _site_expressions() -> dict[str, str]:
    """Expressions of the site quantities a Reading with a site (model.site.Balance) shows."""
    expressions = {name: f"r.site.{key}" for name, key in (
        ("load_power", "load_w"), ("pv_available_power", "pv_available_w"), ("pv_dc_power", "pv_dc_w"),
        ("pv_dc_power_1", "pv_dc_w_1"), ("pv_dc_power_2", "pv_dc_w_2"), ("pv_ac_power", "pv_ac_w"),
        ("battery_power", "battery_w"), ("inverter_power", "inverter_w"), ("grid_power", "grid_w"),
        ("battery_soc", "soc_pct"), ("inverter_state", "state"), ("battery_capacity", "capacity_kwh"),
        ("battery_max_power", "battery_max_w"), ("inverter_rated_power", "rated_w"),
        ("battery_voltage", "battery_v"), ("pv_dc_voltage", "string_v"),
        ("battery_reserve", "reserve_pct"), ("battery_state", "charge_state"),
        ("inverter_temperature", "cabinet_c"))}
    charge, discharge = "max(-r.site.battery_w, 0.0)", "max(r.site.battery_w, 0.0)"
    expressions.update({
        "pv_dc_current": _per("r.site.pv_dc_w", "r.site.string_v"),
        "pv_dc_current_1": _per("r.site.pv_dc_w_1", "r.site.string_v"),
        "pv_dc_current_2": _per("r.site.pv_dc_w_2", "r.site.string_v"),
        "battery_current": _per("r.site.battery_w", "r.site.battery_v"),
        "battery_charge_power": charge, "battery_discharge_power": discharge,
        "battery_charge_current": _per(charge, "r.site.battery_v"),
        "battery_discharge_current": _per(discharge, "r.site.battery_v"),
        "battery_capacity_ah": f"(r.site.capacity_kwh * {1000.0 / NOMINAL_BATTERY_V!r})",
        "inverter_apparent_power": "abs(r.site.inverter_w)",
        "inverter_rated_current": f"(r.site.rated_w / {3 * NOMINAL_AC_V!r})",
    })
    return expressions


# The site quantities read r.site, the balance: the inverter's Reading carries it and so does a
# site's grid meter's, so that both maps may show them (and control entries). A plain electric
# meter's Reading has none: the program refuses such a map without --site (app.siteoptions).
SITE_EXPRESSIONS = _site_expressions()
INVERTER_EXPRESSIONS = {
    **{name: ELECTRIC_EXPRESSIONS[name] for name in (
        *quantities.phased("voltage", "current"), "voltage_avg", "voltage_l1_l2", "voltage_l2_l3",
        "voltage_l3_l1", "voltage_ll_avg", "current_sum", "current_avg", "frequency")},
    **SITE_EXPRESSIONS,
    **{name: f"c[{name!r}]" for name in quantities.SITE_COUNTERS if name != "pv_energy"},
    "pv_energy": "(c['pv_energy_1'] + c['pv_energy_2'])",
}
ELECTRIC_EXPRESSIONS.update(SITE_EXPRESSIONS)
TYPE_EXPRESSIONS = {"electric": ELECTRIC_EXPRESSIONS, "inverter": INVERTER_EXPRESSIONS}


def expression(quantity: str, meter_type: str) -> str:
    """The Python expression of a quantity for a meter type; '0.0' for one it does not have."""
    own = TYPE_EXPRESSIONS.get(meter_type, FLOW_EXPRESSIONS)
    if quantity == "meter_type":
        return repr(METER_TYPE_CODES[meter_type])
    return own.get(quantity) or COMMON_EXPRESSIONS.get(quantity) or "0.0"


def _angle(power_factor: float) -> float:
    return math.degrees(math.acos(min(abs(power_factor), 1.0)))


def _line(v_a: float, v_b: float) -> float:
    """Line-to-line voltage of two phases 120 degrees apart."""
    return math.sqrt(v_a * v_a + v_b * v_b + v_a * v_b)


def _line_mean(volts) -> float:
    return (_line(volts[0], volts[1]) + _line(volts[1], volts[2]) + _line(volts[2], volts[0])) / 3.0


def _neutral(amps) -> float:
    """|I1 + I2 a + I3 a^2|, a the 120-degree rotation: the neutral current of unbalanced phases."""
    i1, i2, i3 = amps
    return math.sqrt(max(i1 * i1 + i2 * i2 + i3 * i3 - i1 * i2 - i2 * i3 - i3 * i1, 0.0))


def _swap(value: int, bits: int) -> int:
    """An unsigned value with its 16-bit words in the other order (low word first)."""
    words = [(value >> shift) & 0xFFFF for shift in range(0, bits, 16)]
    out = 0
    for word in words:
        out = (out << 16) | word
    return out


def _float_bits(value: float, bits: int) -> int:
    code, raw = ("f", "I") if bits == 32 else ("d", "Q")
    return struct.unpack(f">{raw}", struct.pack(f">{code}", value))[0]


def text_bytes(text: str, length: int) -> bytes:
    """A string point: NUL-padded (or cut) to length registers, first character in the high byte."""
    return text.encode("utf-8")[:2 * length].ljust(2 * length, b"\0")


HELPERS = {"_angle": _angle, "_line": _line, "_line_mean": _line_mean, "_neutral": _neutral,
           "_swap": _swap, "_float_bits": _float_bits, "_text": text_bytes, "Image": Image,
           "round": round, "min": min, "max": max, "abs": abs, "str": str,
           "inf": math.inf, "nan": math.nan}  # repr() of a float that is not finite


def value_source(point: Point, meter_type: str, profile: Profile) -> str:
    """The expression of a point's physical value (before scale and offset)."""
    if point.control is not None:  # the balance carries the controls' values of its moment
        return f"r.site.controls[{point.control!r}]"
    if point.quantity is None:
        if point.writable:
            return f"m.stored[{point.address}]"
        return repr(point.value)
    if point.quantity == "version":
        return repr(__version__)
    if point.quantity == "profile":
        return repr(profile.name)
    return expression(point.quantity, meter_type)


def needs_clamp(point: Point) -> bool:
    """True unless every value the float point can show provably fits its type: a constant (checked
    when the map was read, or written by a client as a value of the type itself) or a quantity whose
    bound (QUANTITY_BOUND + |offset|) x |scale| fits. A NaN or infinite scale needs the clamp."""
    if point.quantity is None:
        return False
    return not (QUANTITY_BOUND + abs(point.offset)) * abs(point.scale) <= FLOAT_MAX[point.type]


def float_clamped(source: str, kind: str) -> str:
    """source clamped to the float type's finite range, NaN as NAN_STORED: inline, since a call a
    point would cost more than the comparison (one chained comparison when the value fits)."""
    top = repr(FLOAT_MAX[kind])
    return (f"(v if -{top} <= (v := {source}) <= {top} "
            f"else {top} if v > 0.0 else -{top} if v < 0.0 else {NAN_STORED!r})")


def point_code(point: Point, meter_type: str, profile: Profile) -> tuple[str, str]:
    """(struct code, argument expression) of one point."""
    source = value_source(point, meter_type, profile)
    if " " in source:
        source = f"({source})"
    if point.type == "string":
        if point.quantity == "serial_number":
            source = "str(m.serial_number)"
        return f"{2 * point.length}s", f"_text({source}, {point.length})"
    if point.absolute:
        source = f"abs({source})"
    if point.offset:
        source = f"({source} + {point.offset!r})"
    if point.scale != 1:
        source = f"({source} * {point.scale!r})"
    if point.type in FLOAT_TYPES:
        code, raw, bits = FLOAT_CODES[point.type]
        if needs_clamp(point):
            source = float_clamped(source, point.type)
        if point.word_order == "big":
            return code, source
        return raw, f"_swap(_float_bits({source}, {bits}), {bits})"
    code, bits, signed = INTEGER_CODES[point.type]
    wraps = point.type in WRAPPING_TYPES or point.quantity in quantities.COUNTERS
    # signed quantities clamp symmetrically: the most negative value is SunSpec's "not implemented",
    # which a constant (checked to fit its type when the map was read) may store
    low, high = (1 - (1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if signed and point.quantity is None:
        low -= 1
    if wraps:
        arg = f"(round({source}) % {1 << bits})"
        if signed and point.word_order == "big":
            arg = f"((round({source}) + {1 << (bits - 1)}) % {1 << bits} - {1 << (bits - 1)})"
    else:
        arg = f"min(max(round({source}), {low}), {high})"
    if point.word_order == "big" or bits == 16:
        return code, arg
    if signed:
        arg = f"({arg} % {1 << bits})"
    return code.upper(), f"_swap({arg}, {bits})"


def merged_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges [start, end) merged where they touch or overlap, in address order."""
    out: list[list[int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(start, end) for start, end in out]


def space_points(profile: Profile, meter_type: str, space: str) -> list[Point]:
    """The points of one register space that a meter type has, in address order."""
    return sorted((point for point in profile.points if space in point.spaces()
                   and (point.meter_types is None or meter_type in point.meter_types)),
                  key=lambda point: point.address)


def space_segments(profile: Profile, meter_type: str, space: str) -> list[tuple[int, int, list[Point]]]:
    """(start, end, points) of each readable segment of a space."""
    points = space_points(profile, meter_type, space)
    ranges = [(point.address, point.end) for point in points]
    ranges += [(block.start, block.end + 1) for block in profile.blocks if space in block.spaces()]
    return [(start, end, [point for point in points if start <= point.address < end])
            for start, end in merged_ranges(ranges)]


def segment_source(start: int, end: int, points: list[Point], meter_type: str, profile: Profile
                   ) -> tuple[str, list[str]]:
    """(struct format, argument expressions) that encode one segment."""
    fmt, args, address = [">"], [], start
    for point in points:
        if point.address > address:
            fmt.append(f"{2 * (point.address - address)}x")
        code, arg = point_code(point, meter_type, profile)
        fmt.append(code)
        args.append(arg)
        address = point.end
    if end > address:
        fmt.append(f"{2 * (end - address)}x")
    return "".join(fmt), args


@dataclass(frozen=True)
class CompiledMap:
    """A profile for one meter type: encode(r, c, d, m) -> Image, and its source for reading."""

    profile: Profile
    meter_type: str
    encode: Callable
    source: str
    writable: dict[int, Point]  # first address -> writable point (holding space)


def folded(arg: str, namespace: dict) -> str:
    """An argument that reads no tick source, computed once: constants cost nothing a tick."""
    if any(f"{source}." in arg or f"{source}[" in arg for source in ("r", "c", "d", "m")):
        return arg
    return repr(eval(arg, dict(namespace)))  # noqa: S307 (our own generated expression)


def compile_map(profile: Profile, meter_type: str) -> CompiledMap:
    """The encoding function of a profile's map for one meter type."""
    namespace = dict(HELPERS)
    spaces: dict[str, list[str]] = {}
    packers: dict[str, str] = {}  # struct format -> the name of its pack function
    for space in ("holding", "input"):
        parts = []
        for start, end, points in space_segments(profile, meter_type, space):
            fmt, args = segment_source(start, end, points, meter_type, profile)
            args = ", ".join(folded(arg, namespace) for arg in args)
            name = packers.get(fmt)
            if name is None:
                name = packers[fmt] = f"_pack{len(packers)}"
                namespace[name] = struct.Struct(fmt).pack
            parts.append(f"({start}, {end}, {name}({args}))")
        spaces[space] = parts
    lines = ["def encode(r, c, d, m, bits=None):",
             f"    holding = ({''.join(part + ', ' for part in spaces['holding'])})"]
    if spaces["holding"] == spaces["input"]:  # the seed map: one image serves both spaces
        lines.append("    return Image(holding, holding, bits)")
    else:
        lines.append(f"    inputs = ({''.join(part + ', ' for part in spaces['input'])})")
        lines.append("    return Image(holding, inputs, bits)")
    encode, source = generated("encode", lines, namespace, f"<map {profile.name} {meter_type}>")
    writable = {point.address: point for point in space_points(profile, meter_type, "holding")
                if point.writable}
    return CompiledMap(profile, meter_type, encode, source, writable)


def generated(name: str, lines: list[str], namespace: dict, filename: str) -> tuple[Callable, str]:
    """(the function called name, its source) that lines of generated source define, run in
    namespace (the helpers and whatever else the expressions name)."""
    source = "\n".join(lines) + "\n"
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 (our own generated source)
    return namespace[name], source


def values_function(names: Sequence[str], meter_type: str) -> Callable:
    """values(r, c, d, m) -> {name: physical value} of these quantities for a meter type: the
    expressions the maps encode, unscaled, in one generated function."""
    items = ", ".join(f"{name!r}: {expression(name, meter_type)}" for name in names)
    lines = ["def values(r, c, d, m):", f"    return {{{items}}}"]
    return generated("values", lines, dict(HELPERS), f"<readings {meter_type}>")[0]


def written_value(point: Point, words: list[int]) -> float | str:
    """The physical value a client wrote into a point's registers (the inverse of the encoding)."""
    data = struct.pack(f">{len(words)}H", *words)
    if point.type == "string":
        return data.rstrip(b"\0").decode("utf-8", "replace")
    if point.word_order == "little" and len(words) > 1:
        data = b"".join(data[i:i + 2] for i in range(len(data) - 2, -1, -2))
    if point.type in FLOAT_TYPES:
        raw = struct.unpack(">" + FLOAT_CODES[point.type][0], data)[0]
    else:
        raw = struct.unpack(">" + INTEGER_CODES[point.type][0], data)[0]
    return raw / point.scale - point.offset


SEGMENT_BYTES = 100  # a segment's (start, end, bytes) tuple and bytes object, besides its registers


def image_bytes(profile: Profile, meter_type: str) -> int:
    """The memory one encoded Image of the map takes: two bytes a readable register, a space's
    segments once when both spaces read the same points (the seed map), and the objects."""
    holding = space_segments(profile, meter_type, "holding")
    inputs = space_segments(profile, meter_type, "input")
    spaces = (holding,) if holding == inputs else (holding, inputs)
    return sum(2 * (end - start) + SEGMENT_BYTES for segments in spaces for start, end, _ in segments)
