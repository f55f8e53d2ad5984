"""Device: one meter as a Modbus device: its model, its register map, its identity, and the
bank it publishes one immutable encoded image to per tick.

The device owns what a real meter keeps besides its readings: the meter id it
shows (SDM630 holding 0x0014, SunSpec DA), its serial number, the values
clients wrote into its writable registers, and whether it is online. Offline
(coil 0, the control API or an offline fault) or frozen (a freeze fault), the
readings a client sees stay those of the moment it stopped showing live values;
the status register and coils still change. A device profile has no coils:
offline, it does not answer at all (the handler sends 0x0B, as a gateway does).
"""
from __future__ import annotations

from collections.abc import Sequence

from pyModbusTCP.constants import EXP_DATA_ADDRESS, EXP_DATA_VALUE, EXP_NONE

from ..maps import codec, profiles, schema
from ..maps import seed as registers
from ..maps.image import READ_HOLDING_REGISTERS, Image
from ..maps.points import Point, Profile
from ..model.meters import Meter
from ..model.quantities import MAX_DEMANDS

# the counters a reset restarts (the seed map's total): electric import, or volume
RESET_COUNTERS = ("energy_import", "energy_import_l1", "energy_import_l2", "energy_import_l3",
                  "volume_total")
WHOLE_SETTINGS = ("unit_id", "demand_period")  # settings that take whole numbers only


def serial_number(port: int, meter_id: int) -> int:
    """A meter's serial number: stable for the same port and unit id, distinct within a run."""
    return port * 1000 + meter_id


