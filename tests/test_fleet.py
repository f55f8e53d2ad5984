"""Many meters in one process: ports and unit ids, distinct and reproducible meters, routing, 0x0B."""
from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import threading

import pytest
from pymodbus.client import ModbusTcpClient
from pyModbusTCP.client import ModbusClient

from meter_simulator.app.main import short_gil_slices
from meter_simulator.device import fleet
from meter_simulator.device.updater import Updater
from meter_simulator.maps import seed as registers
from meter_simulator.modbus.server import MeterServer, new_device
from meter_simulator.net.listeners import BindError
from support import MeterProcess, free_ports, run_program, u32, unit_kw, wait_for

GATEWAY_FAILED = 0x0B
READINGS = slice(2, 23)  # registers 2-22: the instantaneous values, not the total


def fleet_server(count: int = 1, unit_ids=None, seed: int = 5, meter_type: str = "electric",
                 ports=None, **kwargs) -> MeterServer:
    """A started MeterServer over fleet.plan's meters, on ephemeral ports unless ports are given."""
    endpoints = fleet.plan(meter_type, 0, count, unit_ids, random.Random(seed), 10 * 3600, new_device)
    for endpoint, port in zip(endpoints, ports or [0] * count):
        endpoint.port = port
    server = MeterServer("127.0.0.1", endpoints, **kwargs)
    server.start()
    return server


@pytest.fixture
def servers():
    started = []

    def factory(*args, **kwargs) -> MeterServer:
        server = fleet_server(*args, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def read_regs(port: int, unit_id: int = 1, address: int = 0, count: int = 23) -> list[int]:
    """Holding registers through pyModbusTCP's client; fails the test on an error."""
    client = ModbusClient(host="127.0.0.1", port=port, unit_id=unit_id, timeout=10)
    try:
        regs = client.read_holding_registers(address, count)
        assert regs is not None, f"read failed: {client.last_error_as_txt} {client.last_except_as_txt}"
        return regs
    finally:
        client.close()


def write_coil(port: int, address: int, value: bool, unit_id: int = 1) -> None:
    client = ModbusClient(host="127.0.0.1", port=port, unit_id=unit_id, timeout=10)
    try:
        assert client.write_single_coil(address, value)
    finally:
        client.close()


def all_different(images) -> bool:
    images = [tuple(image) for image in images]
    return len(set(images)) == len(images)


# --- the plan, pure ---

def test_plan_gives_each_port_and_unit_id_a_meter_of_its_own():
    endpoints = fleet.plan("water", 7000, 3, (1, 5, 7), random.Random(1), 0.0, new_device)
    assert [endpoint.port for endpoint in endpoints] == [7000, 7001, 7002]
    devices = [device for endpoint in endpoints for device in endpoint.devices]
    assert len(devices) == 9 and len({id(device.bank) for device in devices}) == 9
    assert all(sorted(endpoint.devices_by_id) == [1, 5, 7] for endpoint in endpoints)
    for device in devices:  # a bank sized to the map
        assert device.bank.image.words(0, registers.REGISTER_COUNT) is not None
        assert device.bank.image.words(0, registers.REGISTER_COUNT + 1) is None


@pytest.mark.parametrize("meter_type", ["electric", "water", "gas"])
def test_a_seeded_fleet_is_reproducible_and_its_meters_differ(meter_type):
    def fleet_images(seed):
        endpoints = fleet.plan(meter_type, 1, 4, (1, 2), random.Random(seed), 0.0, new_device)
        devices = [device for endpoint in endpoints for device in endpoint.devices]
        now = [0.0]
        updater = Updater(devices, clock=lambda: now[0])  # steps a fleet's columns together
        for _ in range(5):
            now[0] += 60.0
            updater.tick()
        return [device.bank.image.words(0, registers.REGISTER_COUNT) for device in devices]

    first = fleet_images(42)
    assert first == fleet_images(42)
    assert first != fleet_images(43)
    assert all_different(image[READINGS] for image in first)


def test_describe_names_every_port_and_unit_id():
    assert fleet.describe("water", "127.0.0.1:5020", 1, None) == \
        "water meter serving Modbus/TCP on 127.0.0.1:5020"
    assert fleet.describe("gas", "[::1]:5020", 10, None) == \
        "10 gas meters serving Modbus/TCP on [::1]:5020-5029"
    assert fleet.describe("electric", "127.0.0.1:502", 2, (1, 2, 3, 5, 7, 8)) == \
        "12 electric meters serving Modbus/TCP on 127.0.0.1:502-503, unit ids 1-3,5,7-8 on each port"


# --- real servers on loopback ---

def test_meters_on_consecutive_ports_read_differently(servers):
    server = servers(count=4)
    images = [read_regs(port) for port in server.ports]
    assert len(set(server.ports)) == 4
    assert all_different(image[READINGS] for image in images)
    assert all(image[registers.ONLINE] == 1 for image in
               (read_regs(port, address=0, count=registers.REGISTER_COUNT) for port in server.ports))


def test_gateway_routes_by_unit_id_with_pymodbustcp(servers):
    server = servers(unit_ids=(1, 5, 7), interval_s=3600)  # no tick between the two reads of unit 5
    images = [read_regs(server.port, unit_id) for unit_id in (1, 5, 7)]
    assert all_different(image[READINGS] for image in images)
    assert read_regs(server.port, 5) == images[1]  # the same meter again, not a new one
    client = ModbusClient(host="127.0.0.1", port=server.port, unit_id=2, timeout=10)
    try:
        assert client.read_holding_registers(0, 2) is None
        assert client.last_except == GATEWAY_FAILED
        client.unit_id = 200
        assert not client.write_single_coil(registers.COIL_RESET, True)
        assert client.last_except == GATEWAY_FAILED
    finally:
        client.close()


def test_gateway_routes_by_unit_id_with_pymodbus(servers):
    server = servers(count=2, unit_ids=(1, 2))
    client = ModbusTcpClient("127.0.0.1", port=server.ports[1], timeout=10)
    assert client.connect()
    try:
        images = []
        for unit_id in (1, 2):
            result = client.read_input_registers(0, count=23, **unit_kw(client.read_input_registers,
                                                                       unit_id))
            assert not result.isError(), result
            images.append(result.registers)
        assert all_different([*(image[READINGS] for image in images),
                              read_regs(server.ports[0], 1)[READINGS]])
        for unit_id in (0, 3, 247):
            result = client.read_holding_registers(0, count=2, **unit_kw(client.read_holding_registers,
                                                                         unit_id))
            assert result.isError() and result.exception_code == GATEWAY_FAILED, (unit_id, result)
    finally:
        client.close()


def test_without_unit_ids_every_unit_id_reaches_the_one_meter(servers):
    server = servers(interval_s=3600)  # no tick during the test: the image stays put
    assert read_regs(server.port, 1) == read_regs(server.port, 99) == read_regs(server.port, 255)


def test_resets_and_online_states_are_per_meter(servers):
    # no timer tick during the test: the test ticks by hand, so a reset reads exactly 0
    server = servers(count=2, unit_ids=(1, 2), interval_s=3600, speed=100000)
    port_a, port_b = server.ports
    meters = [(port, uid) for port in (port_a, port_b) for uid in (1, 2)]

    def total(port, unit_id):
        return u32(read_regs(port, unit_id, 0, 2))

    def ticked(condition):
        server.updater.tick()
        return condition()

    wait_for(lambda: ticked(lambda: all(total(*meter) > 0 for meter in meters)), 20)
    before = {meter: total(*meter) for meter in meters}
    write_coil(port_a, registers.COIL_RESET, True, unit_id=2)
    after = {meter: total(*meter) for meter in meters}
    assert after == {**before, (port_a, 2): 0}

    write_coil(port_b, registers.COIL_ONLINE, False, unit_id=1)
    online = {meter: read_regs(*meter, registers.ONLINE, 1)[0] for meter in meters}
    assert online == {(port_a, 1): 1, (port_a, 2): 1, (port_b, 1): 0, (port_b, 2): 1}
    frozen, moving = read_regs(port_b, 1), read_regs(port_b, 2)
    wait_for(lambda: ticked(lambda: read_regs(port_b, 2) != moving), 20)
    assert read_regs(port_b, 1) == frozen  # offline: its readings stay as they were


def updater_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "meter-updater")


