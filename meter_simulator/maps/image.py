"""Image: what one meter publishes at one tick, already encoded, and the read answers cut from it.

A tick (or a client's write) builds a new Image and the meter's bank swaps one
reference to it: a reader holds either the old image or the new one, whole, so
no read can mix two ticks. A read of registers is a slice of the encoded bytes
behind a two-byte header, with nothing computed or kept per request: memory is
one image per meter, whatever the clients ask.

Each register space (holding, input) is a few segments: contiguous readable
ranges, each one bytes object. A read must lie inside one segment; a read that
reaches an address no segment holds is answered with exception 0x02. The seed
map is one segment from address 0 that both spaces share; a device profile has
a segment per readable range (an SDM630's input registers 0x0000-0x017D, its
holding registers 0x0000-0x002D, 0xF910-0xF911 and 0xFC00-0xFC03).
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

# (first address, address after the last, two bytes a register big-endian)
Segment = tuple[int, int, bytes]


def segment(start: int, data: bytes) -> Segment:
    """The segment of encoded registers data from address start."""
    return start, start + len(data) // 2, data


@dataclass(frozen=True)
class Image:
    """One tick of one meter: registers as Modbus sends them, and the status bits."""

    holding: tuple[Segment, ...]  # FC 0x03
    input: tuple[Segment, ...]  # FC 0x04 (the seed map: the same segments)
    bits: tuple[bool, ...] | None  # coils, which the discrete inputs read too; None: no coils

    @classmethod
    def of(cls, words: Sequence[int], bits: Sequence[bool] | None) -> Image:
        """The image of 16-bit words (0..65535) from address 0 in both spaces, and bits."""
        segments = (segment(0, struct.pack(f">{len(words)}H", *words)),)
        return cls(segments, segments, None if bits is None else tuple(bool(bit) for bit in bits))

    def _slice(self, function_code: int, address: int, quantity: int) -> bytes | None:
        for start, end, data in (self.input if function_code == READ_INPUT_REGISTERS else self.holding):
            if start <= address and address + quantity <= end:
                offset = 2 * (address - start)
                return data[offset:offset + 2 * quantity]
        return None

    def words(self, address: int, quantity: int, function_code: int = READ_HOLDING_REGISTERS
              ) -> list[int] | None:
        """quantity registers from address, or None when they reach past the map."""
        if address < 0 or quantity < 0:
            return None
        data = self._slice(function_code, address, quantity)
        return None if data is None else list(struct.unpack(f">{quantity}H", data))

    def bit_list(self, address: int, quantity: int) -> list[bool] | None:
        """quantity bits from address, or None when they reach past the map (or there are none)."""
        if self.bits is None or address < 0 or quantity < 0 or address + quantity > len(self.bits):
            return None
        return list(self.bits[address:address + quantity])

    def read_answer(self, function_code: int, address: int, quantity: int) -> bytes | None:
        """The answer PDU to a read (FC 0x01 to 0x04) of a quantity within the Modbus limits,
        or None when it reaches past the map (the caller answers 0x02)."""
        if function_code >= READ_HOLDING_REGISTERS:
            data = self._slice(function_code, address, quantity)
            return None if data is None else bytes((function_code, 2 * quantity)) + data
        if self.bits is None or address + quantity > len(self.bits):
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
