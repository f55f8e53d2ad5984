"""RtuLine: one port's meters as RTU slaves on a serial line (a device or a pseudo-terminal).

One thread reads the line and answers each frame before it handles the next, as a
half-duplex bus does: a delay fault keeps the bus busy, and what arrives meanwhile
waits in the line's buffer. The meters are the port's, behind the same PDU seam and bus
rules as RTU over TCP, so a write on one face shows on the other at once. A read or
write error (an unplugged adapter) is logged once, reported by /healthz (error), and
the device is reopened every REOPEN_S until it comes back; TCP goes on serving.
"""
from __future__ import annotations

import logging
import threading
import time

from pyModbusTCP.server import ModbusServer

from ..device.faults import RTU_SERIAL
from ..net.serialline import SerialLine, SerialLineError
from . import rtu
from .rtuface import RtuFace

log = logging.getLogger(__name__)

LINE_POLL_S = 0.1  # how often an idle line looks at the stop flag
REOPEN_S = 1.0  # how often a lost device is opened again
JOIN_S = 2.0


class LineStopped(ModbusServer.NetworkError):
    """The simulator stops while a request waits (a delay fault): it is dropped."""


class RtuLine(RtuFace):
    """The serial face of one port: start() serves it in a thread of its own, stop() ends it and
    closes the line (and its link)."""

    face = RTU_SERIAL

    def __init__(self, line: SerialLine, bus: rtu.RtuBus, port: int) -> None:
        self.line = line
        self.bus = bus
        self.port = port  # the TCP port whose meters these are (a fault's port scope covers both)
        self.counts: dict[int, int] = {}  # as a connection's: requests, exceptions, frames
        self.faults_holder = self  # the request faults that may act here (set_request_faults)
        self.request_faults: tuple = ()
        self.match_fault = None
        self.error: str | None = None  # what is wrong with the line now, for /healthz
        settings = line.settings
        self.silence_s = max(rtu.silence_s(settings.baud, settings.parity, settings.stopbits),
                             rtu.SERIAL_SILENCE_S)
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self.serve, name=f"rtu-serial {line.path}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving (joined) and close the line; safe to call twice."""
        self.closed.set()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(JOIN_S)
        self.line.close()

    def request_counts(self) -> dict[int, int]:
        return self.counts.copy()

    # --- what Exchange asks of a face ---
    def mark_active(self) -> None:
        """A serial line has no idle timeout."""

    def send_all(self, data: bytes) -> None:
        self.line.write(data)

    def hold(self, delay_s: float) -> None:
        """The bus is busy for delay_s; LineStopped when the simulator stops meanwhile."""
        if self.closed.wait(delay_s):
            raise LineStopped("stopped while a request waited")

    # --- the loop ---
    def serve(self) -> None:
        deframer = rtu.Deframer(self.silence_s, self.counts)
        line, closed = self.line, self.closed
        try:
            while not closed.is_set():
                deadline_s = deframer.deadline_s  # a partial frame waits at most its silence
                wait_s = LINE_POLL_S if deadline_s is None else \
                    min(max(deadline_s - time.monotonic(), 0.0), LINE_POLL_S)
                try:
                    data = line.read(wait_s)
                    if data:
                        for unit_id, pdu in deframer.feed(data, time.monotonic()):
                            self.serve_frame(unit_id, pdu)
                    elif deadline_s is not None and time.monotonic() >= deadline_s:
                        deframer.expire()
                except OSError as exc:
                    deframer.expire()
                    self.recover(exc)
        except LineStopped:
            pass
        except Exception:  # the face ends, logged; TCP goes on and /healthz says so
            log.exception("serial line %s failed", line.path)
            self.error = f"serial line {line.path} failed"

    def recover(self, exc: OSError) -> None:
        """A device error: logged once, reported, and the device reopened until it works again."""
        line = self.line
        reason = exc.strerror or str(exc)
        log.error("serial line %s: %s; reopening it every %g s", line.path, reason, REOPEN_S)
        self.error = f"serial line {line.path}: {reason}"
        while not self.closed.wait(REOPEN_S):
            if line.is_pty:
                continue  # a pty is not reopened: it stays as it is until the stop
            try:
                line.reopen()
            except SerialLineError:
                continue
            log.info("serial line %s is back", line.path)
            self.error = None
            return
