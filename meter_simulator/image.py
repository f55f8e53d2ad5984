"""Image: what one meter publishes at one tick, already encoded, and the read answers cut from it.

A tick (or a client's write) builds a new Image and the meter's bank swaps one
reference to it: a reader holds either the old image or the new one, whole, so
no read can mix two ticks. A read of registers is a slice of the encoded bytes
behind a two-byte header, with nothing computed or kept per request: memory is
one image per meter, whatever the clients ask.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

READ_COILS, READ_DISCRETE_INPUTS, READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS = 0x01, 0x02, 0x03, 0x04
READ_FUNCTIONS = (READ_COILS, READ_DISCRETE_INPUTS, READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS)
MAX_READ_BITS = 2000  # the Modbus specification's quantity limits (0x07D0 and 0x007D)
MAX_READ_REGISTERS = 125
READ_REQUEST = struct.Struct(">BHH")  # function code, starting address, quantity


@dataclass(frozen=True)
class Image:
    """One tick of one meter: registers as Modbus sends them, and the status bits."""

    registers: bytes  # two bytes a register, big-endian, address 0 first
    bits: tuple[bool, ...]  # coils, which the discrete inputs read too

    @classmethod
    def of(cls, words: Sequence[int], bits: Sequence[bool]) -> Image:
        """The image of 16-bit words (0..65535) and bits."""
        return cls(struct.pack(f">{len(words)}H", *words), tuple(bool(bit) for bit in bits))

    @property
    def register_count(self) -> int:
        return len(self.registers) // 2

    def words(self, address: int, quantity: int) -> list[int] | None:
        """quantity registers from address, or None when they reach past the map."""
        if address < 0 or quantity < 0 or address + quantity > self.register_count:
            return None
        return list(struct.unpack_from(f">{quantity}H", self.registers, 2 * address))

    def bit_list(self, address: int, quantity: int) -> list[bool] | None:
        """quantity bits from address, or None when they reach past the map."""
        if address < 0 or quantity < 0 or address + quantity > len(self.bits):
            return None
        return list(self.bits[address:address + quantity])

    def read_answer(self, function_code: int, address: int, quantity: int) -> bytes | None:
        """The answer PDU to a read (FC 0x01 to 0x04) of a quantity within the Modbus limits,
        or None when it reaches past the map (the caller answers 0x02)."""
        if function_code >= READ_HOLDING_REGISTERS:
            end = 2 * (address + quantity)
            if end > len(self.registers):
                return None
            return bytes((function_code, 2 * quantity)) + self.registers[2 * address:end]
        if address + quantity > len(self.bits):
            return None
        packed = sum(1 << i for i, bit in enumerate(self.bits[address:address + quantity]) if bit)
        size = (quantity + 7) // 8
        return bytes((function_code, size)) + packed.to_bytes(size, "little")


def read_request(pdu: bytes) -> tuple[int, int, int]:
    """(function code, starting address, quantity) of a read request PDU of the right size."""
    return READ_REQUEST.unpack(pdu)


def quantity_ok(function_code: int, quantity: int) -> bool:
    """True when a read's quantity is within the Modbus limits (else exception 0x03)."""
    limit = MAX_READ_REGISTERS if function_code >= READ_HOLDING_REGISTERS else MAX_READ_BITS
    return 1 <= quantity <= limit
