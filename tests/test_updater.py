"""The updater driven by hand: a fake clock, real banks, tick() called by the test.

The schedule (start + k * interval) is checked with a recording stand-in for
threading.Timer that the test fires at chosen clock times; one test runs the real
Timer chain for a few short ticks.
"""
from __future__ import annotations

import itertools
import logging
import random
import threading
import time
import types

import pytest

from meter_simulator.device import updater as updater_module
from meter_simulator.device.updater import Device, Updater
from meter_simulator.maps import seed as registers
from meter_simulator.maps.seed import bits
from meter_simulator.modbus.server import MeterBank, new_bank, new_device
from meter_simulator.model.meters import METER_TYPES, make_meter
from support import TOTAL_SCALE, FakeClock, seed_image, total_counts, wait_for, words_u32

NOON_S = 12 * 3600.0
# physical units of the total per (rate unit * s): kWh per W*s, m3 per (L/min)*s
TOTAL_PER_RATE_S = {"electric": 1 / 3600.0 / 1000.0, "water": 1 / 60.0 / 1000.0,
                    "gas": 1 / 60.0 / 1000.0}


def busy_meter(meter_type: str, seed: int = 1):
    """A meter with a non-zero rate now (water and gas are often idle), so totals move."""
    for attempt in range(1000):
        meter = make_meter(meter_type, random.Random(seed * 1000 + attempt), NOON_S)
        if meter.reading.rate > 0.0:
            return meter
    raise AssertionError("no busy meter found")


def build(meter_type: str = "electric", speed: float = 1.0, interval_s: float = 1.0):
    clock = FakeClock()
    device = new_device(busy_meter(meter_type))
    updater = Updater([device], interval_s=interval_s, speed=speed, clock=clock)
    return clock, device, updater


def holding(device) -> list[int]:
    return device.bank.image.words(0, registers.REGISTER_COUNT)


def published_counts(device) -> int:
    return words_u32(*device.bank.image.words(0, 2))


def test_construction_publishes_the_first_image():
    clock, device, updater = build("water")
    assert holding(device) == seed_image(device.meter.reading, "water", online=True)
    assert device.bank.image.bit_list(0, 11) == bits(True, device.meter.reading.in_band, True)
    assert updater.ticks == 0


@pytest.mark.parametrize("meter_type", METER_TYPES)
@pytest.mark.parametrize("speed", (0.1, 1.0, 60.0, 100000.0))
def test_dt_is_clock_delta_times_speed(meter_type, speed):
    clock, device, updater = build(meter_type, speed=speed)
    per_rate_s = TOTAL_PER_RATE_S[meter_type]
    expected = 0.0
    for delta_s in (0.05, 1.0, 2.5, 0.0, 30.0):
        shown_rate = device.meter.reading.rate
        time_of_day_s = device.meter.time_of_day_s
        clock.now += delta_s
        updater.tick()
        expected += shown_rate * delta_s * speed * per_rate_s
        assert device.meter.total == pytest.approx(expected, rel=1e-9, abs=1e-15)
        assert device.meter.time_of_day_s == pytest.approx((time_of_day_s + delta_s * speed) % 86400.0)
    assert updater.ticks == 5


def test_a_clock_going_backwards_adds_nothing():
    clock, device, updater = build()
    clock.now += 10.0
    updater.tick()
    total = device.meter.total
    clock.now -= 5.0
    updater.tick()
    assert device.meter.total == total


@pytest.mark.parametrize("meter_type", METER_TYPES)
def test_a_tick_publishes_the_whole_image_coils_and_discrete_inputs(meter_type):
    clock, device, updater = build(meter_type, speed=60.0)
    for _ in range(20):
        clock.now += 1.0
        updater.tick()
        reading = device.meter.reading
        assert holding(device) == seed_image(reading, meter_type, online=True)
        flags = bits(True, reading.in_band, True)
        assert device.bank.image.bit_list(0, 11) == flags  # coils and discrete inputs: one list
        assert flags[registers.COIL_NO_ALARM] is True


