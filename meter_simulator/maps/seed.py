"""The seed map's own addresses: the status register, the extent of its registers and its coils.

Addresses are the contract's (zero-based protocol addresses). The readings' registers
are the seed map file's (builtin/seed.toml); the coils and the status register's
writes are the simulator's own, so their addresses live here.
"""
from __future__ import annotations

# holding and input registers (FC 0x03 / 0x04): the same map in both spaces
ONLINE = 100  # 1 online, 0 offline
REGISTER_COUNT = 102  # addresses 0..101; a read past 101 is exception 0x02

# coils (FC 0x01, 0x05, 0x0F) and discrete inputs (FC 0x02)
COIL_ONLINE = 0
COIL_NO_ALARM = 1
COIL_COMM_OK = 2
COIL_RESET = 10  # write ON to reset the total; always reads OFF
COIL_COUNT = 11  # addresses 0..10


def bits(online: bool, no_alarm: bool, comm_ok: bool = True) -> list[bool]:
    """Coils 0..10 (discrete inputs read the same); the reset coil always reads OFF."""
    out = [False] * COIL_COUNT
    out[COIL_ONLINE] = online
    out[COIL_NO_ALARM] = no_alarm
    out[COIL_COMM_OK] = comm_ok
    return out
