"""Register and coil map shared by the three meters, and the pure functions that fill it.

Addresses are the contract's (zero-based protocol addresses). A value is stored as
round(physical * scale): instantaneous values are clamped to their register, the
cumulative total rolls over modulo 2**32 like a real meter's counter. 32-bit values
take two registers, low word first.
"""
from __future__ import annotations

from ..model.reading import Reading

# holding and input registers (FC 0x03 / 0x04): the same map in both spaces
TOTAL = 0  # uint32, x100: kWh or m3
RATE = 2  # uint32, x10: W or L/min
VOLTAGE_L1 = 10  # 10, 11, 12: V x10
CURRENT_L1 = 13  # 13, 14, 15: A x100
FREQUENCY = 16  # Hz x100
POWER_FACTOR = 17  # x1000
FLOW = 20  # L/min x10
TEMPERATURE = 21  # (degC + 50) x10
PRESSURE = 22  # bar or mbar, x100
ONLINE = 100  # 1 online, 0 offline
METER_TYPE = 101  # 0 electric, 1 water, 2 gas
REGISTER_COUNT = 102  # addresses 0..101; a read past 101 is exception 0x02
READING_REGISTERS = range(TOTAL, PRESSURE + 1)  # frozen while the meter is offline

# coils (FC 0x01, 0x05, 0x0F) and discrete inputs (FC 0x02)
COIL_ONLINE = 0
COIL_NO_ALARM = 1
COIL_COMM_OK = 2
COIL_RESET = 10  # write ON to reset the total; always reads OFF
COIL_COUNT = 11  # addresses 0..10

METER_TYPE_CODES = {"electric": 0, "water": 1, "gas": 2}

TOTAL_SCALE = 100
RATE_SCALE = 10
VOLTAGE_SCALE = 10
CURRENT_SCALE = 100
FREQUENCY_SCALE = 100
POWER_FACTOR_SCALE = 1000
FLOW_SCALE = 10
TEMPERATURE_OFFSET_C = 50
TEMPERATURE_SCALE = 10
PRESSURE_SCALE = 100

U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF


def scaled(physical: float, scale: float) -> int:
    """round(physical * scale), the stored form of a value."""
    return int(round(physical * scale))


def clamp(value: int, maximum: int) -> int:
    """An instantaneous value clamped to an unsigned register's range 0..maximum."""
    return min(max(value, 0), maximum)


def u32_words(value: int) -> tuple[int, int]:
    """(low, high) words of a 32-bit value; wraps modulo 2**32 like a meter's counter."""
    value %= 1 << 32
    return value & 0xFFFF, value >> 16


def words_u32(low: int, high: int) -> int:
    """The 32-bit value of two words, low word first: the inverse of u32_words."""
    return (high << 16) | low


def u16(physical: float, scale: float, offset: float = 0.0) -> int:
    """A 16-bit instantaneous register: (physical + offset) * scale, clamped."""
    return clamp(scaled(physical + offset, scale), U16_MAX)


class _Shown:
    """What the seed map shows of a device besides its readings (codec's m)."""

    unit_id, serial_number, stored, demand_period, demand_time = 1, 0, {}, 0, 0

    def __init__(self, online: bool) -> None:
        self.online = int(online)


def image(reading: Reading, meter_type: str, online: bool) -> list[int]:
    """The whole register space (addresses 0..101) for one tick, through the seed map file."""
    from . import profiles

    counters = {"energy_import": reading.total, "volume_total": reading.total}
    encoded = profiles.compiled(profiles.seed(), meter_type).encode(reading, counters, {}, _Shown(online))
    data = encoded.registers
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def with_online(published: list[int], online: bool) -> list[int]:
    """A published image with only the online register changed (readings stay stale)."""
    words = list(published)
    words[ONLINE] = int(online)
    return words


def bits(online: bool, no_alarm: bool, comm_ok: bool = True) -> list[bool]:
    """Coils 0..10 (discrete inputs read the same); the reset coil always reads OFF."""
    out = [False] * COIL_COUNT
    out[COIL_ONLINE] = online
    out[COIL_NO_ALARM] = no_alarm
    out[COIL_COMM_OK] = comm_ok
    return out
