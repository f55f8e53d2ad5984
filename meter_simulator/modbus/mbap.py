"""ConnectionHandler: one Modbus/TCP connection's loop: strict MBAP framing, read-ahead, the idle
timeout, IPv6 peers and the request faults acted out on it."""
from __future__ import annotations

import logging
import socket
import struct
import time

from pyModbusTCP.server import ModbusServer

from ..device.faults import MBAP_TCP
from ..net.waits import TIMED_OUT, bound_waits

log = logging.getLogger(__name__)

# what a request's answer was, in the per-connection counts (key: function code << 2 | result)
RESULT_OK, RESULT_EXCEPTION, RESULT_FAULT = 0, 1, 2
EXCEPTION_KEY = 1 << 10  # + exception code: exception answers sent, by code

RECV_AHEAD_BYTES = 4096  # a few whole frames: pipelined requests cost no extra recv
POLL_S = 0.5  # how often a blocked connection looks at its idle deadline and at server stop
MAX_HELD_AHEAD_BYTES = 65536  # read ahead while a request is held; past it the kernel buffers
# MBAP length field = unit id (1 byte) + PDU; the PDU is 1 to 253 bytes (Modbus/TCP ADU <= 260).
MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
MIN_MBAP_LENGTH = 2
MAX_MBAP_LENGTH = 254
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class FramingError(ModbusServer.NetworkError):
    """The byte stream is not Modbus/TCP: the connection is closed."""


class IdleTimeout(ModbusServer.NetworkError):
    """No complete request within the idle timeout: the connection is closed."""


class Exchange:
    """A face's bookkeeping of one request and the request faults acted out on it: the counts by
    function code and result, and inject(). A face frames its answers (frame, garbled), finds the
    normal answer (answer_pdu), waits (hold), sends (send_all) and restarts its idle clock
    (mark_active); mbap.py's connections, rtutcp.py's and the serial line (line.py) do."""

    counts: dict[int, int]

    def count(self, function_code: int, answer_pdu: bytes | None, result: int) -> None:
        """Count one request (before its answer is sent) and the exception answer it gets."""
        counts = self.counts
        key = function_code << 2 | result
        counts[key] = counts.get(key, 0) + 1
        if answer_pdu is not None and len(answer_pdu) >= 2 and answer_pdu[0] & 0x80:
            key = EXCEPTION_KEY + answer_pdu[1]
            counts[key] = counts.get(key, 0) + 1

    def frame(self, header, unit_id: int, answer_pdu: bytes) -> bytes:
        """The answer ADU: the MBAP header (header: the request's transaction id), then the PDU."""
        return MBAP.pack(header, 0, len(answer_pdu) + 1, unit_id) + answer_pdu

    def garbled(self, frame: bytes, mode: str) -> bytes:
        """An answer ADU as a corrupt fault in this mode garbles it."""
        return corrupted(frame, mode)

    def answer_pdu(self, unit_id: int, pdu: bytes) -> bytes | None:
        """The normal answer PDU (None: none), for a fault that acts on the exchange."""
        return self.server.responder.answer(unit_id, pdu)

    def inject(self, fault, header, unit_id: int, pdu: bytes) -> None:
        """Act out a fault on this request instead of the normal exchange (faults.py); raises
        NetworkError when the fault ends the connection. header: what frame() needs."""
        function_code = pdu[0]
        if fault.delay_s:
            self.hold(fault.delay_s)
            self.mark_active()  # the wait was ours, not the client's: its idle time starts now
        kind = fault.type
        if kind in ("delay", "corrupt"):  # executed when the answer is built
            answer_pdu = self.answer_pdu(unit_id, pdu)
            self.count(function_code, answer_pdu, RESULT_FAULT)
            if answer_pdu is None:
                return
            answer = self.frame(header, unit_id, answer_pdu)
            if kind == "corrupt":
                answer = self.garbled(answer, fault.parameters["mode"])
            self.send_all(answer)
        elif kind == "exception":
            answer_pdu = bytes(((function_code | 0x80) & 0xFF, fault.parameters["code"]))
            self.count(function_code, answer_pdu, RESULT_FAULT)
            self.send_all(self.frame(header, unit_id, answer_pdu))
        elif kind == "no_answer":
            self.count(function_code, None, RESULT_FAULT)
        elif kind == "close":
            self.count(function_code, None, RESULT_FAULT)
            try:
                self.request.shutdown(socket.SHUT_WR)  # FIN now, whatever is still unread
            except OSError:
                pass
            raise ModbusServer.NetworkError("closed by a fault")
        elif kind == "reset":
            self.count(function_code, None, RESULT_FAULT)
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            raise ModbusServer.NetworkError("reset by a fault")