def test_one_updater_and_one_accepting_thread_for_the_whole_fleet(servers):
    server = servers(count=20, unit_ids=range(1, 6), interval_s=0.05)
    assert len(server.updater.devices) == 100
    assert server.updater.wait_ticks(3, timeout=10)
    # a timer arms its successor before it ends, so two may overlap for an instant: never 100
    for _ in range(6):
        assert updater_threads() <= 2
        assert server.updater.wait_ticks(1, timeout=10)
    assert sum(1 for thread in threading.enumerate() if thread.name == "modbus-server") == 1


def test_a_port_in_use_stops_the_whole_fleet_in_process():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        with pytest.raises(BindError) as refused:
            fleet_server(count=3, ports=[0, taken_port, 0])
    assert str(refused.value) == f"cannot serve on 127.0.0.1:{taken_port}: Address already in use"
    # the thread-leak guard checks that no server or updater thread is left


def test_a_port_in_use_in_the_middle_of_a_range_exits_1_naming_it():
    for _ in range(5):  # another program may take one of our ports meanwhile: try another range
        first = free_ports(5)
        with socket.socket() as middle:
            try:
                middle.bind(("127.0.0.1", first + 2))
            except OSError:
                continue
            middle.listen()
            result = run_program("--port", str(first), "--count", "5", "--seed", "1")
        if f"127.0.0.1:{first + 2}:" in result.stderr:
            break
    assert result.returncode == 1
    assert result.stderr == (f"meter-simulator: cannot serve on 127.0.0.1:{first + 2}: Address already "
                             "in use\n")
    for port in range(first, first + 5):  # nothing of the fleet still listens
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def program_readings(port: int, *args: str) -> list[list[int]]:
    """Start the program, read every meter of a 2-port x 2-unit-id fleet, stop it."""
    with MeterProcess("--count", "2", "--unit-ids", "3,9", "--interval", "3600", *args,
                      port=port) as program:
        wait_for(lambda: all(accepts_read(port + offset) for offset in (0, 1)), 20)
        images = [read_regs(port + offset, uid, 0, registers.REGISTER_COUNT)
                  for offset in (0, 1) for uid in (3, 9)]
        status, _, err = program.stop()
    assert status == 0, err
    assert "4 electric meters serving Modbus/TCP" in err and "unit ids 3,9 on each port" in err
    return images


