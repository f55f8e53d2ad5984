"""The control API's sites: a site's balance, pins and state of charge, read and changed under the
updater's lock, so an answer is one tick and a change shows in both devices' registers before
the call returns (the balance is recomputed for the present moment, no tick needed)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..checks import is_finite_number, is_integer
from ..model.controls import CONTROLS, LIMITS, Controls
from ..model.pins import echoed
from ..model.site import MAX_SITE_PIN_W, SITE_PINS, STATE_NAMES, Balance, Site
from .faults import UnknownError
from .fleet import PortPlan
from .served import MAX_PAGE
from .site import SiteDevices
from .updater import Updater

SITE_KEYS = (*SITE_PINS, "soc_pct", "controls")  # what PUT /api/sites/{port} takes


class SiteError(ValueError):
    """A bad change of a site (HTTP 400); the message is one line."""


class SiteControl:
    """The sites of a run by port: their view and their pins."""

    def __init__(self, updater: Updater, plan: Sequence[PortPlan]) -> None:
        self.updater = updater
        self.by_port: dict[int, SiteDevices] = {
            endpoint.port: endpoint.site for endpoint in sorted(plan, key=lambda e: e.port)
            if endpoint.site is not None}

    def of(self, port) -> SiteDevices:
        """The site on a port (an int, or its decimal text); UnknownError (404) otherwise."""
        if isinstance(port, str) and port.isascii() and port.isdigit() and len(port) <= 5:
            port = int(port)
        site = self.by_port.get(port) if isinstance(port, int) and not isinstance(port, bool) else None
        if site is None:
            raise UnknownError(f"no site on port {echoed(port)}")
        return site

    @property
    def ports(self) -> list[int]:
        return list(self.by_port)

    def page(self, offset: int = 0, limit: int = 100) -> dict:
        """GET /api/sites: the sites in port order."""
        if not (is_integer(offset) and offset >= 0):
            raise SiteError(f"offset must be a whole number from 0, not {echoed(offset)}")
        if not (is_integer(limit) and 1 <= limit <= MAX_PAGE):
            raise SiteError(f"limit must be a whole number from 1 to {MAX_PAGE}, not {echoed(limit)}")
        ports = self.ports[offset:offset + limit]
        return {"count": len(self.by_port), "offset": offset, "limit": limit,
                "sites": [self.view(self.by_port[port]) for port in ports]}

    def site(self, port) -> dict:
        """GET /api/sites/{port}."""
        return self.view(self.of(port))

    def view(self, devices: SiteDevices) -> dict:
        """A site as the API shows it: the balance of the latest tick (or change)."""
        with self.updater.lock:
            site = devices.site
            balance = site.balance
            counters = dict(site.inverter.counters)
            pins = dict(site.pins)
            ticks = self.updater.ticks
            time_s = site.time_s
            controls = site.controls.view(devices.now_s)
            answering = not devices.inverter.silent
        battery = site.battery
        view = {"port": devices.port, "tick": ticks, "time_s": time_s,
                "time_of_day_s": balance.time_of_day_s, **balance.flows(),
                "soc_pct": balance.soc_pct if battery is not None else None,
                "inverter_state": STATE_NAMES[balance.state], "inverter_answering": answering}
        view["battery"] = None if battery is None else {
            "capacity_kwh": balance.capacity_kwh, "max_w": balance.battery_max_w,
            "reserve_pct": balance.reserve_pct,
            "charged_kwh": counters["battery_energy_charged"],
            "discharged_kwh": counters["battery_energy_discharged"]}
        view["inverter"] = {"id": devices.inverter.key, "rated_w": balance.rated_w,
                            "energy_kwh": counters["inverter_energy"]}
        view["grid_meter"] = {"id": devices.grid.key, "profile": devices.grid.profile.name}
        view["pins"] = pins
        view["controls"] = controls
        return view

    def balances(self) -> list[tuple[int, Balance]]:
        """(port, balance of the latest tick or change) of every site in port order, taken under
        the updater's lock once (a balance is replaced, never changed, so it stays one tick's)."""
        with self.updater.lock:
            return [(port, devices.site.balance) for port, devices in self.by_port.items()]

    def set_site(self, port, changes) -> dict:
        """PUT /api/sites/{port}: pin load_w and pv_available_w (None releases), set soc_pct and
        controls; checked whole first (SiteError, nothing changes), applied under the tick's lock."""
        devices = self.of(port)
        pins, soc_pct, controls = checked(changes, devices.site)

        def change() -> None:
            devices.site.pin(pins)
            if soc_pct is not None:
                devices.site.set_soc(soc_pct)
            if controls:
                devices.control(controls)

        self.updater.change_site(devices, change)
        return self.view(devices)


def checked(changes, site: Site) -> tuple[dict, float | None, dict]:
    """(the new pins, the state of charge to set or None, the controls to set) for a PUT body;
    SiteError otherwise."""
    if not isinstance(changes, Mapping):
        raise SiteError(f"a site change must be a JSON object of {', '.join(SITE_KEYS)}, "
                        f"not {echoed(changes)}")
    pins = dict(site.pins)
    soc_pct = None
    controls = {}
    for name, value in changes.items():
        if name not in SITE_KEYS:
            raise SiteError(f"unknown site key {echoed(name)}: a site takes {', '.join(SITE_KEYS)}")
        if name == "soc_pct":
            if site.battery is None:
                raise SiteError("soc_pct: this site has no battery")
            soc_pct = _number(name, value, 100.0)
        elif name == "controls":
            controls = checked_controls(value, site.controls)
        elif value is None:
            pins.pop(name, None)
        else:
            pins[name] = _number(name, value, MAX_SITE_PIN_W)
    return pins, soc_pct, controls


def checked_controls(changes, controls: Controls) -> dict[str, float]:
    """The controls a PUT sets, by the names of model.controls (null: a limit stops acting; true
    and false for grid_charge); SiteError otherwise."""
    if not isinstance(changes, Mapping):
        raise SiteError(f"controls must be a JSON object of controls, not {echoed(changes)}")
    out = {}
    for name, value in changes.items():
        if name not in CONTROLS:
            raise SiteError(f"unknown control {echoed(name)}: one of {', '.join(CONTROLS)}")
        if CONTROLS[name].battery and controls.battery is None:
            raise SiteError(f"{name}: this site has no battery")
        if value is None and name in LIMITS:
            out[name] = None  # the limit stops acting
            continue
        if isinstance(value, bool) and name == "grid_charge":
            value = int(value)
        elif not is_finite_number(value):
            raise SiteError(f"{name} must be a finite number, not {echoed(value)}")
        refusal = controls.refusal(name, value)
        if refusal is not None:
            raise SiteError(f"{refusal}, not {echoed(value)}")
        out[name] = value
    return out


def _number(name: str, value, high: float) -> float:
    """value as a float when it is a finite number from 0 to high; SiteError otherwise."""
    if not is_finite_number(value):
        raise SiteError(f"{name} must be a finite number, not {echoed(value)}")
    if not 0 <= value <= high:
        raise SiteError(f"{name} must be from 0 to {echoed(high)}, not {echoed(value)}")
    return float(value)
