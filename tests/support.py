"""Test helpers: a fake clock, free ports, the real program in a subprocess, client compatibility,
the seed map's words as a client decodes them."""
from __future__ import annotations

import inspect
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
RUN_METER = ROOT / "scripts" / "run_meter.py"
SCRIPT_COMMAND = (sys.executable, str(RUN_METER))  # how MeterProcess starts the program by default


class FakeClock:
    """A monotonic clock the test moves by hand: clock.now += 10."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_for(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02):
    """Poll condition until it is truthy and return its value; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def free_ports(count: int = 1, host: str = "127.0.0.1", attempts: int = 100) -> int:
    """The first of count consecutive TCP ports that nobody held a moment ago (the program
    refuses port 0). Drawn below Linux's ephemeral range (32768 up), where the test's own
    client connections take local ports at random and could take one before the program binds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    rng = random.Random()
    for _ in range(attempts):
        first = rng.randrange(20000, 32768 - count)
        held = []
        try:
            for port in range(first, first + count):
                sock = socket.socket(family, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind((host, port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise AssertionError(f"no {count} consecutive free ports on {host}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody holds right now, for the program."""
    return free_ports(1, host)


BIND_ATTEMPTS = 5


def lost_a_port_race(stderr: str) -> bool:
    """True when the program could not bind a port that was free when the test drew it: another
    process (a test suite running beside this one) took it in between."""
    return "Address already in use" in stderr


def meter_count(args) -> int:
    """How many consecutive ports a command line's meters take (its --count, else 1)."""
    args = list(args)
    for index, arg in enumerate(args):
        if arg == "--count" and index + 1 < len(args):
            return int(args[index + 1])
        if arg.startswith("--count="):
            return int(arg.split("=", 1)[1])
    return 1


