"""Which meters a run serves: one, N on consecutive ports, or a gateway of unit ids per port."""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..maps.points import Profile
from ..model.engine import ColumnMeter, make_columns
from ..model.sitecolumns import SiteColumns
from .device import serial_number
from .site import SiteDevices, SitePlan, new_site
from .updater import Device


@dataclass
class PortPlan:
    """One listening port and the meters behind it."""

    port: int
    device: Device | None = None  # a single meter answering every unit id
    devices_by_id: dict[int, Device] | None = None  # gateway mode: unit id -> meter
    site: SiteDevices | None = None  # a site: its inverter and grid meter in devices_by_id

    @property
    def devices(self) -> list[Device]:
        return [self.device] if self.device is not None else list(self.devices_by_id.values())


def meter_key(port: int, unit_id: int | None = None) -> str:
    """A meter's id in the state file and the control API: "5021", or "5021-7" for unit id 7 of
    a gateway."""
    return str(port) if unit_id is None else f"{port}-{unit_id}"


def plan(meter_type: str, port: int, count: int, unit_ids: Sequence[int] | None,
         rng: random.Random, time_of_day_s: float, new_device, *, profile: Profile | None = None,
         pv_kwp: float = 0.0, site: SitePlan | None = None) -> list[PortPlan]:
    """count ports from port, each one meter or (with unit_ids) one meter per unit id.

    The meters are rows of one set of columns (model.engine) whose generator is seeded from
    rng, so the meters differ from one another and the whole fleet is reproducible from one
    seed; a site draws its own generator from rng, its household a row of the sites' columns.
    new_device makes a Device (with its bank) from a meter, a profile (None: the seed map)
    and the meter's identity: the meter id it shows (its unit id in gateway mode, else 1),
    its serial number and its key. site: every port serves a site (an inverter and a grid
    meter through profile).
    """
    endpoints = []
    rows = iter(fleet_rows(meter_type, count * (len(unit_ids) if unit_ids is not None else 1),
                           rng, time_of_day_s, pv_kwp) if site is None else ())
    sites = []
    for offset in range(count):
        # port 0: every endpoint binds a free port of its own (MeterServer.rekey names them)
        endpoint_port = port + offset if port else 0
        if site is not None:
            devices = new_site(site, random.Random(rng.getrandbits(64)), time_of_day_s,
                               endpoint_port, new_device, profile, meter_key)
            endpoints.append(PortPlan(endpoint_port, site=devices, devices_by_id={
                device.unit_id: device for device in devices.devices}))
            sites.append(devices)
            continue

        def meter(unit_id: int | None = None, meter_port: int = endpoint_port):
            model = next(rows)
            meter_id = 1 if unit_id is None else unit_id
            return new_device(model, profile, unit_id=meter_id, key=meter_key(meter_port, unit_id),
                            serial=serial_number(meter_port, meter_id))

        if unit_ids is None:
            endpoints.append(PortPlan(endpoint_port, device=meter()))
        else:
            endpoints.append(PortPlan(endpoint_port, devices_by_id={uid: meter(uid) for uid in unit_ids}))
    if sites:  # their households draw as columns, all at once
        columns = SiteColumns([devices.site for devices in sites], random.Random(rng.getrandbits(64)))
        for devices in sites:
            devices.columns = columns
    return endpoints


def fleet_rows(meter_type: str, meters: int, rng: random.Random, time_of_day_s: float,
               pv_kwp: float) -> list[ColumnMeter]:
    """The meters of a fleet, stepping as columns (model.columns): one view of a row each."""
    columns = make_columns(meter_type, meters, random.Random(rng.getrandbits(64)), time_of_day_s, pv_kwp)
    return [ColumnMeter(columns, row) for row in range(meters)]


def id_ranges(ids: Sequence[int]) -> str:
    """Sorted ids as the --unit-ids syntax: 1-32, or 1,5,7, or 1-4,9."""
    parts: list[str] = []
    run_start = previous = None
    for uid in list(ids) + [None]:
        if uid is not None and previous is not None and uid == previous + 1:
            previous = uid
            continue
        if run_start is not None:
            parts.append(str(run_start) if run_start == previous else f"{run_start}-{previous}")
        run_start = previous = uid
    return ",".join(parts)


def describe(meter_type: str, host_port: str, count: int, unit_ids: Sequence[int] | None,
             profile: str = "seed", protocol: str = "Modbus/TCP") -> str:
    """The start line: which meters serve on which port(s) and unit ids, through which profile
    (named after the meter word, unless it is the seed map).

    host_port names the first port; a fleet of ports adds -last (127.0.0.1:5020-5029). protocol:
    what the ports speak, "Modbus/TCP" or "Modbus RTU over TCP".
    """
    meters = count * (len(unit_ids) if unit_ids is not None else 1)
    where = host_port if count == 1 else f"{host_port}-{int(host_port.rsplit(':', 1)[1]) + count - 1}"
    through = "" if profile == "seed" else f" ({profile})"
    if meters == 1 and unit_ids is None:
        return f"{meter_type} meter{through} serving {protocol} on {where}"
    text = f"{meters} {meter_type} meters{through} serving {protocol} on {where}"
    if unit_ids is not None:
        text += f", unit ids {id_ranges(unit_ids)}" + (" on each port" if count > 1 else "")
    return text
