"""pytest plugin (entry point pytest11 meter_simulator): the meter_simulator and
meter_simulator_factory fixtures. Nothing of the server is imported until a test asks for one."""
from __future__ import annotations

import pytest


@pytest.fixture
def meter_simulator_factory():
    """A callable taking MeterSimulator's keywords and returning a started simulator; every one it
    started is stopped at teardown, also after a failure."""
    from .simulator import MeterSimulator

    started = []

    def factory(**keywords) -> MeterSimulator:
        simulator = MeterSimulator(**keywords)
        started.append(simulator)
        simulator.start()
        return simulator

    yield factory
    errors = []
    for simulator in reversed(started):
        try:
            simulator.stop()
        except Exception as exc:  # stop the others anyway; report the first at the end
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def meter_simulator(meter_simulator_factory):
    """One electric meter on a free loopback port, started; stopped after the test."""
    return meter_simulator_factory()
