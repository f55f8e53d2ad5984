"""RTU over TCP (--framing rtu) from outside: pymodbus's RTU framer over TCP, hand-made frames on a
real socket, the program's start line, metrics and faults (rtu-contract sections 2, 3, 6, 7).

Silence is shown without waiting for it: a frame that must get no answer is followed by one
that must, and the first bytes back are that answer.
"""
from __future__ import annotations

import select
import socket
import time

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.framer import FramerType

from meter_simulator.modbus.rtu import crc16, framed
from meter_simulator.testing import MeterSimulator
from support import MeterProcess, closed_by_server, connect, recv_exactly, rtu_frames, scrape, unit_kw

READ_STATUS = bytes.fromhex("03 0064 0002")  # registers 100, 101: online, meter type


def ask(sock: socket.socket, unit_id: int, pdu: bytes, answer_size: int) -> bytes:
    """Send one request frame, return the answer frame (answer_size bytes), its CRC checked."""
    sock.sendall(framed(unit_id, pdu))
    answer = recv_exactly(sock, answer_size)
    assert crc16(answer) == 0, answer.hex()
    return answer


def status(sock: socket.socket, unit_id: int = 1) -> bytes:
    """The answer frame to a read of registers 100-101 (9 bytes)."""
    return ask(sock, unit_id, READ_STATUS, 9)


@pytest.fixture(scope="module")
def rtu_sim():
    with MeterSimulator(framing="rtu", interval=3600, seed=3, http=True) as sim:
        yield sim


@pytest.fixture(scope="module")
def rtu_gateway():
    with MeterSimulator(framing="rtu", interval=3600, seed=3, unit_ids="2-4", type="water") as sim:
        yield sim


def rtu_client(port: int) -> ModbusTcpClient:
    client = ModbusTcpClient("127.0.0.1", port=port, framer=FramerType.RTU, timeout=2, retries=0)
    assert client.connect()
    return client


def test_pymodbus_reads_the_meter_through_its_rtu_framer(rtu_sim):
    client = rtu_client(rtu_sim.port)
    try:
        read = client.read_holding_registers
        answer = read(0, count=18, **unit_kw(read))
        assert not answer.isError()
        seam = rtu_sim._running().server.endpoints[0].responder
        expected = seam.answer(1, bytes.fromhex("03 0000 0012"))  # the same moment: no tick in between
        assert bytes((3, 36)) + b"".join(value.to_bytes(2, "big") for value in answer.registers) == expected
        coils = client.read_coils(0, count=11, **unit_kw(client.read_coils))
        assert coils.bits[:3] == [True, True, True]
    finally:
        client.close()


def test_every_function_code_answers_what_the_seam_answers(rtu_sim):
    seam = rtu_sim._running().server.endpoints[0].responder
    with connect(rtu_sim.port) as sock:
        for pdu in ("03 0000 0004", "04 000A 0008", "01 0000 000B", "02 0002 0009", "03 00C8 0001",
                    "2B 0E 01 00", "2B 0E 04 07", "2B 0D 01 00", "07", "41 01 02", "03 0000 0000"):
            request = bytes.fromhex(pdu)
            expected = seam.answer(1, request)
            answer = ask(sock, 1, request, len(expected) + 3)
            assert answer[0] == 1 and answer[1:-2] == expected, pdu


