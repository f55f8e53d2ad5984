"""Register maps as data: a profile is a table of points (address, space, type, word order, scale,
quantity or constant) and the blocks that read 0; what a map file or a built-in table becomes."""
from __future__ import annotations

from dataclasses import dataclass

SPACES = ("holding", "input", "both")
WORD_ORDERS = ("big", "little")  # big: high word first; little: low word first
# registers a value of each type takes (a string gives its own length)
TYPE_REGISTERS = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "acc32": 2, "float32": 2,
                  "uint64": 4, "int64": 4, "acc64": 4, "float64": 4, "string": None}
VALUE_TYPES = tuple(TYPE_REGISTERS)
FLOAT_TYPES = ("float32", "float64")
# the largest finite value of each float type: what a value beyond it is stored as (IEEE 754)
FLOAT_MAX = {"float32": 3.4028234663852886e38, "float64": 1.7976931348623157e308}
WRAPPING_TYPES = ("acc32", "acc64")  # accumulators always wrap, whatever the quantity


@dataclass(frozen=True)
class Point:
    """One entry of a map: a value at an address of a register space."""

    address: int  # protocol address, 0-65535
    space: str  # holding | input | both
    type: str  # one of VALUE_TYPES
    quantity: str | None = None  # a name of quantities.NAMES, or None for a constant
    value: float | int | str | None = None  # a constant, when quantity is None
    scale: float = 1.0  # stored = (quantity + offset) x scale
    offset: float = 0.0
    word_order: str = "big"
    length: int = 1  # registers the value takes
    writable: bool = False  # FC 0x06/0x10 may write it (constants, unit_id, demand_period)
    allowed: tuple[float, ...] | None = None  # values a write may store (None: any that fits)
    minimum: float | None = None  # the least and greatest value a write may store
    maximum: float | None = None
    absolute: bool = False  # the magnitude of the quantity (a sign-less register)
    meter_types: tuple[str, ...] | None = None  # only for these meter types (None: every type)
    scale_factor: int | None = None  # the address of its SunSpec scale factor, already in scale
    control: str | None = None  # a site's control it reads and a write sets (model.controls)
    label: str = ""  # how errors name it: 'register 3 (address 20)'

    @property
    def end(self) -> int:
        """The address after the point's last register."""
        return self.address + self.length

    def spaces(self) -> tuple[str, ...]:
        return ("holding", "input") if self.space == "both" else (self.space,)


@dataclass(frozen=True)
class Block:
    """A readable range that reads 0 where no point lies, both ends included."""

    space: str
    start: int
    end: int

    def spaces(self) -> tuple[str, ...]:
        return ("holding", "input") if self.space == "both" else (self.space,)


@dataclass(frozen=True)
class Profile:
    """A register map: its points and blocks, and how the device takes writes."""

    name: str
    meter_type: str | None  # None: any meter type (the seed map)
    points: tuple[Point, ...]
    blocks: tuple[Block, ...] = ()
    word_order: str = "big"  # the default of the file, already applied to every point
    write_functions: tuple[int, ...] = (0x06, 0x10)  # other write function codes: exception 0x01
    coils: bool = False  # the seed map's coils and discrete inputs (no map file sets it)
    source: str = "built-in"  # the file it came from
