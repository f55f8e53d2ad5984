"""The command line: defaults, every option's bad values, spellings, and main()'s exit status."""
from __future__ import annotations

import ipaddress
import re
import shlex

import pytest

from meter_simulator import __version__
from meter_simulator.app.main import machine_memory_bytes, main
from meter_simulator.app.options import USAGE, Config, UsageError, parse_args, short_usage
from meter_simulator.app.sizing import BYTES_PER_METER


def usage_default(option: str) -> str:
    """The [default: X] the usage text gives for an option (the single source of truth)."""
    line = next(line for line in USAGE.splitlines() if re.match(rf"\s*(-\w \w+, )?{option}\b", line))
    block = USAGE[USAGE.index(line):]
    return re.search(r"\[default: ([^\]]+)\]", block).group(1)


def test_contract_defaults():
    config = parse_args([])
    assert config.meter_type == "electric"
    assert config.host == "127.0.0.1"
    assert config.port == 5020
    assert config.interval_s == 1.0
    assert config.speed == 1.0
    assert config.seed is None  # random
    assert config.log_level == "info"
    assert not config.show_help and not config.show_version


def test_every_default_is_the_usage_texts():
    config = parse_args([])
    assert config.meter_type == usage_default("--type")
    assert config.host == usage_default("--address")
    assert config.port == int(usage_default("--port"))
    assert config.interval_s == float(usage_default("--interval"))
    assert config.speed == float(usage_default("--speed"))
    assert usage_default("--seed") == "random" and config.seed is None
    assert config.log_level == usage_default("--log-level")
    assert usage_default("--state-file") == "none" and config.state_file is None
    assert config.save_interval_s == float(usage_default("--save-interval"))
    assert config.count == int(usage_default("--count")) == 1
    assert usage_default("--unit-ids") == "all" and config.unit_ids is None
    assert config.max_clients == int(usage_default("--max-clients"))
    assert config.idle_timeout_s == float(usage_default("--idle-timeout"))
    assert config.read_only is False
    assert usage_default("--allow") == "any" and config.allow is None


def test_config_defaults_match_the_parsed_defaults():
    # code that builds a Config by hand (tests, fleets) gets what the command line gives
    parsed = parse_args([])
    assert Config() == parsed


@pytest.mark.parametrize("argv", [
    ["--type", "water"], ["-t", "water"], ["-twater"], ["--type=water"], ["--meter-type", "water"],
    ["--meter-type=water"], ["--ty", "water"], ["--type", "WATER"],
])
def test_meter_type_spellings(argv):
    assert parse_args(argv).meter_type == "water"


@pytest.mark.parametrize("argv, field, value", [
    (["-a", "::1"], "host", "::1"),
    (["--address", "localhost"], "host", "localhost"),
    (["-p", "1"], "port", 1),
    (["--port", "65535"], "port", 65535),
    (["--interval", "0.05"], "interval_s", 0.05),
    (["--interval", "3600"], "interval_s", 3600.0),
    (["--speed", "0.1"], "speed", 0.1),
    (["--speed", "100000"], "speed", 100000.0),
    (["--seed", "42"], "seed", 42),
    (["--seed", "0"], "seed", 0),
    (["--log-level", "debug"], "log_level", "debug"),
    (["--log-level", "ERROR"], "log_level", "error"),
    (["--count", "3"], "count", 3),
    (["--port", "65533", "--count", "3"], "count", 3),
    (["--unit-ids", "1-3,7"], "unit_ids", (1, 2, 3, 7)),
    (["--unit-ids", "247"], "unit_ids", (247,)),
    (["--max-clients", "1"], "max_clients", 1),
    (["--idle-timeout", "0"], "idle_timeout_s", 0.0),
    (["--read-only"], "read_only", True),
    (["--save-interval", "1"], "save_interval_s", 1.0),
    (["--state-file", "/tmp/x.json"], "state_file", "/tmp/x.json"),
    (["--allow", "127.0.0.0/8,::1"], "allow",
     (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))),
])
def test_good_values(argv, field, value):
    assert getattr(parse_args(argv), field) == value