def accepts(host: str, port: int) -> bool:
    """True when a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


class MeterProcess:
    """The real program (scripts/run_meter.py) in a subprocess, stopped with SIGTERM."""

    def __init__(self, *args: str, host: str = "127.0.0.1", port: int | None = None,
                 env: dict | None = None, cwd: str | os.PathLike | None = None,
                 command: tuple[str, ...] = SCRIPT_COMMAND) -> None:
        self.command = list(command)  # the program without options: the script, console script or -m
        self.host = host
        self.options = list(args)
        self.choose_port = port is None  # free ports drawn here may be taken before the program binds
        self.port = port if port is not None else free_ports(meter_count(args), host)
        self.env = dict(os.environ, **(env or {}))
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    @property
    def args(self) -> list[str]:
        return ["--address", self.host, "--port", str(self.port), *self.options]

    def start(self, wait: bool = True) -> MeterProcess:
        for _ in range(BIND_ATTEMPTS):
            self.proc = subprocess.Popen([*self.command, *self.args], env=self.env,
                                         cwd=self.cwd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if not wait:
                return self
            wait_for(lambda: self.proc.poll() is not None or self.serving(), 20)
            if self.proc.poll() is None:
                return self
            out, err = self.proc.communicate()
            if not (self.choose_port and lost_a_port_race(err)):
                raise AssertionError(f"program exited {self.proc.returncode}: {err}")
            self.port = free_ports(meter_count(self.options), self.host)
        raise AssertionError(f"program exited {self.proc.returncode}: {err}")

    def serving(self) -> bool:
        """True when every port of the program accepts: a fleet that loses its k-th port to
        another process has bound and serves the ones before it until it exits."""
        return all(accepts(self.host, port)
                   for port in range(self.port, self.port + meter_count(self.options)))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str, str]:
        """Send sig and return (exit status, stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def __enter__(self) -> MeterProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def run_program(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Run the program to completion (bad options, --help) and capture its output."""
    return subprocess.run([sys.executable, str(RUN_METER), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def run_python(code: str, cwd: Path | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter of this Python (nothing imported yet); output captured."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, stdin=subprocess.DEVNULL)


def connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    """A raw TCP connection to the simulator (a socket is its own context manager)."""
    return socket.create_connection((host, port), timeout=10)


@contextmanager
def pymodbus_client(port: int, host: str = "127.0.0.1"):
    """A connected pymodbus 3.x TCP client, closed after."""
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient(host, port=port, timeout=5)
    try:
        assert client.connect(), f"cannot connect to {host}:{port}"
        yield client
    finally:
        client.close()


def unit_kw(method: Callable, unit_id: int = 1) -> dict:
    """pymodbus's unit id keyword: device_id= from 3.10 on, slave= before (Python 3.9 gets 3.8)."""
    params = inspect.signature(method).parameters
    return {"device_id": unit_id} if "device_id" in params else {"slave": unit_id}


def u32(words) -> int:
    """A 32-bit value from two registers, low word first."""
    return (words[1] << 16) | words[0]


# the seed map as the contract gives it: registers 0-1 the total x100 (low word first), 101 the type
TOTAL_SCALE = 100
METER_TYPE_CODES = {"electric": 0, "water": 1, "gas": 2}


def total_counts(total: float) -> int:
    """What registers 0-1 hold for a total (kWh or m3) before the roll-over: round(total x 100)."""
    return int(round(total * TOTAL_SCALE))


def words_u32(low: int, high: int) -> int:
    """A 32-bit value from its low and high word (the seed map's order)."""
    return u32((low, high))


class _SeedShown:
    """What the seed map shows of a device besides its readings (the codec's m)."""

    unit_id, serial_number, stored, demand_period, demand_time = 1, 0, {}, 0, 0

    def __init__(self, online: bool) -> None:
        self.online = int(online)


def seed_image(reading, meter_type: str, online: bool = True) -> list[int]:
    """Registers 0-101 one reading encodes to through the program's seed map, as 16-bit words."""
    from meter_simulator.maps import profiles

    counters = {"energy_import": reading.total, "volume_total": reading.total}
    encoded = profiles.compiled(profiles.seed(), meter_type).encode(reading, counters, {}, _SeedShown(online))
    data = encoded.holding[0][2]
    return list(struct.unpack(f">{len(data) // 2}H", data))


def console_script(name: str = "meter-simulator") -> str | None:
    """The installed console script: beside sys.executable (a venv, tox), else on PATH."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else shutil.which(name)


def require_mbpoll() -> str:
    """mbpoll's path; the test skips without it, except in CI (CI set), where it fails."""
    path = shutil.which("mbpoll")
    if path is None:
        import pytest

        reason = "mbpoll is not installed (Debian: apt-get install mbpoll)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must have it")
        pytest.skip(reason)
    return path


def run_mbpoll(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """mbpoll with args, to completion, output captured."""
    return subprocess.run([require_mbpoll(), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# mbpoll shows a 16-bit value of 32768 or more with its signed reading after it: "47047 (-18489)"
MBPOLL_VALUE = re.compile(r"^\[(\d+)\]:\s+(-?\d+)(?:\s+\(-?\d+\))?\s*$", re.MULTILINE)


def mbpoll_values(stdout: str) -> dict[int, int]:
    """{reference: value} from mbpoll's listing; 16-bit values as unsigned whatever mbpoll shows."""
    return {int(ref): int(value) & 0xFFFF for ref, value in MBPOLL_VALUE.findall(stdout)}


def modbus_exchange(sock: socket.socket, pdu: bytes, transaction_id: int = 1,
                    unit_id: int = 1) -> tuple[int, int, int, bytes]:
    """Send one Modbus/TCP request; (transaction id, protocol id, unit id, response PDU)."""
    sock.sendall(struct.pack(">HHHB", transaction_id, 0, len(pdu) + 1, unit_id) + pdu)
    header = recv_exactly(sock, 7)
    tid, pid, length, uid = struct.unpack(">HHHB", header)
    return tid, pid, uid, recv_exactly(sock, length - 1)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """size bytes from sock; ConnectionError when the peer closes first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """True when nobody holds host:port right now."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True when the server has closed this connection (EOF or reset) within the deadline."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1024) == b""
    except ConnectionError:
        return True
    except socket.timeout:
        return False


def scrape(http_url: str) -> dict:
    """GET /metrics of a control port, as Prometheus' own parser reads it: families by name."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(http_url + "metrics", timeout=10) as answer:
        text = answer.read().decode("utf-8")
    return {family.name: family for family in text_string_to_metric_families(text)}


def rtu_frames(families: dict, face: str, result: str) -> float | None:
    """meter_simulator_rtu_frames_total{face, result}; None when the series is not exported."""
    family = families.get("meter_simulator_rtu_frames")
    for sample in family.samples if family is not None else ():
        if sample.labels == {"face": face, "result": result}:
            return sample.value
    return None


@contextmanager
def opened(path: str):
    """A serial line's client side (a pty) opened as a shell redirection would: no termios of its
    own."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        yield fd
    finally:
        os.close(fd)


def read_exactly(fd: int, size: int, timeout: float = 5.0) -> bytes:
    """size bytes from a file descriptor (a pty), within timeout."""
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < size:
        left = deadline - time.monotonic()
        assert left > 0, f"got {data.hex()} of {size} bytes"
        if select.select([fd], [], [], left)[0]:
            data += os.read(fd, size - len(data))
    return data
