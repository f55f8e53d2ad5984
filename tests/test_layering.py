"""Imports point one way: pure core <- updater, handler, transport, server, fleet, control <- the
faces (HTTP: web, api, metrics) <- options, app, cli and the testing package.

The core (registers, processes, meters) runs without pyModbusTCP, docopt, sockets,
threads or a clock: a fresh interpreter imports it and looks at sys.modules, and a
source scan checks every module's imports against its layer.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import meter_simulator
from support import ROOT, run_python

PACKAGE = Path(meter_simulator.__file__).resolve().parent
CORE = {"registers", "processes", "meters", "image", "solar", "demand", "points", "quantities",
        "codec", "mapfile", "profiles", "pins", "readings", "faults", "checks"}
OUTER = {"options", "cli", "service", "app", "__main__"}  # argv, exit codes, the process's life
TESTING = PACKAGE / "testing"  # the Python API: a composition root like cli, without its process-wide calls
# what the core must not need: the Modbus server, the command line, the network, threads, a clock
NOT_IN_CORE = {"pyModbusTCP", "docopt", "socket", "socketserver", "selectors", "ssl", "threading",
               "signal", "subprocess", "time", "datetime", "logging"}

PROBE = """
import json, sys
before = set(sys.modules)
import meter_simulator.registers, meter_simulator.processes, meter_simulator.meters
import meter_simulator.image, meter_simulator.profiles, meter_simulator.codec
print(json.dumps({"loaded": sorted(sys.modules), "new": sorted(set(sys.modules) - before)}))
"""


def modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(PACKAGE.glob("*.py"))}


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(top-level absolute modules, sibling modules of the package) a source file imports."""
    absolute, siblings = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            absolute.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                root = node.module.split(".")[0]
                if root == "meter_simulator":
                    parts = node.module.split(".")
                    siblings.update([parts[1]] if len(parts) > 1 else (a.name for a in node.names))
                else:
                    absolute.add(root)
            elif node.module:
                siblings.add(node.module.split(".")[0])
            else:
                siblings.update(alias.name for alias in node.names)
    return absolute - {"__future__"}, siblings - {"__version__"}


def test_importing_the_core_loads_no_server_cli_or_network():
    result = run_python(PROBE)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    loaded = set(probe["loaded"])
    assert not {"pyModbusTCP", "docopt"} & loaded
    assert not {m for m in loaded if m.startswith(("pyModbusTCP.", "docopt."))}
    # the interpreter itself may start with some of these; the core must not bring any in
    assert not NOT_IN_CORE & set(probe["new"]), probe["new"]
    assert not {"socket", "socketserver", "selectors"} & loaded
    assert {"meter_simulator.registers", "meter_simulator.processes",
            "meter_simulator.meters"} <= loaded


def test_the_layers_are_known():
    assert CORE <= set(modules())
    assert {"options", "cli"} <= set(modules())


@pytest.mark.parametrize("name", sorted(CORE))
def test_core_imports_only_core_and_no_clock_threads_or_sockets(name):
    absolute, siblings = imports_of(modules()[name])
    assert siblings <= CORE, f"{name} imports {siblings - CORE}"
    assert not absolute & NOT_IN_CORE, f"{name} imports {absolute & NOT_IN_CORE}"


@pytest.mark.parametrize("name", sorted(CORE))
def test_core_uses_only_the_injected_rng(name):
    # random.Random as a type is fine; random.random(), random.gauss() etc. would be the
    # process-wide generator, which --seed cannot make reproducible
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    calls = {node.attr for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
             and node.value.id == "random"}
    assert calls <= {"Random"}, f"{name} uses random.{calls - {'Random'}}"


@pytest.mark.parametrize("name", sorted(set(modules()) - CORE - OUTER - {"__init__"}))
def test_middle_layer_never_imports_the_command_line(name):
    absolute, siblings = imports_of(modules()[name])
    assert not siblings & OUTER, f"{name} imports {siblings & OUTER}"
    assert "docopt" not in absolute


# calls that change the whole process: a user's test suite that imports the meters keeps its own
PROCESS_WIDE = {("sys", "setswitchinterval"), ("signal", "signal"), ("logging", "basicConfig"),
                ("resource", "setrlimit"), ("os", "umask"), ("os", "chdir")}


@pytest.mark.parametrize("name", sorted(set(modules()) - {"cli"})
                         + sorted(f"testing/{path.name}" for path in TESTING.glob("*.py")))
def test_only_the_program_changes_process_wide_state(name):
    path = PACKAGE / name if name.startswith("testing/") else modules()[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = {(node.value.id, node.attr) for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)}
    assert not calls & PROCESS_WIDE, f"{name} calls {calls & PROCESS_WIDE}"


def test_the_faces_come_in_only_with_the_control_port():
    """prometheus_client (and through it OpenSSL) and the HTTP server load only with --http."""
    probe = ("import sys, meter_simulator.cli, meter_simulator.testing; "
             "print(sorted({'prometheus_client', 'http.server', 'meter_simulator.web', "
             "'meter_simulator.testing.simulator'} & set(sys.modules)))")
    result = run_python(probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_program_loads_no_crypto_library():
    """secrets and hashlib load OpenSSL: 4 MB of RSS in every meter process, for nothing."""
    probe = ("import sys, meter_simulator.cli; "
             "print(sorted({'_hashlib', '_ssl', 'secrets'} & set(sys.modules)))")
    result = run_python(probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_package_init_imports_nothing():
    absolute, siblings = imports_of(modules()["__init__"])
    assert not absolute and not siblings


# the checkout's scripts: under tox the package comes from site-packages, the scripts do not
COMMAND_LINES = sorted([*PACKAGE.glob("*.py"), *(ROOT / "scripts").rglob("*.py")])


@pytest.mark.parametrize("path", COMMAND_LINES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_command_lines_are_parsed_by_docopt_never_argparse(path):
    absolute, _ = imports_of(path)
    assert "argparse" not in absolute, f"{path.name}: use a docopt usage text"
