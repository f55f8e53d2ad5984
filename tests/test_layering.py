"""Imports point one way, package by package: model <- maps <- device <- modbus <- http, ops <- app
<- testing, with net beside them serving modbus and http, and checks and ratelimit at the bottom.

The core (model and maps) runs without pyModbusTCP, docopt, sockets, threads or a
clock: a fresh interpreter imports it and looks at sys.modules, and a source scan
checks every module's imports against its package's place.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import meter_simulator
from support import ROOT, run_python

PACKAGE = Path(meter_simulator.__file__).resolve().parent
BASE = {"checks", "ratelimit"}  # top-level modules every layer may use (stdlib only)
ENTRY = {"__init__", "__main__"}
# package -> the packages it may import (besides itself and BASE)
MAY_IMPORT = {
    "model": set(),
    "maps": {"model"},
    "device": {"model", "maps"},
    "net": set(),
    "modbus": {"model", "maps", "device", "net"},
    "http": {"model", "maps", "device", "net", "modbus"},
    "ops": {"model", "maps", "device", "net", "modbus"},
    "app": {"model", "maps", "device", "net", "modbus", "http", "ops"},
    "testing": {"app"},
}
CORE = {"model", "maps"}
PURE = {"device/faults.py", "modbus/pdu.py"}  # pure modules above the core
OUTER = {"app", "testing"}  # argv, exit codes, the process's life
# what the core must not need: the Modbus server, the command line, the network, threads, a clock
NOT_IN_CORE = {"pyModbusTCP", "docopt", "socket", "socketserver", "selectors", "ssl", "threading",
               "signal", "subprocess", "time", "datetime", "logging"}

ENGINE_PROBE = """
import json, sys
before = set(sys.modules)
import numpy
numpy_brings = set(sys.modules) - before
import meter_simulator.model.engine
print(json.dumps(sorted(set(sys.modules) - before - numpy_brings)))
"""

PROBE = """
import json, sys
before = set(sys.modules)
import meter_simulator.model.meters, meter_simulator.model.processes, meter_simulator.maps.seed
import meter_simulator.maps.image, meter_simulator.maps.profiles, meter_simulator.maps.codec
import meter_simulator.maps.readings
print(json.dumps({"loaded": sorted(sys.modules), "new": sorted(set(sys.modules) - before)}))
"""


def sources(package: str) -> list[Path]:
    return sorted((PACKAGE / package).glob("*.py"))


def module_id(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


ALL_MODULES = sorted(module_id(path) for path in PACKAGE.rglob("*.py"))


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(top-level absolute modules, first names inside meter_simulator) a source file imports:
    a subpackage (model, maps, ...), a top-level module (checks) or a name of __init__."""
    absolute, inside = set(), set()
    package = path.relative_to(PACKAGE).parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                (inside.add(parts[1]) if parts[0] == "meter_simulator" and len(parts) > 1
                 else absolute.add(parts[0]))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = node.module.split(".")
                if parts[0] != "meter_simulator":
                    absolute.add(parts[0])
                    continue
                resolved = parts[1:]
            else:
                base = list(package[:len(package) - (node.level - 1)])
                resolved = base + (node.module.split(".") if node.module else [])
            if resolved:
                inside.add(resolved[0])
            else:
                inside.update(alias.name for alias in node.names)
    return absolute - {"__future__"}, inside - {"__version__"}


