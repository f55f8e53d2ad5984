"""RTU framing, pure: CRC-16/MODBUS, a request's frame length, the Deframer that finds requests in
a byte stream, and the bus rules (RtuBus) that decide which frames a meter answers.

An RTU frame is the unit id, the PDU and their CRC, low byte first, with no length
field: a slave finds the end of a request from its function code and byte count, as
real slaves do where timing cannot be trusted (pseudo-terminals, USB adapters, TCP),
and a silence longer than T3.5 discards a partial frame. No sockets and no clock here:
the faces (rtutcp.py, line.py) hand in the bytes and the time they arrived.
"""
from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

from pyModbusTCP.constants import EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND

if TYPE_CHECKING:
    from .pdu import Responder

MAX_FRAME = 256  # bytes, unit id and CRC included (Modbus over serial line, 2.5.1.1)
MIN_FRAME = 4  # unit id, function code, CRC
BROADCAST = 0
BROADCAST_WRITES = frozenset({0x05, 0x06, 0x0F, 0x10})

# what happened to a frame, in a face's counts (key FRAME_KEY + index): the metric's result label
FRAME_RESULTS = ("request", "broadcast", "other_unit", "bad_crc", "incomplete")
REQUEST, BROADCAST_FRAME, OTHER_UNIT, BAD_CRC, INCOMPLETE = range(len(FRAME_RESULTS))
FRAME_KEY = 1 << 11  # above the request counts (function code << 2 | result) and EXCEPTION_KEY + code

# request frame lengths by function code: fixed, or (offset of the byte count, bytes besides it)
FIXED_LENGTH = {0x01: 8, 0x02: 8, 0x03: 8, 0x04: 8, 0x05: 8, 0x06: 8, 0x08: 8, 0x07: 4, 0x0B: 4,
                0x0C: 4, 0x11: 4, 0x16: 10, 0x18: 6}
COUNTED_LENGTH = {0x0F: (6, 9), 0x10: (6, 9), 0x14: (2, 5), 0x15: (2, 5), 0x17: (10, 13)}
ENCAPSULATED, MEI_READ_DEVICE_ID, READ_DEVICE_ID_LENGTH = 0x2B, 0x0E, 7
NEED_MORE = 0  # request_length: more bytes must arrive before the length is known
NOT_A_START = -1  # these bytes cannot start a request
UNKNOWN = -2  # a function code whose length cannot be known: a valid CRC ends its frame

# T3.5 above 19200 baud is fixed (Modbus over serial line, 2.5.1.1)
FAST_BAUD, FAST_SILENCE_S = 19200, 0.00175
# A TCP client's frame written in two calls can arrive in segments tens of ms apart (Nagle's
# algorithm and delayed ACKs) where a converter's bus would have received it whole.
TCP_SILENCE_S = 0.06
# In user space a serial line's bytes come in chunks: a USB adapter's latency timer (16 ms on
# FTDI) and the scheduler split a frame with gaps longer than T3.5 at any speed. A frame is
# still cut by its length; only a partial frame waits this long before it is discarded.
SERIAL_SILENCE_S = 0.02


def _byte_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


def _word_table(byte_table: list[int]) -> list[int]:
    """16 bits a step: with a 16-bit register, the next CRC is this table at (the CRC xor the
    next two bytes as a little-endian word). Two byte steps from the CRC word itself."""
    table = []
    for word in range(65536):
        crc = (word >> 8) ^ byte_table[word & 0xFF]
        table.append((crc >> 8) ^ byte_table[crc & 0xFF])
    return table


BYTE_TABLE = _byte_table()
# 65,536 entries (15 ms to build, 2 MB), built when the first CRC is needed, so that a run without
# an RTU face pays nothing: the CRC of a 100-register answer 2.7x cheaper than byte steps
_word_table_built: list[int] = []
_word_table_lock = threading.Lock()
# the CRC after a frame's first byte, its unit id: an answer's PDU (even in length for reads)
# then goes a word at a time from there
UNIT_CRC = [(0xFFFF >> 8) ^ BYTE_TABLE[(0xFFFF ^ unit_id) & 0xFF] for unit_id in range(256)]
UNIT_BYTE = [bytes((unit_id,)) for unit_id in range(256)]
LITTLE_ENDIAN = sys.byteorder == "little"  # memoryview.cast("H") reads native words


