"""Readings pinned at run time: the names each meter type can pin, their ranges, and the checks.

The HTTP control API (PUT .../overrides) and the Python API share merged(): it validates a
whole change request against the meter's present pins and returns the new pin set without
changing anything; Meter.pin() then shows it. Pure: stdlib only, no clock, no threads.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

from ..checks import is_finite_number

PHASE_PINS = ("voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2", "current_l3",
              "power_factor_l1", "power_factor_l2", "power_factor_l3")
PHASE_FACTOR_PINS = ("power_factor_l1", "power_factor_l2", "power_factor_l3")
FLOW_PINS = ("flow", "temperature", "pressure")
PINNABLE: dict[str, tuple[str, ...]] = {
    "electric": ("power_total", "voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2",
                 "current_l3", "frequency", "power_factor_total", *PHASE_FACTOR_PINS),
    "water": FLOW_PINS,
    "gas": FLOW_PINS,
    # a site's grid meter: its power and currents follow the site's balance (pin the site's load)
    "grid": ("voltage_l1", "voltage_l2", "voltage_l3", "frequency", "power_factor_total",
             *PHASE_FACTOR_PINS),
    "inverter": (),  # the site's pins move it
}
# (lowest, highest) of each pin, both included: what the registers can show (contract section 4)
RANGES: dict[str, tuple[float, float]] = {
    "power_total": (0.0, 100000.0),
    **dict.fromkeys(("voltage_l1", "voltage_l2", "voltage_l3"), (0.0, 6553.5)),
    **dict.fromkeys(("current_l1", "current_l2", "current_l3"), (0.0, 655.35)),
    "frequency": (0.0, 655.35),
    **dict.fromkeys(("power_factor_total", *PHASE_FACTOR_PINS), (0.0, 1.0)),
    "flow": (0.0, 6553.5),
    "temperature": (-50.0, 6503.5),
    "pressure": (0.0, 655.35),
}
EXPORT_RANGE_W = (-100000.0, 100000.0)  # power_total of a meter with solar panels: below 0 exports
ECHOED_CHARS = 40  # an echoed name or value is cut here: an error message stays one short line


class PinError(ValueError):
    """A change of pins that is refused; str() is a one-line message for the client."""


def value_range(name: str, panels: bool = False) -> tuple[float, float]:
    """(lowest, highest) value of a pinnable reading; power_total goes below 0 with panels."""
    if name == "power_total" and panels:
        return EXPORT_RANGE_W
    return RANGES[name]


def echoed(value: object) -> str:
    """A name or value as JSON would write it (strings quoted, escaped onto one line), cut short."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        text = str(int(value))  # 150000.0 -> 150000, as a client wrote it in JSON
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** ECHOED_CHARS:
        # str() of a huge int is slow, past 4300 digits refused
        text = f"a number of more than {ECHOED_CHARS} digits"
    else:
        text = json.dumps(value, default=repr)
    return text if len(text) <= ECHOED_CHARS else text[:ECHOED_CHARS - 3] + "..."


def checked_value(name: str, value: object, panels: bool) -> float:
    """value as a float when it is a finite number inside name's range, else PinError."""
    if not is_finite_number(value):  # a huge int is compared exactly below
        raise PinError(f"{name} must be a finite number, not {echoed(value)}")
    low, high = value_range(name, panels)
    if not low <= value <= high:
        hint = " (below 0 is export: only a meter with solar panels)" if (
            name == "power_total" and value < 0 and not panels) else ""
        raise PinError(f"{name} must be from {echoed(low)} to {echoed(high)}, not {echoed(value)}{hint}")
    return float(value)


def check_combination(pins: Mapping[str, float]) -> None:
    """PinError when the pins contradict each other."""
    if "power_total" in pins:
        phase = [name for name in PHASE_PINS if name in pins]
        if phase:  # power_total sets the currents from the voltages and power factors
            raise PinError(f"power_total cannot be pinned together with {', '.join(phase)}")
        if pins.get("power_factor_total") == 0.0 and pins["power_total"] != 0.0:
            raise PinError(f"power_total {echoed(pins['power_total'])} cannot flow at "
                           "power_factor_total 0")
    if "power_factor_total" in pins:
        phase = [name for name in PHASE_FACTOR_PINS if name in pins]
        if phase:
            raise PinError(f"power_factor_total cannot be pinned together with {', '.join(phase)}")


def merged(meter_type: str, current: Mapping[str, float], changes: Mapping[str, object],
           panels: bool = False) -> dict[str, float]:
    """The complete pin set after changes (name -> number, or None to release) over current.

    Checks the whole request and changes nothing: PinError for a body that is not an object,
    an unknown name (also one the meter type does not measure), a value that is not a finite
    number or out of range, and contradicting pins. The result lists names in PINNABLE order.
    panels: the electric meter has solar panels, so power_total may be below 0.
    """
    try:
        pinnable = PINNABLE[meter_type]
    except KeyError:
        raise ValueError(f"unknown meter type {meter_type!r}") from None
    if not isinstance(changes, Mapping):
        raise PinError(f"overrides must be an object of reading names and values, not {echoed(changes)}")
    pins = dict(current)
    for name, value in changes.items():
        if meter_type == "grid" and name not in pinnable and name in PINNABLE["electric"]:
            raise PinError(f"{name} of a site's {meter_type} meter follows the site's "
                           "balance: pin load_w or pv_available_w of the site (PUT /api/sites/PORT)")
        if not pinnable:
            raise PinError(f"a site's {meter_type} has no readings to pin: pin load_w or "
                           "pv_available_w of the site (PUT /api/sites/PORT)")
        if not isinstance(name, str) or name not in pinnable:
            raise PinError(f"unknown reading {echoed(name)}: pinnable are {', '.join(pinnable)}")
        if value is None:
            pins.pop(name, None)
        else:
            pins[name] = checked_value(name, value, bool(panels))
    check_combination(pins)
    return {name: pins[name] for name in pinnable if name in pins}
