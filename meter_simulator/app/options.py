"""Command line: the usage text (the single source of truth for options and defaults) and its checks."""
from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

from docopt import Argument, DocoptExit, Option, Tokens, docopt, parse_argv, parse_options

from ..maps.points import Profile
from ..maps.profiles import ProfileError, profile_named
from ..model.meters import METER_TYPES
from .siteoptions import SiteOptionError, site_options, start_time
from .sizing import SizeError, check_fleet_size, meter_bytes

USAGE = """\
meter-simulator: a utility meter (electric, water or gas) served over Modbus/TCP or RTU.

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
  --profile NAME|FILE      Register map: seed, sdm630, sunspec, sunspec-float (electric) or a
                           map file (.toml) [default: seed].
  --pv-kwp KWP             Solar panels of this peak power (kWp, 0 to 40) behind an electric
                           meter, or feeding a site's inverter [default: 0].
  --site                   Each port serves a home: a hybrid inverter (SunSpec) at unit id 1
                           and its grid meter (in the map of --profile) at unit id 200.
  --battery-kwh KWH        The site's battery: usable capacity, 0 to 200; 0 = none [default: 0].
  --battery-kw KW          The battery's largest charge and discharge power, 0.1 to 100
                           [default: KWH/2].
  --inverter-night MODE    The site's inverter while it sleeps (no PV, no battery flow):
                           asleep (answers zeros) or silent (no answer) [default: asleep].
  --inverter-profile NAME|FILE  The inverter's map: sunspec-hybrid, huawei-sun2000 or a map
                           file (.toml) [default: sunspec-hybrid].
  --start-time HH:MM       Simulated time of day at start, 00:00 to 23:59 [default: now].
  --log-level LEVEL        debug, info, warning or error [default: info].
  --state-file PATH        Keep the totals in this file across restarts [default: none].
  --save-interval SECONDS  How often the totals are saved, 1 to 86400 [default: 60].
  --count N                N meters on consecutive ports from --port, 1 to 10000 [default: 1].
  --unit-ids LIST          Gateway mode: a meter per listed unit id (1 to 247), e.g. 1-32 or
                           1,5,7; other unit ids get exception 0x0B (silence on RTU)
                           [default: all].
  --framing FRAMING        What every TCP port speaks: tcp (Modbus/TCP) or rtu (RTU over TCP,
                           as an RS485-to-Ethernet converter would) [default: tcp].
  --serial DEVICE|pty[:LINK]  Also serve the meters as RTU slaves on a serial line: a device
                           like /dev/ttyUSB0, or pty for a pseudo-terminal, LINK a symbolic
                           link to it [default: none].
  --baud N                 Serial line speed, 1200 to 921600; it sets the RTU timing
                           [default: 9600].
  --parity PARITY          Serial parity: N (none), E (even) or O (odd) [default: N].
  --stopbits N             Serial stop bits: 1 or 2 [default: 1].
  --max-clients N          Connections served at once per port, 1 to 10000 [default: 100].
  --idle-timeout SECONDS   Close a connection with no complete request for this long,
                           0 to 86400; 0 never closes [default: 120].
  --read-only              Refuse every write with exception 0x01 (illegal function).
  --allow CIDRS            Accept connections only from these networks, comma-separated,
                           e.g. 127.0.0.0/8,::1/128 [default: any].
  --http [HOST:]PORT       Serve the control port (JSON API, /metrics, /healthz, dashboard);
                           a bare PORT binds 127.0.0.1, [::1]:8080 an IPv6 address,
                           0 a free port [default: off].
  --http-token-file PATH   Require "Authorization: Bearer <token>" on the control port, the
                           token being the file's first line [default: none].
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
    state_file: str | None = None
    save_interval_s: float = 60.0
    count: int = 1
    unit_ids: tuple[int, ...] | None = None  # None: one meter answering every unit id
    max_clients: int = 100
    idle_timeout_s: float = 120.0  # 0: never
    read_only: bool = False
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None  # None: any
    profile: Profile | None = None  # None: the seed map
    pv_kwp: float = 0.0
    http: tuple[str, int] | None = None  # the control port's host and port; None: off
    http_token: str | None = field(default=None, repr=False)  # never printed
    framing: str = "tcp"  # what every TCP port speaks: "tcp" (MBAP) or "rtu" (RTU over TCP)
    serial: str | None = None  # "pty", "pty:LINK" or a device path; None: no serial line
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    site: bool = False  # each port serves a site: an inverter (unit id 1) and a grid meter (200)
    battery_kwh: float = 0.0
    battery_kw: float | None = None  # None: half the capacity, at least 0.1 kW
    inverter_night: str = "asleep"  # asleep | silent (site-contract B6)
    inverter_profile: Profile | None = None  # a map file for the inverter; None: the built-in chain
    start_time_s: float | None = None  # the simulated time of day at start; None: now (or seeded)
    show_help: bool = False
    show_version: bool = False


WHOLE_NUMBER = re.compile(r"-?[0-9]+")


def integer(name: str, low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A converter for a whole number in low..high."""

    def convert(text: str) -> int:
        if not WHOLE_NUMBER.fullmatch(text):  # int() would take " 9600", "+9600" and "9_600"
            raise UsageError(f"{name} must be a whole number, not {text!r}")
        value = int(text, 10)
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


