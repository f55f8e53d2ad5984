"""ServedMeter: one served meter as the control API names it."""
from __future__ import annotations

from .device import Device
from .fleet import meter_key

MAX_PAGE = 1000  # the most meters or sites one page of the API lists
# the readings a meter's row shows as its total and its rate, by meter type (else water and gas's)
TOTAL_AND_RATE = {"electric": ("energy_import", "power_total"),
                  "inverter": ("inverter_energy", "inverter_power")}


class ServedMeter:
    """One served meter as the control API names it, and the readings its row shows as its total
    and its rate."""

    __slots__ = ("id", "port", "unit_id", "device", "total_name", "rate_name", "pin_kind")

    def __init__(self, port: int, unit_id: int | None, device: Device) -> None:
        self.id = meter_key(port, unit_id)
        self.port = port
        self.unit_id = unit_id  # None outside gateway mode
        self.device = device
        self.total_name, self.rate_name = TOTAL_AND_RATE.get(device.meter_type, ("volume_total", "flow"))
        # what its pins are checked as: a site's grid meter follows the balance (pins.PINNABLE)
        self.pin_kind = "grid" if device.site is not None and device.meter_type == "electric" \
            else device.meter_type

    @property
    def panels(self) -> bool:
        return getattr(self.device.meter, "panels", None) is not None
