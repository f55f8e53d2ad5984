"""A meter's readings by quantity name, in the fixed units of the one vocabulary the register maps
use: what the control API, the Python API and the dashboard show.

The values come from the same expressions the register maps are encoded with (codec.py),
over the reading, counters and demands a meter published, so a reading equals its
registers decoded with their scale, within one count.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping

from ..model import quantities
from . import codec

# instantaneous quantities the models provide (harmonic distortion is a constant, not a reading)
ELECTRIC_INSTANT = tuple(name for name in quantities.INSTANTANEOUS
                         if not name.startswith("thd_") and name not in (
                             "flow", "temperature", "pressure", "pv_power"))
ELECTRIC = (ELECTRIC_INSTANT + quantities.ELECTRIC_COUNTERS + quantities.DERIVED_COUNTERS
            + quantities.DEMANDS + quantities.MAX_DEMANDS)
FLOW = ("volume_total", "flow", "temperature", "pressure")
# the inverter of a site: the balance and nameplate of site-contract A7, then its counters
INVERTER = ("load_power", "pv_available_power", "pv_dc_power", "pv_dc_power_1", "pv_dc_power_2",
            "pv_ac_power", "battery_power", "inverter_power", "grid_power", "battery_soc",
            "inverter_state", "battery_capacity", "battery_max_power", "inverter_rated_power",
            "battery_voltage", "battery_current", *quantities.SITE_COUNTERS)


def names(meter_type: str, panels: bool = False) -> tuple[str, ...]:
    """The readings a meter of this type shows (with solar panels: also pv_power)."""
    if meter_type == "inverter":
        return INVERTER
    if meter_type != "electric":
        return FLOW
    return ELECTRIC + ("pv_power",) if panels else ELECTRIC


def symbol(name: str, meter_type: str) -> str:
    """The unit symbol of a reading: V, A, W, kWh, m³, L/min, ... ('' for a power factor, '-' for
    a state code)."""
    if name in quantities.SITE_UNITS:
        return quantities.SITE_UNITS[name]
    if name == "pressure":
        return "bar" if meter_type == "water" else "mbar"
    stems = (("max_demand_apparent", "VA"), ("max_demand_current", "A"), ("max_demand_", "W"),
             ("demand_apparent", "VA"), ("demand_current", "A"), ("demand_", "W"),
             ("voltage", "V"), ("current", "A"), ("apparent_power", "VA"),
             ("reactive_power", "var"), ("power_factor", ""), ("phase_angle", "°"),
             ("power", "W"), ("pv_power", "W"), ("frequency", "Hz"),
             ("reactive_energy", "kvarh"), ("apparent_energy", "kVAh"), ("energy", "kWh"),
             ("ampere_hours", "Ah"), ("volume", "m³"), ("flow", "L/min"), ("temperature", "°C"))
    for stem, symbol in stems:
        if name.startswith(stem):
            return symbol
    return ""


@functools.cache  # a few (meter type, panels) pairs
def _compile(meter_type: str, panels: bool):
    listed = names(meter_type, panels)
    return codec.values_function(listed, meter_type), {name: symbol(name, meter_type) for name in listed}


def values(meter_type: str, shown: tuple, device, panels: bool = False) -> dict[str, float]:
    """Every reading of a meter by name, from what it published: shown is (reading, counters,
    demands), device the Device (its settings)."""
    reading, counters, demands = shown
    return _compile(meter_type, panels)[0](reading, counters, demands or _NO_DEMANDS, device)


def symbols(meter_type: str, panels: bool = False) -> Mapping[str, str]:
    """The unit symbol of every reading values() gives."""
    return _compile(meter_type, panels)[1]


_NO_DEMANDS = dict.fromkeys(quantities.DEMANDS + quantities.MAX_DEMANDS, 0.0)