# Every refusal, word for word: the reason names the option (as the usage spells it) or the
# argument refused, and the value given.
REFUSALS = [
    # a meter type that does not exist, by either spelling
    (["--type", "heat"], "--type must be one of electric, water, gas, not 'heat'"),
    (["-t", ""], "--type must be one of electric, water, gas, not ''"),
    (["--meter-type", "electricity"], "--meter-type must be one of electric, water, gas, not 'electricity'"),
    # ports
    (["--port", "0"], "--port must be from 1 to 65535, not 0"),
    (["--port", "65536"], "--port must be from 1 to 65535, not 65536"),
    (["--port", "-1"], "--port must be from 1 to 65535, not -1"),
    (["-p", "99999999999999999999"], "--port must be from 1 to 65535, not 99999999999999999999"),
    (["--port", "x"], "--port must be a whole number, not 'x'"),
    (["--port", "5020.5"], "--port must be a whole number, not '5020.5'"),
    (["--port", ""], "--port must be a whole number, not ''"),
    (["--port", "0x10"], "--port must be a whole number, not '0x10'"),
    # numbers out of range, not finite, or not numbers
    (["--interval", "0.049"], "--interval must be from 0.05 to 3600, not 0.049"),
    (["--interval", "3601"], "--interval must be from 0.05 to 3600, not 3601"),
    (["--interval", "0"], "--interval must be from 0.05 to 3600, not 0"),
    (["--interval", "-1"], "--interval must be from 0.05 to 3600, not -1"),
    (["--interval", "nan"], "--interval must be from 0.05 to 3600, not nan"),
    (["--interval", "inf"], "--interval must be from 0.05 to 3600, not inf"),
    (["--interval", "x"], "--interval must be a number, not 'x'"),
    (["--speed", "0.09"], "--speed must be from 0.1 to 100000, not 0.09"),
    (["--speed", "100001"], "--speed must be from 0.1 to 100000, not 100001"),
    (["--speed", "nan"], "--speed must be from 0.1 to 100000, not nan"),
    (["--speed", "inf"], "--speed must be from 0.1 to 100000, not inf"),
    (["--speed", "-inf"], "--speed must be from 0.1 to 100000, not -inf"),
    (["--speed", "fast"], "--speed must be a number, not 'fast'"),
    (["--seed", "x"], "--seed must be a whole number, not 'x'"),
    (["--seed", "1.5"], "--seed must be a whole number, not '1.5'"),
    (["--seed", "1e3"], "--seed must be a whole number, not '1e3'"),
    (["--seed", ""], "--seed must be a whole number, not ''"),
    (["--log-level", "verbose"], "--log-level must be one of debug, info, warning, error, not 'verbose'"),
    (["--log-level", "critical"], "--log-level must be one of debug, info, warning, error, not 'critical'"),
    (["--log-level", ""], "--log-level must be one of debug, info, warning, error, not ''"),
    (["--count", "0"], "--count must be from 1 to 10000, not 0"),
    (["--count", "10001"], "--count must be from 1 to 10000, not 10001"),
    (["--count", "x"], "--count must be a whole number, not 'x'"),
    (["--port", "65535", "--count", "2"], "--count 2 from --port 65535 runs past port 65535"),
    (["--port", "65000", "--count", "537"], "--count 537 from --port 65000 runs past port 65535"),
    (["--max-clients", "0"], "--max-clients must be from 1 to 10000, not 0"),
    (["--max-clients", "10001"], "--max-clients must be from 1 to 10000, not 10001"),
    (["--idle-timeout", "-1"], "--idle-timeout must be from 0 to 86400, not -1"),
    (["--idle-timeout", "86401"], "--idle-timeout must be from 0 to 86400, not 86401"),
    (["--idle-timeout", "nan"], "--idle-timeout must be from 0 to 86400, not nan"),
    (["--save-interval", "0"], "--save-interval must be from 1 to 86400, not 0"),
    (["--save-interval", "86401"], "--save-interval must be from 1 to 86400, not 86401"),
    (["--state-file", ""], "--state-file must name a file (or none), not ''"),
    (["--state-file", " "], "--state-file must name a file (or none), not ' '"),
    # unit id lists and networks: the part refused
    (["--unit-ids", "0"], "--unit-ids must be from 1 to 247, not 0"),
    (["--unit-ids", "248"], "--unit-ids must be from 1 to 247, not 248"),
    (["--unit-ids", "5-1"], "--unit-ids range 5-1 runs backwards"),
    (["--unit-ids", "a"], "--unit-ids must be a whole number, not 'a'"),
    (["--unit-ids", "1.5"], "--unit-ids must be a whole number, not '1.5'"),
    (["--unit-ids", ""], "--unit-ids must list unit ids like 1-32 or 1,5,7, not ''"),
    (["--unit-ids", "1,,2"], "--unit-ids has an empty part in '1,,2': give ids like 1-32 or 1,5,7"),
    (["--unit-ids", "1-"], "--unit-ids has an empty part in '1-': give ids like 1-32 or 1,5,7"),
    (["--allow", "x"], "--allow takes networks like 192.168.1.0/24, not 'x'"),
    (["--allow", "300.0.0.1/8"], "--allow takes networks like 192.168.1.0/24, not '300.0.0.1/8'"),
    (["--allow", "127.0.0.1,"],
     "--allow has an empty part in '127.0.0.1,': give networks like 192.168.1.0/24"),
    (["--allow", ""], "--allow takes networks like 192.168.1.0/24, not ''"),
    # the RTU options (rtu-contract section 1)
    (["--framing", "ascii"], "--framing must be tcp or rtu, not 'ascii'"),
    (["--framing", "RTU"], "--framing must be tcp or rtu, not 'RTU'"),
    (["--serial", "pty", "--baud", "1199"], "--baud must be from 1200 to 921600, not 1199"),
    (["--serial", "pty", "--baud", "921601"], "--baud must be from 1200 to 921600, not 921601"),
    (["--serial", "pty", "--baud", "9600.0"], "--baud must be a whole number, not '9600.0'"),
    (["--serial", "pty", "--baud", "9_600"], "--baud must be a whole number, not '9_600'"),
    (["--serial", "pty", "--baud", " 9600"], "--baud must be a whole number, not ' 9600'"),
    (["--framing", "rtu", "--parity", "X"], "--parity must be N, E or O, not 'X'"),
    (["--framing", "rtu", "--parity", "none"], "--parity must be N, E or O, not 'none'"),
    (["--framing", "rtu", "--stopbits", "1.5"], "--stopbits must be 1 or 2, not '1.5'"),
    (["--serial", ""], "--serial must name a device, or pty, or pty:LINK, not ''"),
    (["--serial", "pty:"], "--serial pty: has an empty LINK: give pty or pty:/path/to/link"),
    (["--serial", "pty", "--count", "2"], "--serial serves one port's meters, not those of --count 2"),
    (["--baud", "19200"], "--baud sets an RTU line: give --serial or --framing rtu too"),
    (["--parity", "E"], "--parity sets an RTU line: give --serial or --framing rtu too"),
    (["--stopbits", "2"], "--stopbits sets an RTU line: give --serial or --framing rtu too"),
    (["--port", "5_020"], "--port must be a whole number, not '5_020'"),
    # what docopt refuses: unknown, ambiguous, repeated, misplaced options, missing values,
    # stray arguments
    (["--bogus"], "unknown option: --bogus"),
    (["--bogus", "1"], "unknown option: --bogus"),
    (["-z"], "unknown option: -z"),
    (["-x"], "unknown option: -x"),
    (["--s", "1"], "--s is ambiguous: it could be --speed, --seed, --site, --start-time, --state-file, "
                   "--save-interval, --serial, --stopbits"),
    (["--i", "1"], "--i is ambiguous: it could be --interval, --inverter-night, --inverter-profile, "
     "--idle-timeout"),
    (["--port"], "--port requires a value"),
    (["--type"], "--type requires a value"),
    (["-t"], "-t requires a value"),
    (["--interval"], "--interval requires a value"),
    (["--seed"], "--seed requires a value"),
    (["--read-only=yes"], "--read-only must not have an argument"),
    (["stray"], "unexpected argument: 'stray'"),
    (["--port", "5020", "stray"], "unexpected argument: 'stray'"),
    (["--type", "water", "--type", "gas"], "-t/--type is given 2 times: give it once"),
    (["-t", "water", "-t", "gas"], "-t/--type is given 2 times: give it once"),
    (["--read-only", "--read-only"], "--read-only is given 2 times: give it once"),
    (["--type", "water", "--meter-type", "gas"],
     "--type water and --meter-type gas name different meter types"),
    (["--meter-type", "gas", "-t", "water"],
     "--meter-type gas and --type water name different meter types"),
    (["--help", "--version"], "-h/--help stands alone, not with --version"),
    (["-h", "--port", "1"], "-h/--help stands alone, not with -p/--port"),
    (["--version", "-t", "gas"], "--version stands alone, not with -t/--type"),
]


