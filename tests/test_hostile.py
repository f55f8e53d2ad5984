"""Hostile and broken clients against the real server on loopback: connection limit, idle
timeout, slowloris, floods, strict framing, and 10,000 connect/close cycles."""
from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from types import SimpleNamespace

import pytest

from meter_simulator.modbus.mbap import ConnectionHandler, IdleTimeout
from meter_simulator.modbus.pdu import pdu_size_ok
from meter_simulator.ratelimit import RateLimitedLog
from support import FakeClock, closed_by_server, recv_exactly, wait_for

MBAP = struct.Struct(">HHHB")
READ_TWO = bytes([0x03, 0, 100, 0, 2])  # FC 3: registers 100 (online) and 101 (meter type)


def connect(port: int, source: str | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    if source:
        sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def exchange(sock: socket.socket, pdu: bytes, tid: int = 1, unit: int = 1, protocol_id: int = 0,
             length: int | None = None) -> tuple[int, int, int, bytes]:
    """Send one frame and read one answer: (transaction id, protocol id, unit id, PDU)."""
    sock.sendall(MBAP.pack(tid, protocol_id, len(pdu) + 1 if length is None else length, unit) + pdu)
    rtid, rproto, rlength, runit = MBAP.unpack(recv_exactly(sock, MBAP.size))
    return rtid, rproto, runit, recv_exactly(sock, rlength - 1)


def served(sock: socket.socket, tid: int = 1) -> bool:
    """True when a read on this connection is answered correctly."""
    try:
        return exchange(sock, READ_TWO, tid=tid) == (tid, 0, 1, bytes([3, 4, 0, 1, 0, 0]))
    except (OSError, ConnectionError):
        return False


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --- connection limit, idle timeout, slowloris, flood -------------------------------------

def test_connection_past_max_clients_is_closed_and_the_others_are_served(make_server, caplog):
    caplog.set_level(logging.WARNING, logger="meter_simulator.modbus")
    server = make_server(max_clients=3)
    clients = [connect(server.port) for _ in range(3)]
    try:
        assert all(served(sock) for sock in clients)
        extra = connect(server.port)
        assert closed_by_server(extra)
        extra.close()
        assert all(served(sock, tid=2) for sock in clients)
        assert [r.getMessage() for r in caplog.records if "--max-clients" in r.getMessage()] == [
            f"refused connection from 127.0.0.1 to port {server.port}: 3 clients already (--max-clients)"]
        clients.pop().close()  # its slot comes back once the server sees the close
        def newcomer_served():
            with connect(server.port) as sock:
                return served(sock)
        wait_for(newcomer_served, timeout=20, interval=0.1)
    finally:
        for sock in clients:
            sock.close()


def test_an_idle_connection_is_closed_after_a_short_timeout_and_zero_never_closes(make_server):
    """The fast case: one short timeout (the connection looks at it every 0.5 s)."""
    short = make_server(idle_timeout_s=0.2)
    never = make_server(idle_timeout_s=0)
    forever = connect(never.port)
    idle = connect(short.port)  # sends nothing at all
    try:
        opened_at = time.monotonic()
        assert closed_by_server(idle, timeout=30)
        assert time.monotonic() - opened_at >= 0.2
        assert served(forever)
    finally:
        forever.close()
        idle.close()


@pytest.mark.slow
def test_idle_connection_is_closed_after_the_timeout_and_zero_never_closes(make_server):
    short = make_server(idle_timeout_s=1)
    never = make_server(idle_timeout_s=0)
    forever = connect(never.port)
    first = connect(short.port)
    try:
        assert served(forever) and served(first)
        assert closed_by_server(first, timeout=30)
        # a second idle connection opened after the first one closed: when it is closed too,
        # at least two idle timeouts have passed for the connection with no timeout
        with connect(short.port) as second:
            assert served(second)
            assert closed_by_server(second, timeout=30)
        assert served(forever, tid=2)
    finally:
        forever.close()
        first.close()


def test_bytes_that_complete_a_frame_are_served_though_the_idle_time_ran_out():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=10)
        accepted, _ = listener.accept()
    with client, accepted:
        handler = ConnectionHandler.__new__(ConnectionHandler)  # its read side, without a server loop
        handler.request, handler.server = accepted, SimpleNamespace(idle_timeout_s=60)
        handler.setup()
        handler.deadline = time.monotonic() - 1.0  # it ran out while the frame was on its way
        request = MBAP.pack(1, 0, len(READ_TWO) + 1, 1) + READ_TWO
        client.sendall(request)
        assert handler.recv_exact(len(request)) == request
        client.sendall(request[:3])  # part of a frame: the idle timeout still ends the connection
        with pytest.raises(IdleTimeout):
            handler.recv_exact(len(request))


