"""BoundedConnections (net/connections.py) on a line-echo server of the test's own, real sockets on
loopback: the limit and its refusal count, the allow list, every thread joined on close (also one
still starting, one ending), none started after it, and the thread names each server gives; a
connection's bounded waits (net/waits.py)."""
from __future__ import annotations

import ipaddress
import logging
import random
import socket
import socketserver
import threading
import time

import pytest

from meter_simulator.device.updater import Updater
from meter_simulator.http.web import ControlServer, json_answer
from meter_simulator.modbus.handler import MeterDataHandler
from meter_simulator.modbus.mbap import ConnectionHandler
from meter_simulator.modbus.pdu import Responder
from meter_simulator.modbus.server import device_identification, new_device
from meter_simulator.modbus.tcp import MeterTCPServer
from meter_simulator.model.meters import make_meter
from meter_simulator.net.acceptor import Acceptor
from meter_simulator.net.connections import BoundedConnections
from meter_simulator.net.waits import TIMED_OUT, bound_waits
from support import closed_by_server, wait_for

PREFIX = "test-connection"


class LineHandler(socketserver.StreamRequestHandler):
    """Echoes each line until the client closes (or the server shuts the socket down)."""

    def handle(self) -> None:
        self.server.register(self)
        try:
            for line in self.rfile:
                self.wfile.write(line)
        except OSError:  # a reset: this connection is over
            pass
        finally:
            self.server.unregister(self)


class SlowStart(LineHandler):
    """A connection thread still starting (its handler not registered yet) until a close begins."""

    entered: threading.Event

    def setup(self) -> None:
        self.entered.set()
        self.server.closed.wait(10)
        super().setup()


class EchoServer(BoundedConnections, socketserver.TCPServer):
    thread_prefix = PREFIX


class Served:
    """An EchoServer on 127.0.0.1 port 0 with an acceptor of its own."""

    def __init__(self, handler=LineHandler, **options) -> None:
        options.setdefault("max_connections", 10)
        self.server = EchoServer(("127.0.0.1", 0), handler, **options)
        self.port = self.server.server_address[1]
        self.acceptor = Acceptor([self.server], name="test-acceptor")
        self.acceptor.start()

    def close(self, timeout_s: float = 10.0) -> float:
        """Stop as a server does (acceptor, listener, connections); the seconds it took."""
        started = time.monotonic()
        self.acceptor.stop()
        self.server.server_close()
        self.server.end_connections(timeout_s)
        return time.monotonic() - started


@pytest.fixture
def served():
    made: list[Served] = []

    def make(**options) -> Served:
        made.append(Served(**options))
        return made[-1]

    yield make
    for each in made:
        each.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def echoed(sock: socket.socket) -> bool:
    sock.sendall(b"ping\n")
    return sock.recv(16) == b"ping\n"


def test_past_the_limit_a_connection_is_closed_at_accept_and_counted(served, caplog):
    echo = served(max_connections=2)
    first, second = connect(echo.port), connect(echo.port)
    try:
        assert echoed(first) and echoed(second)
        with caplog.at_level(logging.WARNING, logger="meter_simulator.net"):
            for _ in range(3):
                with connect(echo.port) as extra:
                    assert closed_by_server(extra)
        assert echo.server.refused == {"full": 3, "allow": 0}
        assert (echo.server.accepted, echo.server.clients) == (2, 2)
        assert [r.getMessage() for r in caplog.records] == [  # rate-limited: one of three
            "refused a connection from 127.0.0.1: full"]
        first.close()  # its slot comes back once its thread has seen the close
        wait_for(lambda: echo.server.clients == 1)
        with connect(echo.port) as third:
            assert echoed(third)
        assert echo.server.accepted == 3
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("network, served_there", [("192.0.2.0/24", False), ("127.0.0.0/8", True)])
def test_a_peer_outside_the_allow_list_is_closed_at_accept_and_counted(served, network, served_there):
    echo = served(allow=[ipaddress.ip_network(network)])
    with connect(echo.port) as sock:
        if served_there:
            assert echoed(sock)
        else:
            assert closed_by_server(sock)
    assert echo.server.refused == {"full": 0, "allow": 0 if served_there else 1}
    assert echo.server.accepted == (1 if served_there else 0)


