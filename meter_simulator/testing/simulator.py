"""MeterSimulator: meters served in-process on free loopback ports, driven from Python.

The keywords mirror the command line, and every change goes through the same control
core and checks as the HTTP API (ValueError for a bad value, KeyError for an unknown
meter or fault, with the same one-line messages). It never installs signal handlers,
configures logging or touches the GIL's switch interval, and stop() (or leaving the
with block, also on an exception) stops ticking, closes every socket and joins every
thread it started: the process's threads and file descriptors are as before.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..app.options import UsageError, bearer_token, parse_args
from ..app.simulator import Simulator

# keyword -> command-line option (None: a flag)
OPTIONS = {"type": "--type", "count": "--count", "unit_ids": "--unit-ids", "interval": "--interval",
           "speed": "--speed", "seed": "--seed", "read_only": None, "allow": "--allow",
           "max_clients": "--max-clients", "idle_timeout": "--idle-timeout",
           "state_file": "--state-file", "save_interval": "--save-interval", "profile": "--profile",
           "pv_kwp": "--pv-kwp", "site": None, "battery_kwh": "--battery-kwh",
           "battery_kw": "--battery-kw", "start_time": "--start-time", "host": "--address",
           "inverter_night": "--inverter-night", "inverter_profile": "--inverter-profile",
           "port": "--port", "framing": "--framing", "serial": "--serial", "baud": "--baud",
           "parity": "--parity", "stopbits": "--stopbits"}
EXTRA = ("http", "http_token")


def option_text(value) -> str:
    """A keyword's value as the command line writes it: lists comma-separated."""
    if isinstance(value, (list, tuple, set, frozenset, range)):
        return ",".join(str(item) for item in value)
    return str(value)


def config_for(keywords: dict):
    """The Config the keywords describe, checked as the command line checks it (ValueError)."""
    unknown = sorted(set(keywords) - set(OPTIONS) - set(EXTRA))
    if unknown:
        raise TypeError(f"MeterSimulator() got an unexpected keyword argument {unknown[0]!r}")
    argv: list[str] = []
    port = keywords.get("port", 0)
    for name, option in OPTIONS.items():
        value = keywords.get(name)
        if name == "port" or value is None:
            continue
        if option is None:
            if value:
                argv.append("--" + name.replace("_", "-"))
            continue
        argv += [option, option_text(value)]
    if port:
        argv += ["--port", option_text(port)]
    http = keywords.get("http", False)
    if http is True:
        argv += ["--http", "0"]
    elif http:
        argv += ["--http", option_text(http)]
    try:
        config = parse_args(argv)
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    changes: dict = {}
    if not port:
        changes["port"] = 0  # free ports, bound first (the command line always names one)
    if keywords.get("http_token") is not None:
        if config.http is None:
            raise ValueError("http_token protects the control port: give http too")
        try:  # the command line's rules: an empty token would authorize "Bearer" alone
            changes["http_token"] = bearer_token(keywords["http_token"])
        except UsageError as exc:
            raise ValueError(f"http_token {exc}") from None
    return dataclasses.replace(config, **changes) if changes else config


class Fault:
    """An active fault; leaving its with block (or end()) ends it, if it has not ended already."""

    def __init__(self, simulator: MeterSimulator, fault) -> None:
        self._simulator = simulator
        self._fault = fault  # faults.ActiveFault: its counts stay readable after it has ended
        self.id = fault.id
        self.type = fault.type

    def info(self) -> dict:
        """The fault as the API shows it (applied, remaining, ...), also once it has ended."""
        return self._simulator.control.view(self._fault)

    @property
    def applied(self) -> int:
        """Requests it acted on so far."""
        return self.info()["applied"]

    @property
    def active(self) -> bool:
        return self._simulator.control.is_active(self._fault)

    def end(self) -> None:
        try:
            self._simulator.control.delete_fault(self.id)
        except KeyError:
            pass  # ended by its count or duration

    def __enter__(self) -> Fault:
        return self

    def __exit__(self, *exc_info) -> None:
        self.end()

    def __repr__(self) -> str:
        return f"<Fault {self.id} {self.type}>"