def unit_id_list(text: str) -> tuple[int, ...]:
    """'1-32' or '1,5,7' (or a mix) as sorted unique unit ids, each 1 to 247."""
    ids: set[int] = set()
    unit_id = integer("--unit-ids", 1, 247)
    if not text.strip():
        raise UsageError(f"--unit-ids must list unit ids like 1-32 or 1,5,7, not {text!r}")
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        if (not first.strip() or (sep and not last.strip())):
            raise UsageError(f"--unit-ids has an empty part in {text!r}: give ids like 1-32 or 1,5,7")
        low = unit_id(first.strip())
        high = unit_id(last.strip()) if sep else low
        if high < low:
            raise UsageError(f"--unit-ids range {part.strip()} runs backwards")
        ids.update(range(low, high + 1))
    return tuple(sorted(ids))


def network_list(text: str) -> tuple:
    """'127.0.0.0/8,::1' as IP networks (a bare address is a network of one)."""
    networks = []
    for part in text.split(","):
        if text.strip() and not part.strip():
            raise UsageError(f"--allow has an empty part in {text!r}: give networks like 192.168.1.0/24")
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise UsageError(f"--allow takes networks like 192.168.1.0/24, not {part.strip()!r}") from None
    return tuple(networks)


def spelling(option: Option) -> str:
    """How the usage text spells an option: -t/--type, --seed, -x."""
    return "/".join(name for name in (option.short, option.longer) if name)


def given_options(argv: Sequence[str]) -> list[Option | Argument]:
    """argv as docopt reads it (options known or not, and arguments), in order; DocoptExit
    for a missing value."""
    return parse_argv(Tokens(list(argv), error=DocoptExit), parse_options(USAGE))


def refusal_reason(argv: Sequence[str], exc: DocoptExit) -> str:
    """One line that names what docopt refused: an unknown, ambiguous, repeated or misplaced
    option, or a stray argument. docopt's own complaint carries the usage and object reprs."""
    first = str(exc).splitlines()[0] if str(exc) else "bad arguments"
    if first.endswith(" requires argument"):  # docopt's words for a missing value
        return first.replace(" requires argument", " requires a value")
    if "unmatched" not in first:
        return first
    known = parse_options(USAGE)
    names = {option.name for option in known}
    seen: dict[str, list[Option]] = {}
    for item in given_options(argv):
        if isinstance(item, Argument):
            return f"unexpected argument: {item.value!r}"
        if item.name not in names:
            candidates = [option.longer for option in known
                          if option.longer and item.name.startswith("--")
                          and option.longer.startswith(item.name)]
            if len(candidates) > 1:
                return f"{item.name} is ambiguous: it could be {', '.join(candidates)}"
            return f"unknown option: {item.name}"
        seen.setdefault(item.name, []).append(item)
    for options in seen.values():
        if len(options) > 1:
            return f"{spelling(options[0])} is given {len(options)} times: give it once"
    for alone in ("--help", "--version"):
        if alone in seen and len(seen) > 1:
            other = next(options[0] for name, options in seen.items() if name != alone)
            return f"{spelling(seen[alone][0])} stands alone, not with {spelling(other)}"
    return first