@pytest.mark.slow
def test_a_request_resets_the_idle_timeout(make_server):
    server = make_server(idle_timeout_s=3)
    with connect(server.port) as sock:
        assert served(sock)
        # keep polling faster than the timeout; a probe connection times out meanwhile
        with connect(server.port) as probe:
            for n in range(1000):
                assert served(sock, tid=n)
                if closed_by_server(probe, timeout=0.2):
                    break
            else:
                pytest.fail("the idle probe connection was never closed")
        assert served(sock, tid=7)


@pytest.mark.slow
def test_slowloris_is_closed_after_the_idle_timeout_while_others_are_served(make_server):
    server = make_server(idle_timeout_s=2, max_clients=2)  # the good client polls well within it
    good = connect(server.port)
    slow = connect(server.port)
    # a well-formed but maximal frame (253-byte PDU): 253 s to deliver at one byte a second
    frame = MBAP.pack(9, 0, 254, 1) + bytes([0x03]) + bytes(252)
    try:
        assert served(good)
        for n, byte in enumerate(frame):
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                break
            assert served(good, tid=n)  # the trickle blocks nobody
            if closed_by_server(slow, timeout=0.3):  # also paces the trickle
                break
        else:
            pytest.fail("the slow client was allowed to finish its frame")
        assert n < len(frame) - 1
        good.close()

        def both_slots_free() -> bool:  # the slowloris holds no slot once it is closed
            with connect(server.port) as first, connect(server.port) as second:
                return served(first) and served(second)

        wait_for(both_slots_free, timeout=20, interval=0.1)
    finally:
        good.close()
        slow.close()


def test_flood_past_the_limit_while_a_client_keeps_getting_answers(make_server, caplog):
    caplog.set_level(logging.WARNING, logger="meter_simulator.modbus")
    server = make_server(max_clients=5)
    good = connect(server.port)
    flood: list[socket.socket] = []
    began_s = time.monotonic()
    try:
        assert served(good)
        for n in range(300):
            flood.append(connect(server.port))
            if n % 10 == 0:
                assert served(good, tid=n)
        answered = [sock for sock in flood if served(sock)]
        assert len(answered) == 4  # the slots left beside the good client
        assert all(closed_by_server(sock) for sock in flood if sock not in answered)
        assert served(good, tid=999)
        refusals = [r.getMessage() for r in caplog.records if "--max-clients" in r.getMessage()]
        elapsed_s = time.monotonic() - began_s
        assert 1 <= len(refusals) <= 1 + elapsed_s / 10  # rate-limited, not one per connection
        assert refusals[0] == (f"refused connection from 127.0.0.1 to port {server.port}: 5 clients "
                               "already (--max-clients)")
    finally:
        good.close()
        for sock in flood:
            sock.close()


def test_refusal_log_is_rate_limited_and_counts_what_it_left_out(caplog):
    caplog.set_level(logging.WARNING, logger="test.ratelimit")
    clock = FakeClock()
    warn = RateLimitedLog(logging.getLogger("test.ratelimit"), period_s=10, clock=clock)
    assert warn("refused %s", "a")
    assert not warn("refused %s", "b")
    assert not warn("refused %s", "c")
    clock.now += 10
    assert warn("refused %s", "d")
    assert [r.getMessage() for r in caplog.records] == [
        "refused a", "refused d (and 2 more since the last such message)"]


# --- strict framing -------------------------------------------------------------------------

@pytest.mark.parametrize("protocol_id, length", [
    (1, 6), (0xFFFF, 6),          # not Modbus
    (0, 0), (0, 1),               # no function code
    (0, 255), (0, 256), (0, 0xFFFF),  # PDU longer than Modbus allows (253 bytes)
])
def test_bad_mbap_header_closes_that_connection_only(shared_servers, protocol_id, length):
    server = shared_servers["electric"]
    with connect(server.port) as bad, connect(server.port) as other:
        assert served(other)
        bad.sendall(MBAP.pack(5, protocol_id, length, 1) + READ_TWO)
        assert closed_by_server(bad)
        assert served(other, tid=2)


TID, UNIT = 0xBEEF, 0x5A


