"""Reads over a real socket are cut from the meter's published image, and see every tick and write.

Every test reads through a real socket from an in-process server and compares
with the bank itself, the image the updater published. The memory a read
takes is measured on the real program: nothing is kept per request.
"""
from __future__ import annotations

import random
import socket
import struct
import threading

import pytest

from meter_simulator.device.fleet import PortPlan
from meter_simulator.maps import seed as registers
from meter_simulator.maps.image import Image
from meter_simulator.modbus.server import MeterServer, new_bank, new_device
from meter_simulator.model.meters import make_meter
from support import MeterProcess, modbus_exchange

READ_ALL = struct.pack(">BHH", 0x03, 0, registers.REGISTER_COUNT)


def read_words(sock: socket.socket, pdu: bytes = READ_ALL, unit_id: int = 1) -> list[int]:
    _, _, _, answer = modbus_exchange(sock, pdu, unit_id=unit_id)
    assert answer[0] == pdu[0], answer.hex()
    return list(struct.unpack(f">{answer[1] // 2}H", answer[2:]))


def bank_words(server: MeterServer, index: int = 0) -> list[int]:
    return server.updater.devices[index].bank.image.words(0, registers.REGISTER_COUNT)


@pytest.fixture
def still(make_server):
    """An electric meter that ticks only when the test says (1 h interval), at a high speed."""
    return make_server("electric", interval_s=3600, speed=1000)


def test_a_read_is_the_published_image(still):
    device = still.updater.devices[0]
    with socket.create_connection(("127.0.0.1", still.port), timeout=5) as sock:
        assert read_words(sock) == list(struct.unpack(">102H", device.bank.image.holding[0][2]))
        for function_code in (0x03, 0x04):
            for address, quantity in ((0, 2), (10, 8), (100, 2), (101, 1), (0, 23)):
                pdu = struct.pack(">BHH", function_code, address, quantity)
                assert read_words(sock, pdu) == bank_words(still)[address:address + quantity]


def test_the_bank_holds_one_image_and_no_lists():
    bank = new_bank()
    assert bank.image.words(0, registers.REGISTER_COUNT) == [0] * registers.REGISTER_COUNT
    image = Image.of(list(range(registers.REGISTER_COUNT)), [True] * registers.COIL_COUNT)
    bank.publish(image)
    assert bank.image is image
    assert bank.image.words(100, 2) == [100, 101]
    assert bank.image.words(0, 1, 0x04) == [0]
    assert bank.image.bit_list(0, registers.COIL_COUNT) == [True] * registers.COIL_COUNT
    assert bank.image.bit_list(10, 1) == [True]
    assert bank.image.words(101, 2) is None and bank.image.bit_list(10, 2) is None
    assert bank._h_regs == bank._coils == bank._d_inputs == bank._i_regs == []


def test_every_tick_shows_in_the_next_read(still):
    with socket.create_connection(("127.0.0.1", still.port), timeout=5) as sock:
        seen = set()
        for _ in range(100):
            read_words(sock)  # keeps an answer
            still.updater.tick()
            words = read_words(sock)
            assert words == bank_words(still)
            seen.add(tuple(words))
    assert len(seen) > 50, "the ticks changed the readings"