@pytest.mark.parametrize("meter_type", METER_TYPES)
def test_offline_keeps_stale_readings_and_keeps_integrating(meter_type):
    clock, device, updater = build(meter_type, speed=600.0)
    clock.now += 1.0
    updater.tick()
    before = holding(device)
    coils_before = device.bank.image.bit_list(0, 11)
    total_before = device.meter.total

    updater.set_online(device, False)
    expected = total_before
    for _ in range(30):  # five simulated hours offline
        shown_rate = device.meter.reading.rate
        clock.now += 1.0
        updater.tick()
        expected += shown_rate * 600.0 * TOTAL_PER_RATE_S[meter_type]
        regs = holding(device)
        assert regs[0:23] == before[0:23]  # stale readings, total included
        assert regs[23:100] == [0] * 77
        assert regs[100] == 0
        assert regs[101] == before[101]
        coils = device.bank.image.bit_list(0, 11)
        assert coils[0] is False  # offline
        assert coils[1] == coils_before[1]
        assert coils[2] is True  # the server still serves
    assert device.meter.total == pytest.approx(expected, rel=1e-9)  # the model kept integrating
    if meter_type == "electric":  # never idle: standby alone draws tens of W
        assert device.meter.total > total_before

    updater.set_online(device, True)  # back online: the readings move again at once
    regs = holding(device)
    assert regs == seed_image(device.meter.reading, meter_type, online=True)
    assert regs[100] == 1 and device.bank.image.bit_list(0, 1) == [True]
    # the total includes what was consumed while offline
    assert published_counts(device) == total_counts(expected)
    if meter_type == "electric":
        assert published_counts(device) > words_u32(before[0], before[1])


def test_offline_twice_and_online_twice_are_harmless():
    clock, device, updater = build()
    updater.set_online(device, False)
    updater.set_online(device, False)
    assert holding(device)[100] == 0
    updater.set_online(device, True)
    updater.set_online(device, True)
    assert holding(device)[100] == 1


@pytest.mark.parametrize("meter_type", METER_TYPES)
def test_reset_publishes_zero_before_it_returns(meter_type):
    clock, device, updater = build(meter_type, speed=3600.0)
    for _ in range(5):
        clock.now += 1.0
        updater.tick()
    assert published_counts(device) > 0
    rest = holding(device)[2:]
    updater.reset_total(device)
    assert published_counts(device) == 0
    assert holding(device)[2:] == rest  # only the total changed


def test_reset_counts_only_what_is_consumed_after_it():
    clock, device, updater = build("electric", speed=60.0)
    clock.now += 1.0
    updater.tick()
    shown_rate = device.meter.reading.rate
    clock.now += 0.25  # a quarter of the way to the next tick
    updater.reset_total(device)
    assert device.meter.total == 0.0
    clock.now += 0.75
    updater.tick()
    assert device.meter.total == pytest.approx(shown_rate * 0.75 * 60.0 * TOTAL_PER_RATE_S["electric"])


def test_reset_while_offline_shows_zero_and_keeps_other_readings_stale():
    clock, device, updater = build("gas", speed=3600.0)
    for _ in range(3):
        clock.now += 1.0
        updater.tick()
    updater.set_online(device, False)
    stale = holding(device)
    updater.reset_total(device)
    regs = holding(device)
    assert regs[0:2] == [0, 0]
    assert regs[2:] == stale[2:]
    clock.now += 1.0
    updater.tick()  # a tick while offline does not bring the old total back
    assert holding(device)[0:2] == [0, 0]
    updater.set_online(device, True)
    assert published_counts(device) == total_counts(device.meter.total)
    assert device.meter.total < 100.0  # only what was consumed since the reset


def test_set_total_publishes_at_once():
    clock, device, updater = build("water")
    updater.set_total(device, 1234.56)
    assert published_counts(device) == 123456
    assert device.meter.total == 1234.56


def test_on_reset_is_called_after_the_reset():
    clock, device, updater = build()
    seen = []
    updater.on_reset = lambda u: seen.append((u, published_counts(u)))
    updater.reset_total(device)
    assert seen == [(device, 0)]


def test_several_units_tick_together():
    clock = FakeClock()
    devices = [new_device(busy_meter(t, seed=3)) for t in METER_TYPES]
    updater = Updater(devices, speed=600.0, clock=clock)
    clock.now += 1.0
    updater.tick()
    updater.set_online(devices[1], False)
    updater.reset_total(devices[2])
    assert [holding(u)[101] for u in devices] == [0, 1, 2]
    assert [holding(u)[100] for u in devices] == [1, 0, 1]
    assert published_counts(devices[2]) == 0
    assert published_counts(devices[0]) > 0