def test_close_joins_every_thread_serving_or_ending_named_for_its_peer(served):
    echo = served()
    socks = [connect(echo.port) for _ in range(5)]
    try:
        assert all(echoed(sock) for sock in socks)
        wait_for(lambda: len(echo.server.connections) == 5)
        names = {thread.name for thread in echo.server.threads}
        assert names == {f"{PREFIX} 127.0.0.1 {sock.getsockname()[1]}" for sock in socks}
        socks[0].close()  # its thread may be ending while the close runs
        threads = list(echo.server.threads)
        assert echo.close() < 5.0
        assert not [thread for thread in threads if thread.is_alive()]
        assert all(closed_by_server(sock) for sock in socks[1:])
        assert not echo.server.connections
    finally:
        for sock in socks:
            sock.close()


def test_a_thread_still_starting_while_close_runs_is_shut_down_and_joined(served):
    """Its handler registers only after the close has begun: the close knew its thread and
    socket from the start, so the handler reads an end of stream and the join is prompt."""
    handler = type("Starting", (SlowStart,), {"entered": threading.Event()})
    echo = served(handler=handler)
    with connect(echo.port) as sock:
        assert handler.entered.wait(10)
        assert not echo.server.connections, "the handler registered already"
        (thread,) = echo.server.threads
        started = time.monotonic()
        echo.server.end_connections(timeout_s=10)
        assert time.monotonic() - started < 5.0
        assert not thread.is_alive()
        assert closed_by_server(sock)


def test_a_connection_accepted_after_close_is_closed_unserved(served):
    echo = served()
    echo.server.end_connections()  # the acceptor still runs: a connection can still come
    with connect(echo.port) as late:
        assert closed_by_server(late)
    wait_for(lambda: echo.server.accepted == 1)
    assert not echo.server.threads and echo.server.clients == 0


def modbus_server() -> MeterTCPServer:
    device = new_device(make_meter("electric", random.Random(1)))
    handler = MeterDataHandler(Updater([device]), device=device)
    responder = Responder(handler, device_identification("electric"))
    return MeterTCPServer("127.0.0.1", 0, ConnectionHandler, responder=responder, max_clients=4)


def control_server() -> ControlServer:
    return ControlServer("127.0.0.1", 0, lambda request: json_answer(200, {}))


@pytest.mark.parametrize("make, prefix", [(modbus_server, "modbus-connection"),
                                          (control_server, "control-connection")])
def test_each_server_names_its_connection_threads(make, prefix):
    server = make()
    acceptor = Acceptor([server], name="test-acceptor")
    acceptor.start()
    try:
        with connect(server.server_address[1]) as sock:
            name = f"{prefix} 127.0.0.1 {sock.getsockname()[1]}"
            wait_for(lambda: server.connections)
            assert [thread.name for thread in server.connections.values()] == [name]
    finally:
        acceptor.stop()
        server.server_close()
        server.end_connections()
    assert not [thread for thread in server.threads if thread.is_alive()]


@pytest.mark.parametrize("wait_s", [0.05, 0.0])
def test_a_bounded_recv_returns_what_came_or_times_out_within_its_bound(wait_s):
    mine, peer = socket.socketpair()
    with mine, peer:
        bound_waits(mine, wait_s)  # 0: the shortest bound, never "wait forever"
        start = time.monotonic()
        with pytest.raises(TIMED_OUT):
            mine.recv(16)
        assert time.monotonic() - start < 1.0
        peer.sendall(b"frame")
        assert mine.recv(16) == b"frame"
        peer.close()
        assert mine.recv(16) == b""  # the peer's close still ends a blocked recv
