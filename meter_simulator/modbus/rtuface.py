"""RtuFace: what every RTU face does with a frame that has a valid CRC, whatever carries it (an
RTU-over-TCP connection, rtutcp.py; the serial line, line.py).

A frame for a meter on the bus is a request: counted, looked at by the request faults
and answered (or, for an offline device, met with silence); unit id 0 is a broadcast,
executed and never answered; a frame for another unit id is ignored. Each is counted
once by its result (rtu.FRAME_RESULTS).
"""
from __future__ import annotations

from ..device.faults import Face
from .mbap import RESULT_EXCEPTION, RESULT_OK, Exchange
from .rtu import BROADCAST_FRAME, FRAME_KEY, REQUEST, RtuBus, bad_crc, framed


def rtu_garbled(frame: bytes, mode: str) -> bytes:
    """An RTU answer frame as a corrupt fault garbles it: both CRC bytes inverted (mode crc), or
    its first half (truncate; at least a byte)."""
    return bad_crc(frame) if mode == "crc" else frame[:max(len(frame) // 2, 1)]


class RtuFace(Exchange):
    """A face that speaks RTU: frames answers with a CRC and serves the frames its Deframer finds.

    A face gives its bus (the port's meters, rtu.RtuBus), its face (for the faults' scope) and
    what holds the request faults that may act on it (faults_holder: request_faults and
    match_fault, as MeterTCPServer has them)."""

    face: Face
    bus: RtuBus
    faults_holder: object

    def frame(self, header, unit_id: int, answer_pdu: bytes) -> bytes:
        return framed(unit_id, answer_pdu)

    def garbled(self, frame: bytes, mode: str) -> bytes:
        return rtu_garbled(frame, mode)

    def answer_pdu(self, unit_id: int, pdu: bytes) -> bytes | None:
        return self.bus.answer(unit_id, pdu)

    def serve_frame(self, unit_id: int, pdu: bytes) -> None:
        """One frame with a valid CRC: a request answered (or faulted), a broadcast executed, or
        a frame for another unit id ignored."""
        self.mark_active()
        bus, counts = self.bus, self.counts
        kind = bus.classify(unit_id)
        counts[FRAME_KEY + kind] = counts.get(FRAME_KEY + kind, 0) + 1
        if kind != REQUEST:
            if kind == BROADCAST_FRAME:
                bus.broadcast(pdu)
            return
        holder = self.faults_holder
        request_faults = holder.request_faults
        if request_faults:
            fault = holder.match_fault(request_faults, unit_id, pdu[0], self.face)
            if fault is not None:
                self.inject(fault, None, unit_id, pdu)
                return
        answer_pdu = bus.answer(unit_id, pdu)
        if answer_pdu is None:  # an offline device: silence on the bus
            self.count(pdu[0], None, RESULT_OK)
            return
        self.count(pdu[0], answer_pdu, RESULT_EXCEPTION if answer_pdu[0] & 0x80 else RESULT_OK)
        self.send_all(framed(unit_id, answer_pdu))
