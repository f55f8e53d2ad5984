"""MeterServer: banks, the data handler, Modbus endpoints and the updater, started and stopped together."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Callable

from pyModbusTCP.server import DataBank, DeviceIdentification

from .. import __version__
from ..device.device import LiveImage, serial_number
from ..device.fleet import PortPlan, meter_key
from ..device.updater import Device, Updater
from ..maps import seed as registers
from ..maps.image import Image
from ..maps.points import Profile
from ..model.meters import Meter
from ..net.acceptor import Acceptor
from ..net.listeners import BindError
from ..net.serialline import LineSettings, open_line
from .endpoint import ModbusEndpoint
from .handler import MeterDataHandler
from .line import RtuLine
from .rtu import TCP_SILENCE_S
from .tcp import MeterTCPServer

log = logging.getLogger(__name__)

VENDOR = b"meter-simulator"


class MeterBank(DataBank):
    """pyModbusTCP's DataBank holding one meter's published Image.

    The updater publishes a new image a tick (publish swaps one reference), and a
    read is cut from the image the bank holds at that moment (MeterDataHandler.
    answer_read), so no read mixes two ticks. DataBank's lists are not allocated
    (virtual mode) and its getters are not used: the image holds the data, and the
    handler turns client writes into meter commands, never into bank writes.
    """

    def __init__(self, image: Image) -> None:
        super().__init__(virtual_mode=True)
        self._image = image

    @property
    def image(self) -> Image:
        """The image a read is cut from: a device's LiveImage builds it at the first read after
        a publish (or a tick of its columns)."""
        image = self._image
        return image.current() if image.__class__ is LiveImage else image

    @image.setter
    def image(self, image: Image) -> None:
        self._image = image

    def publish(self, image: Image) -> None:
        self._image = image


# what a bank holds until its meter publishes; images never change, so every bank shares it
ZERO_IMAGE = Image.of([0] * registers.REGISTER_COUNT, [False] * registers.COIL_COUNT)


def new_bank() -> MeterBank:
    """A bank sized to the map, all zero until its meter publishes."""
    return MeterBank(ZERO_IMAGE)


def new_device(meter: Meter, profile: Profile | None = None, **identity) -> Device:
    """A meter with a bank of its own, served through a profile (default: the seed map);
    identity: unit_id, serial and key (see Device)."""
    return Device(meter, new_bank(), profile, **identity)


class MeterIdentification(DeviceIdentification):
    """Device identification objects. pyModbusTCP keeps an empty vendor URL and user application
    name when none is given; those are not objects this meter has, in a stream or alone."""

    def items(self, start=0x00, end=0xFF):
        return [(object_id, value) for object_id, value in super().items(start, end) if value]


def device_identification(meter_type: str, profile: str = "seed") -> DeviceIdentification:
    """FC 0x2B / MEI 0x0E objects: vendor, product code naming the meter type (or the device
    profile), version."""
    code = f"{meter_type.upper()}-METER" if profile == "seed" else profile.upper()
    device = "hybrid inverter" if meter_type == "inverter" else f"{meter_type} meter"  # a site's unit 1
    return MeterIdentification(
        vendor_name=VENDOR,
        product_code=code.encode(),
        major_minor_revision=__version__.encode(),
        product_name=f"meter-simulator {device}".encode(),
        model_name=f"simulated {device}".encode(),
    )


class MeterServer:
    """Modbus endpoints over meters that one updater steps, started and stopped together."""

    def __init__(self, host: str, endpoints: list[PortPlan], *, interval_s: float = 1.0,
                 speed: float = 1.0, read_only: bool = False, max_clients: int = 100,
                 idle_timeout_s: float = 120.0, allow=None, framing: str = "tcp",
                 tcp_silence_s: float = TCP_SILENCE_S,
                 on_failure: Callable[[], None] | None = None,
                 on_tick: Callable[[], None] | None = None,
                 tick_context: Callable[[], AbstractContextManager] | None = None) -> None:
        self.host = host
        self.plan = endpoints
        devices = [device for endpoint in endpoints for device in endpoint.devices]
        self.updater = Updater(devices, interval_s=interval_s, speed=speed,
                               on_failure=on_failure, on_tick=on_tick, tick_context=tick_context)
        self.acceptor: Acceptor | None = None  # one accepting thread for every endpoint
        self._services_by_port: dict[int, MeterTCPServer] = {}  # once bound
        self.transport_options = {"max_clients": max_clients, "idle_timeout_s": idle_timeout_s,
                                  "allow": allow}
        self.endpoints = [
            ModbusEndpoint(host=host, port=endpoint.port,
                           data_hdl=MeterDataHandler(self.updater, device=endpoint.device,
                                                     devices_by_id=endpoint.devices_by_id,
                                                     read_only=read_only),
                           device_id=device_identification(devices[0].meter_type,
                                                           devices[0].profile.name),
                           transport_options=self.transport_options, framing=framing,
                           silence_s=tcp_silence_s)
            for endpoint in endpoints]
        self.framing = framing  # what every TCP port speaks: "tcp" (MBAP) or "rtu"
        self.line: RtuLine | None = None  # the serial face, once open_serial() opened it

    @property
    def ports(self) -> list[int]:
        return [endpoint.bound_port for endpoint in self.endpoints]

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def services(self) -> list[MeterTCPServer]:
        """The bound listeners, one a port."""
        return [endpoint.service for endpoint in self.endpoints if endpoint.service is not None]

    def start(self) -> None:
        """Bind every endpoint, then serve and tick; on a bind failure nothing is left running."""
        self.bind()
        self.serve()

    def bind(self) -> None:
        """Bind and listen on every port (port 0: a free one; see rekey); BindError with one line,
        and nothing left bound, when one cannot be served."""
        try:
            for endpoint in self.endpoints:
                try:
                    endpoint.start()
                except BindError as exc:
                    raise BindError(f"cannot serve on {self.host}:{endpoint.port}: {exc}") from None
        except BaseException:
            self.stop()
            raise
        self._services_by_port = {service.server_address[1]: service for service in self.services}

    def rekey(self) -> None:
        """After bind(): endpoints asked for on port 0 take the ports they were given, and their
        meters the ids and serial numbers that go with them."""
        for endpoint, modbus in zip(self.plan, self.endpoints):
            if endpoint.port == modbus.bound_port:
                continue
            endpoint.port = modbus.port = modbus.bound_port
            if endpoint.site is not None:
                endpoint.site.port = endpoint.port
            for unit_id, device in (endpoint.devices_by_id or {None: endpoint.device}).items():
                device.key = meter_key(endpoint.port, unit_id)
                device.serial_number = serial_number(endpoint.port, device.unit_id)
                with self.updater.lock:
                    device.publish()

    def open_serial(self, spec: str, settings: LineSettings) -> RtuLine:
        """After bind(): open the serial line ("pty", "pty:LINK" or a device) for the first port's
        meters, to be served from serve(); SerialLineError with one line when it cannot be."""
        endpoint = self.endpoints[0]
        self.line = RtuLine(open_line(spec, settings), endpoint.bus, endpoint.bound_port)
        return self.line

    def serve(self) -> None:
        """Accept connections on the bound ports, serve the serial line and start ticking."""
        try:
            self.acceptor = Acceptor(self.services)
            self.acceptor.start()
            if self.line is not None:
                self.line.start()
        except BaseException:
            self.stop()
            raise
        self.updater.start()

    def set_request_faults(self, changes: Mapping[int, tuple], match) -> None:
        """Give these ports' connections the request faults that may act there now, by port:
        () or (the port's own, every port's) (control.Control.request_faults)."""
        line = self.line
        for port, request_faults in changes.items():
            holders = [self._services_by_port[port]] + ([line] if line is not None and line.port == port
                                                        else [])
            for holder in holders:
                holder.match_fault = match  # first: a connection that sees a fault can match it
                holder.request_faults = request_faults

    def stop(self) -> None:
        """Stop ticking and close every endpoint, connection and the serial line; safe twice."""
        self.updater.stop()
        if self.acceptor is not None:
            self.acceptor.stop()
        services = self.services
        for endpoint in self.endpoints:
            endpoint.stop()
        for service in services:
            service.end_connections()
        if self.line is not None:
            self.line.stop()

    def __enter__(self) -> MeterServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
