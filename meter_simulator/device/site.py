"""A site's two devices: the hybrid inverter at unit id 1 and the grid meter at unit id 200, one
port, one model (model.site.Site) stepped and published as one.

The updater steps a site once a tick (the battery's integration first, then the household
and the balance) and publishes both devices together, so a read of either unit id after
the same tick shows the same balance.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from ..maps.points import Profile
from ..model.site import SLEEPING, Site
from .device import Device, serial_number

INVERTER_UNIT_ID = 1
GRID_UNIT_ID = 200  # where Fronius puts its meter, and where energy managers look for it
ASLEEP, SILENT = "asleep", "silent"  # --inverter-night: zeros while sleeping, or no answer at all
NIGHT_MODES = (ASLEEP, SILENT)


@dataclass(frozen=True)
class SitePlan:
    """What every site of a run has: its battery, panels and the inverter's map."""

    pv_kwp: float = 0.0
    battery_kwh: float = 0.0
    battery_kw: float | None = None  # None: half the capacity, at least 0.1 kW
    inverter_profile: Profile | None = None
    night: str = ASLEEP  # what the inverter does while it sleeps: ASLEEP or SILENT


class SiteDevices:
    """A site's model and its two devices, stepped and published together."""

    def __init__(self, site: Site, inverter: Device, grid: Device, night: str = ASLEEP) -> None:
        self.site = site
        self.inverter = inverter
        self.grid = grid
        self.night = night
        self.port = 0  # set by the plan
        self.columns = None  # the SiteColumns drawing its household with the other sites', if any
        inverter.site = grid.site = self
        self.follow_night()  # silent from the start when it starts at night

    @property
    def devices(self) -> tuple[Device, Device]:
        return self.inverter, self.grid

    def step(self, dt_s: float) -> None:
        """Advance dt_s simulated seconds (each device's catch-up already integrated)."""
        self.site.step(dt_s, self.grid.integrated_s, self.inverter.integrated_s)
        self.grid.integrated_s = self.inverter.integrated_s = 0.0

    def publish(self) -> None:
        self.follow_night()
        self.inverter.publish()
        self.grid.publish()

    def follow_night(self) -> None:
        """With --inverter-night silent, the inverter answers nothing while its balance sleeps."""
        silent = self.night == SILENT and self.site.balance.state == SLEEPING
        if silent != self.inverter.silent:
            self.inverter.set_silent(silent)

    @property
    def now_s(self) -> float:
        """The site's simulated time now: its last tick's, and what a catch-up integrated since."""
        return self.site.time_s + self.inverter.integrated_s

    def takes(self, name: str, value: float) -> bool:
        """True when a control may be set to value (model.controls)."""
        return self.site.controls.refusal(name, value) is None

    def control(self, changes) -> None:
        """Set controls now (checked by takes(); the caller caught both devices up and publishes)."""
        self.site.control(changes, self.now_s)


def new_site(plan: SitePlan, rng: random.Random, time_of_day_s: float, port: int, new_device,
             grid_profile: Profile | None, key) -> SiteDevices:
    """A site on a port: its model drawn from rng, its devices made by new_device (see
    fleet.plan), keyed PORT-1 and PORT-200."""
    site = Site(rng, time_of_day_s, pv_kwp=plan.pv_kwp, battery_kwh=plan.battery_kwh,
                battery_kw=plan.battery_kw)
    inverter = new_device(site.inverter, plan.inverter_profile, unit_id=INVERTER_UNIT_ID,
                          key=key(port, INVERTER_UNIT_ID), serial=serial_number(port, INVERTER_UNIT_ID))
    grid = new_device(site.grid, grid_profile, unit_id=GRID_UNIT_ID, key=key(port, GRID_UNIT_ID),
                      serial=serial_number(port, GRID_UNIT_ID))
    devices = SiteDevices(site, inverter, grid, plan.night)
    devices.port = port
    return devices


def describe_sites(where: str, count: int, profile: str, pv_kwp: float, battery_kwh: float,
                   battery_kw: float | None, protocol: str = "Modbus/TCP") -> str:
    """The start line of a run of sites: 'site (grid meter sunspec, 8 kWp, battery 10 kWh / 5 kW)
    serving Modbus/TCP on 127.0.0.1:5020: inverter unit id 1, grid meter unit id 200'."""
    if count > 1:
        where = f"{where}-{int(where.rsplit(':', 1)[1]) + count - 1}"
    panels = f"{pv_kwp:g} kWp" if pv_kwp else "no panels"
    battery = f"battery {battery_kwh:g} kWh / {battery_kw:g} kW" if battery_kwh else "no battery"
    sites = "site" if count == 1 else f"{count} sites"
    return (f"{sites} (grid meter {profile}, {panels}, {battery}) serving {protocol} on {where}: "
            f"inverter unit id {INVERTER_UNIT_ID}, grid meter unit id {GRID_UNIT_ID}")
