"""pyModbusTCP's private names the simulator relies on, each pinned by a test here.

modbus/endpoint.py is the one module that uses them; when a pyModbusTCP release renames
or changes one, a test below fails and names it. A source scan keeps every other module
off pyModbusTCP's private names, and the adapter to the ones pinned here.
"""
from __future__ import annotations

import ast
import inspect
import random
import socket
import socketserver
import threading
from pathlib import Path

import pytest
from pyModbusTCP.server import DataBank, DataHandler, DeviceIdentification, ModbusServer

import meter_simulator
from meter_simulator.device.updater import Updater
from meter_simulator.modbus.endpoint import ModbusEndpoint
from meter_simulator.modbus.handler import MeterDataHandler
from meter_simulator.modbus.server import device_identification, new_device
from meter_simulator.model.meters import make_meter
from support import wait_for

PACKAGE = Path(meter_simulator.__file__).resolve().parent
ADAPTER = "modbus/endpoint.py"
# net/ imports neither pyModbusTCP nor modbus/ (test_layering.py): a name there is its own
# (the Acceptor's _serve thread), never one of pyModbusTCP's objects
NEVER_HOLDS_ONE = ("net/",)
PINNED = {"_service", "_evt_running"}  # each has its tests below


def private_names() -> set[str]:
    """pyModbusTCP's server module's private attribute names: of its classes and instances."""
    classes = [DataBank, DataHandler, DeviceIdentification, ModbusServer]
    classes += [member for _, member in inspect.getmembers(ModbusServer, inspect.isclass)
                if member.__module__ == ModbusServer.__module__]
    instances = [ModbusServer(), DataBank(coils_size=1, d_inputs_size=1, h_regs_size=1, i_regs_size=1),
                 DeviceIdentification()]
    names = {name for cls in classes for name in dir(cls)}
    names |= {name for instance in instances for name in vars(instance)}
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def attributes_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}


def test_only_the_adapter_touches_pymodbustcps_private_names():
    private = private_names()
    assert PINNED <= private, "a pinned name is gone from pyModbusTCP"
    used = {path.relative_to(PACKAGE).as_posix(): attributes_used(path) & private
            for path in sorted(PACKAGE.rglob("*.py"))
            if not path.relative_to(PACKAGE).as_posix().startswith(NEVER_HOLDS_ONE)}
    assert {module: names for module, names in used.items() if names and module != ADAPTER} == {}
    assert used[ADAPTER] == PINNED, "a private name the adapter uses needs its test here"


def test_a_started_server_keeps_its_listener_in__service():
    server = ModbusServer(host="127.0.0.1", port=0, no_block=True)
    assert server._service is None
    server.start()
    try:
        assert isinstance(server._service, socketserver.TCPServer)
        host, port = server._service.server_address[:2]
        assert host == "127.0.0.1" and port > 0
        with socket.create_connection((host, port), timeout=5):
            pass  # it is the listening socket
    finally:
        server.stop()


def test_the_running_flag_is__evt_running_an_event_that_is_run_reads():
    server = ModbusServer(host="127.0.0.1", port=0, no_block=True)
    assert isinstance(server._evt_running, threading.Event)
    assert not server._evt_running.is_set() and not server.is_run
    server.start()
    try:
        wait_for(lambda: server.is_run, timeout=10)
        assert server._evt_running.is_set()
    finally:
        server.stop()
    wait_for(lambda: not server._evt_running.is_set(), timeout=10)
    assert not server.is_run


@pytest.fixture
def endpoint():
    device = new_device(make_meter("electric", random.Random(1), 12 * 3600.0))
    handler = MeterDataHandler(Updater([device]), device=device)
    modbus = ModbusEndpoint(host="127.0.0.1", port=0, data_hdl=handler,
                            device_id=device_identification("electric"))
    yield modbus
    modbus.stop()


def test_the_endpoint_sets_both_as_pymodbustcp_does(endpoint):
    assert endpoint.service is None and not endpoint.is_run
    endpoint.start()
    assert endpoint.is_run  # pyModbusTCP's public view of _evt_running
    assert endpoint.service is endpoint._service and endpoint.bound_port > 0
    assert endpoint.service.responder is endpoint.responder
    endpoint.stop()
    assert not endpoint.is_run and endpoint.service.closed.is_set()