@pytest.mark.parametrize("argv, fields", [
    ([], {"framing": "tcp", "serial": None, "baud": 9600, "parity": "N", "stopbits": 1}),
    (["--framing", "rtu"], {"framing": "rtu", "serial": None}),
    (["--serial", "pty:/tmp/x.tty", "--baud", "19200", "--parity", "e", "--stopbits", "2"],
     {"serial": "pty:/tmp/x.tty", "baud": 19200, "parity": "E", "stopbits": 2}),
    (["--serial", "/dev/ttyUSB0", "--count", "1", "--unit-ids", "1-3"],
     {"serial": "/dev/ttyUSB0", "unit_ids": (1, 2, 3)}),
    (["--framing", "rtu", "--count", "3", "--baud", "1200"], {"count": 3, "baud": 1200}),
])
def test_the_rtu_options(argv, fields):
    config = parse_args(argv)
    assert {name: getattr(config, name) for name in fields} == fields


@pytest.mark.parametrize("argv, reason", REFUSALS, ids=[shlex.join(argv) for argv, _ in REFUSALS])
def test_every_refusal_says_what_it_refuses(argv, reason):
    with pytest.raises(UsageError) as caught:
        parse_args(argv)
    assert str(caught.value) == reason


@pytest.mark.parametrize("argv", [
    ["--type", "water", "--meter-type", "water"], ["--type", "water", "--meter-type", "WATER"],
])
def test_both_type_spellings_naming_one_type_are_fine(argv):
    assert parse_args(argv).meter_type == "water"


