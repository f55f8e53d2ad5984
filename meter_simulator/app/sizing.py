"""How much memory a fleet takes, and the check that refuses one the machine cannot hold."""
from __future__ import annotations

from ..maps.codec import image_bytes
from ..maps.points import Profile

# memory a meter takes, measured with margin (electric, the largest: about 10 kB; see the README)
BYTES_PER_METER = 16 * 1024
# a device profile's larger image, or solar panels (measured: 2,470 SDM630 meters with panels add
# 45 MB, 18 kB a meter; seed meters 14 kB; see docs/fleets.md)
BYTES_PER_DEVICE_METER = 24 * 1024
# a device profile's meter holds this many images of its map at once, at the peak (measured: 1,000
# meters of a map with a 0-65535 block, a 128 kB image, add 406 kB a meter to the peak RSS and
# 304 kB after some ticks: the allocator keeps freed images; see docs/fleets.md)
IMAGES_PER_METER = 3



class SizeError(ValueError):
    """A fleet too large for the machine; the message is one line."""


def check_fleet_size(count: int, unit_ids: tuple[int, ...] | None, memory_bytes: int | None,
                     bytes_per_meter: int = BYTES_PER_METER) -> None:
    """UsageError when the meters asked for would need more memory than memory_bytes."""
    meters = count * (len(unit_ids) if unit_ids is not None else 1)
    if memory_bytes is None or meters * bytes_per_meter <= memory_bytes:
        return
    what = f"--count {count}" + (f" x {len(unit_ids)} --unit-ids" if unit_ids is not None else "")
    raise SizeError(f"{what} makes {meters:,} meters, which need about "
                     f"{size(meters * bytes_per_meter)} ({bytes_per_meter // 1024} kB a "
                     f"meter); this machine gives at most {size(memory_bytes)}")


def meter_bytes(profile: Profile | None, meter_type: str, pv_kwp: float) -> int:
    """The memory one meter takes: the fixed cost of its kind, and the images of its map."""
    if profile is None:
        return BYTES_PER_DEVICE_METER if pv_kwp else BYTES_PER_METER
    return BYTES_PER_DEVICE_METER + IMAGES_PER_METER * image_bytes(profile, meter_type)


def size(nbytes: int) -> str:
    """An amount of memory as people write it: 37.7 GiB, 128.0 MiB."""
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"
