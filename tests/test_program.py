"""The real program as a process: its three launchers, options, bad input, bind failures, signals."""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from pymodbus.client import ModbusTcpClient

from meter_simulator import __version__
from meter_simulator.app.options import USAGE
from support import (
    SCRIPT_COMMAND,
    MeterProcess,
    accepts,
    console_script,
    free_port,
    ipv6_loopback_available,
    run_program,
    unit_kw,
    wait_for,
)

TYPE_CODES = {"electric": 0, "water": 1, "gas": 2}
STOP_DEADLINE_S = 5.0  # the contract's 2 s, with slack for a loaded 2-core machine


def launchers() -> dict[str, tuple[str, ...] | None]:
    """The three ways the contract starts the program (None: console script not installed)."""
    script = console_script()
    return {
        "script": SCRIPT_COMMAND,
        "console-script": (script,) if script else None,
        "module": (sys.executable, "-m", "meter_simulator"),
    }


def read_registers(host: str, port: int, address: int, count: int) -> list[int]:
    """count holding registers from address, through pymodbus; AssertionError on an exception."""
    client = ModbusTcpClient(host, port=port, timeout=5)
    try:
        assert client.connect(), f"cannot connect to {host}:{port}"
        result = client.read_holding_registers(address, count=count,
                                               **unit_kw(client.read_holding_registers))
        assert not result.isError(), result
        return list(result.registers)
    finally:
        client.close()


def start_line(meter_type: str, host_port: str) -> str:
    return f"{meter_type} meter serving Modbus/TCP on {host_port}"


# --- start ---

@pytest.mark.parametrize("launcher", ["script", "console-script", "module"])
def test_every_launcher_starts_the_same_program(launcher, tmp_path):
    command = launchers()[launcher]
    if command is None:
        pytest.skip("the meter-simulator console script is not installed (pip install -e .)")
    meter = MeterProcess("--type", "water", "--interval", "3600", command=command, cwd=tmp_path)
    with meter:
        regs = read_registers(meter.host, meter.port, 100, 2)
        assert regs == [1, TYPE_CODES["water"]]
        status, out, err = meter.stop()
    assert status == 0, err
    assert start_line("water", f"127.0.0.1:{meter.port}") in err
    assert "Traceback" not in err