class MeterSimulator:
    """Meters on 127.0.0.1, free ports unless port= is given; start() or a with block runs them.

    Keywords: type, count, unit_ids, interval, speed, seed, read_only, allow, max_clients,
    idle_timeout, state_file, save_interval, profile, pv_kwp, site (True: each port serves a
    home, inverter unit id 1 and grid meter 200), battery_kwh, battery_kw, start_time ("HH:MM"),
    inverter_night ("asleep" or "silent"), inverter_profile ("sunspec-hybrid" or a map file),
    host, port, framing ("tcp" or "rtu"), serial ("pty", "pty:LINK" or a device; serial_path is
    what clients open), baud, parity, stopbits; http=True serves the control port on a free
    loopback port (or http="HOST:PORT"), http_token requires it.
    """

    def __init__(self, **keywords) -> None:
        self.config = config_for(keywords)
        self._simulator: Simulator | None = None
        self._started = False
        self._stopped = False

    # --- life ---
    def start(self) -> MeterSimulator:
        """Bind, restore the state file and serve; a MeterSimulator starts once."""
        if self._started:
            raise RuntimeError("a MeterSimulator can be started once; make a new one")
        self._started = True
        simulator = Simulator(self.config, environ={})  # no systemd notifications from a test
        simulator.open()
        self._simulator = simulator
        try:
            simulator.serve()
            if simulator.service is not None:
                simulator.service.started("")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything it started and save the state file; safe to call twice."""
        if self._simulator is None or self._stopped:
            return
        self._stopped = True
        try:
            self._simulator.stop()
        finally:
            self._simulator.stopped()

    def __enter__(self) -> MeterSimulator:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def control(self):
        if self._simulator is None or self._simulator.control is None:
            raise RuntimeError("the MeterSimulator is not started")
        return self._simulator.control

    # --- where ---
    @property
    def host(self) -> str:
        return self.config.host

    @property
    def ports(self) -> list[int]:
        return self._running().server.ports

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def meter_ids(self) -> list[str]:
        """Every meter's id ("5020", or "5020-7" in gateway mode), in the order of sim.ports: the
        same meters in the same order on every run with the same seed (free ports need not
        ascend; GET /api/meters lists by port)."""
        return [device.key for endpoint in self._running().server.plan for device in endpoint.devices]

    @property
    def http_url(self) -> str | None:
        """The control port's URL (http=True), e.g. http://127.0.0.1:41234/; None without."""
        return self._running().http_url

    @property
    def serial_path(self) -> str | None:
        """The path serial clients open (serial="pty": the pty's client side, e.g. /dev/pts/4;
        never the link); None without a serial line."""
        return self._running().serial_path

    def _running(self) -> Simulator:
        if self._simulator is None:
            raise RuntimeError("the MeterSimulator is not started")
        return self._simulator

    def _id(self, meter) -> str:
        """A meter's id; by default the meter on sim.port (free ports need not ascend)."""
        return self._running().server.plan[0].devices[0].key if meter is None else str(meter)

    # --- reading ---
    def read(self, meter=None) -> dict[str, float]:
        """A meter's readings by name, as published now (the first meter's by default)."""
        return self.control.readings(self._id(meter))

    def meter(self, meter=None) -> dict:
        """Everything about a meter, as GET /api/meters/{id} answers."""
        return self.control.details(self._id(meter))

    def total(self, meter=None) -> float:
        """The total the meter shows: kWh or m3."""
        return self.meter(meter)["total"]

    @property
    def ticks(self) -> int:
        return self._running().server.updater.ticks

    def wait_ticks(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Block until count more ticks have run; False on timeout."""
        return self._running().server.updater.wait_ticks(count, timeout)

    def tick(self) -> None:
        """Step every meter now (besides the schedule), as a tick does."""
        self._running().server.updater.tick()

    # --- changing ---
    def set(self, meter=None, **readings) -> dict:
        """Pin readings (power_total=5000, voltage_l2=190, ...); None releases one."""
        return self.control.set_overrides(self._id(meter), readings)

    def release(self, *names: str, meter=None) -> dict:
        """Release these pins, or every pin."""
        return self.control.release(self._id(meter), list(names) if names else None)

    def set_online(self, online: bool, meter=None) -> dict:
        return self.control.set_online(self._id(meter), online)

    def reset(self, meter=None) -> dict:
        return self.control.reset(self._id(meter))

    def set_total(self, total: float, meter=None) -> dict:
        return self.control.set_total(self._id(meter), total)

    # --- sites ---
    def site(self, port=None) -> dict:
        """A site as GET /api/sites/{port} shows it (the site on sim.port by default); KeyError
        for a port that serves no site (every port without site=True)."""
        return self.control.sites.site(self.port if port is None else port)

    def set_site(self, port=None, **changes) -> dict:
        """Change a site as PUT /api/sites/{port} does: load_w=, pv_available_w= pin (None
        releases), soc_pct= sets the state of charge, controls={name: value} sets controls
        (None switches a limit off); returns the site. ValueError for a bad value (nothing
        changes), KeyError for a port that serves no site."""
        return self.control.sites.set_site(self.port if port is None else port, changes)

    # --- faults ---
    def fault(self, type: str, *, meter=None, port: int | None = None,  # noqa: A002 - the API's word
              unit_id: int | None = None, face: str | None = None, scope: dict | None = None,
              functions: Sequence[int] | None = None, **parameters) -> Fault:
        """Start a fault (as POST /api/faults); use it as a with block to end it on leaving.

        Scope: meter="5020-7", port=, unit_id=, face="tcp" or "serial", or scope={...}; none is
        every meter on every face."""
        if scope is None:
            scope = {name: value for name, value in (("meter", None if meter is None else str(meter)),
                                                     ("port", port), ("unit_id", unit_id), ("face", face))
                     if value is not None}
        spec = {"type": type, "scope": scope, **parameters}
        if functions is not None:
            spec["functions"] = list(functions)
        return Fault(self, self.control.start_fault(spec))

    def faults(self) -> list[dict]:
        """The active faults, oldest first."""
        return self.control.faults()

    def clear_faults(self) -> int:
        """End every fault; how many there were."""
        return self.control.clear_faults()

    def __repr__(self) -> str:
        state = "running" if self._started and not self._stopped else "stopped" if self._stopped else "new"
        kind = "site" if self.config.site else self.config.meter_type
        return f"<MeterSimulator {kind} {state}>"
