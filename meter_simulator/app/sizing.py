"""How much memory a fleet takes, and the check that refuses one the machine cannot hold."""
from __future__ import annotations

from ..maps.codec import image_bytes
from ..maps.points import Profile

# memory a meter of a fleet takes, measured with margin: its rows in the columns, its device and
# the image of its map once read (measured: 10,000 seed meters, every one read, add 51 MB, 5.1 kB a
# meter; with the SDM630 map and panels 5.2 kB; see docs/fleets.md)
BYTES_PER_METER = 8 * 1024
# a device profile's meter holds this many images of its map at once, at the peak: the one built
# at the first read after a tick, and the next one while a read builds it
IMAGES_PER_METER = 2
# a site's two devices each step one at a time, a model of their own (measured: 2,470 SDM630
# meters with panels stepped so add 45 MB, 18 kB a meter)
BYTES_PER_SITE_DEVICE = 24 * 1024
SITE_IMAGES = 3  # a site's device publishes its image every tick; the allocator keeps freed ones


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


def meter_bytes(profile: Profile | None, meter_type: str, site: bool = False) -> int:
    """The memory one meter takes: the fixed cost of its kind, and the images of its map."""
    fixed, images = (BYTES_PER_SITE_DEVICE, SITE_IMAGES) if site else (BYTES_PER_METER, IMAGES_PER_METER)
    return fixed + (0 if profile is None else images * image_bytes(profile, meter_type))


def size(nbytes: int) -> str:
    """An amount of memory as people write it: 37.7 GiB, 128.0 MiB."""
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"
