"""The PDU seam every framing shares: a unit id and a request PDU in, the answer PDU out.

Responder holds one port's rules. Reads are cut from the addressed device's published
image (MeterDataHandler.answer_read); writes are decoded here and handed to the handler's
DataHandler callbacks (write_coils, write_h_regs), which turn them into meter commands;
device identification (FC 0x2B / MEI 0x0E) is answered from the port's objects. Between
them: 0x01 for a function code not served, 0x03 for a request whose size or quantities are
wrong, 0x0B for a device that does not answer. The answers are byte for byte those of
pyModbusTCP 0.3's engine, which this replaced, with the specification's rules where that
engine strays (see read_device_id). No sockets and no framing here: MBAP and RTU wrap it.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Callable

from pyModbusTCP.constants import (
    ENCAPSULATED_INTERFACE_TRANSPORT,
    EXP_DATA_ADDRESS,
    EXP_DATA_VALUE,
    EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND,
    EXP_ILLEGAL_FUNCTION,
    MAX_PDU_SIZE,
    MEI_TYPE_READ_DEVICE_ID,
    READ_COILS,
    READ_DISCRETE_INPUTS,
    READ_HOLDING_REGISTERS,
    READ_INPUT_REGISTERS,
    WRITE_MULTIPLE_COILS,
    WRITE_MULTIPLE_REGISTERS,
    WRITE_READ_MULTIPLE_REGISTERS,
    WRITE_SINGLE_COIL,
    WRITE_SINGLE_REGISTER,
)

from ..maps.image import READ_FUNCTIONS, READ_REQUEST

if TYPE_CHECKING:
    from pyModbusTCP.server import DeviceIdentification

    from .handler import MeterDataHandler

# PDU sizes in bytes, function code included, of requests with a fixed size.
FIXED_PDU_SIZE = {READ_COILS: 5, READ_DISCRETE_INPUTS: 5, READ_HOLDING_REGISTERS: 5,
                  READ_INPUT_REGISTERS: 5, WRITE_SINGLE_COIL: 5, WRITE_SINGLE_REGISTER: 5}


# Requests that end in a byte count and that many bytes: offset of the byte count.
BYTE_COUNT_AT = {WRITE_MULTIPLE_COILS: 5, WRITE_MULTIPLE_REGISTERS: 5,
                 WRITE_READ_MULTIPLE_REGISTERS: 9}


READ_DEVICE_ID_PDU_SIZE = 4  # 0x2B, MEI type 0x0E, read device id code, object id
SUPPORTED_FUNCTIONS = frozenset(FIXED_PDU_SIZE) | frozenset(BYTE_COUNT_AT) | {
    ENCAPSULATED_INTERFACE_TRANSPORT}
READ_PDU_SIZE = 5  # function code, starting address, quantity

COIL_ON = 0xFF00  # FC 0x05's value for ON; 0x0000 is OFF, anything else the handler refuses
# Quantity limits of the writes, as pyModbusTCP 0.3 checked them (FC 0x17: both halves).
MAX_WRITE_COILS = 0x07B0
MAX_WRITE_REGISTERS = 0x007B
MAX_WRITE_READ_REGISTERS = 0x007B

# read device id codes: the streams' object id ranges (basic, regular, extended), individual access
DEVICE_ID_STREAMS = {1: (0x00, 0x02), 2: (0x03, 0x7F), 3: (0x80, 0xFF)}
DEVICE_ID_INDIVIDUAL = 4
CONFORMITY_LEVEL = 0x83  # basic, regular and extended objects; streams and individual access
DEVICE_ID_HEAD = 7  # bytes of a device identification answer before its objects

ADDRESS_VALUE = struct.Struct(">HH")  # FC 0x05, 0x06 after the function code; also address, quantity
ADDRESS_QUANTITY_COUNT = struct.Struct(">HHB")  # FC 0x0F, 0x10 after the function code
WRITE_READ_HEAD = struct.Struct(">HHHHB")  # FC 0x17: read address, quantity, write address, ...


def exception_pdu(function_code: int, exp_code: int) -> bytes:
    """An exception answer: the function code with its high bit set, then the code."""
    return bytes((function_code | 0x80, exp_code))


def pdu_size_ok(pdu: bytes) -> bool:
    """True when a request PDU of a supported function code has the size its fields call for."""
    func_code = pdu[0]
    if func_code in FIXED_PDU_SIZE:
        return len(pdu) == FIXED_PDU_SIZE[func_code]
    if func_code in BYTE_COUNT_AT:
        at = BYTE_COUNT_AT[func_code]
        if len(pdu) <= at or len(pdu) != at + 1 + pdu[at]:
            return False
        if func_code == WRITE_MULTIPLE_COILS:  # pyModbusTCP took any byte count >= what is needed
            (quantity,) = struct.unpack_from(">H", pdu, 3)
            return pdu[at] == (quantity + 7) // 8
        return True
    if func_code == ENCAPSULATED_INTERFACE_TRANSPORT:
        if len(pdu) < 2:
            return False
        return pdu[1] != MEI_TYPE_READ_DEVICE_ID or len(pdu) == READ_DEVICE_ID_PDU_SIZE
    return True  # unknown function codes are refused with 0x01 whatever their size


def served(pdu: bytes) -> bool:
    """True for a function code this server has; of 0x2B only MEI type 0x0E (the specification's
    state diagram answers any other with 0x01)."""
    function_code = pdu[0]
    if function_code == ENCAPSULATED_INTERFACE_TRANSPORT:
        return pdu[1:2] in (b"", bytes((MEI_TYPE_READ_DEVICE_ID,)))
    return function_code in SUPPORTED_FUNCTIONS


def device_id_answer(code: int, objects: list[tuple[int, bytes]]) -> bytes:
    """FC 0x2B / MEI 0x0E answer: the objects that fit in one PDU; when one does not, "more
    follows" (0xFF) and its id, to ask for next."""
    body = bytearray()
    more_follows = next_object_id = count = 0
    for object_id, value in objects:
        if DEVICE_ID_HEAD + len(body) + 2 + len(value) > MAX_PDU_SIZE:
            more_follows, next_object_id = 0xFF, object_id
            break
        body += bytes((object_id, len(value)))
        body += value
        count += 1
    return bytes((ENCAPSULATED_INTERFACE_TRANSPORT, MEI_TYPE_READ_DEVICE_ID, code, CONFORMITY_LEVEL,
                  more_follows, next_object_id, count)) + body