def meter_type_given(argv: Sequence[str]) -> tuple[str, str] | None:
    """(the meter type, the option that named it) of --type and --meter-type; UsageError when
    they name two."""
    named = [(option.longer, option.value) for option in given_options(argv)
             if isinstance(option, Option) and option.longer in ("--type", "--meter-type")]
    if len({value.lower() for _, value in named}) > 1:
        (first, first_value), (second, second_value) = named[0], named[-1]
        raise UsageError(f"{first} {first_value} and {second} {second_value} name different "
                         "meter types")
    return (named[0][1], named[0][0]) if named else None


def short_usage() -> str:
    """The Usage: section alone, printed after a one-line reason."""
    return USAGE[USAGE.index("Usage:"):USAGE.index("Options:")].rstrip()


def state_file(text: str) -> str | None:
    """--state-file: a path, or none."""
    if text == "none":
        return None
    if not text.strip():
        raise UsageError(f"--state-file must name a file (or none), not {text!r}")
    return text


HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?")


def http_address(text: str) -> tuple[str, int]:
    """--http: '8080' (127.0.0.1), 'HOST:8080' or '[::1]:8080' as (host, port)."""
    text = text.strip()
    bracketed = re.fullmatch(r"\[([^\]]*)\]:([^:]*)", text)
    if bracketed:
        host, port_text = bracketed.groups()
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise UsageError(f"--http: {host!r} in brackets is not an IPv6 address") from None
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise UsageError(f"--http: write an IPv6 address in brackets, like [::1]:8080, not {text!r}")
        if not host:
            raise UsageError(f"--http takes [HOST:]PORT, like 8080 or 0.0.0.0:8080, not {text!r}")
        if not HOST_NAME.fullmatch(host):
            raise UsageError(f"--http: {host!r} is not a host name or IP address")
    else:
        host, port_text = "127.0.0.1", text
    if not port_text.isascii() or not port_text.isdigit():
        raise UsageError(f"--http takes [HOST:]PORT with a port from 0 to 65535, not {text!r}")
    port = int(port_text)
    if port > 65535:
        raise UsageError(f"--http port must be from 0 to 65535, not {port}")
    return host, port


def bearer_token(text) -> str:
    """A control port token as the program takes it: one line of printable text without
    surrounding whitespace; UsageError saying what is wrong otherwise."""
    if not isinstance(text, str):
        raise UsageError(f"is {type(text).__name__}, not text")
    token = text.strip()
    if not token:
        raise UsageError("is empty")
    if not token.isprintable():  # a line break, a NUL, a control character
        raise UsageError("holds a character that is not printable (a line break?)")
    return token


def token_file(path: str) -> str:
    """The first line of --http-token-file, without surrounding whitespace."""
    try:
        with open(path, encoding="utf-8") as file:
            line = file.readline()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"--http-token-file: cannot read {path}: {reason}") from None
    if not line.strip():
        raise UsageError(f"--http-token-file: the first line of {path} is empty; put the token there")
    try:
        return bearer_token(line)
    except UsageError as exc:
        raise UsageError(f"--http-token-file: the token in {path} {exc}") from None


def control_port(args: dict) -> tuple[tuple[str, int] | None, str | None]:
    """--http and --http-token-file, checked: (host, port) or None, and the token or None."""
    http = None if args["--http"] == "off" else http_address(args["--http"])
    if args["--http-token-file"] == "none":
        return http, None
    if http is None:
        raise UsageError("--http-token-file protects the control port: give --http too")
    return http, token_file(args["--http-token-file"])


FRAMINGS = ("tcp", "rtu")
LINE_OPTIONS = ("--baud", "--parity", "--stopbits")


def serial_line(args: dict, argv: Sequence[str], count: int) -> dict:
    """The RTU options, checked: framing, serial, baud, parity, stopbits (Config's fields)."""
    framing = args["--framing"]
    if framing not in FRAMINGS:  # exact: the contract names them in lower case
        raise UsageError(f"--framing must be tcp or rtu, not {framing!r}")
    serial = None if args["--serial"] == "none" else args["--serial"]
    if serial is not None:
        if not serial.strip():
            raise UsageError("--serial must name a device, or pty, or pty:LINK, not ''")
        if serial.startswith("pty:") and not serial[4:].strip():
            raise UsageError(f"--serial {serial} has an empty LINK: give pty or pty:/path/to/link")
        if count > 1:
            raise UsageError(f"--serial serves one port's meters, not those of --count {count}")
    if serial is None and framing != "rtu":
        given = {item.longer for item in given_options(argv) if isinstance(item, Option)}
        for name in LINE_OPTIONS:
            if name in given:
                raise UsageError(f"{name} sets an RTU line: give --serial or --framing rtu too")
    parity = args["--parity"]
    if parity.upper() not in ("N", "E", "O"):
        raise UsageError(f"--parity must be N, E or O, not {parity!r}")
    stopbits = args["--stopbits"]
    if stopbits not in ("1", "2"):
        raise UsageError(f"--stopbits must be 1 or 2, not {stopbits!r}")
    return {"framing": framing, "serial": serial, "baud": integer("--baud", 1200, 921600)(args["--baud"]),
            "parity": parity.upper(), "stopbits": int(stopbits)}


