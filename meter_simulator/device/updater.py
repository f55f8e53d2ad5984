"""Updater: steps every meter on a fixed schedule and publishes each tick under one lock.

One lock owns the meters and their published images, so a client's reset or
online/offline write is never lost to a tick running at the same moment, and a
meter's tick reaches its bank as one immutable Image (a read never mixes two
ticks). Ticks follow monotonic deadlines start + k * interval: no drift over
hours, and after a stall the missed deadlines are skipped, not replayed, since
the next tick integrates the whole elapsed time anyway. Ticks that take longer
than the interval are logged (rate-limited) and reported to on_overrun.
"""
from __future__ import annotations

import bisect
import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Callable

from ..ratelimit import RateLimitedLog
from .device import Device

log = logging.getLogger(__name__)

__all__ = ["Device", "Updater"]


# tick durations for /metrics: upper bounds in seconds (Prometheus histogram buckets)
TICK_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class TickTimes:
    """A histogram of tick durations: counts per bucket (not cumulative), their sum, written by
    the ticking thread only."""

    def __init__(self) -> None:
        self.counts = [0] * (len(TICK_BUCKETS_S) + 1)  # the last one: above every bound
        self.sum_s = 0.0

    def add(self, took_s: float) -> None:
        self.counts[bisect.bisect_left(TICK_BUCKETS_S, took_s)] += 1
        self.sum_s += took_s


