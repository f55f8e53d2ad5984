"""Saver: keeps the state file up to date without ever making a Modbus request wait on disk.

A save copies every meter's counters and maximum demands (meter.state_values())
under the updater's lock (in memory, microseconds a meter) and encodes and
writes the file outside it, in the saver's own thread: a request or a tick
waits at most for that copy, never for a write or an fsync. Saves come every
save interval, at once after a reset (the saver thread is woken), and a last
time at a clean stop, after the updater has stopped, so a restart resumes from
the very last tick. Every save writes the file, also when no counter moved
since the last one: a file removed or replaced meanwhile holds the current
values again by the next interval. A restore hands each meter its saved values
through the updater (Updater.set_values: under its lock, then published).

The saver holds the state file's lock (state.StateLock) from restore() to
stop(): a second process on the same file is refused at its start, and no
save is ever made without the lock.

A save that fails logs one warning naming the file and the reason, then tries
again at the next interval; the same failure again is logged at debug level
only, and the first save that works after it says so at info level.
"""
from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Mapping
from typing import Callable

from ..device.fleet import PortPlan, meter_key
from ..device.updater import Device, Updater
from . import state

log = logging.getLogger(__name__)

# a lock file that cannot be made for these reasons says nothing a failing save would not
FOLDER_ERRNOS = frozenset((errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS,
                           errno.ENOSPC, errno.EDQUOT))


def devices_by_key(plan: list[PortPlan]) -> dict[str, Device]:
    """Every meter of a run by its state-file key (port, or port-unit id in gateway mode)."""
    devices = {}
    for endpoint in plan:
        if endpoint.device is not None:
            devices[meter_key(endpoint.port)] = endpoint.device
        else:
            for unit_id, device in endpoint.devices_by_id.items():
                devices[meter_key(endpoint.port, unit_id)] = device
    return devices


class Saver:
    """Saves the counters of a run's meters to one state file, periodically and on demand."""

    def __init__(self, path: str, meter_type: str, plan: list[PortPlan], updater: Updater, *,
                 interval_s: float = 60.0,
                 on_result: Callable[[str | None], None] | None = None) -> None:
        self.path = path
        self.meter_type = meter_type
        self.interval_s = interval_s
        self.devices = devices_by_key(plan)
        self.updater = updater
        # the values of meters not in this run, written back untouched
        self.kept: dict[str, dict[str, float]] = {}
        self.failure: str | None = None  # the reason the last save failed, None after a good one
        self._on_result = on_result  # called with the failure reason (None: saved) when it changes
        self.lock = state.StateLock(path)
        self._write_lock = threading.Lock()  # one save at a time, each with a newer snapshot
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="state-saver", daemon=True)

    def restore(self) -> int:
        """Take the file's lock, load the file and resume every meter found in it; how many
        meters start from 0.

        state.StateError (file untouched) when the file cannot be used, state.StateInUse
        when another process serves it. A lock file that cannot be created (no folder yet, a
        read-only one) is not an error here: each save tries to take the lock first.
        """
        try:
            self.lock.acquire()
        except OSError:
            pass
        try:
            saved = state.load(self.path, self.meter_type)
        except state.StateError:
            self.lock.release()
            raise
        if saved is None:
            log.info("state file %s does not exist yet: counters start from 0", self.path)
            return len(self.devices)
        for key, device in self.devices.items():
            if key in saved:
                self.updater.set_values(device, saved[key])
        self.kept = {key: values for key, values in saved.items() if key not in self.devices}
        missing = len(self.devices) - (len(saved) - len(self.kept))
        log.info("state file %s: %d meters resumed, %d start from 0", self.path,
                 len(self.devices) - missing, missing)
        return missing

    def snapshot(self) -> dict[str, Mapping[str, float]]:
        """Every meter's values by key, copied under the updater's lock: one consistent moment."""
        with self.updater.lock:
            values = {key: device.meter.state_values() for key, device in self.devices.items()}
        return {**self.kept, **values}

    def save(self) -> bool:
        """Write the values now (in the caller's thread); False, logged, when it fails."""
        with self._write_lock:
            meters = self.snapshot()
            try:
                self.lock.acquire()
            except state.StateInUse as exc:
                self._failed(f"in use by {exc.holder}")
                return False
            except OSError as exc:  # as a save would fail, unless the lock file itself is odd
                self._failed(exc.strerror if exc.errno in FOLDER_ERRNOS
                             else f"{exc.strerror or exc} (its lock {self.lock.path})")
                return False
            try:
                state.save(self.path, self.meter_type, meters)
            except OSError as exc:
                self._failed(exc.strerror or str(exc))
                return False
            except ValueError as exc:  # a value the file could not be read back with: nothing written
                self._failed(str(exc))
                return False
            if self.failure is not None:
                log.info("state file %s saved again", self.path)
                self._set_failure(None)
            return True

    def save_soon(self, *_ignored) -> None:
        """Have the saver thread save now (after a reset); returns at once."""
        self._wake.set()

    def start(self) -> None:
        """Save once (so a new file exists from the start), then every interval in a thread."""
        self.save()
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, save a last time and give the lock up; call it after the updater
        has stopped."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self.save()
        self.lock.release()

    def close(self) -> None:
        """Give the lock up without saving (a run that never started serving)."""
        self.lock.release()

    def _failed(self, reason: str) -> None:
        if reason != self.failure:
            log.warning("cannot save state file %s: %s; trying again in %g s", self.path, reason,
                        self.interval_s)
            self._set_failure(reason)
        else:
            log.debug("state file %s still cannot be saved: %s", self.path, reason)

    def _set_failure(self, reason: str | None) -> None:
        self.failure = reason
        if self._on_result is not None:
            self._on_result(reason)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.save()
            except Exception:  # the thread's only broad catch: a bug must not end the saves silently
                log.exception("saving state file %s failed", self.path)
