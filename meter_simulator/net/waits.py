"""bound_waits: a connection's blocking recv and send bounded by the kernel (SO_RCVTIMEO and
SO_SNDTIMEO), so a connection thread still wakes to look at its deadlines without the cost
of a Python socket timeout.

A socket with settimeout() makes every recv and send two system calls, a poll() and then
the call, and each lets go of the GIL: with tens of connection threads each release is a
chance for the GIL to go to another thread and back (docs/performance.md). A blocking
socket whose waits the kernel bounds costs one call; a wait that runs out raises
BlockingIOError (EAGAIN), which TIMED_OUT catches along with socket.timeout. The kernel
counts the bound in scheduler ticks (1 to 10 ms): a wait that must end on time, such as a
frame's silence, still takes a Python timeout for its span (TIMED_OUT catches that too).
"""
from __future__ import annotations

import socket
import struct
import sys

# a wait that ran out: the kernel's bound (EAGAIN) or, where it is not used, Python's timeout
TIMED_OUT = (BlockingIOError, socket.timeout)
KERNEL_BOUND = sys.platform != "win32"  # Windows takes milliseconds in a DWORD: Python's timeout
TIMEVAL = struct.Struct("@ll")  # struct timeval: seconds, microseconds (native longs)


def bound_waits(sock: socket.socket, seconds: float) -> None:
    """Make sock blocking, each recv and send returning within seconds (> 0): TIMED_OUT when
    nothing came or nothing could be sent by then."""
    if not KERNEL_BOUND:
        sock.settimeout(seconds)
        return
    sock.settimeout(None)
    microseconds = max(round(seconds * 1e6), 1)  # 0 would mean no bound at all
    value = TIMEVAL.pack(*divmod(microseconds, 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