def test_help_and_version_exit_0_in_a_real_process():
    """The texts themselves are checked in-process (test_options.py); here the real launcher
    prints them to stdout and exits 0, starting nothing."""
    done = run_program("--help")
    assert (done.returncode, done.stdout, done.stderr) == (0, USAGE, "")
    done = run_program("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"meter-simulator {__version__}\n", "")


def first_image(*args: str) -> tuple[list[int], int, str]:
    """Start the program (a long interval: the read sees the initial image, before any tick),
    read registers 0-101, stop it: (the image, its port, its stderr)."""
    meter = MeterProcess(*args, "--interval", "3600")
    with meter:
        image = read_registers(meter.host, meter.port, 0, 102)
        status, _, err = meter.stop()
    assert status == 0, err
    return image, meter.port, err


# each type started by another of the option's spellings (all of them are parsed alike in
# test_options.py): the program passes the one parsed on
@pytest.mark.parametrize("meter_type, spelling", [("electric", "--type"), ("water", "-t"),
                                                  ("gas", "--meter-type")])
def test_each_type_serves_its_code_and_names_itself(meter_type, spelling):
    image, port, err = first_image(spelling, meter_type)
    assert image[100:102] == [1, TYPE_CODES[meter_type]]  # online, and the type's code
    assert image[0:2] == [0, 0]  # a new meter's total starts at 0
    assert start_line(meter_type, f"127.0.0.1:{port}") in err


def test_seed_gives_the_same_first_readings():
    """Water, whose uses come as random events; a seeded fleet of electric meters is run in
    test_fleet.py, every type's model is seeded in-process in test_meters.py."""
    image = first_image("--type", "water", "--seed", "42")[0]
    assert first_image("--type", "water", "--seed", "42")[0] == image
    assert first_image("--type", "water", "--seed", "43")[0][:23] != image[:23], \
        "another seed gives other readings"


def test_two_instances_side_by_side():
    with MeterProcess("--type", "electric", "--interval", "3600") as first, \
            MeterProcess("--type", "gas", "--interval", "3600") as second:
        assert first.port != second.port
        assert read_registers(first.host, first.port, 101, 1) == [0]
        assert read_registers(second.host, second.port, 101, 1) == [2]


def test_ipv6_loopback_is_served_like_ipv4():
    if not ipv6_loopback_available():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    meter = MeterProcess("--type", "water", "--interval", "3600", host="::1")
    with meter:
        assert read_registers("::1", meter.port, 100, 2) == [1, 1]
        status, _, err = meter.stop()
    assert status == 0
    assert start_line("water", f"[::1]:{meter.port}") in err


# --- bad options: one reason line and the usage, exit 2, nothing started ---
# Every refusal's reason is pinned in-process (test_options.py); these few go through the real
# launcher: a bad value, an unknown option, a missing value, a stray argument.

USAGE_SECTION = ("Usage:\n"
                 "  meter-simulator [options]\n"
                 "  meter-simulator -h | --help\n"
                 "  meter-simulator --version\n")


@pytest.mark.parametrize("args, reason", [
    (["--port", "http"], "--port must be a whole number, not 'http'"),
    (["--bogus"], "unknown option: --bogus"),
    (["--type"], "--type requires a value"),
    (["stray"], "unexpected argument: 'stray'"),
], ids=["bad value", "unknown option", "missing value", "stray argument"])
def test_bad_option_prints_reason_and_usage_and_exits_2(args, reason):
    port = free_port()
    argv = args if "--port" in args else ["--port", str(port), *args]
    done = run_program(*argv)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stdout == ""
    assert done.stderr == f"meter-simulator: {reason}\n{USAGE_SECTION}"
    assert not accepts("127.0.0.1", port)


# --- bind failures: one line naming address, port and reason, exit 1 ---

def bind_failure(done: subprocess.CompletedProcess) -> str:
    """The one line a program that could not bind printed; it exited 1."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_port_in_use_exits_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = bind_failure(run_program("--port", str(port)))
    assert line == f"meter-simulator: cannot serve on 127.0.0.1:{port}: Address already in use"


def test_name_that_does_not_resolve_exits_1():
    port = free_port()
    host = "no-such-meter.invalid"  # RFC 6761: never resolves
    line = bind_failure(run_program("--address", host, "--port", str(port)))
    # the resolver's own words vary (no network: "Name or service not known"; else
    # "No address associated with hostname", "Temporary failure in name resolution")
    assert re.fullmatch(rf"meter-simulator: cannot serve on {re.escape(host)}:{port}: "
                        rf"cannot resolve '{re.escape(host)}': [A-Z][^:]+", line), line


def test_address_not_on_this_host_exits_1():
    port = free_port()
    host = "192.0.2.1"  # TEST-NET-1: bind fails locally, nothing is sent
    line = bind_failure(run_program("--address", host, "--port", str(port)))
    assert line == f"meter-simulator: cannot serve on {host}:{port}: Cannot assign requested address"


# --- signals ---

def attempts(count: int) -> list:
    """Attempt 0, then count - 1 repetitions marked slow: `-m "not slow"` runs each case once."""
    return [0, *(pytest.param(n, marks=pytest.mark.slow) for n in range(1, count))]


# Repeated: a signal the kernel hands to a thread other than the main one was once
# lost in about a quarter of the runs; six runs a signal catch that nearly always.
@pytest.mark.parametrize("attempt", attempts(6))
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_program_cleanly(signum, attempt):
    meter = MeterProcess("--interval", "0.05", "--speed", "600")
    with meter:
        # a client holding a connection open must not delay the exit
        client = ModbusTcpClient(meter.host, port=meter.port, timeout=5)
        try:
            assert client.connect()
            assert not client.read_holding_registers(0, count=2,
                                                     **unit_kw(client.read_holding_registers)).isError()
            started = time.monotonic()
            meter.proc.send_signal(signum)
            status, _, err = meter.stop(timeout=STOP_DEADLINE_S)
            took_s = time.monotonic() - started
        finally:
            client.close()
    assert status == 0, err
    assert took_s < STOP_DEADLINE_S
    assert err.splitlines()[-1].endswith(f" INFO electric meter on 127.0.0.1:{meter.port} stopped"), err
    assert "Traceback" not in err
    wait_for(lambda: not accepts(meter.host, meter.port), timeout=5)


@pytest.mark.parametrize("attempt", attempts(3))
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_repeated_during_the_shutdown_still_exit_0(signum, attempt):
    """A double Ctrl-C or a supervisor repeating SIGTERM: one more request to stop, never a kill."""
    with MeterProcess("--interval", "0.05") as meter:
        deadline = time.monotonic() + STOP_DEADLINE_S
        meter.proc.send_signal(signum)  # two at once, then more until the program is gone
        meter.proc.send_signal(signum)
        while meter.proc.poll() is None and time.monotonic() < deadline:
            meter.proc.send_signal(signum)
            try:
                meter.proc.wait(timeout=0.002)
            except subprocess.TimeoutExpired:
                pass
        status, _, err = meter.stop(timeout=STOP_DEADLINE_S)
    assert status == 0, err
    assert "Traceback" not in err, err
    assert err.splitlines()[-1].endswith(f" INFO electric meter on 127.0.0.1:{meter.port} stopped"), err