class YieldingBank(MeterBank):
    """A bank that lets other threads run just before an image lands.

    time.sleep(0) waits for nothing: it gives up the GIL, which widens the window
    in which a reset not serialised with the tick would be overwritten.
    """

    def publish(self, image):
        time.sleep(0)
        super().publish(image)


RACE_ITERATIONS = 300  # each one a reset landing mid-tick


def test_a_reset_racing_ticks_is_never_lost():
    counter = itertools.count()
    clock = lambda: float(next(counter))  # noqa: E731 - every reading of the clock moves it a second
    bank = YieldingBank(new_bank().image)
    device = Device(busy_meter("electric"), bank)
    updater = Updater([device], speed=60.0, clock=clock)
    big_kwh = 1_000_000.0
    done = threading.Event()

    def ticker() -> None:
        for _ in range(1_000_000):
            if done.is_set():
                return
            updater.tick()

    thread = threading.Thread(target=ticker, name="test-ticker", daemon=True)
    thread.start()
    try:
        ticks_before = updater.ticks
        for _ in range(RACE_ITERATIONS):
            updater.set_total(device, big_kwh)
            time.sleep(0)  # hand the GIL to the ticker: the reset below lands mid-tick
            updater.reset_total(device)
            shown = published_counts(device)
            with updater.lock:  # no tick half done: the bank shows the meter's own total
                published = published_counts(device)
                consumed = total_counts(device.meter.total)
            # 0 plus at most what the meter consumed since the reset, never the old total
            assert shown <= published == consumed < big_kwh * TOTAL_SCALE
    finally:
        done.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert updater.ticks > ticks_before  # the ticks really ran alongside


# --- the schedule, with a recording stand-in for threading.Timer ---