def accepts_read(port: int) -> bool:
    client = ModbusClient(host="127.0.0.1", port=port, unit_id=3, timeout=5)
    try:
        return client.read_holding_registers(0, 1) is not None
    finally:
        client.close()


def test_the_seed_reproduces_the_whole_fleet_in_the_program():
    port = free_ports(2)
    first = program_readings(port, "--seed", "11")
    assert first == program_readings(port, "--seed", "11")
    assert all_different(image[READINGS] for image in first)
    assert first != program_readings(port, "--seed", "12")


class SwitchIntervalProbe:
    """A tick context that records the GIL switch interval inside every tick."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def __call__(self):
        probe = self

        class Seen:
            def __enter__(self):
                probe.seen.append(sys.getswitchinterval())

            def __exit__(self, *exc_info):
                return False

        return Seen()


@pytest.fixture
def odd_switch_interval():
    """A switch interval that getswitchinterval() and setswitchinterval() do not round-trip."""
    before = sys.getswitchinterval()
    odd = next(us / 1e6 for us in range(4001, 6000) if not round_trips(us / 1e6))
    sys.setswitchinterval(odd)
    odd = sys.getswitchinterval()
    yield odd
    sys.setswitchinterval(before)


def round_trips(interval_s: float) -> bool:
    sys.setswitchinterval(interval_s)
    seen = sys.getswitchinterval()
    sys.setswitchinterval(seen)
    return sys.getswitchinterval() == seen


def test_a_fleet_ticking_inside_another_program_leaves_the_switch_interval_alone(odd_switch_interval):
    """The meters in a user's test suite: MeterServer and Updater never touch process-wide state."""
    probe = SwitchIntervalProbe()
    endpoints = fleet.plan("gas", 1, 40, None, random.Random(3), 0.0, new_device)
    devices = [device for endpoint in endpoints for device in endpoint.devices]
    Updater(devices).tick()
    assert sys.getswitchinterval() == odd_switch_interval
    server = MeterServer("127.0.0.1", endpoints, interval_s=3600)
    server.updater.tick()
    assert sys.getswitchinterval() == odd_switch_interval
    Updater(devices, tick_context=probe).tick()
    assert probe.seen == [odd_switch_interval]


def test_the_programs_short_slices_give_back_exactly_the_interval_that_was_there(odd_switch_interval):
    probe = SwitchIntervalProbe()
    endpoints = fleet.plan("gas", 1, 40, None, random.Random(3), 0.0, new_device)
    devices = [device for endpoint in endpoints for device in endpoint.devices]
    with short_gil_slices():
        during = sys.getswitchinterval()
        Updater(devices, tick_context=probe).tick()
    assert during == pytest.approx(0.0002, abs=1e-6)
    assert sys.getswitchinterval() == odd_switch_interval  # to the microsecond, not one less
    updater = Updater(devices, tick_context=short_gil_slices)
    for _ in range(3):
        updater.tick()
    assert sys.getswitchinterval() == odd_switch_interval


EMBEDDED_MAIN = """
import json, sys, threading
from meter_simulator.app.main import main
sys.setswitchinterval(float(sys.argv[1]))
odd = sys.getswitchinterval()
seen, done = set(), threading.Event()
def watch():
    while not done.wait(0.001):
        seen.add(sys.getswitchinterval())
watcher = threading.Thread(target=watch)
watcher.start()
status = main(sys.argv[2:])
done.set()
watcher.join()
print(json.dumps({"status": status, "odd": odd, "seen": sorted(seen)}))
"""


def test_the_program_called_in_process_leaves_the_switch_interval_alone(odd_switch_interval):
    """main(argv) inside another Python program, with a fleet big enough for short slices: the
    interval is watched while the fleet ticks (the readings move three times), then SIGTERM."""
    port = free_ports(2)
    argv = ["--port", str(port), "--count", "2", "--unit-ids", "1-40", "--interval", "0.05",
            "--log-level", "error"]
    proc = subprocess.Popen([sys.executable, "-c", EMBEDDED_MAIN, repr(odd_switch_interval), *argv],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        client = ModbusClient(host="127.0.0.1", port=port, unit_id=1, timeout=5)
        images = set()  # None while the program starts, then one image a tick
        try:
            wait_for(lambda: proc.poll() is not None
                     or images.add(tuple(client.read_holding_registers(0, 20) or ())) or len(images) > 3,
                     timeout=30)
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    result = json.loads(out)
    assert result["status"] == 0, err
    assert result["seen"] == [result["odd"]]
