"""Fuzzing the real server on loopback with 10,000 random and mutated frames from a seeded
generator (2,000 in the fast case); afterwards a well-behaved client is served correctly and
nothing is left behind."""
from __future__ import annotations

import os
import random
import socket
import struct
import threading

import pytest
from pyModbusTCP.client import ModbusClient

from support import closed_by_server, recv_exactly, wait_for

MBAP = struct.Struct(">HHHB")
FRAMES = 10_000
SUPPORTED = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F, 0x10, 0x17, 0x2B}
# A meter's answer to a supported function: data, or one of these exceptions (0x04 would be a bug).
EXPECTED_EXCEPTIONS = {0x02, 0x03}


def valid_request(rng: random.Random) -> bytes:
    """A request PDU that a strict server could accept, with random fields."""
    func = rng.choice(sorted(SUPPORTED))
    address, quantity = rng.choice((0, 1, 10, 99, 100, 101, 102, rng.getrandbits(16))), rng.randint(0, 130)
    if func in (0x01, 0x02, 0x03, 0x04):
        return struct.pack(">BHH", func, address, quantity)
    if func == 0x05:
        value = rng.choice((0, 0xFF00, rng.getrandbits(16)))
        return struct.pack(">BHH", func, rng.choice((0, 1, 10, address)), value)
    if func == 0x06:
        return struct.pack(">BHH", func, rng.choice((100, address)), rng.choice((0, 1, rng.getrandbits(16))))
    if func == 0x0F:
        data = bytes(rng.getrandbits(8) for _ in range((quantity + 7) // 8))
        return struct.pack(">BHHB", func, rng.choice((0, 10, address)), quantity, len(data)) + data
    if func == 0x10:
        data = bytes(rng.getrandbits(8) for _ in range(2 * min(quantity, 120)))
        return struct.pack(">BHHB", func, rng.choice((100, address)), quantity, len(data)) + data
    if func == 0x17:
        data = bytes(rng.getrandbits(8) for _ in range(2 * min(quantity, 118)))
        return struct.pack(">BHHHHB", func, address, rng.randint(0, 130), 100, quantity, len(data)) + data
    return bytes([func, rng.choice((0x0E, 0x0D, rng.getrandbits(8))), rng.randint(0, 5), rng.getrandbits(8)])


def mutated_request(rng: random.Random) -> bytes:
    """A request PDU: random bytes, or a valid one with bytes flipped, cut or appended."""
    roll = rng.random()
    if roll < 0.25:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
    pdu = bytearray(valid_request(rng))
    if roll < 0.5:
        for _ in range(rng.randint(1, 3)):
            pdu[rng.randrange(len(pdu))] = rng.getrandbits(8)
    elif roll < 0.65:
        del pdu[rng.randint(1, len(pdu)):]
    elif roll < 0.8:
        pdu += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
    return bytes(pdu[:253]) or b"\x03"


def bad_header(rng: random.Random, pdu: bytes) -> bytes:
    """A frame the server must refuse to parse: protocol id not 0, or length outside 2..254."""
    if rng.random() < 0.5:
        return MBAP.pack(rng.getrandbits(16), rng.randint(1, 0xFFFF), len(pdu) + 1, 1) + pdu
    length = rng.choice((0, 1, 255, 256, rng.randint(257, 0xFFFF)))
    return MBAP.pack(rng.getrandbits(16), 0, length, 1) + pdu


def check_answer(sock: socket.socket, tid: int, unit: int, pdu: bytes) -> None:
    """Read one answer and check it against the request it answers."""
    rtid, protocol_id, length, runit = MBAP.unpack(recv_exactly(sock, MBAP.size))
    assert (rtid, protocol_id, runit) == (tid, 0, unit), pdu.hex()
    assert 2 <= length <= 254
    answer = recv_exactly(sock, length - 1)
    func = pdu[0]
    other_mei = func == 0x2B and len(pdu) > 1 and pdu[1] != 0x0E  # only read device id is served
    if func not in SUPPORTED or other_mei:
        assert answer == bytes([func | 0x80, 0x01]), (pdu.hex(), answer.hex())
    elif answer[0] == func | 0x80:
        assert len(answer) == 2 and answer[1] in EXPECTED_EXCEPTIONS, (pdu.hex(), answer.hex())
    else:
        assert answer[0] == func, (pdu.hex(), answer.hex())


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fuzz(server, seed: int, frames: int) -> None:
    """frames random and mutated frames from a generator seeded with seed, then a well-behaved
    client; nothing is left behind."""
    port = server.port
    fds, threads = open_fds(), threading.active_count()
    rng = random.Random(seed)
    sent = closes = 0
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        while sent < frames:
            roll = rng.random()
            if roll < 0.7:  # a batch of well-framed requests, pipelined, each answered in order
                batch = [(rng.getrandbits(16), rng.getrandbits(8), mutated_request(rng) if rng.random() < 0.6
                          else valid_request(rng)) for _ in range(rng.randint(1, 5))]
                sock.sendall(b"".join(MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu
                                      for tid, unit, pdu in batch))
                for tid, unit, pdu in batch:
                    check_answer(sock, tid, unit, pdu)
                sent += len(batch)
                continue
            if roll < 0.85:  # a header that is not Modbus/TCP: that connection is closed
                sock.sendall(bad_header(rng, mutated_request(rng)))
                assert closed_by_server(sock)
            elif roll < 0.95:  # bytes of anything, then hang up
                sock.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 30))))
            else:  # a frame cut short, then hang up
                frame = MBAP.pack(1, 0, 6, 1) + valid_request(rng)
                sock.sendall(frame[:rng.randint(1, len(frame) - 1)])
            sent += 1
            closes += 1
            sock.close()
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    finally:
        sock.close()
    assert closes > frames // 10  # the connection handling was exercised, not only the request engine

    client = ModbusClient(host="127.0.0.1", port=port, timeout=10)
    try:
        assert client.write_single_coil(0, True)  # the fuzz may have taken the meter offline
        regs = client.read_holding_registers(0, 102)
        assert regs is not None and len(regs) == 102 and regs[100] == 1 and regs[101] == 0
        assert 2070 <= regs[10] <= 2530
        assert client.read_coils(0, 11)[2] is True
    finally:
        client.close()

    wait_for(lambda: open_fds() <= fds and threading.active_count() <= threads, timeout=30)
    print(f"fuzz: {sent} frames, {closes} connections closed, fds {fds} -> {open_fds()}, "
          f"threads {threads} -> {threading.active_count()}")


def test_two_thousand_random_and_mutated_frames(make_server):
    """The fast case: one seed, a fifth of the frames."""
    fuzz(make_server(interval_s=0.2), seed=1, frames=2000)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [20240501, 7])
def test_ten_thousand_random_and_mutated_frames(make_server, seed):
    fuzz(make_server(interval_s=0.2), seed, FRAMES)
