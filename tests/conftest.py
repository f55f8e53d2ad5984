"""Shared fixtures: fake clock, seeded rng, an in-process server on an ephemeral port, a thread-leak guard."""
from __future__ import annotations

import random
import threading

import pytest

from meter_simulator.device.fleet import PortPlan
from meter_simulator.modbus.server import MeterServer, new_device
from meter_simulator.model.meters import make_meter
from support import FakeClock, wait_for


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


def start_server(meter_type: str = "electric", seed: int = 7, host: str = "127.0.0.1",
                 **kwargs) -> MeterServer:
    """A real MeterServer on an ephemeral loopback port, started."""
    meter = make_meter(meter_type, random.Random(seed), 10 * 3600)
    server = MeterServer(host, [PortPlan(0, device=new_device(meter))], **kwargs)
    server.start()
    return server


@pytest.fixture
def make_server():
    """Factory for started in-process servers, all stopped at the end of the test."""
    servers = []

    def factory(*args, **kwargs) -> MeterServer:
        server = start_server(*args, **kwargs)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def shared_servers():
    """One fast-ticking server per meter type, shared by a module's read-mostly tests."""
    servers = {t: start_server(t, interval_s=0.05) for t in ("electric", "water", "gas")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def still_servers():
    """One server per meter type that does not tick during a module (1 h interval): a stable image."""
    servers = {t: start_server(t, interval_s=3600) for t in ("electric", "water", "gas")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def fast_servers():
    """One server per meter type ticking every 0.05 s at speed 600: ten simulated hours a minute."""
    servers = {t: start_server(t, interval_s=0.05, speed=600) for t in ("electric", "water", "gas")}
    yield servers
    for server in servers.values():
        server.stop()


OUR_THREADS = ("meter-updater", "modbus-server", "modbus-connection", "control-server",
               "control-connection", "fault-timer", "state-saver")


def our_threads() -> int:
    """How many updater, server and connection threads run now (a Timer is re-made each tick)."""
    return sum(1 for t in threading.enumerate() if any(name in t.name for name in OUR_THREADS))


@pytest.fixture(autouse=True)
def no_thread_leak():
    """Every thread a test starts (updater, server, connections) is gone soon after it ends."""
    before = our_threads()
    yield
    try:
        # polled often: most tests end with a connection thread a moment from its end
        wait_for(lambda: our_threads() <= before, timeout=5, interval=0.002)
    except AssertionError:
        raise AssertionError(f"threads left running: {threading.enumerate()}") from None
