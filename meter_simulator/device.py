"""MeterUnit: one meter as a Modbus device: its model, its register map, its identity, and the
bank it publishes one immutable encoded image to per tick.

The device owns what a real meter keeps besides its readings: the meter id it
shows (SDM630 holding 0x0014, SunSpec DA), its serial number, the values
clients wrote into its writable registers, and, on the seed map, whether it is
online. Offline (seed map only), the readings a client sees stay those of the
moment it went offline; the status register and coils still change.
"""
from __future__ import annotations

from collections.abc import Sequence

from pyModbusTCP.constants import EXP_DATA_ADDRESS, EXP_DATA_VALUE, EXP_NONE

from . import codec, profiles, registers
from .meters import Meter
from .points import Point, Profile

# the counters a reset restarts (the seed map's total): electric import, or volume
RESET_COUNTERS = ("energy_import", "energy_import_l1", "energy_import_l2", "energy_import_l3",
                  "volume_total")
WHOLE_SETTINGS = ("unit_id", "demand_period")  # settings that take whole numbers only


def serial_number(port: int, meter_id: int) -> int:
    """A meter's serial number: stable for the same port and unit id, distinct within a run."""
    return port * 1000 + meter_id


class MeterUnit:
    """One meter as a Modbus device: its model, map and identity, the bank it is published to."""

    def __init__(self, meter: Meter, bank, profile: Profile | None = None, *, unit_id: int = 1,
                 serial: int = 0, key: str = "") -> None:
        self.meter = meter
        self.bank = bank  # anything with publish(image): a MeterBank serves the image
        self.profile = profile if profile is not None else profiles.seed()
        self.map = profiles.compiled(self.profile, meter.meter_type)
        self.key = key  # the meter's id in the state file and the control API: "5021", "5021-7"
        self.unit_id = unit_id  # the meter id it shows: its unit id in gateway mode, else 1
        self.serial_number = serial
        # values clients wrote into writable constants, by address (the map's value until then)
        self.stored = {address: point.value for address, point in self.map.writable.items()
                       if point.quantity is None}
        self._online = True
        self.comm_ok = True
        self.integrated_s = 0.0  # simulated seconds since the last tick already in the total
        self._frozen: tuple | None = None  # (reading, counters, demands) shown while offline
        self._no_alarm = meter.reading.in_band

    @property
    def meter_type(self) -> str:
        return self.meter.meter_type

    # --- what the encoder reads (codec: the m of its expressions) ---
    @property
    def online(self) -> bool:
        return self._online

    @online.setter
    def online(self, online: bool) -> None:
        online = bool(online)
        if self._online and not online:  # what clients see from now on, until back online
            demand = self.meter.demand
            self._frozen = (self.meter.reading, dict(self.meter.counters),
                            dict(demand.values) if demand is not None else {})
        self._online = online

    @property
    def demand_period(self) -> float:
        return self.meter.demand.period_min if self.meter.demand is not None else 0

    @property
    def demand_time(self) -> float:
        return self.meter.demand.time_min if self.meter.demand is not None else 0

    # --- publishing ---
    def publish(self) -> None:
        """Publish the current readings (the frozen ones while offline) and status."""
        if self._online:
            reading, counters = self.meter.reading, self.meter.counters
            demand = self.meter.demand
            demands = demand.values if demand is not None else {}
            self._no_alarm = reading.in_band
        else:
            reading, counters, demands = self._frozen
        bits = registers.bits(self._online, self._no_alarm, self.comm_ok) if self.profile.coils else None
        self.bank.publish(self.map.encode(reading, counters, demands, self, bits))

    def publish_total(self) -> None:
        """Publish a changed total at once, even while offline (a reset must show)."""
        if not self._online:
            counters = self._frozen[1]
            for name in RESET_COUNTERS:
                if name in self.meter.counters:
                    counters[name] = self.meter.counters[name]
        self.publish()

    # --- writes into the map's writable registers (device profiles) ---
    def check_write(self, address: int, words: Sequence[int]) -> tuple[int, list[tuple[Point, float]]]:
        """(exception code, the values to store) for a write of words from address: whole writable
        points only (else 0x02), each value allowed (else 0x03); nothing is stored here."""
        writes: list[tuple[Point, Sequence[int]]] = []
        offset = 0
        while offset < len(words):
            point = self.map.writable.get(address + offset)
            if point is None or offset + point.length > len(words):
                return EXP_DATA_ADDRESS, []
            writes.append((point, words[offset:offset + point.length]))
            offset += point.length
        values = []
        for point, point_words in writes:
            value = codec.decode(point, list(point_words))
            if not allowed(point, value):
                return EXP_DATA_VALUE, []
            values.append((point, value))
        return EXP_NONE, values

    def store(self, values: list[tuple[Point, float]]) -> None:
        """Keep written values (checked by check_write); the caller publishes."""
        for point, value in values:
            if point.quantity == "unit_id":
                self.unit_id = int(value)
            elif point.quantity == "demand_period":
                self.meter.demand.period_min = int(value)
            else:
                self.stored[point.address] = value


def allowed(point: Point, value) -> bool:
    """True when a written value may be stored in a point."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return False
        if point.quantity in WHOLE_SETTINGS and not value.is_integer():
            return False
    if point.allowed is not None and value not in point.allowed:
        return False
    if point.minimum is not None and value < point.minimum:
        return False
    return point.maximum is None or value <= point.maximum