def sized_site(args: dict, argv: Sequence[str], count: int, unit_ids: tuple[int, ...] | None,
               memory_bytes: int | None, bytes_per_meter: int, meter_type: str, type_option: str,
               profile: Profile | None) -> dict:
    """The site options and --start-time (Config's fields), checked, and the fleet's size checked
    against the machine's memory (a site is two devices)."""
    given = {item.longer for item in given_options(argv) if isinstance(item, Option)}
    try:
        site = site_options(args, meter_type, unit_ids, type_option, profile, given)
        check_fleet_size(count, (1, 200) if site["site"] else unit_ids, memory_bytes, bytes_per_meter)
        return {**site, "start_time_s": start_time(args["--start-time"])}
    except (SiteOptionError, SizeError, ProfileError) as exc:
        raise UsageError(str(exc)) from None


def parse_args(argv: Sequence[str], memory_bytes: int | None = None) -> Config:
    """The checked configuration for argv; UsageError with a one-line reason otherwise.

    memory_bytes: what the machine could give the process; more meters than fit are refused.
    """
    try:
        args = docopt(USAGE, list(argv), default_help=False)
        meter_type, type_option = meter_type_given(argv) or (args["--type"], "--type")
    except DocoptExit as exc:
        raise UsageError(refusal_reason(argv, exc)) from None
    if args["--help"] or args["--version"]:
        return Config(show_help=args["--help"], show_version=args["--version"])
    seed = args["--seed"]
    count = integer("--count", 1, 10000)(args["--count"])
    port = integer("--port", 1, 65535)(args["--port"])
    if port + count - 1 > 65535:
        raise UsageError(f"--count {count} from --port {port} runs past port 65535")
    unit_ids = None if args["--unit-ids"] == "all" else unit_id_list(args["--unit-ids"])
    given_type = meter_type_given(argv)
    meter_type = choice(type_option, METER_TYPES)(meter_type)
    profile = None
    if args["--profile"].lower() != "seed":
        try:
            profile = profile_named(args["--profile"], meter_type if given_type else None)
        except ProfileError as exc:
            raise UsageError(str(exc)) from None
        if not given_type and profile.meter_type is not None:
            meter_type = profile.meter_type  # a map file (or an electric profile) names its meter
    pv_kwp = number("--pv-kwp", 0, 40)(args["--pv-kwp"])
    if pv_kwp and meter_type != "electric":
        raise UsageError(f"--pv-kwp puts solar panels behind an electric meter, not a {meter_type} meter")
    http, http_token = control_port(args)
    site = sized_site(args, argv, count, unit_ids, memory_bytes,
                      meter_bytes(profile, meter_type, site=bool(args["--site"])), meter_type,
                      type_option if given_type else f"--profile {args['--profile']}:", profile)
    line = serial_line(args, argv, count)
    return Config(
        **line,
        **site,
        meter_type=meter_type,
        profile=profile,
        pv_kwp=pv_kwp,
        host=args["--address"],
        port=port,
        interval_s=number("--interval", 0.05, 3600)(args["--interval"]),
        speed=number("--speed", 0.1, 100000)(args["--speed"]),
        seed=None if seed == "random" else integer("--seed")(seed),
        log_level=choice("--log-level", LOG_LEVELS)(args["--log-level"]),
        state_file=state_file(args["--state-file"]),
        save_interval_s=number("--save-interval", 1, 86400)(args["--save-interval"]),
        count=count,
        unit_ids=unit_ids,
        max_clients=integer("--max-clients", 1, 10000)(args["--max-clients"]),
        idle_timeout_s=number("--idle-timeout", 0, 86400)(args["--idle-timeout"]),
        read_only=args["--read-only"],
        allow=None if args["--allow"] == "any" else network_list(args["--allow"]),
        http=http,
        http_token=http_token,
    )
