"""The command line: defaults, every option's bad values, spellings, and main()'s exit status."""
from __future__ import annotations

import ipaddress
import re

import pytest

from meter_simulator import __version__
from meter_simulator.cli import machine_memory_bytes, main
from meter_simulator.options import BYTES_PER_METER, USAGE, Config, UsageError, parse_args


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


@pytest.mark.parametrize("argv", [
    ["--type", "heat"], ["-t", ""], ["--meter-type", "electricity"],
    ["--port", "0"], ["--port", "65536"], ["--port", "x"], ["--port", "5020.5"], ["--port", "-1"],
    ["--port", ""], ["--port", "0x10"], ["-p", "99999999999999999999"],
    ["--interval", "0.049"], ["--interval", "3601"], ["--interval", "0"], ["--interval", "nan"],
    ["--interval", "inf"], ["--interval", "x"], ["--interval", "-1"],
    ["--speed", "0.09"], ["--speed", "100001"], ["--speed", "nan"], ["--speed", "inf"],
    ["--speed", "-inf"], ["--speed", "fast"],
    ["--seed", "x"], ["--seed", "1.5"], ["--seed", "1e3"], ["--seed", ""],
    ["--log-level", "verbose"], ["--log-level", "critical"], ["--log-level", ""],
    ["--bogus"], ["--bogus", "1"], ["-z"],
    ["--port"], ["--type"], ["-t"], ["--interval"], ["--seed"],
    ["stray"], ["--port", "5020", "stray"],
    ["--type", "water", "--type", "gas"],
    ["--unit-ids", "0"], ["--unit-ids", "248"], ["--unit-ids", "5-1"], ["--unit-ids", "a"],
    ["--unit-ids", ""], ["--unit-ids", "1,,2"], ["--unit-ids", "1-"], ["--unit-ids", "1.5"],
    ["--allow", "x"], ["--allow", "300.0.0.1/8"], ["--allow", "127.0.0.1,"], ["--allow", ""],
    ["--count", "0"], ["--count", "10001"], ["--count", "x"],
    ["--port", "65535", "--count", "2"], ["--port", "65000", "--count", "537"],
    ["--max-clients", "0"], ["--max-clients", "10001"],
    ["--idle-timeout", "-1"], ["--idle-timeout", "86401"], ["--idle-timeout", "nan"],
    ["--save-interval", "0"], ["--save-interval", "86401"],
    ["--read-only=yes"],
])
def test_bad_values_raise_a_one_line_usage_error(argv):
    with pytest.raises(UsageError) as caught:
        parse_args(argv)
    message = str(caught.value)
    assert message and "\n" not in message
    assert "Traceback" not in message and "Option(" not in message and "Argument(" not in message


@pytest.mark.parametrize("argv, words", [
    (["--type", "heat"], ["heat"]),
    (["--port", "0"], ["--port", "0"]),
    (["--port", "5020.5"], ["--port", "5020.5"]),
    (["--interval", "nan"], ["--interval"]),
    (["--seed", "x"], ["--seed"]),
    (["--bogus"], ["--bogus"]),
    (["--port"], ["--port"]),
    (["stray"], ["stray"]),
    (["--unit-ids", "248"], ["--unit-ids"]),
    (["--port", "65535", "--count", "2"], ["--count"]),
])
def test_the_reason_names_the_culprit(argv, words):
    with pytest.raises(UsageError) as caught:
        parse_args(argv)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("argv, reason", [
    (["-x"], "unknown option: -x"),
    (["--bogus", "1"], "unknown option: --bogus"),
    (["--help", "--version"], "-h/--help stands alone, not with --version"),
    (["-h", "--port", "1"], "-h/--help stands alone, not with -p/--port"),
    (["--version", "-t", "gas"], "--version stands alone, not with -t/--type"),
    (["--s", "1"], "--s is ambiguous: it could be --speed, --seed, --state-file, --save-interval"),
    (["--i", "1"], "--i is ambiguous: it could be --interval, --idle-timeout"),
    (["-t", "water", "-t", "gas"], "-t/--type is given 2 times: give it once"),
    (["--read-only", "--read-only"], "--read-only is given 2 times: give it once"),
    (["--type", "water", "--meter-type", "gas"],
     "--type water and --meter-type gas name different meter types"),
    (["--meter-type", "gas", "-t", "water"],
     "--meter-type gas and --type water name different meter types"),
    (["--state-file", ""], "--state-file must name a file (or none), not ''"),
    (["--state-file", " "], "--state-file must name a file (or none), not ' '"),
    (["--port", "5020", "stray"], "unexpected argument: 'stray'"),
    (["--port"], "--port requires argument"),
])
def test_every_refusal_names_what_it_refuses(argv, reason):
    with pytest.raises(UsageError) as caught:
        parse_args(argv)
    assert str(caught.value) == reason


@pytest.mark.parametrize("argv", [
    ["--type", "water", "--meter-type", "water"], ["--type", "water", "--meter-type", "WATER"],
    ["--meter-type", "water"], ["-t", "water"],
])
def test_both_type_spellings_naming_one_type_are_fine(argv):
    assert parse_args(argv).meter_type == "water"


def test_more_meters_than_the_memory_holds_are_refused():
    gib = 2 ** 30
    assert parse_args(["--count", "10000", "--unit-ids", "1-247"], memory_bytes=64 * gib).count == 10000
    with pytest.raises(UsageError) as caught:
        parse_args(["--count", "10000", "--unit-ids", "1-247"], memory_bytes=24 * gib)
    assert str(caught.value) == ("--count 10000 x 247 --unit-ids makes 2,470,000 meters, which need "
                                 "about 37.7 GiB (16 kB a meter); this machine gives at most 24.0 GiB")
    with pytest.raises(UsageError) as caught:
        parse_args(["--count", "100"], memory_bytes=1024 * 1024)
    assert str(caught.value).startswith("--count 100 makes 100 meters, which need about")
    assert parse_args(["--count", "10000", "--unit-ids", "1-247"]).count == 10000  # memory unknown


def test_the_program_refuses_a_fleet_this_machine_cannot_hold(capsys):
    memory = machine_memory_bytes()
    if memory is None or memory >= 2_470_000 * BYTES_PER_METER:
        pytest.skip("this machine could hold 2,470,000 meters")
    assert main(["--count", "10000", "--unit-ids", "1-247", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "makes 2,470,000 meters, which need about 37.7 GiB" in err.splitlines()[0]


@pytest.mark.parametrize("argv", [
    ["--port", "x"], ["--type", "heat"], ["--bogus"], ["stray"], ["--port"], ["--interval", "inf"],
])
def test_main_with_a_bad_option_exits_2_with_reason_and_usage(capsys, argv):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith("meter-simulator: ") and len(lines[0]) > len("meter-simulator: ")
    assert "Usage:" not in lines[0]
    assert lines[1].startswith("Usage:")
    assert any("meter-simulator [options]" in line for line in lines[1:])
    assert "Traceback" not in err


def test_main_help_exits_0_with_the_usage(capsys):
    assert main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert out == USAGE and err == ""
    assert main(["-h"]) == 0
    assert capsys.readouterr().out == USAGE


def test_main_version_exits_0(capsys):
    assert main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"meter-simulator {__version__}" and err == ""


def test_usage_names_every_contract_option():
    for option in ("-t TYPE, --type TYPE", "--meter-type TYPE", "-a HOST, --address HOST",
                   "-p PORT, --port PORT", "--interval SECONDS", "--speed FACTOR", "--seed N",
                   "--log-level LEVEL", "-h, --help", "--version"):
        assert option in USAGE
