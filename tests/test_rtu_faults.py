"""Faults on RTU faces (rtu-contract section 6): each request fault acted out in RTU frames, over
TCP and on the serial line, the face scope, and the faults that never act on a broadcast, a
frame for another unit id or a face where their type does not act."""
from __future__ import annotations

import os

import pytest

from meter_simulator.modbus.rtu import crc16, framed
from meter_simulator.testing import MeterSimulator
from support import closed_by_server, connect, modbus_exchange, opened, read_exactly, recv_exactly

READ_STATUS = bytes.fromhex("03 0064 0002")
ANSWER = 9  # bytes of the answer frame to READ_STATUS


@pytest.fixture
def sim():
    with MeterSimulator(framing="rtu", serial="pty", interval=3600, seed=1) as running:
        yield running


def test_corrupt_crc_inverts_both_crc_bytes_of_the_normal_answer(sim):
    with connect(sim.port) as sock, sim.fault("corrupt", mode="crc", count=1):
        sock.sendall(framed(1, READ_STATUS))
        garbled = recv_exactly(sock, ANSWER)
        sock.sendall(framed(1, READ_STATUS))
        normal = recv_exactly(sock, ANSWER)
    assert crc16(normal) == 0 and crc16(garbled) != 0
    assert garbled[:-2] == normal[:-2] and bytes(b ^ 0xFF for b in garbled[-2:]) == normal[-2:]


def test_corrupt_truncate_sends_the_first_half_of_the_frame(sim):
    with connect(sim.port) as sock, sim.fault("corrupt", mode="truncate", count=1):
        sock.sendall(framed(1, READ_STATUS))
        half = recv_exactly(sock, ANSWER // 2)
        sock.sendall(framed(1, READ_STATUS))
        rest = recv_exactly(sock, ANSWER)  # nothing more came for the first: the next answer whole
    assert half == rest[:ANSWER // 2] and crc16(rest) == 0


def test_an_exception_fault_is_an_rtu_exception_frame(sim):
    with connect(sim.port) as sock, sim.fault("exception", code=6, count=1):
        sock.sendall(framed(1, READ_STATUS))
        answer = recv_exactly(sock, 5)
    assert answer[:3] == bytes.fromhex("01 83 06") and crc16(answer) == 0


@pytest.mark.parametrize("kind", ["close", "reset"])
def test_close_and_reset_end_an_rtu_over_tcp_connection(sim, kind):
    with connect(sim.port) as sock, sim.fault(kind, count=1):
        sock.sendall(framed(1, READ_STATUS))
        assert closed_by_server(sock)


def test_no_answer_then_the_next_request_is_served(sim):
    with connect(sim.port) as sock, sim.fault("no_answer", count=1) as fault:
        sock.sendall(framed(1, READ_STATUS) + framed(1, bytes.fromhex("01 0000 0001")))
        assert recv_exactly(sock, 6)[1] == 0x01  # the first answer is the second request's
        assert fault.applied == 1


def test_faults_never_act_on_broadcasts_or_frames_for_other_unit_ids(sim):
    with connect(sim.port) as sock, sim.fault("exception", code=4) as fault:
        sock.sendall(framed(0, bytes.fromhex("06 0064 0001")) + framed(5, READ_STATUS))
        sock.sendall(framed(1, READ_STATUS))
        assert recv_exactly(sock, 5)[1] == 0x83
        assert fault.applied == 1


def test_a_serial_scoped_fault_acts_on_the_line_only(sim):
    with sim.fault("exception", code=4, face="serial") as fault, opened(sim.serial_path) as fd, \
            connect(sim.port) as sock:
        sock.sendall(framed(1, READ_STATUS))
        assert recv_exactly(sock, ANSWER)[1] == 0x03  # TCP: served as usual
        os.write(fd, framed(1, READ_STATUS))
        assert read_exactly(fd, 5)[:3] == bytes.fromhex("01 83 04")
        assert fault.applied == 1


def test_a_port_scoped_fault_covers_the_line_of_that_port_and_crc_acts_there(sim):
    with sim.fault("corrupt", mode="crc", port=sim.port, count=2), opened(sim.serial_path) as fd:
        os.write(fd, framed(1, READ_STATUS))
        assert crc16(read_exactly(fd, ANSWER)) != 0


def test_a_delay_on_the_line_keeps_the_bus_busy_and_answers_in_order(sim):
    with sim.fault("delay", delay_ms=200, count=1, face="serial"), opened(sim.serial_path) as fd:
        os.write(fd, framed(1, READ_STATUS))
        os.write(fd, framed(1, bytes.fromhex("01 0000 0001")))
        assert read_exactly(fd, ANSWER)[1] == 0x03  # the delayed one first, then the one behind it
        assert read_exactly(fd, 6)[1] == 0x01


def test_close_on_the_serial_line_and_crc_on_mbap_are_refused():
    with MeterSimulator(serial="pty") as sim:
        with pytest.raises(ValueError, match="serial"):
            sim.fault("close", face="serial")
        with pytest.raises(ValueError, match="crc"):
            sim.fault("corrupt", mode="crc", face="tcp")
        with sim.fault("corrupt", mode="crc") as fault, connect(sim.port) as sock:
            assert modbus_exchange(sock, READ_STATUS)[3][:2] == bytes.fromhex("03 04")  # MBAP: outside
            assert fault.applied == 0


def test_a_serial_scope_without_a_serial_line_is_unknown():
    with MeterSimulator(framing="rtu") as sim, pytest.raises(KeyError):
        sim.fault("delay", delay_ms=10, face="serial")


def test_a_transaction_id_fault_is_refused_where_no_face_speaks_mbap():
    with MeterSimulator(framing="rtu") as sim, pytest.raises(ValueError, match="transaction_id"):
        sim.fault("corrupt", mode="transaction_id")


def test_a_garbage_stream_does_not_close_an_rtu_connection(sim):
    with connect(sim.port) as sock:
        sock.sendall(bytes(range(256)) * 8)
        # while resynchronising, a candidate that waits for more bytes does not hold back a whole
        # valid frame behind it; after the silence the garbage is gone anyway
        sock.sendall(framed(1, READ_STATUS))
        answer = recv_exactly(sock, ANSWER)
    assert answer[:3] == bytes.fromhex("01 03 04") and crc16(answer) == 0