def _words() -> list[int]:
    # once: ten connections' first reads at once would otherwise build ten tables (measured:
    # 7 MB more peak RSS)
    with _word_table_lock:
        if not _word_table_built:
            _word_table_built.extend(_word_table(BYTE_TABLE))
    return _word_table_built


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/MODBUS of data (polynomial 0xA001 reflected, initial 0xFFFF; crc: the CRC of what
    came before). A frame with its CRC appended low byte first has the CRC 0."""
    if len(data) & 1 or not LITTLE_ENDIAN:
        table = BYTE_TABLE
        if not LITTLE_ENDIAN:
            for byte in data:
                crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
            return crc
        crc = (crc >> 8) ^ table[(crc ^ data[0]) & 0xFF]
        data = memoryview(data)[1:]
    words = _word_table_built or _words()
    for word in memoryview(data).cast("H"):
        crc = words[crc ^ word]
    return crc


def framed(unit_id: int, pdu: bytes) -> bytes:
    """The RTU frame of a PDU: unit id, PDU, CRC low byte first."""
    crc = crc16(pdu, UNIT_CRC[unit_id])
    return UNIT_BYTE[unit_id] + pdu + crc.to_bytes(2, "little")


def bad_crc(frame: bytes) -> bytes:
    """The frame with both CRC bytes inverted: what a corrupt fault in mode crc sends."""
    return frame[:-2] + bytes((frame[-2] ^ 0xFF, frame[-1] ^ 0xFF))


def silence_s(baud: int, parity: str = "N", stopbits: int = 1) -> float:
    """T3.5: 3.5 characters of a start bit, 8 data bits, the parity bit and the stop bits; above
    19200 baud 1.75 ms."""
    if baud > FAST_BAUD:
        return FAST_SILENCE_S
    return 3.5 * (1 + 8 + (parity != "N") + stopbits) / baud


def request_length(buffer: bytes | bytearray, start: int) -> int:
    """The length of the request frame that starts at buffer[start]: NEED_MORE when more bytes
    must come first, NOT_A_START, or UNKNOWN for a function code without a known length."""
    available = len(buffer) - start
    if available < 2:
        return NEED_MORE
    function_code = buffer[start + 1]
    if function_code == 0 or function_code >= 0x80:
        return NOT_A_START
    fixed = FIXED_LENGTH.get(function_code)
    if fixed is not None:
        return fixed
    counted = COUNTED_LENGTH.get(function_code)
    if counted is not None:
        at, besides = counted
        if available <= at:
            return NEED_MORE
        length = besides + buffer[start + at]
        return length if length <= MAX_FRAME else NOT_A_START
    if function_code == ENCAPSULATED:
        if available < 3:
            return NEED_MORE
        if buffer[start + 2] == MEI_READ_DEVICE_ID:
            return READ_DEVICE_ID_LENGTH
    return UNKNOWN


def crc_end(buffer: bytes | bytearray, start: int) -> int:
    """The end of the shortest frame from start whose CRC is valid, or 0: the end of a frame of a
    function code whose length is not known."""
    crc, table = 0xFFFF, BYTE_TABLE
    stop = min(len(buffer), start + MAX_FRAME)
    for end in range(start, stop):
        crc = (crc >> 8) ^ table[(crc ^ buffer[end]) & 0xFF]
        if crc == 0 and end + 1 - start >= MIN_FRAME:
            return end + 1
    return 0


class Deframer:
    """One byte stream's receive state (a TCP connection, the serial line): bytes in, requests out.

    feed() returns the frames with a valid CRC, in order, as (unit id, PDU); bytes that cannot
    start a frame, or start one whose CRC does not match, are skipped a byte at a time until a
    valid frame starts, and each such run counts once as bad_crc. expire() is called once no byte
    has come for silence_s: a partial frame is discarded (incomplete).
    """

    def __init__(self, silence: float, counts: dict[int, int]) -> None:
        self.silence_s = silence
        self.counts = counts  # the face's counts: FRAME_KEY + BAD_CRC and + INCOMPLETE go here
        self.buffer = bytearray()
        self.last_s = 0.0  # when the last byte came
        self.resynchronising = False  # inside a run of discarded bytes

    @property
    def deadline_s(self) -> float | None:
        """When the partial frame held is discarded, if no byte comes first; None: none held."""
        return self.last_s + self.silence_s if self.buffer else None

    def feed(self, data: bytes, now_s: float) -> list[tuple[int, bytes]]:
        """The requests completed by data, which arrived at now_s."""
        if self.buffer and now_s - self.last_s > self.silence_s:
            self.expire()  # the silence came before these bytes: they start anew
        self.last_s = now_s
        if not self.buffer and len(data) >= MIN_FRAME and not self.resynchronising:
            # one whole request in one read: the common case, without copying into the buffer
            length = FIXED_LENGTH.get(data[1])
            if length == len(data) and crc16(data) == 0:
                return [(data[0], data[1:-2])]
        self.buffer += data
        return self.frames()

    def frames(self) -> list[tuple[int, bytes]]:
        """Cut every complete frame off the front of the buffer, skipping what cannot be one."""
        buffer, found, start = self.buffer, [], 0
        while len(buffer) - start >= 2:
            end = self.frame_end(start)
            if end > 0:
                found.append((buffer[start], bytes(buffer[start + 1:end - 2])))
                start, self.resynchronising = end, False
            elif end == NOT_A_START:
                if not self.resynchronising:
                    self.resynchronising = True
                    self.counts[FRAME_KEY + BAD_CRC] = self.counts.get(FRAME_KEY + BAD_CRC, 0) + 1
                start += 1
            else:
                break  # the frame at start needs more bytes
        del buffer[:start]
        return found

    def frame_end(self, start: int) -> int:
        """The end of a valid frame at start; NOT_A_START (skip a byte) or NEED_MORE."""
        buffer = self.buffer
        length = request_length(buffer, start)
        if length == UNKNOWN:
            end = crc_end(buffer, start)
            if end:
                return end
            if len(buffer) - start >= MAX_FRAME or self.later_frame(start):
                return NOT_A_START
            return NEED_MORE
        if length == NOT_A_START:
            return NOT_A_START
        if length == NEED_MORE or len(buffer) - start < length:
            # while resynchronising the bytes at start are suspect: a whole valid frame further
            # on is not held back by a candidate that waits for bytes that will never come
            if self.resynchronising and self.later_frame(start):
                return NOT_A_START
            return NEED_MORE
        return start + length if crc16(memoryview(buffer)[start:start + length]) == 0 else NOT_A_START

    def later_frame(self, start: int) -> bool:
        """True when a whole frame of known length with a valid CRC starts after start."""
        buffer = self.buffer
        for later in range(start + 1, len(buffer) - MIN_FRAME + 1):
            length = request_length(buffer, later)
            if length > 0 and later + length <= len(buffer) \
                    and crc16(memoryview(buffer)[later:later + length]) == 0:
                return True
        return False

    def expire(self) -> None:
        """A silence: a partial frame is discarded (counted as incomplete, unless it is the tail of
        a run already counted as bad_crc) and the next byte starts a new frame."""
        if self.buffer and not self.resynchronising:
            self.counts[FRAME_KEY + INCOMPLETE] = self.counts.get(FRAME_KEY + INCOMPLETE, 0) + 1
        self.buffer.clear()
        self.resynchronising = False


class RtuBus:
    """A bus's meters behind the port's PDU seam: each answers its own unit id (1 without gateway
    mode), unit id 0 is a broadcast, other unit ids get silence, and an offline device is silent."""

    def __init__(self, responder: Responder) -> None:
        handler = responder.handler
        self.responder = responder
        self.unit_ids = frozenset(handler.devices_by_id) if handler.devices_by_id is not None \
            else frozenset({1})

    def classify(self, unit_id: int) -> int:
        """REQUEST for a meter on the bus, BROADCAST_FRAME for unit id 0, else OTHER_UNIT."""
        if unit_id in self.unit_ids:
            return REQUEST
        return BROADCAST_FRAME if unit_id == BROADCAST else OTHER_UNIT

    def broadcast(self, pdu: bytes) -> None:
        """A write for unit id 0 is executed by every meter, as if sent to each; what a meter
        refuses changes nothing there. Nothing is answered; other function codes are ignored."""
        if pdu[0] in BROADCAST_WRITES:
            answer = self.responder.answer
            for unit_id in sorted(self.unit_ids):
                answer(unit_id, pdu)

    def answer(self, unit_id: int, pdu: bytes) -> bytes | None:
        """The answer PDU to a request for a meter on the bus; None: silence (a device that is
        offline stops talking, where Modbus/TCP answers 0x0B)."""
        answer_pdu = self.responder.answer(unit_id, pdu)
        if answer_pdu is not None and answer_pdu[0] & 0x80 \
                and answer_pdu[1] == EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND:
            return None
        return answer_pdu
