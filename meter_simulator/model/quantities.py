"""The quantities a register map can show: their names (fixed units), which are counters (they wrap
in an integer register) and which a client may write; and one tick's values by name."""
from __future__ import annotations

PHASES = ("l1", "l2", "l3")


def phased(*stems: str) -> tuple[str, ...]:
    """Each stem for the three phases: voltage -> voltage_l1, voltage_l2, voltage_l3."""
    return tuple(f"{stem}_{phase}" for stem in stems for phase in PHASES)


# counters the electric meter integrates (kWh, kvarh, kVAh, Ah), total and per phase
ELECTRIC_COUNTERS = (
    "energy_import", "energy_export", *phased("energy_import", "energy_export"),
    "reactive_energy_import", "reactive_energy_export",
    *phased("reactive_energy_import", "reactive_energy_export"),
    "apparent_energy", *phased("apparent_energy"),
    "apparent_energy_import", "apparent_energy_export",
    *phased("apparent_energy_import", "apparent_energy_export"),
    "reactive_energy_q1", "reactive_energy_q2", "reactive_energy_q3", "reactive_energy_q4",
    *phased("reactive_energy_q1", "reactive_energy_q2", "reactive_energy_q3", "reactive_energy_q4"),
    "ampere_hours",
)
FLOW_COUNTERS = ("volume_total",)  # m3
# sums of counters, shown like counters
DERIVED_COUNTERS = ("energy_total", *phased("energy_total"), "reactive_energy_total",
                    *phased("reactive_energy_total"))
DEMANDS = ("demand_power_total", "demand_power_import", "demand_power_export", "demand_apparent",
           *phased("demand_current"), "demand_current_neutral")
MAX_DEMANDS = tuple(f"max_{name}" for name in DEMANDS)
# the inverter's counters (kWh; model.site.INVERTER_COUNTERS), then their sum over the two strings
SITE_COUNTERS = ("inverter_energy", "pv_energy_1", "pv_energy_2", "battery_energy_charged",
                 "battery_energy_discharged", "pv_energy")
# A site's quantities (the inverter's map; site-contract A7) and their fixed units: the tick's
# balance and nameplate, then what the SunSpec chain shows besides (per string, battery charge
# and discharge), then the counters
SITE_UNITS = {
    "load_power": "W", "pv_available_power": "W", "pv_dc_power": "W", "pv_dc_power_1": "W",
    "pv_dc_power_2": "W", "pv_ac_power": "W", "battery_power": "W", "inverter_power": "W",
    "grid_power": "W", "battery_soc": "%", "inverter_state": "-", "battery_capacity": "kWh",
    "battery_max_power": "W", "inverter_rated_power": "W", "battery_voltage": "V",
    "battery_current": "A",
    "pv_dc_voltage": "V", "pv_dc_current": "A", "pv_dc_current_1": "A", "pv_dc_current_2": "A",
    "battery_charge_power": "W", "battery_discharge_power": "W", "battery_charge_current": "A",
    "battery_discharge_current": "A", "battery_reserve": "%", "battery_state": "-",
    "battery_capacity_ah": "Ah", "inverter_apparent_power": "VA", "inverter_temperature": "°C",
    "inverter_rated_current": "A",
    **dict.fromkeys(SITE_COUNTERS, "kWh"),
}
SITE_INSTANTANEOUS = tuple(name for name in SITE_UNITS if name not in SITE_COUNTERS)
SITE = frozenset(SITE_UNITS)  # only a site's maps show these
COUNTERS = frozenset(ELECTRIC_COUNTERS + FLOW_COUNTERS + DERIVED_COUNTERS + SITE_COUNTERS)

INSTANTANEOUS = (
    *phased("voltage"), "voltage_avg", "voltage_l1_l2", "voltage_l2_l3", "voltage_l3_l1",
    "voltage_ll_avg",
    *phased("current"), "current_sum", "current_avg", "current_neutral",
    *phased("power"), "power_total", "power_import",
    *phased("apparent_power"), "apparent_power_total",
    *phased("reactive_power"), "reactive_power_total",
    *phased("power_factor"), "power_factor_total",
    *phased("phase_angle"), "phase_angle_total",
    "frequency",
    *phased("thd_voltage"), "thd_voltage_avg", "thd_voltage_l1_l2", "thd_voltage_l2_l3",
    "thd_voltage_l3_l1", "thd_voltage_ll_avg", *phased("thd_current"), "thd_current_avg",
    "pv_power",
    "flow", "temperature", "pressure",
)
# The largest value a counter may hold (kWh, kvarh, kVAh, Ah or m3; also a maximum demand in W,
# VA or A): a state file holding more is refused, and a map must encode every counter up to it.
# Integration cannot get there: the largest readings pins allow (3 x 6553.5 V x 655.35 A, about
# 12,900 kVA) at --speed 100000 add 1.3e9 kVAh a real hour, 88 years to 1e15 (1e12 would take a
# month), and the API's total jump stops at 1e9.
COUNTER_MAX = 1e15
# settings of the device: a map may make them writable
SETTINGS = ("unit_id", "demand_period")
UNIT_ID_MAX = 247  # the highest Modbus unit id: unit_id holds 0 to 247 (0 is broadcast)
IDENTITY = ("online", "meter_type", "serial_number", "serial_number_high", "serial_number_low",
            "demand_time")
STRINGS = ("version", "profile")  # text quantities, for string points only (serial_number too)

NAMES = tuple(dict.fromkeys(INSTANTANEOUS + ELECTRIC_COUNTERS + DERIVED_COUNTERS + FLOW_COUNTERS
                            + DEMANDS + MAX_DEMANDS + SETTINGS + IDENTITY + STRINGS
                            + SITE_INSTANTANEOUS + SITE_COUNTERS))
NAME_SET = frozenset(NAMES)
