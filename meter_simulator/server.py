"""MeterServer: DataBanks, the data handler, Modbus endpoints and the updater, started and stopped together."""
from __future__ import annotations

import logging
import selectors
import socket
import threading
from typing import Callable

from pyModbusTCP.constants import (ENCAPSULATED_INTERFACE_TRANSPORT, EXP_DATA_VALUE,
                                   EXP_ILLEGAL_FUNCTION, MEI_TYPE_READ_DEVICE_ID, READ_COILS,
                                   READ_DISCRETE_INPUTS, READ_HOLDING_REGISTERS,
                                   READ_INPUT_REGISTERS)
from pyModbusTCP.server import DataBank, DeviceIdentification, ModbusServer

from . import __version__, registers
from .fleet import Endpoint
from .handler import MeterDataHandler
from .meters import Meter
from .transport import SUPPORTED_FUNCTIONS, BindError, ConnectionHandler, MeterTCPServer, pdu_size_ok
from .updater import MeterUnit, Updater

log = logging.getLogger(__name__)

VENDOR = b"meter-simulator"
READ_FUNCTIONS = frozenset((READ_COILS, READ_DISCRETE_INPUTS, READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS))
MAX_KEPT_ANSWERS = 1024  # per port; a gateway of 247 meters polled in 4 ways fits


