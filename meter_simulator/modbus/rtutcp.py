"""RtuConnectionHandler: one RTU-over-TCP connection, as a transparent RS485-to-Ethernet converter
with the port's meters on its bus would serve it: raw RTU frames in the byte stream, no MBAP.

The connection keeps its own receive state (rtu.Deframer), answers the frames it finds in
order, and counts them by result; the idle timeout counts from the last frame with a valid
CRC. Faults act as on Modbus/TCP (mbap.py's inject), framed as RTU.
"""
from __future__ import annotations

import time

from pyModbusTCP.constants import EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND
from pyModbusTCP.server import ModbusServer

from ..device.faults import RTU_TCP
from ..maps.image import READ_FUNCTIONS
from ..net.waits import TIMED_OUT, bound_waits
from .mbap import POLL_S, RECV_AHEAD_BYTES, RESULT_EXCEPTION, RESULT_OK, ConnectionHandler, log
from .rtu import FRAME_KEY, REQUEST, Deframer, RtuBus, crc16, framed
from .rtuface import RtuFace

READ_FRAME = 8  # bytes of a read request (FC 0x01 to 0x04)
REQUEST_FRAME = FRAME_KEY + REQUEST
VALID_FRAMES_KEPT = 64  # a poller reads a few blocks over and over; more and the set starts over


class RtuConnectionHandler(RtuFace, ConnectionHandler):
    """RTU frames in and out of one connection around the port's bus (server.bus, rtu.RtuBus)."""

    face = RTU_TCP

    def setup(self) -> None:
        super().setup()
        self.valid_frames: set[bytes] = set()  # read requests whose CRC was checked: clients repeat them
        self.unit_ids = self.server.bus.unit_ids  # bound once: the hot path's lookups
        self.answer_read = self.server.responder.answer_read

    @property
    def bus(self) -> RtuBus:
        return self.server.bus

    @property
    def faults_holder(self):
        return self.server

    def receive(self, deframer: Deframer) -> bytes:
        """The next bytes from the client: what a fault's hold read ahead first, else a recv. While
        a partial frame waits, the socket's timeout is its silence, which then discards it."""
        if self._received:
            data = bytes(self._received)
            self._received.clear()
            return data
        sock, waiting = self.request, False
        while True:
            deadline_s = deframer.deadline_s
            if deadline_s is not None:
                # Python's timeout: to the ms, where the kernel's bound is a tick (up to 10 ms)
                sock.settimeout(min(max(deadline_s - time.monotonic(), 0.0), POLL_S))
                waiting = True
            try:
                chunk = sock.recv(RECV_AHEAD_BYTES)
            except TIMED_OUT:
                chunk = None
            if waiting:
                bound_waits(sock, POLL_S)
            if chunk == b"":
                raise ModbusServer.NetworkError("closed by the client")
            if chunk:
                return chunk
            if deadline_s is not None and time.monotonic() >= deadline_s:
                deframer.expire()
            self.check_alive()

    def handle(self) -> None:
        peer = ("?", 0)
        server = self.server
        server.register(self)
        try:
            deframer = Deframer(server.silence_s, self.counts)
            peer = self.request.getpeername()
            log.debug("RTU over TCP connection from %s port %s", peer[0], peer[1])
            recv, served_fast = self.request.recv, self.served_fast
            while True:
                if self._received or deframer.buffer:
                    data = self.receive(deframer)  # held bytes first; a partial frame's silence
                else:  # receive() inlined: nothing pending, the socket's timeout is POLL_S
                    try:
                        data = recv(RECV_AHEAD_BYTES)
                    except TIMED_OUT:
                        self.check_alive()
                        continue
                    if not data:
                        raise ModbusServer.NetworkError("closed by the client")
                if not served_fast(data, deframer):
                    frames = deframer.feed(data, time.monotonic())
                    for unit_id, pdu in frames:
                        self.serve_frame(unit_id, pdu)
                    if not frames:
                        self.check_alive()  # a stream of garbage does not hold off the idle timeout
        except (ModbusServer.Error, OSError) as exc:
            log.debug("connection from %s port %s closed: %s", peer[0], peer[1], exc)
        finally:
            self.request.close()
            server.unregister(self)

    def served_fast(self, data: bytes, deframer: Deframer) -> bool:
        """Serve data when it is the common case, one whole read of a meter on the bus in one recv
        with no fault about (serve_frame inlined, the CRC of a frame seen before not recomputed);
        False: the deframer must look at it."""
        if len(data) != READ_FRAME or deframer.resynchronising or deframer.buffer:
            return False
        server = self.server
        unit_id = data[0]
        if data[1] not in READ_FUNCTIONS or unit_id not in self.unit_ids or server.request_faults:
            return False
        valid = self.valid_frames
        if data not in valid:
            if crc16(data):
                return False
            if len(valid) >= VALID_FRAMES_KEPT:
                valid.clear()
            valid.add(data)
        if self.idle_timeout_s:
            self.deadline = time.monotonic() + self.idle_timeout_s  # mark_active()
        counts = self.counts
        counts[REQUEST_FRAME] = counts.get(REQUEST_FRAME, 0) + 1
        answer_pdu = self.answer_read(unit_id, data[1:6])
        if answer_pdu is None or answer_pdu[0] & 0x80:
            if answer_pdu is None or answer_pdu[1] == EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND:
                # an offline device, or a silent one: nothing on the bus
                self.count(data[1], None, RESULT_OK)
                return True
            self.count(data[1], answer_pdu, RESULT_EXCEPTION)
        else:
            key = data[1] << 2
            counts[key] = counts.get(key, 0) + 1
        self.send_all(framed(unit_id, answer_pdu))
        return True