def test_ticks_racing_readers_never_leave_a_stale_answer(still):
    """Readers on other connections keep answers while ticks run; after each tick, a read sees it."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            with socket.create_connection(("127.0.0.1", still.port), timeout=5) as sock:
                while not stop.is_set():
                    read_words(sock)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, name=f"reader-{i}") for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        with socket.create_connection(("127.0.0.1", still.port), timeout=5) as sock:
            for _ in range(200):
                still.updater.tick()
                assert read_words(sock) == bank_words(still)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not errors, errors


def test_writes_show_in_the_next_read(still):
    device = still.updater.devices[0]
    still.updater.set_total(device, 1234.56)
    with socket.create_connection(("127.0.0.1", still.port), timeout=5) as sock:
        assert read_words(sock)[0:2] == [123456 & 0xFFFF, 123456 >> 16]
        coils = struct.pack(">BHH", 0x01, 0, registers.COIL_COUNT)
        _, _, _, before = modbus_exchange(sock, coils)
        assert before[2] & 1, "online"
        assert modbus_exchange(sock, struct.pack(">BHH", 0x05, registers.COIL_ONLINE, 0x0000))[3][0] == 0x05
        assert read_words(sock)[registers.ONLINE] == 0
        _, _, _, after = modbus_exchange(sock, coils)
        assert not after[2] & 1, "offline"
        assert modbus_exchange(sock, struct.pack(">BHH", 0x05, registers.COIL_RESET, 0xFF00))[3][0] == 0x05
        assert read_words(sock)[0:2] == [0, 0]
        assert modbus_exchange(sock, struct.pack(">BHH", 0x06, registers.ONLINE, 1))[3][0] == 0x06
        assert read_words(sock)[registers.ONLINE] == 1
        assert read_words(sock, struct.pack(">BHH", 0x04, 0, registers.REGISTER_COUNT)) == bank_words(still)


@pytest.mark.parametrize("pdu, answer", [
    (struct.pack(">BHH", 0x03, registers.REGISTER_COUNT - 1, 2), bytes([0x83, 0x02])),
    (struct.pack(">BHH", 0x04, registers.REGISTER_COUNT, 1), bytes([0x84, 0x02])),
    (struct.pack(">BHH", 0x01, registers.COIL_COUNT - 1, 2), bytes([0x81, 0x02])),
    (struct.pack(">BHH", 0x03, 0, 0), bytes([0x83, 0x03])),
    (struct.pack(">BHH", 0x03, 0, 126), bytes([0x83, 0x03])),
    (struct.pack(">BHH", 0x02, 0, 2001), bytes([0x82, 0x03])),
    (struct.pack(">BHH", 0x01, 0, 0), bytes([0x81, 0x03])),
])
def test_reads_outside_the_map_or_the_limits_are_exceptions(still, pdu, answer):
    with socket.create_connection(("127.0.0.1", still.port), timeout=5) as sock:
        for _ in range(2):
            assert modbus_exchange(sock, pdu)[3] == answer


def test_a_bug_in_the_read_path_answers_0x04_and_is_logged(still, caplog):
    class Broken:
        def read_answer(self, *args):
            raise RuntimeError("bug")

    bank = still.updater.devices[0].bank
    image, bank.image = bank.image, Broken()
    try:
        with socket.create_connection(("127.0.0.1", still.port), timeout=5) as sock:
            assert modbus_exchange(sock, READ_ALL)[3] == bytes([0x83, 0x04])
    finally:
        bank.image = image
    assert [r.getMessage() for r in caplog.records if r.exc_info] == ["error in answer_read"]


def test_gateway_unit_ids_read_their_own_meters(make_server):
    devices = {unit_id: new_device(make_meter("gas", random.Random(unit_id), 3600)) for unit_id in (1, 2)}
    server = MeterServer("127.0.0.1", [PortPlan(0, devices_by_id=devices)], interval_s=3600)
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            for _ in range(2):
                one, two = read_words(sock, unit_id=1), read_words(sock, unit_id=2)
                assert one == bank_words(server, 0) and two == bank_words(server, 1)
                assert one != two
                assert modbus_exchange(sock, READ_ALL, unit_id=3)[3] == bytes([0x83, 0x0B])
    finally:
        server.stop()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def read_every_unit_id(sock: socket.socket, unit_ids: range) -> None:
    """One read of the whole map for each unit id, pipelined: all requests, then all answers."""
    sock.sendall(b"".join(struct.pack(">HHHB", uid, 0, len(READ_ALL) + 1, uid) + READ_ALL
                          for uid in unit_ids))
    expected = 9 + 2 * registers.REGISTER_COUNT
    received = 0
    while received < expected * len(unit_ids):
        chunk = sock.recv(65536)
        assert chunk, "closed by the server"
        received += len(chunk)


def test_scanning_every_unit_id_on_100_ports_takes_no_memory():
    """A client reading all 247 unit ids (102 registers) on each of 100 ports: RSS grows < 4 MB.

    Every connection is open and has read once before the first measurement, so the threads
    and buffers of 100 connections are counted before, and only what reads keep after.
    """
    ports = 100
    with MeterProcess("--count", str(ports), "--interval", "3600", "--max-clients", "2",
                      "--log-level", "warning") as program:
        socks = [socket.create_connection(("127.0.0.1", program.port + offset), timeout=10)
                 for offset in range(ports)]
        try:
            for sock in socks:
                read_every_unit_id(sock, range(1, 3))
            before_kb = rss_kb(program.proc.pid)
            for sock in socks:
                read_every_unit_id(sock, range(1, 248))
            grown_kb = rss_kb(program.proc.pid) - before_kb
        finally:
            for sock in socks:
                sock.close()
    assert grown_kb < 4 * 1024, f"RSS grew by {grown_kb} kB"