def test_a_frame_split_across_sends_is_reassembled(rtu_sim):
    with connect(rtu_sim.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frame = framed(1, READ_STATUS)
        for cut in range(1, len(frame)):
            sock.sendall(frame[:cut])
            sock.sendall(frame[cut:])
            assert recv_exactly(sock, 9)[:5] == bytes.fromhex("01 03 04 0001"), cut


def test_garbage_and_a_bad_crc_are_skipped_and_the_next_frame_answered(rtu_sim):
    good = framed(1, READ_STATUS)
    with connect(rtu_sim.port) as sock:
        sock.sendall(b"\x00\xff\x01\x83" + good)  # garbage in front, in the same send
        assert recv_exactly(sock, 9)[:3] == bytes.fromhex("01 03 04")
        sock.sendall(good[:-2] + good[-1:] + good[-2:-1])  # the CRC high byte first: a bad CRC
        assert status(sock)[:3] == bytes.fromhex("01 03 04")  # the first answer is the good frame's


def test_frames_back_to_back_are_answered_in_order(rtu_sim):
    with connect(rtu_sim.port) as sock:
        sock.sendall(framed(1, READ_STATUS) + framed(1, bytes.fromhex("01 0000 0001"))
                     + framed(1, bytes.fromhex("03 0000 0001")))
        assert recv_exactly(sock, 9)[1] == 3
        assert recv_exactly(sock, 6)[1] == 1
        assert recv_exactly(sock, 7)[1:3] == bytes.fromhex("03 02")


def test_absent_unit_ids_and_an_mbap_frame_get_silence_and_the_connection_stays(rtu_sim):
    with connect(rtu_sim.port) as sock:
        for unit_id in (2, 247, 248, 255):
            sock.sendall(framed(unit_id, READ_STATUS))
        sock.sendall(bytes.fromhex("0001 0000 0006 01 03 0064 0002"))  # Modbus/TCP: garbage here
        assert status(sock)[:3] == bytes.fromhex("01 03 04")


def test_an_exception_is_framed_as_rtu(rtu_sim):
    with connect(rtu_sim.port) as sock:
        assert ask(sock, 1, bytes.fromhex("03 00C8 0001"), 5)[:3] == bytes.fromhex("01 83 02")
        assert ask(sock, 1, bytes.fromhex("03 0000 007E"), 5)[:3] == bytes.fromhex("01 83 03")


def test_a_broadcast_write_is_executed_and_never_answered():
    with MeterSimulator(framing="rtu", interval=3600) as sim, connect(sim.port) as sock:
        sock.sendall(framed(0, bytes.fromhex("06 0064 0000")))  # everyone offline
        sock.sendall(framed(0, READ_STATUS))  # a broadcast read: ignored
        assert status(sock)[3:5] == bytes.fromhex("0000")  # the first answer: offline already
        assert sim.meter()["online"] is False


def test_a_gateway_bus_answers_each_listed_unit_id(rtu_gateway):
    with connect(rtu_gateway.port) as sock:
        sock.sendall(framed(1, READ_STATUS))  # not on this bus: silence
        for unit_id in (2, 3, 4):
            answer = status(sock, unit_id)
            assert answer[0] == unit_id and answer[3:7] == bytes.fromhex("0001 0001")  # water


def test_the_metrics_count_requests_bad_crcs_broadcasts_and_other_units_exactly(rtu_sim):
    before = scrape(rtu_sim.http_url)
    good = framed(1, READ_STATUS)
    with connect(rtu_sim.port) as sock:
        for _ in range(5):
            status(sock)
        sock.sendall(good[:-1] + bytes((good[-1] ^ 0x55,)))  # one lone frame with a bad CRC
        sock.sendall(framed(0, bytes.fromhex("06 0064 0001")))
        sock.sendall(framed(9, READ_STATUS))
        status(sock)
    after = scrape(rtu_sim.http_url)  # the last answer came after every frame before it was counted
    changes = {result: rtu_frames(after, "tcp", result) - rtu_frames(before, "tcp", result)
               for result in ("request", "bad_crc", "broadcast", "other_unit")}
    assert changes == {"request": 6, "bad_crc": 1, "broadcast": 1, "other_unit": 1}
    assert rtu_frames(after, "serial", "request") is None  # no serial face: no serial series


def test_the_program_says_modbus_rtu_over_tcp_in_its_start_line():
    with MeterProcess("--framing", "rtu", "--unit-ids", "1-3") as program:
        with connect(program.port) as sock:
            assert status(sock, 3)[0] == 3
        code, _, err = program.stop()
    assert code == 0
    assert f"3 electric meters serving Modbus RTU over TCP on 127.0.0.1:{program.port}, unit ids 1-3" in err


def test_the_idle_timeout_counts_from_the_last_valid_frame():
    with MeterSimulator(framing="rtu", idle_timeout=0.5) as sim, connect(sim.port) as sock:
        status(sock)
        sock.sendall(b"\x00" * 4)  # garbage does not keep the connection alive
        assert closed_by_server(sock)


def test_a_stream_of_garbage_does_not_hold_off_the_idle_timeout():
    with MeterSimulator(framing="rtu", idle_timeout=0.5) as sim, connect(sim.port) as sock:
        status(sock)
        deadline = time.monotonic() + 10
        closed = False
        while not closed and time.monotonic() < deadline:  # garbage every 50 ms, bounded
            try:
                sock.sendall(b"\x00\x80")
            except OSError:
                closed = True
                break
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                try:
                    closed = sock.recv(16) == b""
                except OSError:
                    closed = True
        assert closed
