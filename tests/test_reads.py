"""Kept answers: a read is answered again from its last answer only while the meter's bank is unchanged.

Every test reads through a real socket from an in-process server and compares
with the bank itself, the image the updater wrote.
"""
from __future__ import annotations

import random
import socket
import struct
import threading

import pytest

from meter_simulator import registers
from meter_simulator.fleet import Endpoint
from meter_simulator.meters import make_meter
from meter_simulator.server import MAX_KEPT_ANSWERS, MeterServer, new_bank, new_unit
from support import modbus_exchange

READ_ALL = struct.pack(">BHH", 0x03, 0, registers.REGISTER_COUNT)


def read_words(sock: socket.socket, pdu: bytes = READ_ALL, unit_id: int = 1) -> list[int]:
    _, _, _, answer = modbus_exchange(sock, pdu, unit_id=unit_id)
    assert answer[0] == pdu[0], answer.hex()
    return list(struct.unpack(f">{answer[1] // 2}H", answer[2:]))


def bank_words(server: MeterServer, index: int = 0) -> list[int]:
    return server.updater.units[index].bank.get_holding_registers(0, registers.REGISTER_COUNT)


@pytest.fixture
def still(make_server):
    """An electric meter that ticks only when the test says (1 h interval), at a high speed."""
    return make_server("electric", interval_s=3600, speed=1000)


def test_a_repeated_read_is_answered_from_the_kept_answer(still):
    endpoint = still.endpoints[0]
    with socket.create_connection(("127.0.0.1", still.port), timeout=5) as sock:
        first = read_words(sock)
        assert len(endpoint._answers) == 1
        (kept,) = endpoint._answers.values()
        assert read_words(sock) == first == bank_words(still)
        assert next(iter(endpoint._answers.values())) is kept, "the same answer, not a new one"


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
    unit = still.updater.units[0]
    still.updater.set_total(unit, 1234.56)
    with socket.create_connection(("127.0.0.1", still.port), timeout=5) as sock:
        assert read_words(sock)[registers.TOTAL:registers.TOTAL + 2] == [123456 & 0xFFFF, 123456 >> 16]
        coils = struct.pack(">BHH", 0x01, 0, registers.COIL_COUNT)
        _, _, _, before = modbus_exchange(sock, coils)
        assert before[2] & 1, "online"
        assert modbus_exchange(sock, struct.pack(">BHH", 0x05, registers.COIL_ONLINE, 0x0000))[3][0] == 0x05
        assert read_words(sock)[registers.ONLINE] == 0
        _, _, _, after = modbus_exchange(sock, coils)
        assert not after[2] & 1, "offline"
        assert modbus_exchange(sock, struct.pack(">BHH", 0x05, registers.COIL_RESET, 0xFF00))[3][0] == 0x05
        assert read_words(sock)[registers.TOTAL:registers.TOTAL + 2] == [0, 0]
        assert modbus_exchange(sock, struct.pack(">BHH", 0x06, registers.ONLINE, 1))[3][0] == 0x06
        assert read_words(sock)[registers.ONLINE] == 1
        assert read_words(sock, struct.pack(">BHH", 0x04, 0, registers.REGISTER_COUNT)) == bank_words(still)


def test_exceptions_are_answered_but_never_kept(still):
    endpoint = still.endpoints[0]
    past_the_map = struct.pack(">BHH", 0x03, registers.REGISTER_COUNT - 1, 2)
    with socket.create_connection(("127.0.0.1", still.port), timeout=5) as sock:
        for _ in range(2):
            assert modbus_exchange(sock, past_the_map)[3] == bytes([0x83, 0x02])
    assert endpoint._answers == {}


def test_at_most_so_many_answers_are_kept(still):
    endpoint = still.endpoints[0]
    with socket.create_connection(("127.0.0.1", still.port), timeout=5) as sock:
        for unit_id in range(5):
            for address in range(registers.REGISTER_COUNT):
                pdu = struct.pack(">BHH", 0x03, address, 1)
                assert read_words(sock, pdu, unit_id) == bank_words(still)[address:address + 1]
                assert len(endpoint._answers) <= MAX_KEPT_ANSWERS


def test_gateway_unit_ids_keep_answers_of_their_own(make_server):
    units = {unit_id: new_unit(make_meter("gas", random.Random(unit_id), 3600)) for unit_id in (1, 2)}
    server = MeterServer("127.0.0.1", [Endpoint(0, units_by_id=units)], interval_s=3600)
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


def test_the_bank_counts_every_write():
    bank = new_bank()
    counts = [bank.changes]
    bank.set_holding_registers(0, [1, 2, 3])
    counts.append(bank.changes)
    bank.set_coils(0, [True])
    counts.append(bank.changes)
    bank.set_discrete_inputs(0, [True])
    counts.append(bank.changes)
    bank.set_holding_registers(registers.ONLINE, [0], srv_info=object())  # a client's write path
    counts.append(bank.changes)
    assert counts == sorted(set(counts)), counts
