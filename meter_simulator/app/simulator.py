"""Simulator: one run's parts built from a Config and started and stopped in order: the meters and
their Modbus ports, the state file, the control core and the control port.

The program (main.py) and the Python API (testing) both run one; neither this module
nor anything it imports touches process-wide state (signals, logging setup, the
GIL's switch interval): the program adds those around it.
"""
from __future__ import annotations

import random
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Callable

from ..device import fleet
from ..device.control import Control
from ..device.site import SitePlan
from ..maps import hybrid
from ..modbus import rtu
from ..modbus.server import MeterServer, new_device
from ..model.site import BATTERY_KW_RANGE
from ..net.listeners import BindError
from ..net.serialline import LineSettings
from ..ops.service import Service
from .options import Config


def host_port(host: str, port: int) -> str:
    """host:port, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def start_time_of_day_s(rng: random.Random, seeded: bool, given_s: float | None = None) -> float:
    """Where the simulated day starts: --start-time, else the local time now, or a seeded time for
    reproducible runs (drawn also when given, so that the meters draw the same numbers)."""
    if seeded:
        drawn_s = rng.uniform(0.0, 86400.0)
        return drawn_s if given_s is None else given_s
    if given_s is not None:
        return given_s
    now = time.localtime()
    return now.tm_hour * 3600.0 + now.tm_min * 60.0 + now.tm_sec


def build_server(config: Config, on_failure=None,
                 tick_context: Callable[[], AbstractContextManager] | None = None) -> MeterServer:
    """The meters and their Modbus server for a configuration (not started)."""
    rng = random.Random(config.seed)
    endpoints = fleet.plan(config.meter_type, config.port, config.count, config.unit_ids, rng,
                           start_time_of_day_s(rng, config.seed is not None, config.start_time_s),
                           new_device, profile=config.profile, pv_kwp=config.pv_kwp,
                           site=site_plan(config))
    return MeterServer(config.host, endpoints, interval_s=config.interval_s, speed=config.speed,
                       read_only=config.read_only, max_clients=config.max_clients,
                       idle_timeout_s=config.idle_timeout_s, allow=config.allow,
                       framing=config.framing,
                       tcp_silence_s=max(rtu.silence_s(config.baud, config.parity, config.stopbits),
                                         rtu.TCP_SILENCE_S),
                       on_failure=on_failure, tick_context=tick_context)


def battery_power_kw(config: Config) -> float | None:
    """The site's battery's largest power: --battery-kw, else half the capacity (at least 0.1
    kW); None without a battery."""
    if config.battery_kwh and config.battery_kw is None:
        return max(config.battery_kwh / 2.0, BATTERY_KW_RANGE[0])
    return config.battery_kw


def site_plan(config: Config) -> SitePlan | None:
    """What each site of the run has, or None for a run of meters."""
    if not config.site:
        return None
    battery_kw = battery_power_kw(config)
    rated_w = 1000.0 * max(config.pv_kwp, battery_kw or 0.0)
    profile = config.inverter_profile or hybrid.chain(
        battery=bool(config.battery_kwh), rated_w=rated_w, battery_max_w=1000.0 * (battery_kw or 0.0),
        capacity_wh=1000.0 * config.battery_kwh)
    return SitePlan(config.pv_kwp, config.battery_kwh, battery_kw, profile, config.inverter_night)


class Simulator:
    """A run: open() binds and restores, serve() starts, stop() stops (safe to repeat)."""

    def __init__(self, config: Config, *, environ: Mapping[str, str] | None = None,
                 on_failure: Callable[[], None] | None = None,
                 tick_context: Callable[[], AbstractContextManager] | None = None) -> None:
        self.config = config
        self.environ = environ
        self.server = build_server(config, on_failure, tick_context)
        self.service: Service | None = None
        self.control: Control | None = None
        self.http = None  # web.ControlServer with --http

    @property
    def http_url(self) -> str | None:
        if self.http is None:
            return None
        return f"http://{host_port(self.config.http[0], self.http.port)}/"

    def open(self) -> None:
        """Restore the state file, bind every port (Modbus, then control) and open the serial line;
        StateError, BindError or SerialLineError with one line, and nothing left bound, locked or
        linked, when that cannot be done.

        Ports asked for as 0 (the Python API) are bound first: the meters' ids and the state
        file's keys follow the ports they get."""
        config = self.config
        if config.port != 0:
            self._restore()
        try:
            self.server.bind()
        except BindError:
            if self.service is not None:
                self.service.abandon()
            raise
        try:
            if config.port == 0:
                self.server.rekey()
                self._restore()
            self.control = Control(self.server.updater, self.server.plan, seed=config.seed,
                                   on_request_faults=self._request_faults, framing=config.framing)
            if config.serial is not None:
                self._open_serial()
            if config.http is not None:
                self.http = self._control_port()
        except BaseException:
            self.server.stop()
            if self.service is not None:
                self.service.abandon()
            if self.control is not None:
                self.control.close()
            raise

    def _open_serial(self) -> None:
        """The serial line for the port's meters (SerialLineError: one line), told to the control
        core (the API's serial field, the faults' serial face)."""
        config = self.config
        settings = LineSettings(config.baud, config.parity, config.stopbits)
        line = self.server.open_serial(config.serial, settings).line
        self.control.set_serial({"port": self.server.port, "path": line.path, "link": line.link,
                                 "baud": settings.baud, "parity": settings.parity,
                                 "stopbits": settings.stopbits})

    @property
    def serial_path(self) -> str | None:
        """The path serial clients open (a pty's client side), or None without a serial line."""
        line = self.server.line
        return line.line.path if line is not None else None

    def _restore(self) -> None:
        config = self.config
        self.service = Service(self.server, state_file=config.state_file, meter_type=config.meter_type,
                               save_interval_s=config.save_interval_s, environ=self.environ)
        self.service.restore()

    def _request_faults(self, changes) -> None:
        self.server.set_request_faults(changes, self.control.match)

    def _control_port(self):
        from ..http import metrics
        from ..http.api import Api, log_answer
        from ..http.web import ControlServer

        host, port = self.config.http
        api = Api(self.control, metrics=lambda: (metrics.exposition(own), metrics.CONTENT_TYPE),
                  health=self.health, read_only=self.config.read_only, token=self.config.http_token)
        try:
            http = ControlServer(host, port, api, allow=self.config.allow, precheck=api.refusal,
                                 on_answer=log_answer)
        except BindError as exc:
            raise BindError(f"cannot serve the control port on {host_port(host, port)}: {exc}") from None
        api.bound(host, http.port)
        own = metrics.registry(self.server, self.control, http)  # scraped once serve() has run
        return http

    def serve(self) -> None:
        """Accept Modbus and control connections and start ticking."""
        self.server.serve()
        if self.http is not None:
            self.http.start()

    def health(self) -> list[str]:
        """What is wrong now, for /healthz (empty: healthy)."""
        updater = self.server.updater
        grace_s = max(2.0 * updater.interval_s, 1.0)
        reasons = []
        if updater.failed:
            reasons.append("the meter updater has failed")
        elif updater.stopped:
            reasons.append("the meter updater has stopped")
        elif not updater.healthy(grace_s):
            reasons.append(f"a tick is overdue by more than {grace_s:g} s")
        for service in self.server.services:
            if service.socket.fileno() < 0:
                reasons.append(f"Modbus port {service.server_address[1]} is closed")
        line = self.server.line
        if line is not None and line.error is not None:
            reasons.append(line.error)
        return reasons

    def stop(self) -> None:
        """Stop the control port, the fault timers, the meters and every connection; the
        state file is saved by stopped()."""
        if self.http is not None:
            self.http.stop()
        if self.control is not None:
            self.control.close()
        self.server.stop()

    def stopped(self) -> None:
        """After stop(): the last tick's totals saved, the state file let go."""
        if self.service is not None:
            self.service.stopped()
