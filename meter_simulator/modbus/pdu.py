"""Request PDUs: which function codes are served and the size each request must have."""
from __future__ import annotations

import struct

from pyModbusTCP.constants import (
    ENCAPSULATED_INTERFACE_TRANSPORT,
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

# PDU sizes in bytes, function code included, of requests with a fixed size.
FIXED_PDU_SIZE = {READ_COILS: 5, READ_DISCRETE_INPUTS: 5, READ_HOLDING_REGISTERS: 5,
                  READ_INPUT_REGISTERS: 5, WRITE_SINGLE_COIL: 5, WRITE_SINGLE_REGISTER: 5}


# Requests that end in a byte count and that many bytes: offset of the byte count.
BYTE_COUNT_AT = {WRITE_MULTIPLE_COILS: 5, WRITE_MULTIPLE_REGISTERS: 5,
                 WRITE_READ_MULTIPLE_REGISTERS: 9}


READ_DEVICE_ID_PDU_SIZE = 4  # 0x2B, MEI type 0x0E, read device id code, object id
SUPPORTED_FUNCTIONS = frozenset(FIXED_PDU_SIZE) | frozenset(BYTE_COUNT_AT) | {
    ENCAPSULATED_INTERFACE_TRANSPORT}


def pdu_size_ok(pdu: bytes) -> bool:
    """True when a request PDU of a supported function code has the size its fields call for."""
    func_code = pdu[0]
    if func_code in FIXED_PDU_SIZE:
        return len(pdu) == FIXED_PDU_SIZE[func_code]
    if func_code in BYTE_COUNT_AT:
        at = BYTE_COUNT_AT[func_code]
        if len(pdu) <= at or len(pdu) != at + 1 + pdu[at]:
            return False
        if func_code == WRITE_MULTIPLE_COILS:  # pyModbusTCP takes any byte count >= what is needed
            (quantity,) = struct.unpack_from(">H", pdu, 3)
            return pdu[at] == (quantity + 7) // 8
        return True
    if func_code == ENCAPSULATED_INTERFACE_TRANSPORT:
        if len(pdu) < 2:
            return False
        return pdu[1] != MEI_TYPE_READ_DEVICE_ID or len(pdu) == READ_DEVICE_ID_PDU_SIZE
    return True  # unknown function codes are refused with 0x01 whatever their size

