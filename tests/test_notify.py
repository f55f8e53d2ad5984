"""sd_notify on a real AF_UNIX datagram socket, the watchdog heartbeat and the updater's health."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading

import pytest

from meter_simulator.device.updater import Updater
from meter_simulator.ops.notify import Notifier, Watchdog, socket_address, watchdog_interval_s
from support import FakeClock, wait_for


class NotifySocket:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            self.folder = None
            self.sock.bind(f"\0meter-simulator-test-{os.getpid()}-{id(self)}")
            self.name = "@" + self.sock.getsockname()[1:].decode()
        else:
            self.folder = tempfile.mkdtemp(prefix="ms-", dir="/tmp")  # short: sun_path is 108 bytes
            self.name = os.path.join(self.folder, "notify")
            self.sock.bind(self.name)

    def receive(self, timeout: float = 10.0) -> list[str]:
        """The lines of the next datagram."""
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode().split("\n")

    def pending(self) -> bool:
        """True when a datagram waits, without waiting for one."""
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096, socket.MSG_PEEK)
            return True
        except BlockingIOError:
            return False

    def close(self) -> None:
        self.sock.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request):
    listener = NotifySocket(abstract=request.param == "abstract")
    yield listener
    listener.close()


@pytest.mark.parametrize("name, address", [
    (None, None), ("", None), ("/run/systemd/notify", "/run/systemd/notify"),
    ("@abc", b"\0abc"), ("vsock:2:1234", None), ("relative/path", None),
])
def test_socket_addresses(name, address):
    assert socket_address(name) == address


@pytest.mark.parametrize("environ, interval_s", [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
])
def test_watchdog_interval_is_half_of_watchdog_usec(environ, interval_s):
    assert watchdog_interval_s(environ, pid=42) == interval_s


def test_outside_systemd_nothing_is_sent():
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False


def test_messages_arrive_as_one_datagram(notify_socket):
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.name})
    try:
        assert notifier.send("READY=1", "STATUS=water meter\nserving")
        assert notify_socket.receive() == ["READY=1", "STATUS=water meter serving"]
        assert notifier.send("STOPPING=1")
        assert notify_socket.receive() == ["STOPPING=1"]
    finally:
        notifier.close()


def test_a_missing_socket_is_logged_once_and_never_raised(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.DEBUG, logger="meter_simulator"):
        results = [notifier.send("WATCHDOG=1") for _ in range(3)]
    notifier.close()
    assert results == [False, False, False]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"cannot notify systemd on {tmp_path / 'nobody-listens'}: No such file or directory"]


def test_a_socket_that_is_not_af_unix_is_refused_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="meter_simulator"):
        notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:999"})
    assert not notifier.enabled and notifier.send("READY=1") is False
    assert [r.getMessage() for r in caplog.records] == [
        "NOTIFY_SOCKET vsock:2:999 is not an AF_UNIX socket: systemd will not be notified"]


def test_the_watchdog_pings_while_healthy(notify_socket):
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.name})
    watchdog = Watchdog(notifier, 0.05, lambda grace_s: True)
    watchdog.start()
    try:
        assert notify_socket.receive() == ["WATCHDOG=1"]
        assert notify_socket.receive() == ["WATCHDOG=1"]
    finally:
        watchdog.stop()
        notifier.close()


def test_the_watchdog_is_silent_while_unhealthy(notify_socket):
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.name})
    checks = []
    watchdog = Watchdog(notifier, 0.02, lambda grace_s: checks.append(grace_s) and False)
    watchdog.start()
    try:
        wait_for(lambda: len(checks) >= 3)
    finally:
        watchdog.stop()
        notifier.close()
    assert checks[0] == 0.01  # half an interval of grace
    assert not notify_socket.pending()


# --- the updater's health, as the watchdog sees it ---

def test_an_updater_on_schedule_is_healthy_until_a_tick_is_overdue():
    clock = FakeClock()
    updater = Updater([], interval_s=10.0, clock=clock)
    updater._deadline = clock.now + 10  # as armed by start(), without a thread
    assert updater.healthy(1.0)
    clock.now += 10.5  # the tick is due and a little late: still within grace
    assert updater.healthy(1.0)
    clock.now += 1.0
    assert not updater.healthy(1.0)


def test_a_failed_or_stopped_updater_is_not_healthy():
    updater = Updater([], clock=FakeClock())
    updater.failed = True
    assert not updater.healthy(1.0)
    updater = Updater([], clock=FakeClock())
    updater.stop()
    assert not updater.healthy(1.0)


def test_an_updater_hung_holding_its_lock_is_not_healthy():
    updater = Updater([], clock=FakeClock())
    held, release = threading.Event(), threading.Event()

    def hang() -> None:
        with updater.lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hang)
    thread.start()
    try:
        assert held.wait(10)
        assert not updater.healthy(0.05)
    finally:
        release.set()
        thread.join()
    assert updater.healthy(0.05)