@pytest.mark.parametrize("pdu", [
    bytes([0x03]), bytes([0x03, 0, 0, 0]), bytes([0x03, 0, 0, 0, 2, 0]),   # read: 5 bytes
    bytes([0x01, 0, 0, 0, 1, 0]), bytes([0x02, 0, 0]), bytes([0x04, 0, 0, 0, 1, 9, 9]),
    bytes([0x05, 0, 0, 0xFF]), bytes([0x05, 0, 0, 0xFF, 0, 0]),              # write single
    bytes([0x06, 0, 100, 0]), bytes([0x06, 0, 100, 0, 1, 0]),
    bytes([0x0F, 0, 0, 0, 1]), bytes([0x0F, 0, 0, 0, 1, 1]),                 # byte count, no data
    bytes([0x0F, 0, 0, 0, 1, 1, 1, 0]),                                      # one byte too many
    bytes([0x0F, 0, 0, 0, 1, 2, 1, 0]),                                      # byte count 2 for 1 coil
    bytes([0x10, 0, 100, 0, 1, 2, 0]), bytes([0x10, 0, 100, 0, 1, 2, 0, 1, 0]),
    bytes([0x17, 0, 0, 0, 1, 0, 100, 0, 1]), bytes([0x17, 0, 0, 0, 1, 0, 100, 0, 1, 2, 0, 1, 0]),
    bytes([0x2B]), bytes([0x2B, 0x0E, 1]), bytes([0x2B, 0x0E, 1, 0, 0]),     # device id: 4 bytes
    bytes([0x03]) + bytes(252),                                               # MBAP length 254
])
def test_request_too_short_or_too_long_gets_0x03(shared_servers, pdu):
    server = shared_servers["electric"]
    with connect(server.port) as sock:
        assert exchange(sock, pdu, tid=TID, unit=UNIT) == (TID, 0, UNIT, bytes([pdu[0] | 0x80, 0x03]))
        assert served(sock)  # the connection stays usable


# the function codes a client may really send (0x07, 0x08, 0x14, 0x41, 0x7F, ...) are in
# test_clients.py; here the codes no client should: 0, and the exception replies' 0x80 and up
@pytest.mark.parametrize("pdu", [
    bytes([0x00, 0, 0, 0, 1]), bytes([0x80]), bytes([0x83, 0, 0, 0, 1]), bytes([0xAB, 0x0E, 1, 0]),
    bytes([0xFF]),
])
def test_unknown_function_code_gets_0x01(shared_servers, pdu):
    server = shared_servers["electric"]
    with connect(server.port) as sock:
        assert exchange(sock, pdu, tid=TID, unit=UNIT) == (TID, 0, UNIT, bytes([pdu[0] | 0x80, 0x01]))
        assert served(sock)


def test_well_sized_requests_pass_the_size_check():
    for pdu in (bytes([0x03, 0, 0, 0, 2]), bytes([0x05, 0, 10, 0xFF, 0]),
                bytes([0x0F, 0, 0, 0, 9, 2, 1, 0]), bytes([0x10, 0, 100, 0, 2, 4, 0, 1, 0, 0]),
                bytes([0x17, 0, 0, 0, 1, 0, 100, 0, 1, 2, 0, 1]), bytes([0x2B, 0x0E, 1, 0])):
        assert pdu_size_ok(pdu), pdu.hex()


def test_client_gone_mid_frame_harms_nobody(shared_servers):
    server = shared_servers["electric"]
    with connect(server.port) as other:
        for cut in (1, 6, 7, 9):
            with connect(server.port) as sock:
                sock.sendall((MBAP.pack(1, 0, 6, 1) + READ_TWO)[:cut])
        assert served(other)


# --- churn ----------------------------------------------------------------------------------

def settled(fds: int, threads: int):
    """A condition: no more open fds and threads than at the start."""
    return lambda: open_fds() <= fds and threading.active_count() <= threads


def churn(server, warm_up: int, cycles: int) -> int:
    """warm_up, then cycles connect/close cycles (a third hung up with a reset, a third in the
    middle of a frame); fds and threads come back to where they were; RSS growth in kB."""

    def cycle(n: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server.port))
            if n % 3 == 1:  # hang up with a reset instead of a FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif n % 3 == 2:  # hang up in the middle of a frame
                sock.sendall(MBAP.pack(n & 0xFFFF, 0, 6, 1))
        finally:
            sock.close()

    for n in range(warm_up):  # warm up: thread stacks, allocator arenas
        cycle(n)
    with connect(server.port) as sock:
        assert served(sock)
    wait_for(lambda: server.endpoints[0].service.clients == 0, timeout=30)
    fds, threads, rss_start_kb = open_fds(), threading.active_count(), rss_kb()
    for n in range(cycles):
        cycle(n)
    with connect(server.port) as sock:
        assert served(sock)
    wait_for(lambda: server.endpoints[0].service.clients == 0, timeout=30)
    wait_for(settled(fds, threads), timeout=30)
    growth_kb = rss_kb() - rss_start_kb
    print(f"churn: fds {fds} -> {open_fds()}, threads {threads} -> {threading.active_count()}, "
          f"RSS {rss_start_kb} -> {rss_start_kb + growth_kb} kB")
    return growth_kb


def test_connect_close_cycles_leave_no_descriptor_or_thread_behind(make_server):
    """The fast case: a few hundred cycles, too few for the memory to tell."""
    churn(make_server(interval_s=0.5), warm_up=100, cycles=300)


@pytest.mark.slow
def test_ten_thousand_connect_close_cycles_leave_nothing_behind(make_server):
    assert churn(make_server(interval_s=0.5), warm_up=1000, cycles=10_000) < 5 * 1024
