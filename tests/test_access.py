"""Access control against the real server on loopback: --read-only, --allow, and the warning
when a non-loopback address is served with neither."""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
import struct

import pytest
from pyModbusTCP.client import ModbusClient

from support import MeterProcess, accepts, free_port, ipv6_loopback_available, recv_exactly, u32, wait_for

MBAP = struct.Struct(">HHHB")
READ_TWO = bytes([0x03, 0, 100, 0, 2])  # registers 100 (online) and 101 (meter type)
WARNING = "anyone on the network"


def exchange(sock: socket.socket, pdu: bytes, tid: int = 1) -> bytes:
    """Send one request PDU (unit id 1) and return the answer's PDU."""
    sock.sendall(MBAP.pack(tid, 0, len(pdu) + 1, 1) + pdu)
    rtid, _, length, _ = MBAP.unpack(recv_exactly(sock, MBAP.size))
    assert rtid == tid
    return recv_exactly(sock, length - 1)


def connect(host: str, port: int, source: str | None = None) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(10)
    if source:
        sock.bind((source, 0))
    sock.connect((host, port))
    return sock


def served(host: str, port: int, source: str | None = None) -> bool:
    """True when a connection from source is answered; False when the server closes it."""
    try:
        with connect(host, port, source) as sock:
            return exchange(sock, READ_TWO) == bytes([3, 4, 0, 1, 0, 0])
    except ConnectionError:
        return False


# --- --read-only ----------------------------------------------------------------------------

WRITES = [  # (function, PDU): every way to write, to writable addresses and others
    ("coil 0 OFF", bytes([0x05, 0, 0, 0x00, 0x00])),
    ("coil 10 ON (reset)", bytes([0x05, 0, 10, 0xFF, 0x00])),
    ("coil 5 ON", bytes([0x05, 0, 5, 0xFF, 0x00])),
    ("coil 0 bad value", bytes([0x05, 0, 0, 0x12, 0x34])),
    ("register 100 = 0", bytes([0x06, 0, 100, 0, 0])),
    ("register 3 = 7", bytes([0x06, 0, 3, 0, 7])),
    ("coils 0-10 by FC 15", bytes([0x0F, 0, 0, 0, 11, 2, 0x00, 0x04])),
    ("register 100 by FC 16", bytes([0x10, 0, 100, 0, 1, 2, 0, 0])),
    ("register 100 by FC 23", bytes([0x17, 0, 0, 0, 2, 0, 100, 0, 1, 2, 0, 0])),
]


def test_read_only_refuses_every_write_with_0x01_and_changes_nothing(make_server):
    server = make_server(read_only=True, interval_s=0.05, speed=3600)
    assert server.updater.wait_ticks(3, timeout=10)
    with connect("127.0.0.1", server.port) as sock:
        def total() -> int:
            answer = exchange(sock, bytes([0x03, 0, 0, 0, 2]))
            return u32(struct.unpack(">2H", answer[2:]))

        wait_for(lambda: total() > 0, timeout=20)
        before = total()
        for n, (what, pdu) in enumerate(WRITES):
            assert exchange(sock, pdu, tid=n) == bytes([pdu[0] | 0x80, 0x01]), what
        # nothing changed: still online, coil 0 ON, and the total was not reset
        assert exchange(sock, READ_TWO) == bytes([3, 4, 0, 1, 0, 0])
        assert exchange(sock, bytes([0x01, 0, 0, 0, 1])) == bytes([1, 1, 1])
        assert total() >= before


def test_without_read_only_the_same_writes_are_served(make_server):
    server = make_server()
    with connect("127.0.0.1", server.port) as sock:
        assert exchange(sock, WRITES[0][1]) == WRITES[0][1]  # coil 0 OFF echoed
        assert exchange(sock, READ_TWO) == bytes([3, 4, 0, 0, 0, 0])  # offline now


# --- --allow --------------------------------------------------------------------------------

def test_allow_accepts_listed_clients_and_closes_others_at_once(make_server, caplog):
    caplog.set_level(logging.WARNING, logger="meter_simulator.modbus")
    server = make_server(allow=(ipaddress.ip_network("127.0.0.1/32"),))
    assert served("127.0.0.1", server.port, source="127.0.0.1")
    for _ in range(20):
        assert not served("127.0.0.1", server.port, source="127.0.0.2")
    assert served("127.0.0.1", server.port, source="127.0.0.1")
    refusals = [r.getMessage() for r in caplog.records if "--allow" in r.getMessage()]
    assert refusals[:1] == [f"refused connection from 127.0.0.2 to port {server.port}: not in --allow"]
    assert len(refusals) < 20  # rate-limited, not a line per connection


def test_allow_takes_several_networks(make_server):
    server = make_server(allow=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.2/32")))
    assert served("127.0.0.1", server.port, source="127.0.0.2")
    assert not served("127.0.0.1", server.port, source="127.0.0.1")


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback")
def test_allow_over_ipv6(make_server):
    ipv6_only = make_server(host="::1", allow=(ipaddress.ip_network("::1/128"),))
    ipv4_only = make_server(host="::1", allow=(ipaddress.ip_network("127.0.0.0/8"),))
    assert served("::1", ipv6_only.port)
    assert not served("::1", ipv4_only.port)


# --- the program: options wired through, and the warning ------------------------------------

def test_program_with_read_only_and_allow():
    with MeterProcess("--read-only", "--allow", "127.0.0.1/32") as meter:
        client = ModbusClient(host="127.0.0.1", port=meter.port, timeout=5)
        try:
            assert not client.write_single_coil(10, True) and client.last_except == 0x01
            assert client.read_holding_registers(100, 2) == [1, 0]
        finally:
            client.close()
        assert served("127.0.0.1", meter.port, source="127.0.0.1")
        assert not served("127.0.0.1", meter.port, source="127.0.0.2")
        status, _, err = meter.stop()
    assert status == 0
    assert WARNING not in err


def run_briefly(*args: str) -> str:
    """Start the program on 0.0.0.0 and a free port, stop it as soon as it serves; its stderr.

    Only loopback traffic: the readiness check connects to 127.0.0.1.
    """
    port = free_port("0.0.0.0")
    meter = MeterProcess(*args, host="0.0.0.0", port=port).start(wait=False)
    try:
        wait_for(lambda: meter.proc.poll() is not None or accepts("127.0.0.1", port), timeout=20)
        status, _, err = meter.stop()
    finally:
        meter.__exit__()
    assert status == 0, err
    return err


@pytest.mark.parametrize("args, warned", [((), True), (("--read-only",), False),
                                          (("--allow", "127.0.0.1/32"), False)])
def test_warning_when_serving_beyond_loopback_unprotected(args, warned):
    err = run_briefly(*args)
    warnings = [line for line in err.splitlines() if WARNING in line]
    assert len(warnings) == (1 if warned else 0), err
    if warned:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING serving 0\.0\.0\.0 with neither "
                            r"--read-only nor --allow: anyone on the network can reset the meter or take "
                            r"it offline", warnings[0]), warnings[0]
