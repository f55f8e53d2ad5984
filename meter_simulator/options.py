"""Command line: the usage text (the single source of truth for options and defaults) and its checks."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from docopt import DocoptExit, docopt

from .meters import METER_TYPES

USAGE = """\
meter-simulator: a utility meter (electric, water or gas) served over Modbus/TCP.

Usage:
  meter-simulator [options]
  meter-simulator -h | --help
  meter-simulator --version

Options:
  -t TYPE, --type TYPE     Meter type: electric, water or gas [default: electric].
  --meter-type TYPE        The same as --type.
  -a HOST, --address HOST  Address to serve on: IPv4, IPv6 or host name [default: 127.0.0.1].
  -p PORT, --port PORT     TCP port, 1 to 65535 [default: 5020].
  --interval SECONDS       Update period of the readings, 0.05 to 3600 [default: 1].
  --speed FACTOR           Simulated seconds per real second, 0.1 to 100000 [default: 1].
  --seed N                 Integer seed that makes the readings reproducible [default: random].
  --log-level LEVEL        debug, info, warning or error [default: info].
  -h, --help               Show this text and exit.
  --version                Show the version and exit.
"""

LOG_LEVELS = ("debug", "info", "warning", "error")


class UsageError(Exception):
    """A bad command line; the message is one line."""


@dataclass(frozen=True)
class Config:
    """What the command line asked for, converted and checked."""

    meter_type: str = "electric"
    host: str = "127.0.0.1"
    port: int = 5020
    interval_s: float = 1.0
    speed: float = 1.0
    seed: int | None = None
    log_level: str = "info"
    show_help: bool = False
    show_version: bool = False


def integer(name: str, low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A converter for a whole number in low..high."""

    def convert(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise UsageError(f"{name} must be a whole number, not {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise UsageError(f"{name} must be from {low} to {high}, not {text}")
        return value

    return convert


def number(name: str, low: float, high: float) -> Callable[[str], float]:
    """A converter for a finite number in low..high."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{name} must be a number, not {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise UsageError(f"{name} must be from {low:g} to {high:g}, not {text}")
        return value

    return convert


def choice(name: str, allowed: Sequence[str]) -> Callable[[str], str]:
    """A converter for one of a few words (case-insensitive)."""

    def convert(text: str) -> str:
        if text.lower() not in allowed:
            raise UsageError(f"{name} must be one of {', '.join(allowed)}, not {text!r}")
        return text.lower()

    return convert


def docopt_reason(exc: DocoptExit) -> str:
    """One line out of docopt's complaint, which carries the usage and object reprs."""
    first = str(exc).splitlines()[0] if str(exc) else "bad arguments"
    if "unmatched" in first:
        options = re.findall(r"Option\([^,]*, '?([^',]+)'?,", first)
        arguments = re.findall(r"Argument\([^,]*, '([^']*)'\)", first)
        if options:
            return f"unknown or repeated option: {' '.join(options)}"
        if arguments:
            return f"unexpected argument: {' '.join(arguments)}"
    return first


def short_usage() -> str:
    """The Usage: section alone, printed after a one-line reason."""
    return USAGE[USAGE.index("Usage:"):USAGE.index("Options:")].rstrip()


def parse_args(argv: Sequence[str]) -> Config:
    """The checked configuration for argv; UsageError with a one-line reason otherwise."""
    try:
        args = docopt(USAGE, list(argv), default_help=False)
    except DocoptExit as exc:
        raise UsageError(docopt_reason(exc)) from None
    if args["--help"] or args["--version"]:
        return Config(show_help=args["--help"], show_version=args["--version"])
    meter_type = args["--meter-type"] or args["--type"]
    seed = args["--seed"]
    return Config(
        meter_type=choice("--type", METER_TYPES)(meter_type),
        host=args["--address"],
        port=integer("--port", 1, 65535)(args["--port"]),
        interval_s=number("--interval", 0.05, 3600)(args["--interval"]),
        speed=number("--speed", 0.1, 100000)(args["--speed"]),
        seed=None if seed == "random" else integer("--seed")(seed),
        log_level=choice("--log-level", LOG_LEVELS)(args["--log-level"]),
    )
