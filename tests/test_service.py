"""The program as a service, with real processes: readiness, watchdog, persistence, the unit files."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyModbusTCP.client import ModbusClient
from test_notify import NotifySocket

from meter_simulator.maps import seed as registers
from meter_simulator.modbus import rtu
from meter_simulator.ops import state
from support import (
    BIND_ATTEMPTS,
    ROOT,
    SCRIPT_COMMAND,
    accepts,
    console_script,
    free_port,
    free_ports,
    lost_a_port_race,
    meter_count,
    run_program,
    u32,
    wait_for,
)

SYSTEMD = ROOT / "scripts" / "systemd"
UNIT = SYSTEMD / "meter-simulator@.service"
ENV_FILE = SYSTEMD / "water-5021.env"
START_S = 20.0  # generous: a loaded 2-core machine starts Python slowly
STOP_S = 10.0
MAX_POWER_W = 3 * 253.0 * 63.0  # every phase at its band's top


class Program:
    """The real program in a subprocess, its log in a file that a test can read while it runs."""

    def __init__(self, tmp_path: Path, *args: str, port: int | None = None, env: dict | None = None,
                 prefix: tuple[str, ...] = (), command: tuple[str, ...] = SCRIPT_COMMAND) -> None:
        self.tmp_path = tmp_path
        self.options = list(args)
        self.program = [*prefix, *command]
        self.choose_port = port is None  # free ports drawn here may be taken before the program binds
        self.port = port if port is not None else free_ports(meter_count(args))
        environ = {k: v for k, v in os.environ.items()
                   if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")}
        self.env = dict(environ, **(env or {}))
        self.proc: subprocess.Popen | None = None
        self.whole_command: list[str] | None = None  # a test's own command line, used as it is

    @property
    def command(self) -> list[str]:
        if self.whole_command is not None:
            return self.whole_command
        return [*self.program, "--port", str(self.port), *self.options]

    def start(self) -> Program:
        self.log_path = self.tmp_path / f"log-{self.port}-{time.monotonic_ns()}.txt"
        with open(self.log_path, "w") as log_file:
            self.proc = subprocess.Popen(self.command, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log_file)
        return self

    def wait_serving(self) -> Program:
        for _ in range(BIND_ATTEMPTS):
            wait_for(lambda: self.proc.poll() is not None or accepts("127.0.0.1", self.port),
                     START_S)
            if self.proc.poll() is None or not (self.choose_port and lost_a_port_race(self.log())):
                break
            self.port = free_ports(meter_count(self.options))
            self.start()
        assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.log()}"
        return self

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(STOP_S)

    def __enter__(self) -> Program:
        return self  # started by start(): `with Program(...).start() as program`

    def __exit__(self, *exc_info) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def read_total(port: int, unit_id: int = 1) -> int:
    """Registers 0-1 (the total, x100) through pyModbusTCP's client."""
    client = ModbusClient("127.0.0.1", port, unit_id=unit_id, timeout=5, auto_open=True)
    try:
        words = client.read_holding_registers(0, 2)
        assert words is not None, f"read failed: {client.last_error_as_txt} {client.last_except_as_txt}"
        return u32(words)
    finally:
        client.close()


def saved(path: Path, meter_type: str = "electric") -> dict[str, float]:
    """Each meter's total (registers 0-1) in the state file, by key (the file keeps every
    counter since version 2)."""
    name = state.TOTAL_COUNTERS[meter_type]
    return {key: values.get(name, 0.0) for key, values in (state.load(str(path), meter_type) or {}).items()}


@pytest.fixture
def notify_socket():
    listener = NotifySocket()
    yield listener
    listener.close()


def wait_message(listener: NotifySocket, proc: subprocess.Popen, key: str) -> list[str]:
    """Datagrams until one has a key= line; every datagram's lines, in order."""
    messages = []
    deadline = time.monotonic() + START_S
    while not any(line.startswith(key + "=") for lines in messages for line in lines):
        assert time.monotonic() < deadline, f"no {key}= within {START_S} s: {messages}"
        assert proc.poll() is None or listener.pending(), f"exited {proc.returncode}: {messages}"
        try:
            messages.append(listener.receive(timeout=0.5))
        except OSError:  # socket.timeout: look at the process again
            pass
    return messages


# --- readiness, status, watchdog, stopping on a real notification socket ---

