"""The map file's schema: the keys of a [[register]] entry, the values each takes and the checks
of one entry, with the one-line MapError every problem becomes.

Every check names the entry it reads, as in
'profile mine.toml: register 3 (address 20): unknown quantity "frequencyy"'.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from typing import Any

from ..checks import is_finite_number, is_integer, is_long_integer, long_integer_text
from ..model import controls, quantities
from ..model.demand import PERIODS_MIN
from ..model.meters import METER_TYPES
from . import points

ENTRY_KEYS = ("address", "space", "type", "quantity", "value", "scale", "offset", "word_order", "length",
              "writable", "allowed", "min", "max", "absolute", "meter_types", "scale_factor", "control")
TEXT_QUANTITIES = ("serial_number", *quantities.STRINGS)  # what a string point may show
WRITABLE_QUANTITIES = quantities.SETTINGS
ADDRESS_MAX = 0xFFFF
# the integers each integer type holds; acc32/acc64 are unsigned accumulators
INTEGER_RANGES = {"uint16": (0, 2**16 - 1), "int16": (-(2**15), 2**15 - 1),
                  "uint32": (0, 2**32 - 1), "int32": (-(2**31), 2**31 - 1), "acc32": (0, 2**32 - 1),
                  "uint64": (0, 2**64 - 1), "int64": (-(2**63), 2**63 - 1), "acc64": (0, 2**64 - 1)}
SPACE_WORDS = {"holding": "the holding registers", "input": "the input registers"}
# |scale|: SunSpec's scale factors run from 10^-10 to 10^10, the built-in maps use 1 to 10,000.
# With |offset| up to OFFSET_MAX every quantity up to twice quantities.COUNTER_MAX stays below
# 1e26 once stored: a float32 holds it with 12 orders of magnitude to spare.
SCALE_MIN, SCALE_MAX = 1e-10, 1e10
OFFSET_MAX = 1e10  # above every reading (the largest, about 1.3e7 W) and any counter's start value
SCALE_FACTOR_RANGE = (-10, 10)  # a SunSpec sunssf: value = raw x 10^SF
SETTING_VALUES = {"unit_id": f"a unit id (0 to {quantities.UNIT_ID_MAX})",
                  "demand_period": f"a demand period ({', '.join(map(str, PERIODS_MIN))} min)"}
QUOTED_CHARS = 120  # a value quoted in a message is cut here: the message stays one short line
SITE_TYPES = ("inverter",)  # the maps a site serves that may show its quantities (model.site)
NO_DEMAND = ("water", "gas")  # meter types without a demand model: their demand_period is not a setting


class MapError(ValueError):
    """A map file that cannot be served: the message is one line, file, entry and problem."""


def show(value: Any) -> str:
    """A value as the message quotes it, on one line: "text", 20, true, [6, 16]; an integer of
    more than checks.SHOWN_DIGITS digits as 1.000e+400, and anything past QUOTED_CHARS cut."""
    if is_long_integer(value):
        return long_integer_text(value)
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)  # default: a TOML date or time
    except (ValueError, RecursionError):  # an integer past 4300 digits or deep nesting in a list
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= QUOTED_CHARS else text[:QUOTED_CHARS - 3] + "..."


def unknown(what: str, value: Any, choices: tuple[str, ...], listed: bool = True) -> str:
    """'unknown space "holdings" (did you mean "holding"?)', or the choices when none is close."""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.7)
        if close:
            return f"unknown {what} {show(value)} (did you mean {show(close[0])}?)"
    if listed:
        return f"unknown {what} {show(value)} (one of {', '.join(choices)})"
    return f"unknown {what} {show(value)}"


def a(kind: str) -> str:
    """The type with its article: 'a uint16', 'an int16'."""
    return f"an {kind}" if kind[0] in "aei" else f"a {kind}"


class EntryChecks:
    """Checks the entries of one document; every error names the source file and the entry."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.where = ""

    def fail(self, problem: str) -> MapError:
        return MapError(f"profile {self.source}: {self.where}{problem}")

    def word_order(self, value: Any) -> str:
        if value not in points.WORD_ORDERS:
            raise self.fail(unknown("word order", value, points.WORD_ORDERS))
        return value

    def space(self, value: Any) -> str:
        if value not in points.SPACES:
            raise self.fail(unknown("space", value, points.SPACES))
        return value

    def address(self, key: str, value: Any) -> int:
        if not is_integer(value) or not 0 <= value <= ADDRESS_MAX:
            raise self.fail(f"{key} {show(value)} is not an integer 0-65535")
        return value

    def number(self, key: str, value: Any) -> float | int:
        """A finite number as given: an int of any size stays exact, for exact range checks."""
        if not is_finite_number(value):
            raise self.fail(f"{key} {show(value)} is not a finite number")
        return value

    def point(self, number: int, entry: dict, word_order: str, file_type: str | None) -> points.Point:
        address = entry.get("address")
        valid = is_integer(address) and 0 <= address <= ADDRESS_MAX
        label = f"register {number} (address {address})" if valid else f"register {number}"
        self.where = f"{label}: "
        for key in entry:
            if key not in ENTRY_KEYS:
                raise self.fail(unknown("key", key, ENTRY_KEYS))
        if "address" not in entry:
            raise self.fail("address missing")
        self.address("address", address)
        space = self.space(entry.get("space", "holding"))
        kind, length, own_order = self.layout(entry, address, word_order)
        quantity, value = entry.get("quantity"), entry.get("value")
        control = self.control(entry, kind)  # an entry with a control has no quantity or value
        if control is None and ("quantity" in entry) == ("value" in entry):
            raise self.fail("give either quantity or value, not both" if "quantity" in entry
                            else "give a quantity, a value or a control")
        if "quantity" in entry:
            self.quantity(quantity, kind)
        elif control is None:
            value = self.constant(value, kind, length)
        scale, offset = self.scaling(entry, kind, quantity or control)
        absolute = entry.get("absolute", False)
        if not isinstance(absolute, bool):
            raise self.fail(f"absolute {show(absolute)} is not true or false")
        if absolute and (quantity is None or kind == "string"):
            raise self.fail("absolute applies to a numeric quantity")
        writable, allowed, minimum, maximum = self.writes(entry, quantity, value, kind, scale, offset)
        meter_types = self.meter_types(entry.get("meter_types"), file_type)
        if writable and quantity == "demand_period":
            self.demand_period(allowed, file_type, meter_types)
        scale_factor = self.scale_factor(entry, quantity or control, kind, writable and control is None)
        return points.Point(address=address, space=space, type=kind, quantity=quantity, value=value,
                            scale=float(scale), offset=float(offset), word_order=own_order, length=length,
                            writable=writable, allowed=allowed, minimum=minimum, maximum=maximum,
                            absolute=absolute, meter_types=meter_types, scale_factor=scale_factor,
                            control=control, label=label)

    def control(self, entry: dict, kind: str) -> str | None:
        """The site control an entry reads and a write sets (site-contract B7), or None."""
        if "control" not in entry:
            return None
        control = entry["control"]
        if not isinstance(control, str) or control not in controls.CONTROLS:
            raise self.fail(unknown("control", control, controls.CONTROL_NAMES))
        if "quantity" in entry or "value" in entry:
            raise self.fail("give one of quantity, value and control")
        if kind == "string":
            raise self.fail(f"control {show(control)} is a number: its type cannot be string")
        if "writable" in entry:
            raise self.fail("a control entry is writable by itself: leave out writable")
        if entry.get("space") == "input":
            raise self.fail("a control is written: it belongs in the holding registers")
        return control

    def scale_factor(self, entry: dict, quantity: str | None, kind: str, writable: bool) -> int | None:
        """The address of the entry's scale factor point (checked once every entry is read)."""
        if "scale_factor" not in entry:
            return None
        address = self.address("scale_factor", entry["scale_factor"])
        if quantity is None or kind == "string" or kind in points.FLOAT_TYPES or writable:
            raise self.fail("scale_factor applies to a quantity in an integer type, not writable")
        return address

    def layout(self, entry: dict, address: int, word_order: str) -> tuple[str, int, str]:
        """(type, length in registers, word order) of an entry."""
        kind = entry.get("type")
        if kind is None:
            raise self.fail("type missing")
        if kind not in points.VALUE_TYPES:
            raise self.fail(unknown("type", kind, points.VALUE_TYPES))
        text = kind == "string"
        if text:
            if "length" not in entry:
                raise self.fail("length missing: a string needs its length in registers")
            length = entry["length"]
            if not is_integer(length) or length < 1:
                raise self.fail(f"length {show(length)} is not a whole number of registers, at least 1")
        elif "length" in entry:
            raise self.fail(f"length applies to strings only: {a(kind)} takes {points.TYPE_REGISTERS[kind]}")
        else:
            length = points.TYPE_REGISTERS[kind]
        if address + length - 1 > ADDRESS_MAX:
            raise self.fail(f"its {show(length)} registers run past address 65535")
        if "word_order" not in entry:
            return kind, length, word_order
        own_order = self.word_order(entry["word_order"])
        if text or length == 1:
            raise self.fail(f"word_order applies to 32- and 64-bit types only, not {kind}")
        return kind, length, own_order

    def scaling(self, entry: dict, kind: str, quantity: str | None) -> tuple[float | int, float | int]:
        """(scale, offset) of an entry, bounded so that every value it can show fits its type."""
        scale = self.number("scale", entry.get("scale", 1.0))
        offset = self.number("offset", entry.get("offset", 0.0))
        if scale == 0:
            raise self.fail("scale 0 would store every value as 0")
        for key in ("scale", "offset"):
            if key in entry and kind == "string":
                raise self.fail(f"{key} applies to numbers, not to a string")
            if key in entry and quantity is None:
                raise self.fail(f"{key} applies to a quantity: give the constant as the value to store")
        if not SCALE_MIN <= abs(scale) <= SCALE_MAX:  # an int of any size compares exactly
            raise self.fail(f"scale {show(scale)} is out of range: its magnitude must be from "
                            f"{SCALE_MIN:g} to {SCALE_MAX:g}")
        if abs(offset) > OFFSET_MAX:
            raise self.fail(f"offset {show(offset)} is out of range: -{OFFSET_MAX:g} to {OFFSET_MAX:g}")
        return scale, offset

    def demand_period(self, allowed: tuple | None, file_type: str | None,
                      meter_types: tuple[str, ...] | None) -> None:
        """A writable demand_period: only for electric meters (the demand model's), and only the
        periods the model takes, listed."""
        types = meter_types or ((file_type,) if file_type else ())
        without = [kind for kind in types if kind in NO_DEMAND]
        if without:
            raise self.fail(f"demand_period cannot be writable on a {without[0]} meter: it has no demand")
        if allowed is None:
            raise self.fail("a writable demand_period needs allowed: a list of the periods "
                            f"({', '.join(map(str, PERIODS_MIN))} min)")

    def quantity(self, quantity: Any, kind: str) -> None:
        if not isinstance(quantity, str) or quantity not in quantities.NAME_SET:
            raise self.fail(unknown("quantity", quantity, quantities.NAMES, listed=False))
        if kind == "string" and quantity not in TEXT_QUANTITIES:
            raise self.fail(f"quantity {show(quantity)} is a number: a string shows "
                            f"{', '.join(TEXT_QUANTITIES)} or a text value")
        if kind != "string" and quantity in quantities.STRINGS:
            raise self.fail(f"quantity {show(quantity)} is text: its type must be string")

    def constant(self, value: Any, kind: str, length: int) -> float | int | str:
        """The value as stored: it must be of the type's kind and fit it."""
        if kind == "string":
            if not isinstance(value, str):
                raise self.fail(f"value {show(value)} is not text, as a string holds")
            if not value.isascii() or not value.isprintable():
                raise self.fail(f"value {show(value)} is not printable ASCII text")
            if len(value) > 2 * length:
                raise self.fail(f"value {show(value)} has {len(value)} characters: "
                                f"{length} registers hold {2 * length}")
            return value
        if isinstance(value, str):
            raise self.fail(f"value {show(value)} is text: {a(kind)} holds a number")
        self.number("value", value)
        self.fits("value", value, kind)
        return int(value) if kind in INTEGER_RANGES else value

    def fits(self, key: str, stored: float | int, kind: str) -> None:
        """stored (a finite number; an int of any size) fits the type: compared exactly."""
        if not is_finite_number(stored):
            raise self.fail(f"{key} {show(stored)} does not fit {a(kind)}")
        if kind in INTEGER_RANGES:
            low, high = INTEGER_RANGES[kind]
            if stored != int(stored):
                raise self.fail(f"{key} {show(stored)} is not a whole number, as {a(kind)} stores")
            if not low <= stored <= high:
                raise self.fail(f"{key} {show(stored)} does not fit {a(kind)} ({low} to {high})")
        elif abs(stored) > points.FLOAT_MAX[kind]:
            raise self.fail(f"{key} {show(stored)} does not fit {a(kind)}")

    def writes(self, entry: dict, quantity: str | None, value: Any, kind: str, scale: float,
               offset: float) -> tuple[bool, tuple | None, float | None, float | None]:
        """writable and the allowed values or range of a write, in the point's own unit."""
        writable = entry.get("writable", False)
        if not isinstance(writable, bool):
            raise self.fail(f"writable {show(writable)} is not true or false")
        control = "control" in entry  # writable by itself; min and max narrow its range
        if control and "allowed" in entry:
            raise self.fail("allowed applies to constants and settings: narrow a control with min and max")
        writable = writable or control
        if writable and entry.get("space") == "input":
            raise self.fail("writable applies to holding registers: clients write no others")
        if writable and quantity is not None and quantity not in WRITABLE_QUANTITIES:
            raise self.fail(f"quantity {show(quantity)} cannot be writable: only constants and "
                            f"{' and '.join(WRITABLE_QUANTITIES)} are")
        for key in ("allowed", "min", "max"):
            if key in entry and not writable:
                raise self.fail(f"{key} applies to a writable entry (writable = true)")
            if key in entry and kind == "string":
                raise self.fail(f"{key} applies to numbers, not to a string")
        allowed = entry.get("allowed")
        if allowed is not None:
            allowed = self.allowed(allowed, quantity, kind, scale, offset)
        minimum = None if "min" not in entry else self.number("min", entry["min"])
        maximum = None if "max" not in entry else self.number("max", entry["max"])
        if minimum is not None and maximum is not None and minimum > maximum:
            raise self.fail(f"min {show(minimum)} is above max {show(maximum)}")
        if quantity is None and writable and not control:  # its first value must be one a write may store
            if allowed is not None and value not in allowed:
                raise self.fail(f"value {show(value)} is not among allowed {show(list(allowed))}")
            if minimum is not None and value < minimum:
                raise self.fail(f"value {show(value)} is below min {show(minimum)}")
            if maximum is not None and value > maximum:
                raise self.fail(f"value {show(value)} is above max {show(maximum)}")
        return writable, allowed, minimum, maximum

    def allowed(self, allowed: Any, quantity: str | None, kind: str, scale: float, offset: float) -> tuple:
        """The allowed values of a write, each one the setting takes (a quantity) and that fits."""
        if not isinstance(allowed, list) or not allowed:
            raise self.fail(f"allowed {show(allowed)} is not a list of numbers")
        for choice in allowed:
            self.number("allowed value", choice)
            if quantity is None:
                self.fits("allowed value", choice, kind)
                continue
            if not takes(quantity, choice):  # before any arithmetic: a choice may be a huge int
                raise self.fail(f"allowed value {show(choice)} is not {SETTING_VALUES[quantity]}")
            stored = (choice + offset) * scale
            self.fits("allowed value", round(stored) if kind in INTEGER_RANGES else stored, kind)
        return tuple(dict.fromkeys(allowed))

    def meter_types(self, value: Any, file_type: str | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            raise self.fail(f"meter_types {show(value)} is not a list of meter types")
        for name in value:
            if name not in METER_TYPES:
                raise self.fail(unknown("meter type", name, METER_TYPES))
        if file_type is not None and file_type not in value:
            raise self.fail(f"meter_types {show(value)} leaves out the map's type {show(file_type)}: "
                            "the entry would never be served")
        return tuple(dict.fromkeys(value))


def takes(setting: str, value: float) -> bool:
    """True when the device takes value for a setting (quantities.SETTINGS): a unit id 0 to 247, a
    demand period the demand model has (demand.PERIODS_MIN)."""
    if setting == "demand_period":
        return value in PERIODS_MIN
    return 0 <= value <= quantities.UNIT_ID_MAX and value == int(value)


def check_overlaps(found: tuple[points.Point, ...], fail) -> None:
    """Two points on one register of one space are an error unless their meter types differ."""
    owners: dict[tuple[str, int], list[points.Point]] = {}
    for point in found:
        kinds = set(point.meter_types or METER_TYPES)
        for space in point.spaces():
            for address in range(point.address, point.end):
                here = owners.setdefault((space, address), [])
                for other in here:
                    if kinds & set(other.meter_types or METER_TYPES):
                        raise fail(f"{point.label}: overlaps {other.label} in {SPACE_WORDS[space]}")
                here.append(point)


def linked_scales(found: tuple[points.Point, ...], fail) -> tuple[points.Point, ...]:
    """The points with scale_factor = ADDRESS stored as their scale times 10^-SF, SF the value of
    the int16 constant at that address (a SunSpec sunssf point): the value a client decodes as
    raw x 10^SF is the quantity x scale, whatever SF a map (or hybrid.chain) gives."""
    factors = {(space, point.address): point for point in found for space in point.spaces()
               if point.type == "int16" and point.quantity is None and not point.writable}
    linked = []
    for point in found:
        if point.scale_factor is None:
            linked.append(point)
            continue
        factor = factors.get((point.spaces()[0], point.scale_factor))
        low, high = SCALE_FACTOR_RANGE
        if factor is None or not low <= factor.value <= high:
            raise fail(f"{point.label}: scale_factor {point.scale_factor} is not the address of an "
                       f"int16 constant from {low} to {high} in its space (a SunSpec sunssf)")
        scale = scaled(point.scale, factor.value)
        if not SCALE_MIN <= abs(scale) <= SCALE_MAX:
            raise fail(f"{point.label}: scale {point.scale:g} x 10^{-factor.value} is out of range: "
                       f"its magnitude must be from {SCALE_MIN:g} to {SCALE_MAX:g}")
        linked.append(dataclasses.replace(point, scale=scale))
    return tuple(linked)


def scaled(scale: float, factor: int) -> float:
    """scale x 10^-factor, exact for whole powers of ten up (10^2, not 1 / 10^-2)."""
    return scale * 10 ** -factor if factor <= 0 else scale / 10 ** factor


def site_entry(profile: points.Profile) -> str | None:
    """'register 3 (address 20): quantity "battery_soc"' for the first entry of a map that only a
    site can serve (a site quantity or a control, site-contract B7), or None."""
    for point in profile.points:
        if point.control is not None:
            return f"{point.label}: control {show(point.control)}"
        if point.quantity in quantities.SITE:
            return f"{point.label}: quantity {show(point.quantity)}"
    return None
