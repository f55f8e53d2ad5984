"""Tests of poller.py against a simulated meter, as a user of meter-simulator writes them: the
fixtures meter_simulator and meter_simulator_factory come with the package (its pytest plugin),
faults make the meter slow, silent, busy or stale. Run: python -m pytest docs/examples/test_poller.py
"""
from __future__ import annotations

import time

import pytest
from poller import MeterException, MeterTimeout, Poller, StaleMeter, read_meter

HOST = "127.0.0.1"


def test_reads_the_total_and_the_power(meter_simulator):
    meter_simulator.set(power_total=2500)  # a pin, shown at once
    meter_simulator.set_total(1234.5)
    reading = read_meter(HOST, meter_simulator.port)
    assert reading.power_w == pytest.approx(2500, abs=25)
    assert reading.total_kwh == pytest.approx(meter_simulator.read()["energy_import"], abs=0.01)
    assert reading.total_kwh == pytest.approx(1234.5, abs=0.1)


def test_a_slow_answer_within_the_timeout_is_read(meter_simulator):
    with meter_simulator.fault("delay", delay_ms=300):
        started = time.monotonic()
        reading = read_meter(HOST, meter_simulator.port, timeout=3)
    assert time.monotonic() - started >= 0.3
    assert reading.power_w > 0


def test_a_timeout_is_retried_once(meter_simulator):
    with meter_simulator.fault("delay", delay_ms=3000, count=1):  # only the first request is slow
        started = time.monotonic()
        reading = read_meter(HOST, meter_simulator.port, timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 3, "the retry answered, not the slow first request"
    assert reading.power_w > 0


def test_no_answer_twice_is_a_timeout(meter_simulator):
    with meter_simulator.fault("no_answer", count=2):
        with pytest.raises(MeterTimeout, match="after 2 attempts"):
            read_meter(HOST, meter_simulator.port, timeout=0.3)
    read_meter(HOST, meter_simulator.port)  # the count is used up: answers again


def test_a_busy_meter_is_reported_at_once(meter_simulator):
    with meter_simulator.fault("exception", code=6):
        with pytest.raises(MeterException, match="0x06") as busy:
            read_meter(HOST, meter_simulator.port)
    assert busy.value.code == 6 and "busy" in str(busy.value)
    read_meter(HOST, meter_simulator.port)  # leaving the block ended the fault


def poll_for(poller: Poller, seconds: float) -> None:
    """Poll every 50 ms for this long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        poller.poll()
        time.sleep(0.05)


def test_a_frozen_meter_is_stale(meter_simulator_factory):
    # 100 simulated seconds a real one, a tick every 50 ms: at 10 kW the total moves every tick
    sim = meter_simulator_factory(speed=100, interval=0.05)
    sim.set(power_total=10000)
    poller = Poller(HOST, sim.port, stale_after_s=0.5)
    poll_for(poller, 1.0)  # a live meter is never stale
    with sim.fault("freeze"):  # registers 0-22 keep their values, register 100 still says online
        with pytest.raises(StaleMeter, match="has stayed at"):
            poll_for(poller, 5.0)
    poll_for(poller, 1.0)  # moving again once the fault ended