class Device:
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
                       if point.quantity is None and point.control is None}
        self._online = True  # as coil 0 or the control API set it
        self.offline_faults = 0  # active offline faults on this meter
        self.freeze_faults = 0  # active freeze faults on this meter
        self.unreachable = False  # a device profile's meter that is offline, or silent: no answers
        self.silent = False  # a site's inverter asleep at night with --inverter-night silent
        self.comm_ok = True
        self.integrated_s = 0.0  # simulated seconds since the last tick already in the total
        self._frozen: tuple | None = None  # (reading, counters, demands) shown while not live
        self.site = None  # a site's SiteDevices (stepped and published together), or None
        # every image is built at its first read after a publish (LiveImage): what the last
        # publish showed (None: the last tick of the meter's columns), the images built of it
        self._live_image = LiveImage(self)
        self._pending: tuple | None = None
        self._built: tuple | None = None  # (what it was built of, publish count, image)
        self._publishes = 0
        # coil 1 as last published (held while offline), and what the last publish showed
        self.no_alarm = True if meter.lazy else meter.reading.in_band
        self._shown: tuple | None = None if meter.lazy else (meter.reading, meter.counters, {})

    @property
    def meter_type(self) -> str:
        return self.meter.meter_type

    # --- what the encoder reads (codec: the m of its expressions) ---
    @property
    def online(self) -> bool:
        """What the status register and coil 0 show: online, and no offline fault active."""
        return self._online and not self.offline_faults

    @online.setter
    def online(self, online: bool) -> None:
        self._change(online=bool(online))

    @property
    def live(self) -> bool:
        """True while clients see the readings of each tick (online, not frozen)."""
        return self._online and not self.offline_faults and not self.freeze_faults

    def add_fault(self, kind: str, step: int) -> None:
        """A freeze or offline fault starts (step 1) or ends (step -1) on this meter; the caller
        publishes."""
        if kind == "freeze":
            self._change(freeze=self.freeze_faults + step)
        else:
            self._change(offline=self.offline_faults + step)

    def _change(self, *, online: bool | None = None, freeze: int | None = None,
                offline: int | None = None) -> None:
        was_live = self.live
        if online is not None:
            self._online = online
        if freeze is not None:
            self.freeze_faults = max(freeze, 0)
        if offline is not None:
            self.offline_faults = max(offline, 0)
        if was_live and not self.live:  # what clients see from now on, until live again
            self._frozen = self._shown_by(self.meter)
            self.no_alarm = self._frozen[0].in_band
        self.unreachable = (not self.profile.coils and not self.online) or self.silent

    def set_silent(self, silent: bool) -> None:
        """Stop answering at all (no response, not even 0x0B), or answer again."""
        self.silent = silent
        self._change()

    @property
    def demand_period(self) -> float:
        return self.meter.demand.period_min if self.meter.demand is not None else 0

    @property
    def demand_time(self) -> float:
        return self.meter.demand.time_min if self.meter.demand is not None else 0

    def step(self, dt_s: float) -> None:
        """Advance the meter dt_s simulated seconds (less what a catch-up already integrated)."""
        self.meter.step(dt_s, self.integrated_s)
        self.integrated_s = 0.0

    # --- publishing ---
    @property
    def shown(self) -> tuple:
        """(reading, counters, demands) clients see now."""
        if self.live and self.meter.lazy:
            return self.meter.shown(self.meter.tick)
        return self._shown

    def total_and_rate(self) -> tuple[float, float]:
        """The total clients see now and the rate (electric: the net power, W), for metrics."""
        if self.live and self.meter.lazy:
            return self.meter.total_and_rate()
        reading, counters, _ = self._shown
        rate = reading.rate if self.meter_type != "electric" else sum(reading.powers_w)
        return counters[self.meter.total_counter], rate

    def publish(self) -> None:
        """Publish the current readings (the frozen ones while offline or frozen) and status: the
        image is built at the first read after it (live_image)."""
        self._publishes += 1  # an image built before this is stale
        if self.live and self.meter.lazy:  # every tick of its columns, until this changes
            self._pending = None
        else:
            if self.live:
                reading, counters, demands = self._shown_by(self.meter)
                self.no_alarm = reading.in_band
            else:
                reading, counters, demands = self._frozen
                counters = dict(counters)  # publish_total changes the frozen ones in place
            self._shown = (reading, counters, demands)
            self._pending = (TickDevice(self, self.demand_time), reading, counters, demands,
                             self.no_alarm)
        self.bank.publish(self._live_image)

    def _encode(self, reading, counters, demands, no_alarm: bool) -> Image:
        bits = registers.bits(self.online, no_alarm, self.comm_ok) if self.profile.coils else None
        return self.map.encode(reading, counters, demands, self, bits)

    def live_image(self) -> Image:
        """The image of what the last publish showed (of a meter in columns: the tick they
        published last), built at its first read: whole, whichever thread asks; a publish or a
        tick meanwhile makes the next read build a new one."""
        publishes, pending, meter = self._publishes, self._pending, self.meter
        if pending is None and not meter.lazy:  # it has just left its columns: publish() comes
            pending = (TickDevice(self, self.demand_time), *self._shown_by(meter), self.no_alarm)
        tick = meter.tick if pending is None else None
        # never the Tick itself, whose arrays would stay alive: its number (the same int object
        # for as long as the tick is the columns' last one; a later tick's is another number)
        source = pending if tick is None else tick.number
        built = self._built
        if built is not None and built[0] is source and built[1] == publishes:
            return built[2]
        if tick is not None:
            reading, counters, demands = meter.shown(tick)
            pending = (TickDevice(self, tick.demand_time_min), reading, counters, demands,
                       reading.in_band)
        view, reading, counters, demands, no_alarm = pending
        image = view.encode(reading, counters, demands, no_alarm)
        self._built = (source, publishes, image)
        return image

    @staticmethod
    def _shown_by(meter: Meter) -> tuple:
        demand = meter.demand
        return meter.reading, dict(meter.counters), demand.values if demand is not None else {}

    def adopt(self, meter: Meter) -> None:
        """Go on with meter (the one its columns' row detach()ed into), published at once."""
        self.meter = meter
        self.publish()

    def publish_total(self, names: Sequence[str] = RESET_COUNTERS, maxima: bool = False) -> None:
        """Publish changed counters (names) at once, even while not live (a reset must show);
        maxima: the maximum demands changed too."""
        if not self.live:
            counters = self._frozen[1]
            for name in names:
                if name in self.meter.counters:
                    counters[name] = self.meter.counters[name]
            if maxima and self.meter.demand is not None:
                demands = self.meter.demand.values
                self._frozen[2].update((name, demands[name]) for name in MAX_DEMANDS)
        self.publish()

    # --- writes into the map's writable registers (device profiles) ---
    def check_write(self, address: int, words: Sequence[int]) -> tuple[int, list[tuple[Point, float]]]:
        """(exception code, the values to store) for a write of words from address: whole writable
        points only (else 0x02), each value allowed and one the device takes (else 0x03); nothing is
        stored here, so store() stores all of them or, refused, none."""
        writes: list[tuple[Point, Sequence[int]]] = []
        offset, outside = 0, False
        while offset < len(words):
            point = self.map.writable.get(address + offset)
            if point is None or offset + point.length > len(words):
                outside = True  # the values still come first: 0x03 before 0x02
                offset += 1
                continue
            writes.append((point, words[offset:offset + point.length]))
            offset += point.length
        values = []
        for point, point_words in writes:
            value = codec.written_value(point, list(point_words))
            if not write_allowed(point, value) or not self.takes(point, value):
                return EXP_DATA_VALUE, []
            values.append((point, value))
        return (EXP_DATA_ADDRESS, []) if outside else (EXP_NONE, values)

    def takes(self, point: Point, value: float) -> bool:
        """True when the device can hold value (a finite number, allowed by the map) in a setting:
        a unit id 0 to 247, or a demand period its demand model has; any value in a constant."""
        if point.control is not None:
            return self.site is not None and self.site.takes(point.control, value)
        if point.quantity == "demand_period" and self.meter.demand is None:
            return False  # a water or gas meter served through a map without a type: no demand model
        return point.quantity is None or schema.takes(point.quantity, value)

    def store(self, values: list[tuple[Point, float]]) -> None:
        """Keep written values (checked by check_write: none of these can fail); the caller
        publishes."""
        controls = {point.control: value for point, value in values if point.control is not None}
        if controls:
            self.site.control(controls)
        for point, value in values:
            if point.control is not None:
                continue
            if point.quantity == "unit_id":
                self.unit_id = int(value)
            elif point.quantity == "demand_period":
                self.meter.demand.period_min = int(value)
            else:
                self.stored[point.address] = value