class MeterBank(DataBank):
    """DataBank whose whole-image writes replace the list under its lock.

    DataBank's setters check and compare word by word: 12.5 ms a tick for 1,000
    meters (registers, coils, discrete inputs). The updater's words are already
    16-bit ints from registers.image, so a slice assignment under the same lock
    is as atomic and takes 1.9 ms.
    Writes from clients (srv_info set) keep DataBank's path and its change hooks.

    `changes` counts the writes, each counted once its data is in place: an
    answer built after reading the count holds every write counted so far, so
    it stays right while the count is unchanged (see ModbusEndpoint).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.changes = 0
        self._changes_lock = threading.Lock()

    def _changed(self, result):
        with self._changes_lock:
            self.changes += 1
        return result

    def set_holding_registers(self, address, word_list, srv_info=None):
        if srv_info is not None or not 0 <= address <= len(self._h_regs) - len(word_list):
            return self._changed(super().set_holding_registers(address, word_list, srv_info))
        with self._h_regs_lock:
            self._h_regs[address:address + len(word_list)] = word_list
        return self._changed(True)

    def set_coils(self, address, bit_list, srv_info=None):
        if srv_info is not None or not 0 <= address <= len(self._coils) - len(bit_list):
            return self._changed(super().set_coils(address, bit_list, srv_info))
        with self._coils_lock:
            self._coils[address:address + len(bit_list)] = map(bool, bit_list)
        return self._changed(True)

    def set_discrete_inputs(self, address, bit_list):
        if not 0 <= address <= len(self._d_inputs) - len(bit_list):
            return self._changed(super().set_discrete_inputs(address, bit_list))
        with self._d_inputs_lock:
            self._d_inputs[address:address + len(bit_list)] = map(bool, bit_list)
        return self._changed(True)


def new_bank() -> DataBank:
    """A DataBank sized to the map: reads past it are answered 0x02 by the bank itself."""
    return MeterBank(coils_size=registers.COIL_COUNT, d_inputs_size=registers.COIL_COUNT,
                    h_regs_size=registers.REGISTER_COUNT, i_regs_size=0)


def new_unit(meter: Meter) -> MeterUnit:
    """A meter with a bank of its own."""
    return MeterUnit(meter, new_bank())


def device_identification(meter_type: str) -> DeviceIdentification:
    """FC 0x2B / MEI 0x0E objects: vendor, product code naming the meter type, version."""
    return DeviceIdentification(
        vendor_name=VENDOR,
        product_code=f"{meter_type.upper()}-METER".encode(),
        major_minor_revision=__version__.encode(),
        product_name=f"meter-simulator {meter_type} meter".encode(),
        model_name=f"simulated {meter_type} meter".encode(),
    )


class ModbusEndpoint(ModbusServer):
    """pyModbusTCP's ModbusServer (its engine and data handler) on our TCP server class."""

    def __init__(self, *args, transport_options: dict | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.transport_options = transport_options or {}  # MeterTCPServer's limits and allow list
        # (unit id, request PDU) -> (bank, bank.changes when read, answer PDU); see _answer_read
        self._answers: dict[tuple[int, bytes], tuple[DataBank, int, bytes]] = {}

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
        # of 0x2B only MEI type 0x0E is served; the specification's state diagram answers 0x01
        other_mei = func_code == ENCAPSULATED_INTERFACE_TRANSPORT and pdu[1:2] not in (
            b"", bytes([MEI_TYPE_READ_DEVICE_ID]))
        if func_code not in SUPPORTED_FUNCTIONS or other_mei:
            session_data.response.pdu.build_except(func_code & 0x7F, EXP_ILLEGAL_FUNCTION)
        elif not pdu_size_ok(pdu):
            session_data.response.pdu.build_except(func_code, EXP_DATA_VALUE)
        elif func_code in READ_FUNCTIONS:
            self._answer_read(session_data)
        else:
            try:
                super()._internal_engine(session_data)
            except ModbusServer.DataFormatError:
                session_data.response.pdu.build_except(func_code, EXP_DATA_VALUE)

    def _answer_read(self, session_data) -> None:
        """A read (FC 1 to 4), answered again from the last answer while its bank is unchanged.

        Clients poll the same registers over and over and the image changes once a tick, so
        most reads skip the data handler and the encoding. The bank's change count is read
        before the answer is built: a write during the build makes the count differ, and the
        answer is built afresh next time. Exceptions are never kept, nor more than
        MAX_KEPT_ANSWERS answers (a client scanning addresses clears them).
        """
        key = (session_data.request.mbap.unit_id, session_data.request.pdu.raw)
        kept = self._answers.get(key)
        if kept is not None and kept[0].changes == kept[1]:
            session_data.response.pdu.raw = kept[2]
            return
        unit = self.data_hdl.unit_for_id(key[0])
        bank = unit.bank if unit is not None else None
        changes = bank.changes if bank is not None else None
        super()._internal_engine(session_data)
        answer = session_data.response.pdu.raw
        if changes is not None and answer[:1] == key[1][:1]:  # not an exception
            if len(self._answers) >= MAX_KEPT_ANSWERS:
                self._answers.clear()
            self._answers[key] = (bank, changes, answer)


class Acceptor:
    """One thread that accepts connections on many listening sockets.

    A fleet of 1,000 ports with a serve_forever thread each costs about 20 % of a
    core polling while idle and 0.2 s each to stop; one selector waits
    on all of them and stops at once. Each connection is still taken through the
    server's own _handle_request_noblock (accept, verify_request, process_request).
    """

    def __init__(self, services: list[MeterTCPServer]) -> None:
        self._services = services
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for service in self._services:
            service.socket.setblocking(False)  # a connect reset before accept() must not block us
            self._selector.register(service.socket, selectors.EVENT_READ, service)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._serve, name="modbus-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:  # stop() woke us
                    return
                key.data._handle_request_noblock()
                key.data.service_actions()

    def stop(self) -> None:
        """Stop accepting; safe to call twice. The sockets are closed by their endpoints."""
        if self._thread is not None and self._thread.is_alive():
            self._wake_w.send(b"\0")
            self._thread.join()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


class MeterServer:
    """Modbus endpoints over meters that one updater steps, started and stopped together."""

    def __init__(self, host: str, endpoints: list[Endpoint], *, interval_s: float = 1.0,
                 speed: float = 1.0, read_only: bool = False, max_clients: int = 100,
                 idle_timeout_s: float = 120.0, allow=None,
                 on_failure: Callable[[], None] | None = None,
                 on_tick: Callable[[], None] | None = None) -> None:
        self.host = host
        self.plan = endpoints
        units = [unit for endpoint in endpoints for unit in endpoint.units]
        self.updater = Updater(units, interval_s=interval_s, speed=speed,
                               on_failure=on_failure, on_tick=on_tick)
        self.acceptor: Acceptor | None = None  # one accepting thread for every endpoint
        self.transport_options = {"max_clients": max_clients, "idle_timeout_s": idle_timeout_s,
                                  "allow": allow}
        self.endpoints = [
            ModbusEndpoint(host=host, port=endpoint.port,
                           data_hdl=MeterDataHandler(self.updater, unit=endpoint.unit,
                                                     units_by_id=endpoint.units_by_id,
                                                     read_only=read_only),
                           device_id=device_identification(units[0].meter_type),
                           transport_options=self.transport_options)
            for endpoint in endpoints]

    @property
    def ports(self) -> list[int]:
        return [endpoint.bound_port for endpoint in self.endpoints]

    @property
    def port(self) -> int:
        return self.ports[0]

    def start(self) -> None:
        """Bind every endpoint, then start ticking; on a bind failure nothing is left running."""
        try:
            for endpoint in self.endpoints:
                try:
                    endpoint.start()
                except BindError as exc:
                    raise BindError(f"cannot serve on {self.host}:{endpoint.port}: {exc}") from None
            self.acceptor = Acceptor([endpoint._service for endpoint in self.endpoints])
            self.acceptor.start()
        except BaseException:
            self.stop()
            raise
        self.updater.start()

    def stop(self) -> None:
        """Stop ticking and close every endpoint; safe to call twice."""
        self.updater.stop()
        if self.acceptor is not None:
            self.acceptor.stop()
        for endpoint in self.endpoints:
            endpoint.stop()

    def __enter__(self) -> MeterServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
