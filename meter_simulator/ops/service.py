"""Service: what a run does for its supervisor: resume the totals, keep them saved, tell systemd.

app.main calls restore() before the server starts, started() once every port
is bound and the first image (with the restored totals) is published,
stopping() when a stop is asked for, and stopped() after the updater and the
server have stopped, which saves the totals of the very last tick.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from ..modbus.server import MeterServer
from .notify import Notifier, Watchdog, watchdog_interval_s
from .saver import Saver


class Service:
    """The state file and the systemd notifications of one run."""

    def __init__(self, server: MeterServer, *, state_file: str | None, meter_type: str,
                 save_interval_s: float, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.server = server
        self.notifier = Notifier(environ)
        self.status = ""
        self.saver: Saver | None = None
        if state_file is not None:
            self.saver = Saver(state_file, meter_type, server.plan, server.updater,
                               interval_s=save_interval_s, on_result=self._report)
        server.updater.on_overrun = self._report
        interval_s = watchdog_interval_s(environ, os.getpid())
        self.watchdog = None if interval_s is None or not self.notifier.enabled else \
            Watchdog(self.notifier, interval_s, server.updater.healthy)

    def restore(self) -> None:
        """Resume the saved totals; state.StateError when the state file cannot be used."""
        if self.saver is not None:
            self.saver.restore()
            self.server.updater.on_reset = self.saver.save_soon

    def started(self, status: str) -> None:
        """The server is bound and published: create the file, start saving, report READY=1."""
        if self.saver is not None:
            self.saver.start()
        self.status = status
        self.notifier.send("READY=1", f"STATUS={self._status_line()}")
        if self.watchdog is not None:
            self.watchdog.start()

    def stopping(self) -> None:
        """A stop was asked for: tell systemd, stop the watchdog pings."""
        self.notifier.send("STOPPING=1", "STATUS=stopping")
        if self.watchdog is not None:
            self.watchdog.stop()

    def abandon(self) -> None:
        """The run ends before it served (a port could not be bound): give the state file up."""
        if self.saver is not None:
            self.saver.close()
        self.notifier.close()

    def stopped(self) -> None:
        """The updater has stopped: save the last tick's totals."""
        if self.saver is not None:
            self.server.updater.on_reset = None
            self.saver.stop()
        self.notifier.close()

    def _status_line(self) -> str:
        """The start line, then whatever is wrong now: ticks overrunning, saves failing."""
        line = self.status
        updater = self.server.updater
        if updater.overrun_s is not None:
            line += (f"; ticks overrun: {updater.overrun_s:.3f} s a tick for an interval "
                     f"of {updater.interval_s:g} s")
        failure = self.saver.failure if self.saver is not None else None
        if failure is not None:
            line += f"; cannot save state file {self.saver.path}: {failure}"
        return line

    def _report(self, *_changed) -> None:
        """Something in the status line changed (a save's result, ticks overrunning or not)."""
        if self.status:  # before started(), READY=1 carries the first status
            self.notifier.send(f"STATUS={self._status_line()}")
