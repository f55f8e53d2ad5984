"""What a number read from JSON or TOML may be: bool is an int to Python but no number here,
and JSON's huge integers stay ints, so a range check compares them exactly (a float of one
would overflow)."""
from __future__ import annotations

import math


def is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    """A number that is not inf or nan; an int of any size is one."""
    return is_integer(value) or (isinstance(value, float) and math.isfinite(value))
