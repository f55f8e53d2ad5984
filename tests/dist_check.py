"""Check built distributions: each installs into a fresh venv, and the installed program serves.

Usage: python tests/dist_check.py DIST_DIR

DIST_DIR holds what `python -m build` made: one wheel and one sdist. For each, a new
virtual environment installs it (and its dependencies) from nothing, `meter-simulator
--version` names the version, and `meter-simulator --type gas` started on a free
loopback port answers a Modbus read of registers 100-101 (online, gas) through the
installed pyModbusTCP, then stops on SIGTERM with status 0. In the wheel's venv, pytest
is installed next and a user's test file that uses only the documented fixtures
(meter_simulator, meter_simulator_factory) passes: installing the package is all a
test suite needs. Run by `tox -e dist`.
Exits 0 when every check passes, 1 with one line per failure otherwise.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from meter_simulator import __version__  # noqa: E402 (the checkout's version, not an installed one)

NAME = f"meter_simulator-{__version__}"
IN_SDIST = ["LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "setup.cfg",
            "meter_simulator/__init__.py", "scripts/run_meter.py",
            "scripts/systemd/meter-simulator@.service", "docs", "tests/support.py"]
IN_WHEEL = ["meter_simulator/__init__.py", "meter_simulator/app/main.py",
            "meter_simulator/maps/builtin/seed.toml", "meter_simulator/maps/builtin/sdm630.toml",
            "meter_simulator/http/static/index.html", "meter_simulator/http/static/dashboard.js",
            f"{NAME}.dist-info/licenses/LICENSE", f"{NAME}.dist-info/entry_points.txt"]
READ = """
import sys
from pyModbusTCP.client import ModbusClient
client = ModbusClient(host="127.0.0.1", port=int(sys.argv[1]), timeout=5)
print(client.read_holding_registers(100, 2))
"""
USER_SUITE = """
from pyModbusTCP.client import ModbusClient


def test_a_meter_answers(meter_simulator):
    client = ModbusClient(host="127.0.0.1", port=meter_simulator.port, timeout=5)
    assert client.read_holding_registers(100, 2) == [1, 0]


def test_a_busy_water_meter(meter_simulator_factory):
    simulator = meter_simulator_factory(type="water", seed=1, interval=3600)
    client = ModbusClient(host="127.0.0.1", port=simulator.port, timeout=5)
    with simulator.fault("exception", code=6, count=1):
        assert client.read_holding_registers(0, 2) is None
        assert client.last_except == 6
    simulator.set(flow=12.5)
    assert client.read_holding_registers(20, 1) == [125]
"""
DEADLINE_S = 30.0


def free_port() -> int:
    """A port below the ephemeral range that nothing listens on now."""
    for port in range(21000 + (time.monotonic_ns() // 1000) % 5000, 32000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 21000 and 32000")


def check_contents(wheel: Path, sdist: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"{NAME}.dist-info/METADATA").decode()
    failures = [f"{wheel.name} lacks {name}" for name in IN_WHEEL if name not in names]
    failures += [f"{wheel.name} carries {name}" for name in names if name.startswith("tests/")]
    if "License: MIT" not in metadata and "License-Expression: MIT" not in metadata:
        failures.append(f"{wheel.name}: the metadata names no MIT license")
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    failures += [f"{sdist.name} lacks {name}" for name in IN_SDIST if name not in members]
    return failures


def check_install(artifact: Path, work: Path) -> list[str]:
    """Install artifact into a new venv under work, then run and read the installed program."""
    env_dir = work / artifact.name.replace(".", "-")
    venv.create(env_dir, with_pip=True)
    python, program = env_dir / "bin" / "python", env_dir / "bin" / "meter-simulator"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", str(artifact)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        return [f"{artifact.name}: pip install failed: {done.stderr.strip().splitlines()[-1:]}"]
    done = subprocess.run([str(program), "--version"], capture_output=True, text=True,
                          timeout=DEADLINE_S, stdin=subprocess.DEVNULL)
    if done.stdout.strip() != f"meter-simulator {__version__}":
        return [f"{artifact.name}: --version printed {done.stdout.strip()!r} {done.stderr.strip()!r}"]
    port = free_port()
    meter = subprocess.Popen([str(program), "--type", "gas", "--port", str(port), "--interval", "3600"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL, cwd=work)
    try:
        registers, deadline = None, time.monotonic() + DEADLINE_S
        while registers != "[1, 2]" and meter.poll() is None and time.monotonic() < deadline:
            read = subprocess.run([str(python), "-c", READ, str(port)], capture_output=True,
                                  text=True, timeout=DEADLINE_S, stdin=subprocess.DEVNULL)
            registers = read.stdout.strip()
        meter.send_signal(signal.SIGTERM)
        _, err = meter.communicate(timeout=DEADLINE_S)
    finally:
        if meter.poll() is None:
            meter.kill()
            meter.communicate()
    failures = []
    if registers != "[1, 2]":
        failures.append(f"{artifact.name}: registers 100-101 read {registers!r}, not [1, 2]")
    if meter.returncode != 0 or f"gas meter serving Modbus/TCP on 127.0.0.1:{port}" not in err:
        failures.append(f"{artifact.name}: status {meter.returncode}, stderr {err.strip()!r}")
    return failures


def check_user_suite(wheel: Path, work: Path) -> list[str]:
    """In the wheel's venv: pytest installed, a user's test file using the fixtures passes."""
    env_dir = work / wheel.name.replace(".", "-")
    python = env_dir / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "pytest"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        return [f"{wheel.name}: pip install pytest failed: {done.stderr.strip().splitlines()[-1:]}"]
    suite = work / "user-suite"
    suite.mkdir()
    (suite / "test_with_meters.py").write_text(USER_SUITE, encoding="utf-8")
    done = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_with_meters.py"], capture_output=True, text=True, cwd=suite,
                          timeout=120, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        return [f"{wheel.name}: a user's test file with the fixtures failed: "
                f"{done.stdout.strip().splitlines()[-3:]}"]
    return []


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    dist = Path(argv[0])
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if [w.name for w in wheels] != [f"{NAME}-py3-none-any.whl"] or \
            [s.name for s in sdists] != [f"{NAME}.tar.gz"]:
        print(f"dist_check: expected {NAME}-py3-none-any.whl and {NAME}.tar.gz in {dist}, "
              f"found {[p.name for p in wheels + sdists]}", file=sys.stderr)
        return 1
    failures = check_contents(wheels[0], sdists[0])
    with tempfile.TemporaryDirectory(prefix="dist-check-") as work:
        for artifact in (wheels[0], sdists[0]):
            failures += check_install(artifact, Path(work))
        if not failures:
            failures += check_user_suite(wheels[0], Path(work))
    for failure in failures:
        print(f"dist_check: {failure}", file=sys.stderr)
    if not failures:
        print(f"dist_check: {wheels[0].name} and {sdists[0].name} install, run and serve; "
              "a user's test file with the fixtures passes")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
