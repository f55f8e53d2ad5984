"""The normal bands (contract section 6): coil 1 is ON while every reading of a meter is inside;
each meter asks these rules of the values it shows, every step."""
from __future__ import annotations

VOLTAGE_BAND_V = (207.0, 253.0)
CURRENT_BAND_A = (0.0, 63.0)
FREQUENCY_BAND_HZ = (49.5, 50.5)
POWER_FACTOR_BAND = (0.8, 1.0)  # every phase's, without solar panels (with them: any)
BANDS = {
    "electric": {"voltage_v": VOLTAGE_BAND_V, "frequency_hz": FREQUENCY_BAND_HZ,
                 "power_factor": POWER_FACTOR_BAND, "current_a": CURRENT_BAND_A},
    "water": {"flow_l_min": (0.0, 40.0), "temperature_c": (0.0, 30.0), "pressure": (1.0, 8.0)},
    "gas": {"flow_l_min": (0.0, 100.0), "temperature_c": (-20.0, 40.0), "pressure": (17.0, 25.0)},
}


def inside(value: float, band: tuple[float, float]) -> bool:
    """True when value lies in the band, both ends included."""
    return band[0] <= value <= band[1]


def electric_in_band(voltages_v: tuple[float, ...], currents_a: tuple[float, ...], frequency_hz: float,
                     power_factors: tuple[float, ...], panels: bool) -> bool:
    """Every phase's voltage and current, the frequency and (without solar panels, whose export
    takes the power factor anywhere) every phase's signed power factor inside its band."""
    low_v, high_v = VOLTAGE_BAND_V
    low_a, high_a = CURRENT_BAND_A
    low_pf, high_pf = POWER_FACTOR_BAND
    return (low_v <= min(voltages_v) and max(voltages_v) <= high_v and low_a <= min(currents_a)
            and max(currents_a) <= high_a and inside(frequency_hz, FREQUENCY_BAND_HZ)
            and (panels or (low_pf <= min(power_factors) and max(power_factors) <= high_pf)))


def flow_in_band(meter_type: str, flow_l_min: float, temperature_c: float, pressure: float) -> bool:
    """The flow, temperature and pressure of a water or gas meter inside their bands."""
    bands = BANDS[meter_type]
    return (inside(flow_l_min, bands["flow_l_min"]) and inside(temperature_c, bands["temperature_c"])
            and inside(pressure, bands["pressure"]))
