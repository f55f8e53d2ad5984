"""The README's client examples, run against a live meter so they stay true.

The ```python and ```bash blocks of the section "Reading it with a client" are
taken as written, with the documented port 5020 replaced by the live meter's.
"""
from __future__ import annotations

import re
import shlex

import pytest
from pymodbus.client import ModbusTcpClient

from meter_simulator.app.options import USAGE
from support import ROOT, MeterProcess, mbpoll_values, run_mbpoll, run_python, u32, unit_kw, wait_for

SECTION = "## Reading it with a client"
DOC_PORT = "5020"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
MAX_POWER_W = 3 * 253.0 * 63.0


def client_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end != -1 else len(text)]


def blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(client_section()) if lang == language]


def live_port(code: str, port: int) -> str:
    assert DOC_PORT in code, "the example names the documented port"
    return code.replace(DOC_PORT, str(port))


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory):
    """(port, state file text) of an electric meter that ran fast until its total passed 10 kWh."""
    path = tmp_path_factory.mktemp("state") / "meters.json"
    process = MeterProcess("--type", "electric", "--interval", "0.05", "--speed", "100000",
                           "--state-file", str(path))
    with process:
        wait_for(lambda: total_kwh(process.port) >= 10.0, timeout=30)
        status, _, err = process.stop()
    assert status == 0, err
    return process.port, path.read_text(encoding="utf-8")


@pytest.fixture
def meter(saved_state, tmp_path):
    """A live electric meter resumed from the saved total, not ticking: every read sees one image.

    A total of some kWh makes a wrong word order or scale in an example show; the state
    file is keyed by port, hence the same port.
    """
    port, state = saved_state
    path = tmp_path / "meters.json"
    path.write_text(state, encoding="utf-8")
    with MeterProcess("--type", "electric", "--interval", "3600", "--state-file", str(path),
                      port=port) as process:
        assert total_kwh(port) >= 10.0
        yield process


def total_kwh(port: int) -> float:
    with ModbusTcpClient("127.0.0.1", port=port, timeout=5) as client:
        result = client.read_holding_registers(0, count=2, **unit_kw(client.read_holding_registers))
        assert not result.isError(), result
        return u32(result.registers) / 100


def test_the_section_has_examples_for_every_client():
    assert len(blocks("python")) == 2
    code = "\n".join(blocks("python"))
    assert "from pymodbus.client import ModbusTcpClient" in code
    assert "read_holding_registers(0, count=2)" in code
    assert "pymodbus.client.sync" not in code, "pymodbus 3 removed it"
    assert "from pyModbusTCP.client import ModbusClient" in code
    commands = mbpoll_commands()
    for seed_command in ("-t 4 -r 1 -c 6", "-t 4 -r 11 -c 8", "-t 4 -r 101 -c 2"):
        assert any(seed_command in " ".join(c) for c in commands), seed_command


# --- the python blocks: every line they print is checked ---

def check_line(line: str, total: float) -> None:
    """One printed line against what the live meter shows; AssertionError on anything else."""
    if match := re.fullmatch(r"Cumulative consumption: ([\d.]+) kWh", line):
        assert float(match[1]) == total, (line, total)
    elif match := re.fullmatch(r"Instantaneous power: ([\d.]+) W", line):
        assert 50.0 <= float(match[1]) <= MAX_POWER_W, line
    elif match := re.fullmatch(r"Voltages: ([\d.]+), ([\d.]+), ([\d.]+) V", line):
        assert all(207.0 <= float(v) <= 253.0 for v in match.groups()), line
    elif line == "Online: True, no alarms: True, communication OK: True":
        pass
    elif match := re.fullmatch(r"Read past the map: exception (\d+)( \(illegal data address\))?", line):
        assert match[1] == "2", line
    else:
        raise AssertionError(f"the README example printed an unexpected line: {line!r}")


@pytest.mark.parametrize("index", [0, 1], ids=["pymodbus", "pyModbusTCP"])
def test_python_example_runs_against_a_live_meter(meter, index, tmp_path):
    code = live_port(blocks("python")[index], meter.port)
    total = total_kwh(meter.port)
    done = run_python(code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # pymodbus before 3.10 logs each exception response to stderr; nothing else may show there
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("Cumulative consumption:") for line in lines), done.stdout
    assert any(line.startswith("Read past the map:") for line in lines), done.stdout
    for line in lines:
        check_line(line, total)


# --- the bash block: the mbpoll commands ---

def mbpoll_commands() -> list[list[str]]:
    """Every mbpoll command line of the section's bash blocks, split as the shell would."""
    return [shlex.split(line) for code in blocks("bash") for line in code.splitlines()
            if line.startswith("mbpoll ")]


def test_mbpoll_examples_run_against_a_live_meter(meter):
    commands = mbpoll_commands()
    assert len(commands) >= 6
    total_counts = round(total_kwh(meter.port) * 100)
    for command in commands:
        args = shlex.split(live_port(shlex.join(command), meter.port))[1:]
        done = run_mbpoll("-o", "5", *args)  # mbpoll's default 1 s timeout is tight on a loaded machine
        assert done.returncode == 0, f"{shlex.join(command)}: {done.stdout}{done.stderr}"
        values = mbpoll_values(done.stdout)
        reference = int(args[args.index("-r") + 1])
        if "-c" in args:
            count = int(args[args.index("-c") + 1])
            assert sorted(values) == list(range(reference, reference + count)), done.stdout
        if reference == 1 and args[args.index("-t") + 1] in ("3", "4"):
            assert u32([values[1], values[2]]) == total_counts, "references 1-2: the total"
        if "-t" in args and args[args.index("-t") + 1] == "4" and reference == 101:
            assert values == {101: 1, 102: 0}, "online, electric"
        if "-t" in args and args[args.index("-t") + 1] == "0" and "-c" in args:
            assert [values[r] for r in range(1, 4)] == [1, 1, 1], done.stdout
        if reference == 11 and "-c" not in args:  # the reset write
            assert total_kwh(meter.port) == 0.0, "the total restarted from 0"
    assert any(c[c.index("-r") + 1] == "11" and "-c" not in c for c in commands), "a reset example"


def test_a_plain_tox_skips_missing_pythons_and_ci_requires_every_one():
    """The README's test command on a machine with one Python runs that one; CI runs all five."""
    import configparser

    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini", encoding="utf-8")
    assert tox["tox"].getboolean("skip_missing_interpreters") is True
    envs = [env.strip() for env in tox["tox"]["envlist"].split(",")]
    assert envs[:5] == ["py39", "py310", "py311", "py312", "py313"]
    assert {"lint", "dist"} <= set(envs[5:]), "after the tests, a plain tox lints and builds"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python3 -m pip install tox && python3 -m tox\n" in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^python3 -m tox --skip-missing-interpreters false$", ci, re.MULTILINE)


def test_the_command_line_section_is_the_usage_text():
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Command line", 1)[1]
    shown = section.split("```text\n", 1)[1].split("```", 1)[0]
    assert shown == USAGE
