"""Reading JSON bytes, and what a number read from JSON or TOML may be: bool is an int to
Python but no number here, and JSON's huge integers stay ints, so a range check compares them
exactly (a float of one would overflow)."""
from __future__ import annotations

import json
import math

SHOWN_DIGITS = 40  # a longer integer is shown as 1.000e+400: a one-line message stays short


class JsonProblem(ValueError):
    """Why bytes are no JSON document: kind is "utf8", "syntax" (error: the parser's), "depth"
    or "digits"; each reader words it for its own audience."""

    def __init__(self, kind: str, error: json.JSONDecodeError | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.error = error


def json_document(data: bytes) -> object:
    """The JSON document in UTF-8 bytes; JsonProblem when they are none (also one nested past
    the parser's recursion, or an integer of more digits than Python converts)."""
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise JsonProblem("utf8") from None
    except json.JSONDecodeError as exc:
        raise JsonProblem("syntax", exc) from None
    except RecursionError:  # [[[[...]]]] deeper than the parser's recursion
        raise JsonProblem("depth") from None
    except ValueError:  # int() past sys.get_int_max_str_digits(); Python's words vary by version
        raise JsonProblem("digits") from None


def is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    """A number that is not inf or nan; an int of any size is one."""
    return is_integer(value) or (isinstance(value, float) and math.isfinite(value))


def is_long_integer(value: object) -> bool:
    """An integer of more than SHOWN_DIGITS digits: shown by long_integer_text(), since str() of
    one past 4300 digits raises ValueError."""
    return is_integer(value) and abs(value) >= 10**SHOWN_DIGITS


def long_integer_text(value: int) -> str:
    """A long integer as 1.000e+400, exact to four digits (decimal reads it without str())."""
    from decimal import Decimal  # rarely needed: not loaded with the core

    return format(Decimal(value), ".3e")
