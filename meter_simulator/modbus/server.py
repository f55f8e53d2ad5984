"""MeterServer: banks, the data handler, Modbus endpoints and the updater, started and stopped together."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Callable

from pyModbusTCP.constants import (
    ENCAPSULATED_INTERFACE_TRANSPORT,
    EXP_DATA_ADDRESS,
    EXP_DATA_VALUE,
    EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND,
    EXP_ILLEGAL_FUNCTION,
    MEI_TYPE_READ_DEVICE_ID,
)
from pyModbusTCP.server import DataBank, DeviceIdentification, ModbusServer

from .. import __version__
from ..device.device import serial_number
from ..device.fleet import PortPlan, meter_key
from ..device.updater import Device, Updater
from ..maps import seed as registers
from ..maps.image import READ_FUNCTIONS, READ_INPUT_REGISTERS, Image
from ..maps.points import Profile
from ..model.meters import Meter
from ..net.acceptor import Acceptor
from ..net.listeners import BindError
from .handler import MeterDataHandler
from .mbap import ConnectionHandler
from .pdu import SUPPORTED_FUNCTIONS, pdu_size_ok
from .tcp import MeterTCPServer

log = logging.getLogger(__name__)

VENDOR = b"meter-simulator"
# read device id codes: the streams' object id ranges (basic, regular, extended), individual access
DEVICE_ID_STREAMS = {1: (0x00, 0x02), 2: (0x03, 0x7F), 3: (0x80, 0xFF)}
DEVICE_ID_INDIVIDUAL = 4
READ_PDU_SIZE = 5  # function code, starting address, quantity


class MeterBank(DataBank):
    """pyModbusTCP's DataBank as a view of one meter's published Image.

    The updater publishes a new image a tick (publish swaps one reference), and
    every getter reads from the image it holds at that moment: a read past the map
    gets None (exception 0x02), and no read mixes two ticks. DataBank's lists are
    not allocated (virtual mode): the image holds the data, and the handler turns
    client writes into meter commands, never into bank writes.
    """

    def __init__(self, image: Image) -> None:
        super().__init__(virtual_mode=True)
        self.image = image

    def publish(self, image: Image) -> None:
        self.image = image

    def get_coils(self, address, number=1, srv_info=None):
        return self.image.bit_list(address, number)

    def get_discrete_inputs(self, address, number=1, srv_info=None):
        return self.image.bit_list(address, number)

    def get_holding_registers(self, address, number=1, srv_info=None):
        return self.image.words(address, number)

    def get_input_registers(self, address, number=1, srv_info=None):
        image = self.image
        if image.input is image.holding:  # the seed map: both spaces read the same registers
            return self.get_holding_registers(address, number, srv_info)
        return image.words(address, number, READ_INPUT_REGISTERS)


def new_bank() -> MeterBank:
    """A bank sized to the map, all zero until its meter publishes."""
    return MeterBank(Image.of([0] * registers.REGISTER_COUNT, [False] * registers.COIL_COUNT))


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
    return MeterIdentification(
        vendor_name=VENDOR,
        product_code=code.encode(),
        major_minor_revision=__version__.encode(),
        product_name=f"meter-simulator {meter_type} meter".encode(),
        model_name=f"simulated {meter_type} meter".encode(),
    )


class ModbusEndpoint(ModbusServer):
    """pyModbusTCP's ModbusServer (its engine and data handler) on our TCP server class."""

    def __init__(self, *args, transport_options: dict | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.transport_options = transport_options or {}  # MeterTCPServer's limits and allow list

    def start(self) -> None:
        """Bind and listen; the MeterServer's Acceptor serves the socket. BindError with one line
        when the address cannot be served."""
        self._service = MeterTCPServer(self.host, self.port, ConnectionHandler, **self.transport_options)
        self._service.evt_running = self._evt_running
        self._service.engine = self._engine
        self._evt_running.set()

    def stop(self) -> None:
        """Close the listening socket; connection threads see it and end within POLL_S."""
        if self._service is not None:
            self._service.server_close()
        self._evt_running.clear()

    @property
    def bound_port(self) -> int:
        return self._service.server_address[1]

    def _internal_engine(self, session_data) -> None:
        """pyModbusTCP's engine behind our checks: an unknown function code gets 0x01 (also one
        with the high bit set, which pyModbusTCP cannot pack into its exception answer), a request
        too short or too long for its function code gets 0x03."""
        pdu = session_data.request.pdu.raw
        func_code = pdu[0]
        if func_code in READ_FUNCTIONS and len(pdu) == READ_PDU_SIZE:
            # reads are cut from the meter's published image, without the engine's decoding,
            # handler dispatch and encoding (see image.py)
            session_data.response.pdu.raw = self.data_hdl.answer_read(
                session_data.request.mbap.unit_id, pdu)
            return
        device = self.data_hdl.unit_for_id(session_data.request.mbap.unit_id)
        if device is not None and device.unreachable:  # an offline device answers nothing at all
            session_data.response.pdu.build_except(func_code & 0x7F,
                                                   EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND)
            return
        # of 0x2B only MEI type 0x0E is served; the specification's state diagram answers 0x01
        other_mei = func_code == ENCAPSULATED_INTERFACE_TRANSPORT and pdu[1:2] not in (
            b"", bytes([MEI_TYPE_READ_DEVICE_ID]))
        if func_code not in SUPPORTED_FUNCTIONS or other_mei:
            session_data.response.pdu.build_except(func_code & 0x7F, EXP_ILLEGAL_FUNCTION)
        elif not pdu_size_ok(pdu):
            session_data.response.pdu.build_except(func_code, EXP_DATA_VALUE)
        elif func_code == ENCAPSULATED_INTERFACE_TRANSPORT:
            self._read_device_id(session_data)
        else:
            try:
                super()._internal_engine(session_data)
            except ModbusServer.DataFormatError:
                session_data.response.pdu.build_except(func_code, EXP_DATA_VALUE)

    def _read_device_id(self, session_data) -> None:
        """FC 0x2B / MEI 0x0E by pyModbusTCP, with the specification's rules for an object id
        that does not exist: a stream (read device id codes 1 to 3) starts over at the first
        object of its category, individual access (code 4) is answered with exception 0x02."""
        pdu = session_data.request.pdu.raw
        code, object_id = pdu[2], pdu[3]
        known = bool(self.device_id.items(start=object_id, end=object_id))
        if code in DEVICE_ID_STREAMS:
            first, last = DEVICE_ID_STREAMS[code]
            if not (known and first <= object_id <= last):
                session_data.request.pdu.raw = pdu[:3] + bytes([first])
        elif code == DEVICE_ID_INDIVIDUAL and not known:
            session_data.response.pdu.build_except(ENCAPSULATED_INTERFACE_TRANSPORT, EXP_DATA_ADDRESS)
            return
        super()._internal_engine(session_data)


class MeterServer:
    """Modbus endpoints over meters that one updater steps, started and stopped together."""

    def __init__(self, host: str, endpoints: list[PortPlan], *, interval_s: float = 1.0,
                 speed: float = 1.0, read_only: bool = False, max_clients: int = 100,
                 idle_timeout_s: float = 120.0, allow=None,
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
                           transport_options=self.transport_options)
            for endpoint in endpoints]

    @property
    def ports(self) -> list[int]:
        return [endpoint.bound_port for endpoint in self.endpoints]

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def services(self) -> list[MeterTCPServer]:
        """The bound listeners, one a port."""
        return [endpoint._service for endpoint in self.endpoints if endpoint._service is not None]

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
            for unit_id, device in (endpoint.devices_by_id or {None: endpoint.device}).items():
                device.key = meter_key(endpoint.port, unit_id)
                device.serial_number = serial_number(endpoint.port, device.unit_id)
                with self.updater.lock:
                    device.publish()

    def serve(self) -> None:
        """Accept connections on the bound ports and start ticking."""
        try:
            self.acceptor = Acceptor(self.services)
            self.acceptor.start()
        except BaseException:
            self.stop()
            raise
        self.updater.start()

    def set_request_faults(self, changes: Mapping[int, tuple], match) -> None:
        """Give these ports' connections the request faults that may act there now, by port:
        () or (the port's own, every port's) (control.Control.request_faults)."""
        for port, request_faults in changes.items():
            service = self._services_by_port[port]
            service.match_fault = match  # first: a connection that sees a fault can match it
            service.request_faults = request_faults

    def stop(self) -> None:
        """Stop ticking and close every endpoint and connection; safe to call twice."""
        self.updater.stop()
        if self.acceptor is not None:
            self.acceptor.stop()
        services = self.services
        for endpoint in self.endpoints:
            endpoint.stop()
        for service in services:
            service.end_connections()

    def __enter__(self) -> MeterServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