class Updater:
    """Steps all meters every interval_s of the clock, times speed, and publishes them."""

    def __init__(self, devices: Iterable[Device], *, interval_s: float = 1.0, speed: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_tick: Callable[[], None] | None = None,
                 on_failure: Callable[[], None] | None = None,
                 tick_context: Callable[[], AbstractContextManager] | None = None) -> None:
        self.devices = list(devices)
        # what a tick steps: the fleet's columns, each all at once, and one at a time the meters
        # of their own (a site's two devices at once), which it also publishes
        # (a site's household is drawn with the other sites' in its SiteColumns)
        columns = [device.meter.columns if device.meter.lazy else device.site.columns
                   for device in self.devices if device.meter.lazy or device.site is not None]
        self._columns = list({id(each): each for each in columns if each is not None}.values())
        self._units: list = list({id(unit): unit for unit in (
            device if device.site is None else device.site for device in self.devices
            if not device.meter.lazy)}.values())
        # wraps each tick; the program gives a fleet short GIL slices there (process-wide
        # state, so only the program may: see app.main.short_gil_slices)
        self._tick_context = tick_context or contextlib.nullcontext
        self.interval_s = interval_s
        self.speed = speed
        self._clock = clock
        self._on_tick = on_tick
        self._on_failure = on_failure
        self.on_reset: Callable[[Device], None] | None = None  # called after a reset, outside the lock
        # called with overrun_s when ticks start or stop taking longer than the interval
        self.on_overrun: Callable[[float | None], None] | None = None
        self.overrun_s: float | None = None  # how long the last tick took, while ticks overrun
        self.skipped_ticks = 0  # deadlines the schedule skipped because a tick ran late
        self._log_overrun = RateLimitedLog(log, clock=clock)
        self.lock = threading.RLock()
        self._ticked = threading.Condition(threading.Lock())
        self.ticks = 0
        self.tick_seconds = TickTimes()  # how long ticks took, for /metrics
        self.lag_s = 0.0  # how late the last tick started after its deadline
        self.failed = False
        self._stopped = threading.Event()
        self._timer: threading.Timer | None = None
        self._start = self._last = self._deadline = clock()
        with self.lock:
            for device in self.devices:
                device.publish()

    # --- the tick, public so tests drive it with a fake clock and no thread ---
    def tick(self) -> None:
        """Step every meter by the simulated time since the last tick and publish it."""
        with self.lock, self._tick_context():
            now = self._clock()
            dt_s = max(now - self._last, 0.0) * self.speed
            self._last = now
            for columns in self._columns:
                columns.step(dt_s)
            for unit in self._units:
                unit.step(dt_s)
                unit.publish()
            took_s = self._clock() - now
        self.tick_seconds.add(took_s)
        self._check_duration(took_s)
        with self._ticked:
            self.ticks += 1
            self._ticked.notify_all()
        if self._on_tick is not None:
            self._on_tick()

    def _check_duration(self, took_s: float) -> None:
        """Warn (rate-limited) while ticks take longer than the interval; report each change."""
        overrun = took_s > self.interval_s
        if overrun:
            meters = f"{len(self.devices)} meter" + ("s" if len(self.devices) != 1 else "")
            self._log_overrun("a tick of %s took %.3f s, longer than the interval of %g s: "
                              "the schedule skips ticks (%d so far); a longer --interval or fewer "
                              "meters keep up", meters, took_s, self.interval_s, self.skipped_ticks)
        if overrun == (self.overrun_s is not None):
            if overrun:
                self.overrun_s = took_s
            return
        self.overrun_s = took_s if overrun else None
        if not overrun:
            log.info("ticks keep up with the interval of %g s again (%.3f s a tick)",
                     self.interval_s, took_s)
        if self.on_overrun is not None:
            self.on_overrun(self.overrun_s)

    def wait_ticks(self, count: int, timeout: float) -> bool:
        """Block until count more ticks have run; False on timeout."""
        with self._ticked:
            target = self.ticks + count
            return self._ticked.wait_for(lambda: self.ticks >= target, timeout)

    # --- client commands, serialised with the tick ---
    def own(self, device: Device) -> None:
        """A meter in columns leaves them for a model of its own, stepped by itself from now on,
        before a command changes how it behaves (the caller holds the lock)."""
        if device.meter.lazy:
            device.adopt(device.meter.detach())
            self._units.append(device)

    def catch_up(self, device: Device) -> None:
        """Add what the meter showed since the last tick to its counters now (the caller holds
        the lock and is about to change what it shows); the next tick adds only the rest."""
        self.own(device)
        elapsed_s = max(self._clock() - self._last, 0.0) * self.speed
        device.meter.integrate(elapsed_s - device.integrated_s)
        device.integrated_s = max(elapsed_s, device.integrated_s)

    def reset_total(self, device: Device) -> None:
        """The meter's total restarts from 0, published before this returns.

        What was consumed before the reset is first added to the old total, so the
        next tick adds to the new total only what was consumed after the reset.
        """
        with self.lock:
            self.catch_up(device)
            device.meter.reset_total()
            device.publish_total()
        if self.on_reset is not None:
            self.on_reset(device)

    def reset_counters(self, device: Device) -> None:
        """Every counter and maximum demand of the meter restarts from 0 (a device profile's
        reset by its operator), published before this returns."""
        with self.lock:
            self.catch_up(device)
            device.meter.reset_counters()
            if device.meter.demand is not None:
                device.meter.demand.zero_maxima()
            device.publish_total(tuple(device.meter.counters), maxima=True)
        if self.on_reset is not None:
            self.on_reset(device)

    def jump_total(self, device: Device, total: float) -> None:
        """The meter's total jumps to total (kWh or m3), split over the phases in their present
        proportions; integration goes on from there. Published before this returns."""
        with self.lock:
            self.catch_up(device)
            device.meter.set_total(total, proportional=True)
            device.publish_total()
        if self.on_reset is not None:
            self.on_reset(device)

    def set_overrides(self, device: Device, overrides) -> None:
        """Pin the meter's readings (the whole set; empty releases all): what it showed until now
        is integrated first, and the pinned readings are published before this returns."""
        with self.lock:
            self.catch_up(device)
            device.meter.pin(overrides)
            device.publish()

    def change_site(self, site, change: Callable[[], None]) -> None:
        """Change a site's pins or state of charge (change() does it): what both its devices showed
        until now is integrated first, and the new balance published before this returns."""
        with self.lock:
            for device in site.devices:
                self.catch_up(device)
            change()
            site.publish()

    def change_faults(self, steps: Mapping[Device, Mapping[str, int]]) -> None:
        """Freeze and offline faults start (a step of +n) or end (-n) on meters, by kind; each
        meter's readings and status are published once, at once."""
        with self.lock:
            for device, by_kind in steps.items():
                for kind, step in by_kind.items():
                    device.add_fault(kind, step)
                device.publish()

    def set_total(self, device: Device, total: float) -> None:
        """Resume the meter from a saved total (kWh or m3), published before this returns."""
        with self.lock:
            device.meter.set_total(total)
            device.publish_total()

    def set_values(self, device: Device, values) -> None:
        """Resume the meter from saved counters and maximum demands, published before this returns;
        a site's device publishes both devices of the site (a restored state of charge moves the
        balance the grid meter shows too)."""
        with self.lock:
            device.meter.restore_values(values)
            for shown in (device,) if device.site is None else device.site.devices:
                shown.publish_total()
            if device.site is not None:
                device.site.follow_night()  # the restored state of charge may wake or lull it

    def write_registers(self, device: Device, address: int, words) -> int:
        """A client's write into the meter's writable registers: checked whole, then stored and
        published; the exception code (0: done)."""
        with self.lock:
            code, values = device.check_write(address, words)
            if code == 0:
                self.own(device)
                site = device.site
                if site is not None:  # a control moves the balance: what both devices showed
                    for shown in site.devices:  # until now is integrated first
                        self.catch_up(shown)
                device.store(values)
                (device if site is None else site).publish()
        return code

    def set_online(self, device: Device, online: bool) -> None:
        """Take the meter online or offline; offline, its readings stay as last published."""
        with self.lock:
            device.online = bool(online)
            device.publish()

    # --- schedule ---
    def start(self) -> None:
        """Start the Timer chain; the first tick comes one interval from now. Idempotent."""
        if self._timer is not None:
            return
        self._start = self._deadline = self._clock()
        self._arm(self._start)

    def stop(self) -> None:
        """Stop ticking; safe to call twice and from any thread."""
        self._stopped.set()
        with self.lock:
            timer = self._timer
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def healthy(self, grace_s: float) -> bool:
        """True while ticks run on schedule: not failed or stopped, the lock free within
        grace_s, and no tick overdue by more than grace_s (for a watchdog)."""
        if self.failed or self._stopped.is_set():
            return False
        if not self.lock.acquire(timeout=grace_s):  # a tick hung while holding it
            return False
        try:
            overdue_s = self._clock() - self._deadline
        finally:
            self.lock.release()
        return overdue_s <= grace_s

    def next_deadline(self, now: float) -> float:
        """The first deadline start + k * interval after now and after the last one armed.

        Missed deadlines are skipped, and a timer that fires a hair early does not
        tick twice for one deadline.
        """
        elapsed_intervals = max(math.floor((now - self._start) / self.interval_s) + 1,
                                round((self._deadline - self._start) / self.interval_s) + 1)
        return self._start + elapsed_intervals * self.interval_s

    def _arm(self, now: float) -> None:
        with self.lock:
            if self._stopped.is_set():
                return
            deadline = self.next_deadline(now)
            self.skipped_ticks += max(round((deadline - self._deadline) / self.interval_s) - 1, 0)
            self._deadline = deadline
            delay_s = max(self._deadline - self._clock(), 0.0)
            self._timer = threading.Timer(delay_s, self._run)
            self._timer.name = "meter-updater"
            self._timer.daemon = True
            self._timer.start()

    def _run(self) -> None:
        if self._stopped.is_set():
            return
        self.lag_s = max(self._clock() - self._deadline, 0.0)
        try:
            self.tick()
        except Exception:  # the thread's only broad catch: log it, then fail loudly
            log.exception("meter update failed")
            self.failed = True
            if self._on_failure is not None:
                self._on_failure()
            return
        self._arm(self._clock())