class ConnectionHandler(Exchange, ModbusServer.ModbusService):
    """One connection: MBAP frames in and out around the port's PDU seam (server.responder),
    with strict framing, an idle timeout and IPv6 peers. The fault acting (inject, hold) is
    framing-agnostic: rtutcp.py's RTU connections reuse it through frame/garbled/answer_pdu."""

    def setup(self) -> None:
        self.counts: dict[int, int] = {}  # requests by function code << 2 | result, exceptions
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Every blocking call returns within POLL_S, and the loop then looks at the server's
        # stop and the idle deadline: set once per connection, none per request.
        bound_waits(self.request, POLL_S)
        self.idle_timeout_s = getattr(self.server, "idle_timeout_s", 0) or 0
        self._closed = getattr(self.server, "closed", None)  # set when the listener closes
        self._received = bytearray()  # bytes read ahead of the frame being parsed
        self.mark_active()

    def mark_active(self) -> None:
        """A complete request arrived: the idle timeout counts from now."""
        self.deadline = (time.monotonic() + self.idle_timeout_s) if self.idle_timeout_s else None

    @property
    def server_running(self) -> bool:
        return self._closed is None or not self._closed.is_set()

    def check_alive(self) -> None:
        """Raise when the connection must end now: the server stopped, or the idle time is up."""
        if not self.server_running:
            raise ModbusServer.NetworkError("server stopped")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise IdleTimeout(f"no complete request for {self.idle_timeout_s:g} s")

    def recv_exact(self, size: int) -> bytes:
        """The next size bytes. Reads ahead, so a whole frame usually costs one recv."""
        received = self._received
        while len(received) < size:
            try:
                chunk = self.request.recv(RECV_AHEAD_BYTES)
            except TIMED_OUT:
                chunk = None
            if chunk == b"":
                raise ModbusServer.NetworkError("closed by the client")
            if chunk:
                received += chunk
                if len(received) >= size:
                    break  # what has come is served, even when the idle deadline just passed
            self.check_alive()  # also between the bytes of a client that sends slowly
        data = bytes(received[:size])
        del received[:size]
        return data

    def send_all(self, data: bytes) -> None:
        """Send data whole; a client that stops reading its answers is bounded by the same
        deadline as one that stops sending."""
        try:
            sent = self.request.send(data)
        except TIMED_OUT:
            sent = 0
        if sent < len(data):  # rare: a full send buffer; what is left goes on in slices
            view = memoryview(data)[sent:]
            while view:
                self.check_alive()
                try:
                    sent = self.request.send(view)
                except TIMED_OUT:
                    sent = 0
                view = view[sent:]

    def next_request(self) -> tuple[int, int, bytes]:
        """(transaction id, unit id, PDU) of the next request; FramingError when the bytes are
        not Modbus/TCP. With nothing read ahead, a recv that brings one whole frame (a client
        that waits for each answer) is parsed in place; anything else goes through the
        read-ahead buffer."""
        received = self._received
        while not received:
            try:
                chunk = self.request.recv(RECV_AHEAD_BYTES)
            except TIMED_OUT:
                self.check_alive()
                continue
            if not chunk:
                raise ModbusServer.NetworkError("closed by the client")
            if len(chunk) >= MBAP.size:
                tid, protocol_id, length, unit_id = MBAP.unpack_from(chunk)
                if len(chunk) == MBAP.size - 1 + length and protocol_id == 0 \
                        and MIN_MBAP_LENGTH <= length <= MAX_MBAP_LENGTH:
                    return tid, unit_id, chunk[MBAP.size:]
                received += chunk  # more than a frame, or a bad header: read_mbap() says which
            else:
                received += chunk
                self.check_alive()  # also between the bytes of a client that sends slowly
        tid, length, unit_id = self.read_mbap()
        return tid, unit_id, self.recv_exact(length - 1)

    def read_mbap(self) -> tuple[int, int, int]:
        """(transaction id, length, unit id) of the next 7 bytes; FramingError when they are not
        a Modbus/TCP header.

        pyModbusTCP's own check accepts length 255 (a 254-byte PDU, past the 253 Modbus allows)
        and refuses length 2 (a PDU of a function code alone, which deserves an answer).
        """
        tid, protocol_id, length, unit_id = MBAP.unpack(self.recv_exact(MBAP.size))
        if protocol_id != 0:
            raise FramingError(f"protocol id {protocol_id}, not 0")
        if not MIN_MBAP_LENGTH <= length <= MAX_MBAP_LENGTH:
            raise FramingError(f"MBAP length {length}, not {MIN_MBAP_LENGTH} to {MAX_MBAP_LENGTH}")
        return tid, length, unit_id

    def handle(self) -> None:
        peer = ("?", 0)
        server = self.server
        counts = self.counts
        server.register(self)
        try:
            answer = server.responder.answer  # the port's PDU seam (pdu.Responder)
            peer = self.request.getpeername()
            log.debug("connection from %s port %s", peer[0], peer[1])
            while True:
                tid, unit_id, pdu = self.next_request()
                self.mark_active()
                request_faults = server.request_faults
                if request_faults:
                    fault = server.match_fault(request_faults, unit_id, pdu[0], MBAP_TCP)
                    if fault is not None:
                        self.inject(fault, tid, unit_id, pdu)
                        continue
                answer_pdu = answer(unit_id, pdu)
                if answer_pdu is None:  # nothing to send back (a broadcast, in framings that have one)
                    self.count(pdu[0], None, RESULT_OK)
                    continue
                # self.count() inlined: this runs for every request
                if answer_pdu[0] & 0x80:
                    key = pdu[0] << 2 | RESULT_EXCEPTION
                    code_key = EXCEPTION_KEY + answer_pdu[1]
                    counts[code_key] = counts.get(code_key, 0) + 1
                else:
                    key = pdu[0] << 2
                counts[key] = counts.get(key, 0) + 1
                self.send_all(MBAP.pack(tid, 0, len(answer_pdu) + 1, unit_id) + answer_pdu)
        except (ModbusServer.Error, OSError) as exc:
            log.debug("connection from %s port %s closed: %s", peer[0], peer[1], exc)
        finally:
            self.request.close()
            server.unregister(self)

    def hold(self, delay_s: float) -> None:
        """Wait delay_s (only this connection waits) while watching the socket: what the client
        sends meanwhile joins the read-ahead; NetworkError when it closes (a reset raises
        ConnectionResetError) or the server stops, so a request nobody waits for is dropped
        unexecuted and its slot freed."""
        sock, received, closed = self.request, self._received, self.server.closed
        end_s = time.monotonic() + delay_s
        try:
            while True:
                left_s = end_s - time.monotonic()
                if left_s <= 0:
                    return
                if closed.is_set():
                    raise ModbusServer.NetworkError("server stopped")
                if len(received) >= MAX_HELD_AHEAD_BYTES:
                    closed.wait(min(left_s, POLL_S))
                    continue
                sock.settimeout(min(left_s, POLL_S))  # Python's: to the ms, the kernel's to a tick
                try:
                    chunk = sock.recv(RECV_AHEAD_BYTES)
                except TIMED_OUT:
                    continue
                if not chunk:  # also a stopping server's shutdown of the socket
                    raise ModbusServer.NetworkError("closed by the client while its request waited")
                received += chunk
        finally:
            bound_waits(sock, POLL_S)


def corrupted(answer: bytes, mode: str) -> bytes:
    """An answer ADU garbled as a corrupt fault asks: the transaction id + 1, the MBAP length
    + 1 (announcing a byte that never comes), or its first half."""
    if mode == "transaction_id":
        (tid,) = struct.unpack_from(">H", answer)
        return struct.pack(">H", (tid + 1) & 0xFFFF) + answer[2:]
    if mode == "length":
        (length,) = struct.unpack_from(">H", answer, 4)
        return answer[:4] + struct.pack(">H", (length + 1) & 0xFFFF) + answer[6:]
    return answer[:max(len(answer) // 2, 1)]

