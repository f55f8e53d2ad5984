"""systemd's notification protocol (sd_notify) with the standard library, and the watchdog heartbeat.

The protocol is one datagram of newline-separated KEY=VALUE lines sent to the
AF_UNIX socket named in $NOTIFY_SOCKET: a path, or an abstract name written
with a leading '@'. Ten lines of our own instead of a package: the protocol is
fixed and tiny, and the small packages on offer either swallow every error
silently or pull in libsystemd. Outside systemd (no NOTIFY_SOCKET) every call
does nothing; a failing send is logged once and never raised, since a meter
must keep serving whatever happens to its supervisor's socket.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping
from typing import Callable

log = logging.getLogger(__name__)


def socket_address(name: str | None) -> str | bytes | None:
    """The address to send to for a NOTIFY_SOCKET value; None when it is unset or not AF_UNIX."""
    if not name:
        return None
    if name.startswith("@"):
        return b"\0" + name[1:].encode()  # Linux abstract namespace
    if name.startswith("/"):
        return name
    return None


def watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """How often to send WATCHDOG=1 (half of WATCHDOG_USEC, in seconds); None when not asked.

    WATCHDOG_PID, when set, names the process systemd watches: any other process
    (a child that inherited the environment) must not ping.
    """
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    watched_pid = environ.get("WATCHDOG_PID")
    if usec <= 0 or (watched_pid and watched_pid != str(pid)):
        return None
    return usec / 1e6 / 2


class Notifier:
    """Sends notifications to systemd; does nothing outside systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.socket_name = environ.get("NOTIFY_SOCKET")
        self.address = socket_address(self.socket_name)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # the main thread and the watchdog send
        self._failed = False
        if self.socket_name and self.address is None:
            log.warning("NOTIFY_SOCKET %s is not an AF_UNIX socket: systemd will not be notified",
                        self.socket_name)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send KEY=VALUE lines in one datagram; True when it was sent."""
        if self.address is None:
            return False
        message = "\n".join(line.replace("\n", " ") for line in lines).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.sendto(message, self.address)
            except OSError as exc:
                if not self._failed:  # once: a missing socket would otherwise fill the log
                    log.warning("cannot notify systemd on %s: %s", self.socket_name, exc.strerror or exc)
                    self._failed = True
                return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class Watchdog:
    """One thread that sends WATCHDOG=1 every interval_s while healthy() says the meters tick.

    healthy(grace_s) may block up to grace_s (waiting for the updater's lock); a
    hung or dead updater makes it False, so the pings stop and systemd restarts us.
    """

    def __init__(self, notifier: Notifier, interval_s: float,
                 healthy: Callable[[float], bool]) -> None:
        self.notifier = notifier
        self.interval_s = interval_s
        self._healthy = healthy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meter-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop pinging; safe to call twice."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        # half an interval of grace: a check that waits it out still pings within
        # 3/4 of WatchdogSec of the previous ping
        grace_s = self.interval_s / 2
        while not self._stop.is_set():
            if self._healthy(grace_s):
                self.notifier.send("WATCHDOG=1")
            else:
                log.debug("meters are not ticking on schedule: no watchdog ping")
            self._stop.wait(self.interval_s)
