"""Out of file descriptors: new connections are closed at once, the accepting thread does not
spin, a warning says so, and the server recovers by itself; the open file limit at start."""
from __future__ import annotations

import errno
import logging
import re
import selectors
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from meter_simulator.app import main as cli
from meter_simulator.app.options import Config
from meter_simulator.net.acceptor import ACCEPT_BACKOFF_S, Acceptor, descriptor_limit
from support import SCRIPT_COMMAND, accepts, free_port, wait_for

resource = pytest.importorskip("resource")

MBAP = struct.Struct(">HHHB")
READ = MBAP.pack(1, 0, 6, 1) + bytes([0x03, 0, 0, 0, 2])
ANSWER_SIZE = MBAP.size + 1 + 1 + 4
CLK_TCK = __import__("os").sysconf("SC_CLK_TCK")
LOG_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING "  # the time stamp, then the message
START_WARNING = ("{count} {ports} with --max-clients {max_clients} may need {needed} open files, but the "
                 "limit is {limit}: connections past it are closed at once; raise the hard limit "
                 "(ulimit -Hn, LimitNOFILE= in the unit) or lower --max-clients")


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def outcomes(socks: list[socket.socket], timeout_s: float) -> tuple[int, int, int]:
    """Send a read on every connection, then (answered, closed by the server, still waiting)
    once each has answered or closed, or at the deadline."""
    selector = selectors.DefaultSelector()
    answered = closed = 0
    received: dict[socket.socket, bytes] = {}
    for sock in socks:
        try:
            sock.sendall(READ)
        except OSError:
            closed += 1
            continue
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        received[sock] = b""
    deadline = time.monotonic() + timeout_s
    while received and time.monotonic() < deadline:
        for key, _ in selector.select(max(deadline - time.monotonic(), 0)):
            sock = key.fileobj
            try:
                chunk = sock.recv(ANSWER_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                closed += 1
            else:
                received[sock] += chunk
                if len(received[sock]) < ANSWER_SIZE:
                    continue
                answered += 1
            selector.unregister(sock)
            del received[sock]
    selector.close()
    return answered, closed, len(received)


def start_under_ulimit(limit: str, log_path: Path, *args: str) -> subprocess.Popen:
    """The program started by a shell after `ulimit LIMIT`, its stderr in log_path."""
    with open(log_path, "w") as log_file:
        return subprocess.Popen(["sh", "-c", f'ulimit {limit} && exec "$@"', "sh", *SCRIPT_COMMAND,
                                 *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log_file)


def answers_once(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return outcomes([sock], timeout_s=5)[0] == 1


@pytest.mark.slow
def test_past_the_open_file_limit_new_connections_are_closed_and_nothing_spins(tmp_path):
    """The issue's case: --max-clients 500 under a hard limit of 48 open files, 80 clients."""
    port = free_port()
    log_path = tmp_path / "log.txt"
    proc = start_under_ulimit("-n 48", log_path, "--port", str(port), "--max-clients", "500",
                              "--interval", "3600")
    socks: list[socket.socket] = []
    try:
        wait_for(lambda: proc.poll() is not None or accepts("127.0.0.1", port), 20)
        assert proc.poll() is None, log_path.read_text()
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(80)]
        answered, closed, waiting = outcomes(socks, timeout_s=15)
        assert waiting == 0, f"{waiting} connections hang ({answered} answered, {closed} closed)"
        assert answered >= 20 and closed >= 20, (answered, closed)
        # the accepting thread waits instead of spinning (it took a whole core before)
        before, started = cpu_s(proc.pid), time.monotonic()
        time.sleep(1.0)  # the window over which CPU time is measured, not a wait for an event
        used = (cpu_s(proc.pid) - before) / (time.monotonic() - started)
        assert used < 0.3, f"{used:.0%} of a core while holding {len(socks)} connections"
        for sock in socks:
            sock.close()
        socks = []
        # the server recovers by itself: a new client is served once descriptors are free
        wait_for(lambda: answers_once(port), 20)
    finally:
        for sock in socks:
            sock.close()
        proc.terminate()
        proc.wait(10)
    log = log_path.read_text()
    assert proc.returncode == 0, log
    lines = log.splitlines()
    assert re.fullmatch(LOG_LINE + re.escape(START_WARNING.format(count=1, ports="port", max_clients=500,
                                                                  needed=533, limit=48)), lines[0]), log
    warnings = [line for line in lines if "cannot accept connections" in line]
    assert warnings, log
    assert re.fullmatch(LOG_LINE + re.escape(f"cannot accept connections on port {port}: Too many open "
                                             "files (open file limit 48); new connections are closed at "
                                             "once until descriptors are free"), warnings[0]), warnings[0]
    assert "Traceback" not in log


class ExhaustedServer:
    """A listening socket whose accept() fails with ENOBUFS a number of times (no spare helps)."""

    def __init__(self, failures: int) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.server_address = self.socket.getsockname()
        self.failures = failures
        self.calls = 0
        self.accepted: list[socket.socket] = []

    def get_request(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError(errno.ENOBUFS, "No buffer space available")
        return self.socket.accept()

    def verify_request(self, request, client_address) -> bool:
        return True

    def process_request(self, request, client_address) -> None:
        self.accepted.append(request)

    def shutdown_request(self, request) -> None:
        request.close()


def test_out_of_buffers_the_listener_backs_off_then_accepts(caplog):
    service = ExhaustedServer(failures=3)
    acceptor = Acceptor([service])
    with caplog.at_level(logging.WARNING, logger="meter_simulator"):
        acceptor.start()
        try:
            with socket.create_connection(service.server_address, timeout=5):
                wait_for(lambda: service.accepted, 10)
        finally:
            acceptor.stop()
            for request in service.accepted:
                request.close()
            service.socket.close()
    assert service.calls == 4, "one accept() a back-off, not a busy loop"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"cannot accept connections on port {service.server_address[1]}: No buffer space "
                        f"available (open file limit {descriptor_limit()}); accepting again in "
                        f"{ACCEPT_BACKOFF_S:g} s"]


def test_the_program_raises_its_open_file_limit_to_the_hard_limit_and_puts_it_back():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 256), hard))
    try:
        before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert cli.raise_open_file_limit() == (before, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        cli.restore_open_file_limit(before)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == before
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_program_raises_its_soft_limit_in_a_real_run(tmp_path):
    port = free_port()
    log_path = tmp_path / "log.txt"
    proc = start_under_ulimit("-S -n 64", log_path, "--port", str(port), "--interval", "3600")
    try:
        wait_for(lambda: proc.poll() is not None or accepts("127.0.0.1", port), 20)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
    finally:
        proc.terminate()
        proc.wait(10)
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard, line
    assert "open files" not in log_path.read_text()  # 133 needed, far below the hard limit


@pytest.mark.parametrize("count, max_clients, limit, warns", [
    (1, 100, 1024, False), (1000, 100, 1024, True), (30, 30, 1024, False), (1, 500, 48, True),
])
def test_a_start_warning_when_a_full_fleet_cannot_fit_the_limit(caplog, count, max_clients, limit,
                                                                 warns):
    config = Config(count=count, max_clients=max_clients)
    with caplog.at_level(logging.WARNING, logger="meter_simulator"):
        cli.check_open_file_limit(config, limit)
    needed = count * (1 + max_clients) + cli.OTHER_DESCRIPTORS
    expected = [START_WARNING.format(count=count, ports="port" if count == 1 else "ports",
                                 max_clients=max_clients, needed=needed, limit=limit)]
    assert [r.getMessage() for r in caplog.records] == (expected if warns else [])