class TickDevice:
    """A device as the codec sees it while encoding what one publish showed: the device, with its
    status and demand time of that moment, though ticks and status changes go on meanwhile."""

    __slots__ = ("_device", "demand_time", "online")

    def __init__(self, device: Device, demand_time: float) -> None:
        self._device, self.demand_time, self.online = device, demand_time, device.online

    def __getattr__(self, name: str):
        return getattr(self._device, name)

    def encode(self, reading, counters, demands, no_alarm: bool) -> Image:
        return Device._encode(self, reading, counters, demands, no_alarm)


class LiveImage:
    """A device's image as its bank holds it: current() is the image of what the device published
    last (Device.live_image), built at the first read after it; the other methods are Image's,
    each cut from one current image."""

    __slots__ = ("_device",)

    def __init__(self, device: Device) -> None:
        self._device = device

    def current(self) -> Image:
        return self._device.live_image()

    @property
    def bits(self) -> tuple[bool, ...] | None:
        return self._device.live_image().bits

    @property
    def holding(self):
        return self._device.live_image().holding

    @property
    def input(self):
        return self._device.live_image().input

    def read_answer(self, function_code: int, address: int, quantity: int) -> bytes | None:
        return self._device.live_image().read_answer(function_code, address, quantity)

    def words(self, address: int, quantity: int, function_code: int = READ_HOLDING_REGISTERS):
        return self._device.live_image().words(address, quantity, function_code)

    def bit_list(self, address: int, quantity: int):
        return self._device.live_image().bit_list(address, quantity)


def write_allowed(point: Point, value) -> bool:
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