def test_ready_comes_once_every_port_accepts_then_watchdog_and_stopping(tmp_path, notify_socket):
    first = free_ports(3)
    ports = list(range(first, first + 3))
    program = Program(tmp_path, "--count", "3", "--state-file", str(tmp_path / "totals.json"),
                      port=ports[0],
                      env={"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "1000000"})
    with program.start():
        messages = wait_message(notify_socket, program.proc, "READY")
        # the moment READY=1 arrives, every port serves, and the state file exists
        assert all(accepts("127.0.0.1", port) for port in ports)
        assert set(saved(tmp_path / "totals.json")) == {str(port) for port in ports}
        ready = messages[-1]
        assert "READY=1" in ready
        assert f"STATUS=3 electric meters serving Modbus/TCP on 127.0.0.1:{ports[0]}-{ports[2]}" in ready
        wait_message(notify_socket, program.proc, "WATCHDOG")  # every 0.5 s: half of WATCHDOG_USEC
        wait_message(notify_socket, program.proc, "WATCHDOG")
        program.proc.send_signal(signal.SIGTERM)
        assert any("STOPPING=1" in lines for lines in wait_message(notify_socket, program.proc, "STOPPING"))
        assert program.stop() == 0, program.log()


def test_no_watchdog_pings_unless_systemd_asks(tmp_path, notify_socket):
    program = Program(tmp_path, "--interval", "0.05", env={"NOTIFY_SOCKET": notify_socket.name})
    with program.start():
        wait_message(notify_socket, program.proc, "READY")
        read_total(program.port)
        program.proc.send_signal(signal.SIGTERM)
        messages = wait_message(notify_socket, program.proc, "STOPPING")
        assert program.stop() == 0
    assert not any("WATCHDOG=1" in lines for lines in messages)


def rtu_exchange(sock: socket.socket, frame: bytes, answer_bytes: int) -> bytes:
    """Send an RTU frame over TCP and read an answer of answer_bytes (none for a broadcast)."""
    sock.sendall(frame)
    answer = b""
    while len(answer) < answer_bytes:
        chunk = sock.recv(answer_bytes - len(answer))
        assert chunk, "the connection closed"
        answer += chunk
    return answer


@pytest.mark.slow
def test_ticks_that_overrun_the_interval_are_logged_and_shown_in_the_status(tmp_path, notify_socket):
    """2,470 meters with panels that each step on their own cannot tick every 0.05 s (a broadcast
    reset on each port takes every meter out of the fleet's arrays, which would keep up; they
    take about 0.19 s a tick): a warning naming the tick time and the interval, and STATUS= says
    so, while the program keeps serving."""
    first = free_ports(10)
    program = Program(tmp_path, "--count", "10", "--unit-ids", "1-247", "--interval", "0.05",
                      "--pv-kwp", "10", "--framing", "rtu", port=first,
                      env={"NOTIFY_SOCKET": notify_socket.name})
    reset = rtu.framed(0, bytes((0x05, 0x00, registers.COIL_RESET, 0xFF, 0x00)))  # unit id 0: all
    read = rtu.framed(247, bytes((0x03, 0x00, 0x00, 0x00, 0x02)))
    with program.start():
        wait_message(notify_socket, program.proc, "READY")
        for port in range(first, first + 10):
            with socket.create_connection(("127.0.0.1", port), timeout=START_S) as sock:
                rtu_exchange(sock, reset, 0)
                assert len(rtu_exchange(sock, read, 9)) == 9  # after the broadcast, in order
        messages = []
        while not any("ticks overrun" in line for lines in messages for line in lines):
            messages += wait_message(notify_socket, program.proc, "STATUS")
        status = next(line for lines in messages for line in lines if "ticks overrun" in line)
        assert re.search(r"ticks overrun: \d+\.\d{3} s a tick for an interval of 0.05 s", status), status
        wait_for(lambda: "longer than the interval" in program.log(), START_S)
        with socket.create_connection(("127.0.0.1", first + 9), timeout=START_S) as sock:
            answer = rtu_exchange(sock, read, 9)  # still serving
        assert answer[:3] == bytes((247, 0x03, 4)) and rtu.crc16(answer) == 0
        assert program.stop() == 0, program.log()
    warning = next(line for line in program.log().splitlines() if "longer than the interval" in line)
    assert re.search(r" WARNING a tick of 2470 meters took \d+\.\d{3} s, longer than the interval of "
                     r"0\.05 s: the schedule skips ticks \(\d+ so far\); a longer --interval or fewer "
                     r"meters keep up$", warning), warning


def test_no_ready_when_the_port_cannot_be_bound(tmp_path, notify_socket):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        program = Program(tmp_path, port=port, env={"NOTIFY_SOCKET": notify_socket.name})
        with program.start():
            assert program.proc.wait(START_S) == 1
    assert program.log() == f"meter-simulator: cannot serve on 127.0.0.1:{port}: Address already in use\n"
    assert not notify_socket.pending()


# --- totals across restarts ---

@pytest.mark.slow
def test_sigterm_then_restart_resumes_exactly_from_the_last_tick(tmp_path):
    path = tmp_path / "totals.json"
    # one tick every 5 s, each a few simulated hours: the read below and the SIGTERM
    # land between two ticks, so the total read is the last tick's
    options = ("--state-file", str(path), "--seed", "3", "--speed", "5000")
    with Program(tmp_path, *options, "--interval", "5").start().wait_serving() as first:
        wait_for(lambda: read_total(first.port) > 0, START_S)
        last_read = read_total(first.port)
        assert first.stop() == 0, first.log()
    total = saved(path)[str(first.port)]
    assert round(total * 100) == last_read
    # restarted with no tick to come during the test: it shows exactly the saved total
    with Program(tmp_path, *options, "--interval", "3600", port=first.port).start().wait_serving() as second:
        assert read_total(second.port) == last_read
        assert second.stop() == 0, second.log()
    assert saved(path)[str(first.port)] == total  # bit for bit: nothing lost, nothing added


def test_sighup_stops_the_program_and_saves_its_file(tmp_path, notify_socket):
    """The fast case: a total resumed from the file, which is removed once the program has
    written it at READY=1, and is written again when SIGHUP stops the program (no tick and no
    periodic save during the test)."""
    path = tmp_path / "totals.json"
    port = free_port()
    state.save(str(path), "electric", {str(port): 500.0})
    program = Program(tmp_path, "--state-file", str(path), "--save-interval", "86400", "--interval",
                      "3600", port=port, env={"NOTIFY_SOCKET": notify_socket.name})
    with program.start():
        wait_message(notify_socket, program.proc, "READY")
        assert read_total(port) == 50000
        path.unlink()
        assert program.stop(signal.SIGHUP) == 0, program.log()
    assert saved(path) == {str(port): 500.0}
    assert program.log().splitlines()[-1].endswith(f" INFO electric meter on 127.0.0.1:{port} stopped")


@pytest.mark.slow
def test_sighup_stops_and_saves_as_sigterm_does(tmp_path):
    """A closed terminal or a dropped ssh session: the totals of the last tick are saved."""
    path = tmp_path / "totals.json"
    options = ("--state-file", str(path), "--seed", "3", "--speed", "5000", "--interval", "5",
               "--save-interval", "86400")
    with Program(tmp_path, *options).start().wait_serving() as program:
        wait_for(lambda: read_total(program.port) > 0, START_S)
        last_read = read_total(program.port)
        assert program.stop(signal.SIGHUP) == 0, program.log()
    assert round(saved(path)[str(program.port)] * 100) == last_read
    assert "stopped" in program.log().splitlines()[-1]


def test_a_second_program_on_the_same_state_file_exits_1_naming_the_first(tmp_path):
    path = tmp_path / "totals.json"
    with Program(tmp_path, "--state-file", str(path), "--speed", "5000", "--interval", "0.05"
                 ).start().wait_serving() as first:
        wait_for(lambda: read_total(first.port) > 0, START_S)
        port = free_port()
        result = run_program("--port", str(port), "--state-file", str(path))
        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert lines == [f"meter-simulator: state file {path} is in use by process {first.proc.pid}: "
                         "one process at a time may serve its meters (give this one another "
                         "--state-file)"], result.stderr
        assert not accepts("127.0.0.1", port)
        assert read_total(first.port) > 0  # the first serves on
        last_read = read_total(first.port)
        assert first.stop() == 0, first.log()
    assert round(saved(path)[str(first.port)] * 100) >= last_read  # its file, not the second's


@pytest.mark.slow
def test_kill_9_then_restart_resumes_from_the_last_periodic_save(tmp_path):
    path = tmp_path / "totals.json"
    speed = 2000
    options = ("--state-file", str(path), "--speed", str(speed), "--save-interval", "1")
    with Program(tmp_path, *options, "--interval", "0.1").start().wait_serving() as first:
        key = str(first.port)
        seen = set()
        wait_for(lambda: seen.add(saved(path).get(key, 0.0)) or len(seen - {0.0}) >= 2, START_S)
        before_kill = read_total(first.port)
        read_at = time.monotonic()
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        killed_after_s = time.monotonic() - read_at
    total = saved(path)[key]  # a complete file: a crash never leaves half a save
    counts = round(total * 100)
    assert counts >= round(max(seen) * 100), "the file never goes back"
    # never ahead of the meter: at most what it could consume between the read and the kill
    assert counts <= before_kill + MAX_POWER_W * killed_after_s * speed / 3.6e6 * 100 + 1
    with Program(tmp_path, *options, "--interval", "3600", port=first.port).start().wait_serving() as second:
        assert read_total(second.port) == counts
        assert second.stop() == 0
    # a kill during a save may leave its temporary file; the next save replaces it
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_reset_through_coil_10_is_saved_at_once(tmp_path):
    path = tmp_path / "totals.json"
    port = free_port()
    state.save(str(path), "electric", {str(port): 500.0})
    with Program(tmp_path, "--state-file", str(path), "--save-interval", "86400", "--interval", "3600",
                 port=port).start().wait_serving() as program:
        assert read_total(port) == 50000
        client = ModbusClient("127.0.0.1", port, timeout=5, auto_open=True)
        try:
            assert client.write_single_coil(10, True)
        finally:
            client.close()
        # saved long before the next periodic save, a day away
        wait_for(lambda: saved(path)[str(port)] < 500.0, 10)
        assert program.stop() == 0
    assert saved(path)[str(port)] == 0.0


# Every kind of unusable file is refused in-process (test_state.py); these two go through the
# program: nothing is served and the file is left as it was.
BAD_FILES = {
    "empty": (b"", "the file is empty"),
    "wrong type": (state.encode("gas", {"5020": 12.5}, 0), "it is for gas meters, not electric meters"),
    # hostile: a counter of 400 digits (float() of it overflows), nesting past the parser's recursion
    "400 digits": (state.encode("electric", {"5020": 12.5}, 0).replace(b"12.5", b"1" + b"0" * 400, 1),
                   "the energy_import of meter '5020' is 1.000e+400, above the largest a counter holds "
                   "(1e+15)"),
    "nested too deeply": (state.encode("electric", {"5020": 12.5}, 0).replace(
        b"12.5", b"[" * 100_000 + b"]" * 100_000, 1), "not a state file (nested too deeply)"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_state_file_that_cannot_be_used_stops_the_start(tmp_path, name):
    data, problem = BAD_FILES[name]
    path = tmp_path / "totals.json"
    path.write_bytes(data)
    port = free_port()
    result = run_program("--port", str(port), "--state-file", str(path))
    assert result.returncode == 1
    assert result.stderr == (f"meter-simulator: state file {path}: {problem}; move the file away to "
                             "start from 0\n")
    assert path.read_bytes() == data
    assert not accepts("127.0.0.1", port)


# the warning line: the logging's time stamp, then the message
WARNING_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING "


@pytest.mark.slow
def test_a_folder_that_cannot_be_written_warns_once_keeps_serving_and_retries(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("")  # the state file's folder is a regular file: fails even for root
    path = blocker / "totals.json"
    program = Program(tmp_path, "--state-file", str(path), "--save-interval", "1",
                      "--interval", "0.1", "--log-level", "debug")
    with program.start().wait_serving():
        wait_for(lambda: "still cannot be saved" in program.log(), START_S)  # a retry, and another
        assert read_total(program.port) >= 0  # still serving
        # the folder appears in one step (a rename of a link over the file): a save between
        # an unlink and a mkdir would fail for another reason and warn again
        (tmp_path / "folder").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "folder")
        os.replace(tmp_path / "link", blocker)
        wait_for(lambda: path.exists() and "saved again" in program.log(), START_S)
        assert program.stop() == 0
    warnings = [line for line in program.log().splitlines() if "WARNING" in line]
    assert len(warnings) == 1, warnings
    assert re.fullmatch(WARNING_LINE + re.escape(f"cannot save state file {path}: Not a directory; "
                                                 "trying again in 1 s"), warnings[0]), warnings[0]


def can_mount_privately() -> str | None:
    """Why a private tmpfs mount cannot be made here, or None when it can."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
                           capture_output=True, text=True, timeout=20)
    return None if probe.returncode == 0 else f"no private mount namespace: {probe.stderr.strip()}"


# As root, permissions do not stop a write; a file system does. Each case mounts a
# tmpfs in a mount namespace of the program's own (unshare -m), invisible outside.
FILE_SYSTEMS = {
    "read-only": ("mount -t tmpfs -o ro,size=64k tmpfs \"$1\"", "Read-only file system"),
    "full": ("mount -t tmpfs -o size=8k tmpfs \"$1\" && "
             "dd if=/dev/zero of=\"$1/filler\" bs=1k count=64 2>/dev/null; true",
             "No space left on device"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", FILE_SYSTEMS)
def test_a_read_only_or_full_file_system_warns_once_and_keeps_serving(tmp_path, name):
    reason = can_mount_privately()
    if reason:
        pytest.skip(reason)
    setup, error = FILE_SYSTEMS[name]
    folder = tmp_path / "mounted"
    folder.mkdir()
    prefix = ("unshare", "-m", "sh", "-c", f"{setup} && shift && exec \"$@\"", "sh", str(folder))
    program = Program(tmp_path, "--state-file", str(folder / "totals.json"), "--save-interval", "1",
                      "--interval", "0.1", "--log-level", "debug", prefix=prefix)
    with program.start().wait_serving():
        wait_for(lambda: "still cannot be saved" in program.log(), START_S)
        assert read_total(program.port) >= 0
        assert program.stop() == 0, program.log()
    warnings = [line for line in program.log().splitlines() if "WARNING" in line]
    assert len(warnings) == 1, program.log()
    path = folder / "totals.json"
    assert re.fullmatch(WARNING_LINE + re.escape(f"cannot save state file {path}: {error}; trying again "
                                                 "in 1 s"), warnings[0]), warnings[0]
    assert list(folder.iterdir()) == []  # the mount was the program's alone


# --- the unit files ---

def unit_with_exec(tmp_path: Path, executable: str) -> Path:
    """A copy of the template unit whose ExecStart runs the console script found at test time."""
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/meter-simulator " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("ExecStart=/usr/local/bin/meter-simulator ", f"ExecStart={executable} "))
    return copy


def systemd_analyze() -> str:
    """systemd-analyze's path; the test skips without it, except in CI, where it fails."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: .ci/run installs Debian's systemd")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd); CI runs it")
    return tool


def test_the_unit_files_pass_systemd_analyze_verify(tmp_path):
    tool = systemd_analyze()
    script = console_script() or sys.executable
    copy = unit_with_exec(tmp_path, script)
    instance = copy.with_name("meter-simulator@water-5021.service")
    result = subprocess.run([tool, "verify", str(copy), str(instance)], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # unknown keys are only warned about


def test_the_serial_line_drop_in_passes_systemd_analyze_verify(tmp_path):
    """scripts/systemd/serial-line.conf (docs/rtu.md) on an instance, as systemd would load it."""
    tool = systemd_analyze()
    copy = unit_with_exec(tmp_path, console_script() or sys.executable)
    drop_ins = tmp_path / "meter-simulator@sdm630-rs485.service.d"
    drop_ins.mkdir()
    shutil.copy(SYSTEMD / "serial-line.conf", drop_ins)
    instance = copy.with_name("meter-simulator@sdm630-rs485.service")
    result = subprocess.run([tool, "verify", str(instance)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, env=dict(os.environ, SYSTEMD_UNIT_PATH=f"{tmp_path}:"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # a bad key or value is only warned about


def test_the_unit_runs_the_example_instance_as_documented(tmp_path, notify_socket):
    """ExecStart with the example environment file (on a free port), as systemd would expand it."""
    device = UNIT.read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", device, re.M).group(1)
    options = re.search(r"^METER_OPTIONS=(.*)$", ENV_FILE.read_text(), re.M).group(1).split()
    assert options[options.index("--port") + 1] == "5021"
    port = free_port()
    options[options.index("--port") + 1] = str(port)
    state_directory = tmp_path / "water-5021"
    state_directory.mkdir()
    argv = []
    for word in shlex.split(exec_start)[1:]:
        if word == "$METER_OPTIONS":
            argv.extend(options)  # an unbraced $VAR word is split on white space
        else:
            argv.append(word.replace("${STATE_DIRECTORY}", str(state_directory)))
    env = {"NOTIFY_SOCKET": notify_socket.name, "JOURNAL_STREAM": "8:12345", "WATCHDOG_USEC": "30000000"}
    program = Program(tmp_path, port=port, env=env)
    program.whole_command = [*SCRIPT_COMMAND, *argv]
    with program.start():
        wait_message(notify_socket, program.proc, "READY")
        assert read_total(port) >= 0
        assert program.stop() == 0, program.log()
    assert saved(state_directory / "totals.json", "water").keys() == {str(port)}
    lines = program.log().splitlines()
    assert lines and all(re.match(r"(DEBUG|INFO|WARNING|ERROR) ", line) for line in lines), lines