class Responder:
    """One port's answers: made once over its data handler (its devices) and identification."""

    def __init__(self, handler: MeterDataHandler, device_id: DeviceIdentification) -> None:
        self.handler = handler
        self.device_id = device_id
        self.answer_read = handler.answer_read  # bound once: reads are the hot path
        self.writes: dict[int, Callable[[int, bytes], bytes]] = {
            WRITE_SINGLE_COIL: self.write_single, WRITE_SINGLE_REGISTER: self.write_single,
            WRITE_MULTIPLE_COILS: self.write_coils, WRITE_MULTIPLE_REGISTERS: self.write_registers,
            WRITE_READ_MULTIPLE_REGISTERS: self.write_read_registers}

    def answer(self, unit_id: int, pdu: bytes) -> bytes | None:
        """The answer PDU to a request PDU (1 byte or more) for unit_id; None: no answer."""
        function_code = pdu[0]
        if function_code in READ_FUNCTIONS and len(pdu) == READ_PDU_SIZE:
            return self.answer_read(unit_id, pdu)
        device = self.handler.device_for_id(unit_id)
        if device is not None and device.unreachable:  # an offline device answers nothing at all
            if device.silent:  # an inverter asleep at night: not even that
                return None
            return exception_pdu(function_code, EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND)
        if not served(pdu):
            return exception_pdu(function_code, EXP_ILLEGAL_FUNCTION)
        if not pdu_size_ok(pdu):
            return exception_pdu(function_code, EXP_DATA_VALUE)
        if function_code == ENCAPSULATED_INTERFACE_TRANSPORT:
            return self.read_device_id(pdu)
        return self.writes[function_code](unit_id, pdu)

    def write_single(self, unit_id: int, pdu: bytes) -> bytes:
        """FC 0x05 and 0x06 (5 bytes): the answer echoes the request."""
        address, value = ADDRESS_VALUE.unpack_from(pdu, 1)
        info = self.handler.request_info(unit_id, pdu)
        if pdu[0] == WRITE_SINGLE_COIL:
            result = self.handler.write_coils(address, [value == COIL_ON], info)
        else:
            result = self.handler.write_h_regs(address, [value], info)
        return pdu[:5] if result.ok else exception_pdu(pdu[0], result.exp_code)

    def write_coils(self, unit_id: int, pdu: bytes) -> bytes:
        """FC 0x0F (byte count checked): the answer is the request's address and quantity."""
        address, quantity, _ = ADDRESS_QUANTITY_COUNT.unpack_from(pdu, 1)
        if not 1 <= quantity <= MAX_WRITE_COILS:
            return exception_pdu(pdu[0], EXP_DATA_VALUE)
        packed = int.from_bytes(pdu[6:], "little")  # the first coil in the lowest bit
        bits = [bool(packed >> i & 1) for i in range(quantity)]
        result = self.handler.write_coils(address, bits, self.handler.request_info(unit_id, pdu))
        return pdu[:5] if result.ok else exception_pdu(pdu[0], result.exp_code)

    def write_registers(self, unit_id: int, pdu: bytes) -> bytes:
        """FC 0x10 (size checked): the answer is the request's address and quantity."""
        address, quantity, byte_count = ADDRESS_QUANTITY_COUNT.unpack_from(pdu, 1)
        if not (1 <= quantity <= MAX_WRITE_REGISTERS and byte_count == 2 * quantity):
            return exception_pdu(pdu[0], EXP_DATA_VALUE)
        words = list(struct.unpack_from(f">{quantity}H", pdu, 6))
        result = self.handler.write_h_regs(address, words, self.handler.request_info(unit_id, pdu))
        return pdu[:5] if result.ok else exception_pdu(pdu[0], result.exp_code)

    def write_read_registers(self, unit_id: int, pdu: bytes) -> bytes:
        """FC 0x17 (size checked): the write, then the read from the image it published; the
        handler refuses a write whose read half would fail, so the exchange is all or nothing."""
        read_address, read_quantity, address, quantity, byte_count = WRITE_READ_HEAD.unpack_from(pdu, 1)
        if not (1 <= quantity <= MAX_WRITE_READ_REGISTERS and byte_count == 2 * quantity
                and 1 <= read_quantity <= MAX_WRITE_READ_REGISTERS):
            return exception_pdu(pdu[0], EXP_DATA_VALUE)
        words = list(struct.unpack_from(f">{quantity}H", pdu, 10))
        result = self.handler.write_h_regs(address, words, self.handler.request_info(unit_id, pdu))
        if not result.ok:
            return exception_pdu(pdu[0], result.exp_code)
        read = self.answer_read(unit_id, READ_REQUEST.pack(READ_HOLDING_REGISTERS, read_address,
                                                           read_quantity))
        if read[0] & 0x80:
            return exception_pdu(pdu[0], read[1])
        return bytes((pdu[0],)) + read[1:]

    def read_device_id(self, pdu: bytes) -> bytes:
        """FC 0x2B / MEI 0x0E (4 bytes), with the specification's rules for an object id that
        does not exist: a stream (codes 1 to 3) starts over at the first object of its category,
        individual access (code 4) is answered with 0x02; another code gets 0x03."""
        code, object_id = pdu[2], pdu[3]
        device_id = self.device_id
        known = bool(device_id.items(start=object_id, end=object_id))
        if code in DEVICE_ID_STREAMS:
            first, last = DEVICE_ID_STREAMS[code]
            if not (known and first <= object_id <= last):
                object_id = first
            return device_id_answer(code, device_id.items(start=object_id, end=last))
        if code != DEVICE_ID_INDIVIDUAL:
            return exception_pdu(pdu[0], EXP_DATA_VALUE)
        if not known:
            return exception_pdu(pdu[0], EXP_DATA_ADDRESS)
        return device_id_answer(code, device_id.items(start=object_id, end=object_id))
