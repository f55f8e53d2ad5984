"""A tiny Modbus/TCP poller: the kind of code of yours that test_poller.py checks against the
simulator's faults (see docs/control.md).

read_meter() reads registers 0-3 of the seed map (the total, kWh x 100, and the active power,
W x 10, each a uint32 low word first) with a timeout and one retry on a new connection; an
exception answer raises MeterException at once (a retry would not help a busy meter). Poller
raises StaleMeter when the total has not moved for stale_after_s although time passes: the
registers of a frozen meter keep their last values while it still says online.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from pyModbusTCP.client import ModbusClient
from pyModbusTCP.constants import EXP_TXT, MB_EXCEPT_ERR


class PollError(Exception):
    """The meter could not be read."""


class MeterTimeout(PollError):
    """No answer, not even on the retry."""


class MeterException(PollError):
    """The meter answered with a Modbus exception (code: 6 is server device busy)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"the meter answered exception 0x{code:02X} "
                         f"({EXP_TXT.get(code, 'unknown').lower()})")
        self.code = code


class StaleMeter(PollError):
    """The total has not moved for too long: the meter is stuck or frozen."""


@dataclass(frozen=True)
class Reading:
    total_kwh: float
    power_w: float


def read_meter(host: str, port: int, *, unit_id: int = 1, timeout: float = 1.0,
               retries: int = 1) -> Reading:
    """Registers 0-3 as a Reading; MeterTimeout after 1 + retries silent attempts."""
    error = ""
    for _ in range(1 + retries):
        # a new connection per attempt: a late answer to the first cannot be read as the retry's
        client = ModbusClient(host=host, port=port, unit_id=unit_id, timeout=timeout,
                              auto_open=True, auto_close=True)
        regs = client.read_holding_registers(0, 4)
        if regs is not None:
            return Reading(total_kwh=((regs[1] << 16) | regs[0]) / 100,
                           power_w=((regs[3] << 16) | regs[2]) / 10)
        if client.last_error == MB_EXCEPT_ERR:
            raise MeterException(client.last_except)
        error = client.last_error_as_txt
    raise MeterTimeout(f"no answer from {host}:{port} after {1 + retries} attempts: {error}")


class Poller:
    """Reads a meter again and again and watches its total move."""

    def __init__(self, host: str, port: int, *, stale_after_s: float = 60.0, clock=time.monotonic,
                 **options) -> None:
        self.host, self.port, self.options = host, port, options
        self.stale_after_s = stale_after_s
        self.clock = clock
        self._total: float | None = None
        self._since = 0.0

    def poll(self) -> Reading:
        reading = read_meter(self.host, self.port, **self.options)
        now = self.clock()
        if reading.total_kwh != self._total:
            self._total, self._since = reading.total_kwh, now
        elif now - self._since > self.stale_after_s:
            raise StaleMeter(f"the total has stayed at {reading.total_kwh} kWh for "
                             f"{now - self._since:.1f} s")
        return reading