class RecordedTimer:
    """Records what the updater arms; the test fires it by hand."""

    def __init__(self, interval: float, function) -> None:
        self.interval = interval
        self.function = function
        self.name = ""
        self.daemon = False
        self.started = self.cancelled = False

    def start(self) -> None:
        self.started = True

    def cancel(self) -> None:
        self.cancelled = True

    def join(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def timers(monkeypatch) -> list[RecordedTimer]:
    """Every Timer the updater module arms, in order (only that module sees the stand-in)."""
    armed: list[RecordedTimer] = []

    def make_timer(interval, function):
        armed.append(RecordedTimer(interval, function))
        return armed[-1]

    fake_threading = types.SimpleNamespace(**vars(threading))
    fake_threading.Timer = make_timer
    monkeypatch.setattr(updater_module, "threading", fake_threading)
    return armed


def fire(timers, clock: FakeClock, at: float) -> float:
    """Run the last armed timer at clock time `at`; the deadline it then arms."""
    clock.now = at
    timers[-1].function()
    return clock.now + timers[-1].interval


def test_first_deadline_is_one_interval_after_start(timers):
    clock, device, updater = build(interval_s=1.0)
    updater.start()
    assert len(timers) == 1 and timers[0].started
    assert timers[0].name == "meter-updater" and timers[0].daemon
    assert clock.now + timers[0].interval == 1001.0


def test_deadlines_are_start_plus_k_intervals(timers):
    clock, device, updater = build(interval_s=1.0)
    updater.start()
    assert fire(timers, clock, 1001.0) == 1002.0  # on time
    assert fire(timers, clock, 1002.3) == 1003.0  # late: the next one is still on the grid
    assert updater.ticks == 2


class StepClock:
    """A clock that moves per_call seconds at every reading: a tick that takes time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.per_call = 0.0

    def __call__(self) -> float:
        self.now += self.per_call
        return self.now


def test_ticks_longer_than_the_interval_warn_and_report_until_they_keep_up(caplog):
    clock = StepClock()
    updater = Updater([new_device(busy_meter("water")), new_device(busy_meter("gas"))], interval_s=0.05,
                      clock=clock)
    reports = []
    updater.on_overrun = reports.append
    with caplog.at_level(logging.INFO, logger="meter_simulator"):
        updater.tick()
        assert reports == [] and updater.overrun_s is None
        clock.per_call = 0.125  # the two readings of a tick are 0.125 s apart
        for _ in range(5):
            updater.tick()
        assert updater.overrun_s == pytest.approx(0.125)
        clock.per_call = 0.01
        updater.tick()
    assert reports == [pytest.approx(0.125), None]
    assert updater.overrun_s is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["a tick of 2 meters took 0.125 s, longer than the interval of 0.05 s: the "
                        "schedule skips ticks (0 so far); a longer --interval or fewer meters keep up"]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["ticks keep up with the interval of 0.05 s again (0.010 s a tick)"]


def test_a_timer_firing_early_never_ticks_twice_for_one_deadline(timers):
    clock, device, updater = build(interval_s=1.0)
    updater.start()
    assert fire(timers, clock, 1001.0) == 1002.0
    assert fire(timers, clock, 1001.9995) == 1003.0  # fired a hair before 1002: 1002 is done
    assert fire(timers, clock, 1002.9999) == 1004.0
    assert updater.ticks == 3


def test_a_stall_skips_the_missed_deadlines_and_integrates_the_whole_gap(timers):
    clock, device, updater = build(interval_s=1.0, speed=10.0)
    updater.start()
    fire(timers, clock, 1001.0)
    shown_rate = device.meter.reading.rate
    total = device.meter.total
    assert fire(timers, clock, 1009.7) == 1010.0  # 1002 to 1009 skipped, not replayed
    assert updater.ticks == 2
    assert updater.skipped_ticks == 7  # the tick due at 1002 ran late; 1003 to 1009 never ran
    assert device.meter.total == pytest.approx(
        total + shown_rate * 8.7 * 10.0 * TOTAL_PER_RATE_S["electric"])


@pytest.mark.parametrize("interval_s", (0.05, 1.0, 3600.0))
def test_no_drift_over_many_late_ticks(timers, interval_s):
    clock, device, updater = build(interval_s=interval_s)
    start = clock.now
    updater.start()
    rng = random.Random(4)
    deadline = clock.now + timers[-1].interval
    last_k = 1
    for _ in range(2000):
        # each timer fires up to 30 % of an interval late, or a little early
        deadline = fire(timers, clock, deadline + interval_s * rng.uniform(-0.001, 0.3))
        k = (deadline - start) / interval_s
        assert k == pytest.approx(round(k), abs=1e-6)  # exactly on the grid
        assert round(k) == last_k + 1  # the next deadline: none skipped while on time, none doubled
        last_k = round(k)
    assert updater.ticks == 2000
    assert last_k == 2001


def test_stop_cancels_the_armed_timer_and_no_tick_follows(timers):
    clock, device, updater = build()
    updater.start()
    fire(timers, clock, 1001.0)
    updater.stop()
    assert timers[-1].cancelled
    armed = len(timers)
    clock.now = 1002.0
    timers[-1].function()  # a timer that fires anyway after stop() does nothing
    assert updater.ticks == 1
    assert len(timers) == armed
    updater.stop()  # idempotent


def test_stop_before_start_and_start_after_stop(timers):
    clock, device, updater = build()
    updater.stop()
    updater.stop()
    updater.start()  # a stopped updater never arms again
    assert timers == []


def test_a_failing_tick_logs_reports_and_stops(timers, caplog):
    failures = []
    clock = FakeClock()
    device = new_device(busy_meter("electric"))
    updater = Updater([device], clock=clock, on_failure=lambda: failures.append(1))
    updater.start()

    def broken_step(dt_s, integrated_s=0.0):
        raise RuntimeError("model bug")

    device.meter.step = broken_step
    with caplog.at_level(logging.ERROR, logger="meter_simulator.device.updater"):
        fire(timers, clock, 1001.0)
    assert updater.failed and failures == [1]
    assert len(timers) == 1  # not re-armed
    assert [r.getMessage() for r in caplog.records if r.exc_info] == ["meter update failed"]


# --- the real Timer chain, briefly ---

def updater_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "meter-updater"]


def test_start_and_stop_with_a_real_timer_leave_no_thread():
    device = new_device(busy_meter("electric"))
    seen_before = len(updater_threads())
    updater = Updater([device], interval_s=0.05, speed=60.0)
    updater.start()
    try:
        assert updater.wait_ticks(3, timeout=20)
    finally:
        updater.stop()
        updater.stop()
    wait_for(lambda: len(updater_threads()) <= seen_before, timeout=10)
    assert device.meter.total > 0.0  # the ticks integrated
    assert not updater.failed


def test_wait_ticks_times_out_without_ticks():
    clock, device, updater = build()
    assert updater.wait_ticks(1, timeout=0.01) is False
    assert updater.wait_ticks(0, timeout=0.01) is True