def test_more_meters_than_the_memory_holds_are_refused():
    gib = 2 ** 30
    assert parse_args(["--count", "10000", "--unit-ids", "1-247"], memory_bytes=64 * gib).count == 10000
    with pytest.raises(UsageError) as caught:
        parse_args(["--count", "10000", "--unit-ids", "1-247"], memory_bytes=16 * gib)
    assert str(caught.value) == ("--count 10000 x 247 --unit-ids makes 2,470,000 meters, which need "
                                 "about 18.8 GiB (8 kB a meter); this machine gives at most 16.0 GiB")
    with pytest.raises(UsageError) as caught:
        parse_args(["--count", "10000"], memory_bytes=64 * 2 ** 20)
    assert str(caught.value) == ("--count 10000 makes 10,000 meters, which need about 78.1 MiB (8 kB "
                                 "a meter); this machine gives at most 64.0 MiB")
    assert parse_args(["--count", "10000", "--unit-ids", "1-247"]).count == 10000  # memory unknown


# what main prints after the reason: the Usage: section of the usage text
USAGE_SECTION = ("Usage:\n"
                 "  meter-simulator [options]\n"
                 "  meter-simulator -h | --help\n"
                 "  meter-simulator --version\n")


def test_the_usage_after_a_reason_is_the_usage_section():
    assert short_usage() + "\n" == USAGE_SECTION
    assert USAGE_SECTION in USAGE


def test_the_program_refuses_a_fleet_this_machine_cannot_hold(capsys):
    memory = machine_memory_bytes()
    if memory is None or memory >= 2_470_000 * BYTES_PER_METER:
        pytest.skip("this machine could hold 2,470,000 meters")
    assert main(["--count", "10000", "--unit-ids", "1-247", "--port", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("meter-simulator: --count 10000 x 247 --unit-ids makes 2,470,000 meters, which need "
                   f"about 18.8 GiB (8 kB a meter); this machine gives at most {memory / 2**30:.1f} GiB\n"
                   + USAGE_SECTION)


# main() prints the reason after the program's name, then the Usage: section; the subprocess
# tests in test_program.py do the same through the real launcher
@pytest.mark.parametrize("argv, reason", [
    (["--port", "x"], "--port must be a whole number, not 'x'"),
    (["--bogus"], "unknown option: --bogus"),
    (["--port"], "--port requires a value"),
])
def test_main_with_a_bad_option_exits_2_with_reason_and_usage(capsys, argv, reason):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"meter-simulator: {reason}\n{USAGE_SECTION}"


def test_main_help_exits_0_with_the_usage(capsys):
    assert main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert out == USAGE and err == ""
    assert main(["-h"]) == 0
    assert capsys.readouterr().out == USAGE


def test_main_version_exits_0(capsys):
    assert main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert out == f"meter-simulator {__version__}\n" and err == ""


def test_usage_names_every_contract_option():
    for option in ("-t TYPE, --type TYPE", "--meter-type TYPE", "-a HOST, --address HOST",
                   "-p PORT, --port PORT", "--interval SECONDS", "--speed FACTOR", "--seed N",
                   "--log-level LEVEL", "-h, --help", "--version"):
        assert option in USAGE
