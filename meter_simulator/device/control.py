"""Control: the one core behind the HTTP API, the Python API and the pytest plugin.

It holds the meters by id, their pinned readings and the active faults, and applies
every change under the updater's lock, so a change is published before the call
returns (the next Modbus read sees it, no tick needed) and is never lost to, or
split by, a tick. A change is checked whole first: a bad one raises ValueError
(HTTP 400) or KeyError (HTTP 404) with one line and changes nothing.

At most faults.MAX_FAULTS faults are active. They are indexed by the port they are
scoped to, so a change touches only the ports and meters it covers, and one thread
(deadlines.py) ends them at their time.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Callable

from ..checks import is_finite_number, is_integer
from ..maps import readings
from ..model import pins
from . import faults
from .deadlines import Deadlines
from .faults import ActiveFault, FaultError, FaultLimitError, Topology, UnknownError
from .fleet import PortPlan
from .served import MAX_PAGE, ServedMeter
from .sitecontrol import SiteControl
from .updater import Device, Updater

log = logging.getLogger(__name__)

MAX_TOTAL = 1e9  # kWh or m3 a total may jump to
FLOW_TYPES = ("water", "gas")  # the meters whose rate is a flow (L/min)
SERIAL_KEYS = ("path", "link", "baud", "parity", "stopbits")  # a serial line as details show it


class ControlError(ValueError):
    """A bad change (HTTP 400); the message is one line."""


class Control:
    """Overrides, online state, totals and faults of a run's meters."""

    def __init__(self, updater: Updater, plan: Sequence[PortPlan], *, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_request_faults: Callable[[dict[int, tuple]], None] | None = None,
                 framing: str = "tcp", serial: Mapping | None = None) -> None:
        self.updater = updater
        self._clock = clock
        self._seed = seed
        self._on_request_faults = on_request_faults
        self.meters: list[ServedMeter] = []
        for endpoint in sorted(plan, key=lambda endpoint: endpoint.port):  # the API lists by port
            if endpoint.device is not None:
                self.meters.append(ServedMeter(endpoint.port, None, endpoint.device))
            else:
                self.meters.extend(ServedMeter(endpoint.port, unit_id, device)
                                   for unit_id, device in sorted(endpoint.devices_by_id.items()))
        self.by_id = {meter.id: meter for meter in self.meters}
        self.sites = SiteControl(updater, plan)  # GET/PUT /api/sites
        self._meters_on: dict[int, list[ServedMeter]] = {}  # by port
        for meter in self.meters:
            self._meters_on.setdefault(meter.port, []).append(meter)
        self.topology = Topology({endpoint.port: (frozenset(endpoint.devices_by_id)
                                                  if endpoint.devices_by_id is not None else None)
                                  for endpoint in plan}, framing)
        self.set_serial(serial)  # self.serial, and the topology's serial port
        self.started_s = clock()
        self._lock = threading.Lock()  # the faults: list, index, counts, deadlines
        self._faults: dict[str, ActiveFault] = {}  # oldest first
        # the same faults by the port of their scope (None: every port), each oldest first, so
        # that a meter's or a port's faults are found without looking at the others
        self._faults_by_port: dict[int | None, dict[str, ActiveFault]] = {}
        # the request faults of those
        self._request_faults_by_port: dict[int | None, tuple[ActiveFault, ...]] = {}
        self._ids = itertools.count(1)
        self._deadlines = Deadlines(clock, self._expire_due, name="fault-timer")
        self.applied_by_type: dict[str, int] = dict.fromkeys(faults.FAULT_TYPES, 0)
        self._closed = False

    # --- reading ---
    def meter(self, meter_id) -> ServedMeter:
        """The meter with this id; KeyError (404) otherwise."""
        meter = self.by_id.get(meter_id) if isinstance(meter_id, str) else None
        if meter is None:
            raise UnknownError(f"no meter {meter_id!r}")
        return meter

    def _shown(self, meter: ServedMeter) -> tuple[dict, dict, bool, bool]:
        """(readings, overrides, online, no alarm) as published now, taken under the lock."""
        device = meter.device
        with self.updater.lock:
            values = readings.values(device.meter_type, device.shown, device, meter.panels)
            overrides = dict(device.meter.overrides)
            online = device.online
            no_alarm = device.shown[0].in_band if device.live else device.no_alarm
        return values, overrides, online, no_alarm

    def readings(self, meter_id) -> dict[str, float]:
        """A meter's readings by name."""
        return self._shown(self.meter(meter_id))[0]

    def summary(self, meter: ServedMeter) -> dict:
        values, overrides, online, no_alarm = self._shown(meter)
        return {"id": meter.id, "port": meter.port, "unit_id": meter.unit_id,
                "type": meter.device.meter_type, "online": online, "no_alarm": no_alarm,
                "total": values[meter.total_name], "rate": values[meter.rate_name],
                "overrides": sorted(overrides), "faults": self.fault_ids(meter)}

    def page(self, offset: int = 0, limit: int = 100) -> dict:
        """GET /api/meters: the meters in port, then unit id order."""
        if not (is_integer(offset) and offset >= 0):
            raise ControlError(f"offset must be a whole number from 0, not {offset!r}")
        if not (is_integer(limit) and 1 <= limit <= MAX_PAGE):
            raise ControlError(f"limit must be a whole number from 1 to {MAX_PAGE}, not {limit!r}")
        self._expire_due()  # a fault past its duration shows ended, whether its timer ran or not
        shown = self.meters[offset:offset + limit]
        return {"count": len(self.meters), "offset": offset, "limit": limit,
                "meters": [self.summary(meter) for meter in shown]}

    def fleet_summary(self) -> dict:
        """The whole run at a glance (the dashboard's summary line): meters by type and state,
        active faults, the electric meters' summed power (W), the water and gas meters' summed
        flow (L/min) and the number of sites (an inverter's power is its site's, in neither)."""
        self._expire_due()  # first: the meters a meter fault held are counted as they are after it
        types: dict[str, int] = {}
        online = 0
        power_w = flow_l_min = 0.0
        for _, meter_type, is_online, _, rate in self.snapshot():
            types[meter_type] = types.get(meter_type, 0) + 1
            online += is_online
            if meter_type == "electric":
                power_w += rate
            elif meter_type in FLOW_TYPES:
                flow_l_min += rate
        with self._lock:
            active = len(self._faults)
        return {"meters": len(self.meters), "online": online, "offline": len(self.meters) - online,
                "faults": active, "power_total": power_w, "flow": flow_l_min, "types": types,
                "sites": len(self.sites.by_port), "tick": self.updater.ticks}

    def details(self, meter_id) -> dict:
        """GET /api/meters/{id}: everything about one meter."""
        meter = self.meter(meter_id)
        self._expire_due()
        values, overrides, online, no_alarm = self._shown(meter)
        return {"id": meter.id, "port": meter.port, "unit_id": meter.unit_id,
                "type": meter.device.meter_type, "profile": meter.device.profile.name,
                "framing": self.topology.framing, "serial": self.serial_of(meter),
                "time_of_day_s": meter.device.meter.time_of_day_s,
                "online": online, "no_alarm": no_alarm, "tick": self.updater.ticks,
                "total": values[meter.total_name], "rate": values[meter.rate_name],
                "readings": values,
                "units": dict(readings.symbols(meter.device.meter_type, meter.panels)),
                "overrides": overrides,
                "faults": [fault.as_dict(self._clock()) for fault in self._faults_of(meter)]}

    def serial_of(self, meter: ServedMeter) -> dict | None:
        """The serial line a meter is on as its details show it, with the unit id the meter answers
        there (a lone meter 1, as on any RTU bus; a gateway's meter its own), or None."""
        line = self.serial
        if line is None or line["port"] != meter.port:
            return None
        return {**{key: line[key] for key in SERIAL_KEYS},
                "unit_id": 1 if meter.unit_id is None else meter.unit_id}

    def set_serial(self, serial: Mapping | None) -> None:
        """The serial line serving port serial["port"]'s meters (with its path, link, baud, parity
        and stopbits), or None; called once the line is open, as its path is known only then."""
        # a new Topology, swapped whole: a fault being made sees the old line or the new one
        self.topology = self.topology.with_serial_port(None if serial is None else serial["port"])
        self.serial = None if serial is None else {key: serial[key] for key in ("port", *SERIAL_KEYS)}

    # --- changing meters ---
    def set_overrides(self, meter_id, changes) -> dict:
        """Pin readings (name: value) and release others (name: None); the meter's details."""
        meter = self.meter(meter_id)
        if not isinstance(changes, Mapping):
            raise ControlError("overrides must be a JSON object of reading names and values")
        device = meter.device
        with self.updater.lock:
            merged = pins.merged(meter.pin_kind, device.meter.overrides, changes, meter.panels)
            self.updater.set_overrides(device, merged)
        return self.details(meter.id)

    def release(self, meter_id, names: Sequence[str] | None = None) -> dict:
        """Release some pins (unknown names: 400), or every pin."""
        meter = self.meter(meter_id)
        if names is None:
            with self.updater.lock:
                self.updater.set_overrides(meter.device, {})
            return self.details(meter.id)
        return self.set_overrides(meter_id, dict.fromkeys(names))

    def set_online(self, meter_id, online) -> dict:
        """As a Modbus write of coil 0."""
        meter = self.meter(meter_id)
        if not isinstance(online, bool):
            raise ControlError(f"online must be true or false, not {online!r}")
        self.updater.set_online(meter.device, online)
        return self.details(meter.id)

    def reset(self, meter_id) -> dict:
        """As a Modbus write of coil 10 ON; a device profile's meter resets every counter and
        maximum demand (its operator's reset: over Modbus its counters stay read-only)."""
        meter = self.meter(meter_id)
        if meter.device.profile.coils:
            self.updater.reset_total(meter.device)
        else:
            self.updater.reset_counters(meter.device)
        return self.details(meter.id)

    def set_total(self, meter_id, total) -> dict:
        """The total jumps to total (kWh or m3); integration goes on from there."""
        meter = self.meter(meter_id)
        if not is_finite_number(total) or not 0 <= total <= MAX_TOTAL:
            raise ControlError(f"total must be a number from 0 to {MAX_TOTAL:g}, not {total!r}")
        self.updater.jump_total(meter.device, float(total))
        return self.details(meter.id)

    # --- faults ---
    def view(self, fault: ActiveFault) -> dict:
        """A fault as the API shows it, also after it has ended (the Python API's handle)."""
        with self._lock:
            return fault.as_dict(self._clock())

    def is_active(self, fault: ActiveFault) -> bool:
        with self._lock:
            return self._faults.get(fault.id) is fault

    def start_fault(self, spec) -> ActiveFault:
        """A new fault from its description, started; the ActiveFault itself. FaultLimitError while
        faults.MAX_FAULTS are active; a fault refused changes nothing."""
        fields = faults.fault_fields(spec, self.topology)
        self._expire_due()  # a fault past its duration does not count against the limit
        with self._lock:  # held while a meter fault is applied: an end cannot overtake it
            if self._closed:
                raise FaultError("the simulator has stopped")
            if len(self._faults) >= faults.MAX_FAULTS:
                raise FaultLimitError(f"too many faults: {faults.MAX_FAULTS} are active, the most a "
                                      "run keeps; end some first")
            if fields["duration_s"] is not None:
                self._deadlines.start()  # the one step that can fail: before anything is made
            number = next(self._ids)
            fault = ActiveFault(id=f"f{number}", sequence=number, created_s=self._clock(),
                          rng=faults.fault_rng(self._seed, f"f{number}"), remaining=fields["count"],
                          **fields)
            self._add(fault)
        return fault

    def applied_counts(self) -> dict[str, int]:
        """How many times faults of each type acted, by type."""
        with self._lock:
            return dict(self.applied_by_type)

    def faults(self) -> list[dict]:
        """Every active fault, oldest first."""
        self._expire_due()
        now = self._clock()
        with self._lock:
            return [fault.as_dict(now) for fault in self._faults.values()]

    def fault(self, fault_id) -> dict:
        self._expire_due()
        with self._lock:
            return self._known(fault_id).as_dict(self._clock())

    def delete_fault(self, fault_id) -> dict:
        """End one fault; it as it was."""
        self._expire_due()
        with self._lock:
            fault = self._known(fault_id)
            shown = fault.as_dict(self._clock())
        self._end(fault, None)
        return shown

    def clear_faults(self) -> int:
        """End every fault at once; how many there were."""
        with self._lock:
            ended = list(self._faults.values())
            self._remove(ended)
        return len(ended)

    def request_faults(self, port: int) -> tuple:
        """What a port's connections look at: () while no request fault may act there, else
        (the port's own request faults, every port's), each oldest first."""
        own = self._request_faults_by_port.get(port, ())
        shared = self._request_faults_by_port.get(None, ())
        return (own, shared) if own or shared else ()

    def match(self, request_faults: tuple, unit_id: int, function_code: int,
              face: faults.Face) -> ActiveFault | None:
        """The fault that acts on a request arriving on face (the oldest that applies after its
        draw), counted; request_faults: what the request's port holds (see request_faults)."""
        own, shared = request_faults
        candidates = faults.oldest_first(own, shared) if own and shared else own or shared
        now = self._clock()
        with self._lock:
            hit, expired = faults.first_hit(candidates, self._faults, now, unit_id, function_code, face)
            if hit is not None:
                self.applied_by_type[hit.type] += 1
        for fault in expired:
            self._end(fault, "its duration passed")
        if hit is not None and hit.remaining == 0:
            self._end(hit, "its count is used up")
        return hit

    def fault_ids(self, meter: ServedMeter) -> list[str]:
        return [fault.id for fault in self._faults_of(meter)]

    def _faults_of(self, meter: ServedMeter) -> list[ActiveFault]:
        with self._lock:
            own = self._faults_by_port.get(meter.port, {}).values()
            shared = self._faults_by_port.get(None, {}).values()
            topology = self.topology
            return [fault for fault in faults.oldest_first(own, shared)
                    if topology.covers(fault.scope, meter.port, meter.unit_id)]

    def _known(self, fault_id) -> ActiveFault:
        """The active fault of that id (under the lock); UnknownError otherwise."""
        fault = self._faults.get(fault_id) if isinstance(fault_id, str) else None
        if fault is None:
            raise UnknownError(f"no fault {fault_id!r}")
        return fault

    def _covered(self, fault: ActiveFault) -> list[ServedMeter]:
        port = fault.scope.port
        meters = self.meters if port is None else self._meters_on[port]
        return [meter for meter in meters if fault.scope.covers(meter.port, meter.unit_id)]

    def _expire_due(self) -> None:
        """End the faults whose duration has passed: the fault timer's call, and a listing's
        before it answers (whichever comes first takes them)."""
        with self._lock:
            due = [self._faults[fault_id] for fault_id in self._deadlines.pop_due()]
            if due:
                self._remove(due)
        for fault in due:
            log_end(fault, "its duration passed")

    def _end(self, fault: ActiveFault, reason: str | None) -> bool:
        """End one fault (once: False if it had ended already); reason: what the log says."""
        with self._lock:
            if self._faults.get(fault.id) is not fault:
                return False
            self._remove([fault])
        if reason is not None:
            log_end(fault, reason)
        return True

    def _add(self, fault: ActiveFault) -> None:
        """Make a fault active: listed, indexed, given to the ports it may act on or applied to
        its meters, its duration counted (the caller holds the lock)."""
        self._faults[fault.id] = fault
        self._faults_by_port.setdefault(fault.scope.port, {})[fault.id] = fault
        if fault.is_request_fault:
            self._push({fault.scope.port})
        else:
            self.updater.change_faults({meter.device: {fault.type: 1} for meter in self._covered(fault)})
            self.applied_by_type[fault.type] += 1
            fault.applied += 1
        if fault.expires_s is not None:
            self._deadlines.add(fault.expires_s, fault.id)

    def _remove(self, ended: list[ActiveFault]) -> None:
        """Make active faults inactive in one step: each port they could act on gets its request
        faults once, and each meter they held is published once.

        The caller holds the faults' lock; the updater's is taken inside (never the other way)."""
        scopes: set[int | None] = set()
        steps: dict[Device, dict[str, int]] = {}
        for fault in ended:
            del self._faults[fault.id]
            scoped = self._faults_by_port[fault.scope.port]
            del scoped[fault.id]
            if not scoped:
                del self._faults_by_port[fault.scope.port]
            self._deadlines.remove(fault.id)
            if fault.is_request_fault:
                scopes.add(fault.scope.port)
            else:
                for meter in self._covered(fault):
                    by_kind = steps.setdefault(meter.device, {})
                    by_kind[fault.type] = by_kind.get(fault.type, 0) - 1
        if scopes:
            self._push(scopes)
        if steps:
            self.updater.change_faults(steps)

    def _push(self, scopes: set[int | None]) -> None:
        """Rebuild the request faults of these scope ports (None: every port's) and give each
        port they reach what it holds now (the caller holds the lock)."""
        for port in scopes:
            matching = tuple(fault for fault in self._faults_by_port.get(port, {}).values()
                             if fault.is_request_fault)
            if matching:
                self._request_faults_by_port[port] = matching
            else:
                self._request_faults_by_port.pop(port, None)
        if self._on_request_faults is not None:
            reached = self.topology.ports if None in scopes else scopes
            self._on_request_faults({port: self.request_faults(port) for port in reached})

    def close(self) -> None:
        """Stop the fault timer (joined); faults stay as they are, nothing is published."""
        with self._lock:
            self._closed = True
        self._deadlines.close()

    # --- for metrics ---
    def uptime_s(self) -> float:
        return self._clock() - self.started_s

    def snapshot(self) -> list[tuple[ServedMeter, str, bool, float, float]]:
        """(meter, type, online, total, rate) of every meter, copied under the lock once."""
        rows = []
        with self.updater.lock:
            for meter in self.meters:
                device = meter.device
                rows.append((meter, device.meter_type, device.online, *device.total_and_rate()))
        return rows


def log_end(fault: ActiveFault, reason: str) -> None:
    log.info("fault %s (%s) ended: %s, applied %d time%s", fault.id, fault.describe(), reason,
             fault.applied, "" if fault.applied == 1 else "s")


__all__ = ["Control", "ControlError", "FaultError", "FaultLimitError", "UnknownError", "ServedMeter"]
