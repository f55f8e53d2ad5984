"""MeterDataHandler: the contract's read and write rules between the PDU seam and the meters.

Reads come from the meter's published Image (input registers are served from
the same image as holding registers, so FC 0x03 and 0x04 can never disagree):
answer_read cuts a whole read answer from it. Writes arrive through pyModbusTCP's
DataHandler callbacks (write_coils, write_h_regs), which pdu.Responder calls with
the request's ServerInfo, and are checked whole before anything changes: the
online coil/register and the reset coil are accepted, every other address is
refused with 0x02, a bad value with 0x03 (the value check first, as in the
Modbus state diagrams).
"""
from __future__ import annotations

import functools
import logging
import struct
from typing import Callable

from pyModbusTCP.constants import (
    EXP_DATA_ADDRESS,
    EXP_DATA_VALUE,
    EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND,
    EXP_ILLEGAL_FUNCTION,
    EXP_NONE,
    EXP_SLAVE_DEVICE_FAILURE,
    WRITE_READ_MULTIPLE_REGISTERS,
    WRITE_SINGLE_COIL,
)
from pyModbusTCP.server import DataHandler, ModbusServer

from ..device.updater import Device, Updater
from ..maps import image
from ..maps import seed as registers
from .pdu import COIL_ON, exception_pdu

log = logging.getLogger(__name__)

COIL_OFF = 0x0000
WRITABLE_COILS = {registers.COIL_ONLINE, registers.COIL_RESET}
WRITABLE_REGISTERS = {registers.ONLINE}


def answer(exp_code: int, data=None) -> DataHandler.Return:
    """A handler result: data, or an exception code."""
    return DataHandler.Return(exp_code=exp_code, data=data)


def guarded(method: Callable) -> Callable:
    """A handler method that never raises: a bug answers 0x04 and is logged once."""

    @functools.wraps(method)
    def wrapper(self, *args):
        try:
            return method(self, *args)
        except Exception:  # the protocol boundary: log, answer "server device failure"
            log.exception("error in %s", method.__name__)
            return answer(EXP_SLAVE_DEVICE_FAILURE)

    return wrapper


def span(address: int, count: int) -> range:
    """The addresses a request touches."""
    return range(address, address + count)


class MeterDataHandler(DataHandler):
    """Routes each request to its meter and turns coil/register writes into meter commands."""

    def __init__(self, updater: Updater, *, device: Device | None = None,
                 devices_by_id: dict[int, Device] | None = None, read_only: bool = False) -> None:
        self.updater = updater
        self.device = device  # the meter answering every unit id, or None with devices_by_id
        self.devices_by_id = devices_by_id  # gateway mode: unit id -> meter
        self.read_only = read_only
        first = device if device is not None else next(iter(devices_by_id.values()))
        super().__init__(data_bank=first.bank)

    @staticmethod
    def request_info(unit_id: int, pdu: bytes) -> ModbusServer.ServerInfo:
        """The ServerInfo the write callbacks take: the request's unit id and PDU (no client)."""
        info = ModbusServer.ServerInfo()
        info.recv_frame.mbap.unit_id = unit_id
        info.recv_frame.pdu.raw = pdu
        return info

    def device_for(self, srv_info) -> Device | None:
        """The meter a request is addressed to, by its unit id (None: no such meter)."""
        return self.device_for_id(srv_info.recv_frame.mbap.unit_id)

    def device_for_id(self, unit_id: int) -> Device | None:
        """The meter that answers unit_id, or None (gateway mode, an unlisted id)."""
        return self.device if self.devices_by_id is None else self.devices_by_id.get(unit_id)

    def answer_read(self, unit_id: int, pdu: bytes) -> bytes | None:
        """The answer PDU to a read request (FC 0x01 to 0x04, 5 bytes), exceptions included:
        0x03 for a quantity outside the Modbus limits, 0x0B for a unit id no meter answers,
        0x02 past the map, 0x04 (logged) for a bug; None for a silent device."""
        function_code = pdu[0]
        try:
            _, address, quantity = image.read_request(pdu)
            if not image.quantity_ok(function_code, quantity):
                return exception_pdu(function_code, EXP_DATA_VALUE)
            device = self.device_for_id(unit_id)
            if device is None or device.unreachable:  # no such meter, an offline or silent device
                if device is not None and device.silent:
                    return None  # an inverter asleep at night: no answer at all
                return exception_pdu(function_code, EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND)
            published = device.bank.image
            if function_code < image.READ_HOLDING_REGISTERS and published.bits is None:
                return exception_pdu(function_code, EXP_ILLEGAL_FUNCTION)  # a device has no coils
            answer_pdu = published.read_answer(function_code, address, quantity)
        except Exception:  # the protocol boundary: log, answer "server device failure"
            log.exception("error in answer_read")
            return exception_pdu(function_code, EXP_SLAVE_DEVICE_FAILURE)
        return exception_pdu(function_code, EXP_DATA_ADDRESS) if answer_pdu is None else answer_pdu

    @guarded
    def write_coils(self, address, bits_l, srv_info):
        device = self.device_for(srv_info)
        if device is None:
            return answer(EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND)
        if self.read_only or not device.profile.coils:
            return answer(EXP_ILLEGAL_FUNCTION)
        pdu = srv_info.recv_frame.pdu.raw
        if pdu[0] == WRITE_SINGLE_COIL:
            (raw_value,) = struct.unpack(">H", pdu[3:5])
            if raw_value not in (COIL_ON, COIL_OFF):
                return answer(EXP_DATA_VALUE)
        if not set(span(address, len(bits_l))) <= WRITABLE_COILS:
            return answer(EXP_DATA_ADDRESS)
        for coil, value in zip(span(address, len(bits_l)), bits_l):
            if coil == registers.COIL_ONLINE:
                self.updater.set_online(device, value)
            elif coil == registers.COIL_RESET and value:
                self.updater.reset_total(device)
        return answer(EXP_NONE)

    @guarded
    def write_h_regs(self, address, words_l, srv_info):
        device = self.device_for(srv_info)
        if device is None:
            return answer(EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND)
        if self.read_only:
            return answer(EXP_ILLEGAL_FUNCTION)
        if not device.profile.coils:
            return self._write_device(device, address, words_l, srv_info.recv_frame.pdu.raw[0])
        writes = dict(zip(span(address, len(words_l)), words_l))
        if writes.get(registers.ONLINE, 0) not in (0, 1):
            return answer(EXP_DATA_VALUE)
        if not set(writes) <= WRITABLE_REGISTERS:
            return answer(EXP_DATA_ADDRESS)
        pdu = srv_info.recv_frame.pdu.raw
        if pdu[0] == WRITE_READ_MULTIPLE_REGISTERS:
            # FC 0x17 writes, then reads (pdu.py): a read past the map must refuse the write too
            read_address, read_count = struct.unpack(">HH", pdu[1:5])
            if read_address + read_count > registers.REGISTER_COUNT:
                return answer(EXP_DATA_ADDRESS)
        self.updater.set_online(device, writes[registers.ONLINE] == 1)
        return answer(EXP_NONE)

    def _write_device(self, device: Device, address: int, words_l, function_code: int):
        """A write to a device profile's map: only by the function codes the device takes (an
        SDM630 writes with FC 0x10 alone; FC 0x17 nowhere), whole writable points only."""
        if function_code not in device.profile.write_functions:
            return answer(EXP_ILLEGAL_FUNCTION)
        return answer(self.updater.write_registers(device, address, list(words_l)))