def test_the_layers_are_packages():
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert packages == set(MAY_IMPORT)
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top == BASE | ENTRY and len(top) <= 6


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_package_says_what_it_holds_and_may_import(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8")))
    assert doc and "import" in doc.lower(), f"{package}/__init__.py: what it holds and what it may import"


@pytest.mark.parametrize("path", [p for package in MAY_IMPORT for p in sources(package)], ids=module_id)
def test_imports_point_one_way(path):
    package = path.relative_to(PACKAGE).parts[0]
    _, inside = imports_of(path)
    allowed = MAY_IMPORT[package] | {package} | BASE
    assert inside <= allowed, f"{module_id(path)} imports {sorted(inside - allowed)}"


@pytest.mark.parametrize("name", sorted(BASE))
def test_the_base_modules_import_nothing_of_the_package(name):
    absolute, inside = imports_of(PACKAGE / f"{name}.py")
    assert not inside and not absolute & {"pyModbusTCP", "docopt"}


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
    assert {"meter_simulator.maps.seed", "meter_simulator.model.processes",
            "meter_simulator.model.meters"} <= loaded


CORE_MODULES = [p for package in sorted(CORE) for p in sources(package)] + [PACKAGE / m for m in sorted(PURE)]


@pytest.mark.parametrize("path", CORE_MODULES, ids=module_id)
def test_core_needs_no_clock_threads_or_sockets(path):
    absolute, _ = imports_of(path)
    if module_id(path) == "modbus/pdu.py":  # the function codes' names, nothing of the server
        absolute -= {"pyModbusTCP"}
    assert not absolute & NOT_IN_CORE, f"{module_id(path)} imports {absolute & NOT_IN_CORE}"


def test_the_fleet_engine_loads_numpy_and_nothing_of_a_server_cli_or_network():
    result = run_python(ENGINE_PROBE)
    assert result.returncode == 0, result.stderr
    new = set(json.loads(result.stdout))
    assert "meter_simulator.model.engine" in new
    assert not NOT_IN_CORE & new and not {m for m in new if m.startswith(("pyModbusTCP", "docopt"))}


@pytest.mark.parametrize("path", CORE_MODULES, ids=module_id)
def test_core_uses_only_the_injected_rng(path):
    # random.Random as a type is fine; random.random(), random.gauss() etc. would be the
    # process-wide generator, which --seed cannot make reproducible
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = {node.attr for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
             and node.value.id == "random"}
    assert calls <= {"Random"}, f"{module_id(path)} uses random.{calls - {'Random'}}"


@pytest.mark.parametrize("path", [p for package in sorted(set(MAY_IMPORT) - OUTER) for p in sources(package)],
                         ids=module_id)
def test_below_the_program_nothing_knows_the_command_line(path):
    absolute, inside = imports_of(path)
    assert not inside & OUTER and "docopt" not in absolute


# calls that change the whole process: a user's test suite that imports the meters keeps its own
PROCESS_WIDE = {("sys", "setswitchinterval"), ("signal", "signal"), ("logging", "basicConfig"),
                ("resource", "setrlimit"), ("os", "umask"), ("os", "chdir")}


@pytest.mark.parametrize("name", [m for m in ALL_MODULES if m != "app/main.py"])
def test_only_the_program_changes_process_wide_state(name):
    tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
    calls = {(node.value.id, node.attr) for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)}
    assert not calls & PROCESS_WIDE, f"{name} calls {calls & PROCESS_WIDE}"


def test_the_faces_come_in_only_with_the_control_port():
    """prometheus_client (and through it OpenSSL) and the HTTP server load only with --http."""
    probe = ("import sys, meter_simulator.app.main, meter_simulator.testing; "
             "print(sorted({'prometheus_client', 'http.server', 'meter_simulator.http.web', "
             "'meter_simulator.testing.simulator'} & set(sys.modules)))")
    result = run_python(probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_program_loads_no_crypto_library():
    """secrets and hashlib load OpenSSL: 4 MB of RSS in every meter process, for nothing."""
    probe = ("import sys, meter_simulator.app.main; "
             "print(sorted({'_hashlib', '_ssl', 'secrets'} & set(sys.modules)))")
    result = run_python(probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_package_init_imports_nothing():
    absolute, inside = imports_of(PACKAGE / "__init__.py")
    assert not absolute and not inside


# the checkout's scripts: under tox the package comes from site-packages, the scripts do not
COMMAND_LINES = sorted([*PACKAGE.rglob("*.py"), *(ROOT / "scripts").rglob("*.py")])


@pytest.mark.parametrize("path", COMMAND_LINES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_command_lines_are_parsed_by_docopt_never_argparse(path):
    absolute, _ = imports_of(path) if path.is_relative_to(PACKAGE) else (imports_of_script(path), None)
    assert "argparse" not in absolute, f"{path.name}: use a docopt usage text"


def imports_of_script(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_allocator_is_tuned_by_the_program_alone():
    # mallopt is process-wide and cannot be undone: main() calls it only when run as the program
    sources_calling = [module_id(path) for path in PACKAGE.rglob("*.py")
                       if "tune_allocator(" in path.read_text(encoding="utf-8")]
    assert sources_calling == ["app/main.py"]
    text = (PACKAGE / "app" / "main.py").read_text(encoding="utf-8")
    assert "    if argv is None:\n        tune_allocator()" in text
