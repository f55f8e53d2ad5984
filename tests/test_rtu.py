"""RTU framing without sockets: the CRC, request lengths, the Deframer on every way a byte stream
can arrive, and the bus rules over real devices (rtu-contract sections 2.1 to 2.4)."""
from __future__ import annotations

import random

import pytest

from meter_simulator.modbus import rtu
from meter_simulator.modbus.rtu import FRAME_KEY, Deframer, RtuBus, crc16, framed, request_length
from test_pdu import Port

READ = framed(1, bytes.fromhex("03 0000 0004"))
WRITE = framed(1, bytes.fromhex("10 0064 0001 02 0000"))
SILENCE = 0.06


def deframer() -> tuple[Deframer, dict]:
    counts: dict[int, int] = {}
    return Deframer(SILENCE, counts), counts


def frame_counts(counts: dict) -> dict[str, int]:
    return {name: counts.get(FRAME_KEY + index, 0) for index, name in enumerate(rtu.FRAME_RESULTS)
            if counts.get(FRAME_KEY + index)}


def test_the_crc_is_crc16_modbus_sent_low_byte_first():
    assert READ.hex() == "0103000000044409"  # the specification's example family: 01 03 ... CRC lo hi
    assert crc16(b"123456789") == 0x4B37  # the catalogue's check value of CRC-16/MODBUS
    assert crc16(READ) == 0
    assert crc16(bytearray(READ)) == crc16(memoryview(READ)) == 0


@pytest.mark.parametrize("length", [0, 1, 2, 3, 7, 8, 13, 205, 256])
def test_the_word_table_crc_equals_the_byte_at_a_time_crc(length):
    data = random.Random(length).randbytes(length) if hasattr(random.Random, "randbytes") \
        else bytes(random.Random(length).getrandbits(8) for _ in range(length))
    crc = 0xFFFF
    for byte in data:
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if (crc ^ byte) & 1 else crc >> 1
            byte >>= 1
    assert crc16(data) == crc


@pytest.mark.parametrize("head, length", [
    ("01 01", 8), ("01 02", 8), ("01 03", 8), ("01 04", 8), ("01 05", 8), ("01 06", 8), ("01 08", 8),
    ("01 07", 4), ("01 0B", 4), ("01 0C", 4), ("01 11", 4),
    ("01 0F 0000 0010 02", 11), ("01 10 0000 0002 04", 13), ("01 14 07", 12), ("01 15 07", 12),
    ("01 16", 10), ("01 17 0000 0001 0000 0001 02", 15), ("01 18", 6), ("01 2B 0E", 7),
    ("01 10 0000 007B F6", 255), ("01 10 0000 007B F7", 256),
])
def test_a_request_frame_length_comes_from_its_first_bytes(head, length):
    assert request_length(bytes.fromhex(head), 0) == length


@pytest.mark.parametrize("head, verdict", [
    ("01 00", rtu.NOT_A_START), ("01 80", rtu.NOT_A_START), ("01 FF", rtu.NOT_A_START),
    ("01 10 0000 007B F8", rtu.NOT_A_START),  # 257 bytes: past the largest frame
    ("01 17 0000 0001 0000 0001 F4", rtu.NOT_A_START),
    ("01", rtu.NEED_MORE), ("01 10 0000 0001", rtu.NEED_MORE), ("01 2B", rtu.NEED_MORE),
    ("01 41", rtu.UNKNOWN), ("01 2B 0D", rtu.UNKNOWN),
])
def test_bytes_that_cannot_start_or_do_not_yet_tell_a_length(head, verdict):
    assert request_length(bytes.fromhex(head), 0) == verdict


def test_t35_is_three_and_a_half_characters_and_fixed_above_19200_baud():
    assert rtu.silence_s(9600, "E", 1) == pytest.approx(0.00401, abs=1e-5)
    assert rtu.silence_s(9600, "N", 1) == pytest.approx(0.00365, abs=1e-5)
    assert rtu.silence_s(1200, "N", 1) == pytest.approx(0.0292, abs=1e-4)
    assert rtu.silence_s(19200, "N", 2) == pytest.approx(3.5 * 11 / 19200)
    assert rtu.silence_s(38400) == rtu.silence_s(921600) == 0.00175


def test_one_whole_frame_in_one_read_is_one_request():
    frames, counts = deframer()
    assert frames.feed(READ, 0.0) == [(1, bytes.fromhex("03 0000 0004"))]
    assert counts == {} and not frames.buffer


@pytest.mark.parametrize("frame", [READ, WRITE, framed(1, bytes.fromhex("2B 0E 01 00")),
                                   framed(7, bytes.fromhex("41 0102")),
                                   framed(1, bytes.fromhex("17 0064 0001 0064 0001 02 0001"))],
                         ids=["read", "write", "device-id", "unknown-fc", "write-read"])
def test_a_frame_split_anywhere_is_reassembled(frame):
    for cut in range(1, len(frame)):
        frames, counts = deframer()
        assert frames.feed(frame[:cut], 0.0) == []
        assert frames.feed(frame[cut:], 0.001) == [(frame[0], frame[1:-2])], cut
        assert frame_counts(counts) == {}


def test_a_frame_a_byte_at_a_time_is_reassembled():
    frames, _ = deframer()
    found = [frame for index, byte in enumerate(WRITE)
             for frame in frames.feed(bytes((byte,)), index * 0.001)]
    assert found == [(1, WRITE[1:-2])]


def test_frames_back_to_back_in_one_read_are_each_found_in_order():
    second = framed(1, bytes.fromhex("01 0000 000B"))
    frames, _ = deframer()
    assert [unit for unit, _ in frames.feed(READ + WRITE + second + READ, 0.0)] == [1, 1, 1, 1]
    frames, _ = deframer()
    assert [pdu[0] for _, pdu in frames.feed(READ + WRITE + second, 0.0)] == [0x03, 0x10, 0x01]


def test_a_silence_discards_a_partial_frame_and_the_next_byte_starts_anew():
    frames, counts = deframer()
    assert frames.feed(READ[:5], 0.0) == []
    assert frames.deadline_s == SILENCE
    frames.expire()
    assert frame_counts(counts) == {"incomplete": 1}
    assert frames.feed(READ, 1.0) == [(1, READ[1:-2])]


def test_bytes_after_a_gap_longer_than_the_silence_start_a_new_frame():
    frames, counts = deframer()
    frames.feed(READ[:5], 0.0)
    assert frames.feed(READ, 0.5) == [(1, READ[1:-2])]  # the old partial was discarded first
    assert frame_counts(counts) == {"incomplete": 1}


def test_a_lone_frame_with_a_bad_crc_is_ignored_and_counted_once():
    bad = READ[:-2] + bytes((READ[-2] ^ 0x01, READ[-1]))
    frames, counts = deframer()
    assert frames.feed(bad, 0.0) == []
    frames.expire()
    assert frame_counts(counts) == {"bad_crc": 1}


def test_a_crc_sent_high_byte_first_is_a_bad_crc():
    swapped = READ[:-2] + READ[-1:] + READ[-2:-1]
    frames, counts = deframer()
    assert frames.feed(swapped, 0.0) == []
    frames.expire()
    assert frame_counts(counts) == {"bad_crc": 1}


@pytest.mark.parametrize("garbage", ["00", "FF FF", "01 83 02", "01 03 00 00 00 04 00 00", "F8 03",
                                     "01 41 22", "55 AA 55 AA 55 AA 55 AA 55", "01 10 00"])
def test_garbage_in_front_of_a_frame_in_the_same_read_does_not_lose_it(garbage):
    frames, counts = deframer()
    assert frames.feed(bytes.fromhex(garbage) + READ + READ, 0.0) == [(1, READ[1:-2])] * 2
    assert frame_counts(counts) == {"bad_crc": 1}


def test_garbage_then_a_bad_frame_then_a_good_one_counts_two_runs_only_when_separated():
    frames, counts = deframer()
    bad = READ[:-1] + b"\x00"
    frames.feed(b"\x00\x00" + bad + READ, 0.0)
    assert frame_counts(counts) == {"bad_crc": 1}
    frames.feed(bad, 1.0)
    frames.expire()
    assert frame_counts(counts) == {"bad_crc": 2}


def test_an_unknown_function_code_ends_where_a_valid_crc_ends_it():
    frame = framed(1, bytes.fromhex("41 01 02 03"))
    frames, _ = deframer()
    assert frames.feed(frame + READ, 0.0) == [(1, frame[1:-2]), (1, READ[1:-2])]


def test_a_frame_for_a_reserved_unit_id_is_found_but_answered_by_nobody():
    frames, _ = deframer()
    assert frames.feed(framed(250, bytes.fromhex("03 0000 0001")), 0.0)[0][0] == 250
    assert RtuBus(Port().seam).classify(250) == rtu.OTHER_UNIT


def test_a_stream_of_random_bytes_never_raises_and_a_frame_after_a_silence_is_found():
    rng = random.Random(7)
    frames, _ = deframer()
    for step in range(2000):
        frames.feed(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40))), step * 0.001)
    frames.expire()
    assert frames.feed(READ, 10.0) == [(1, READ[1:-2])]


# --- the bus ---
def test_a_single_meter_answers_unit_id_1_only_and_absent_ids_are_silent():
    bus = RtuBus(Port().seam)
    assert bus.classify(1) == rtu.REQUEST
    assert bus.classify(2) == rtu.OTHER_UNIT and bus.classify(247) == rtu.OTHER_UNIT
    assert bus.classify(0) == rtu.BROADCAST_FRAME
    assert bus.answer(1, bytes.fromhex("03 0064 0002")).hex() == "03040001" "0000"


def test_a_gateway_bus_answers_its_listed_unit_ids():
    bus = RtuBus(Port({3: "electric", 7: "water"}).seam)
    assert bus.unit_ids == {3, 7}
    assert [bus.classify(unit) for unit in (1, 3, 7)] == [rtu.OTHER_UNIT, rtu.REQUEST, rtu.REQUEST]


def test_a_broadcast_write_is_executed_by_every_meter_and_a_broadcast_read_by_none():
    port = Port({1: "electric", 2: "electric"})
    bus = RtuBus(port.seam)
    bus.broadcast(bytes.fromhex("06 0064 0000"))  # register 100: offline, on both meters
    assert [port.ask(unit, "03 0064 0001") for unit in (1, 2)] == ["03020000", "03020000"]
    bus.broadcast(bytes.fromhex("03 0064 0001"))  # ignored, and nothing to answer
    bus.broadcast(bytes.fromhex("06 0064 0007"))  # refused by each (bad value): nothing changes
    assert [port.ask(unit, "03 0064 0001") for unit in (1, 2)] == ["03020000", "03020000"]


def test_a_read_only_bus_refuses_a_broadcast_write_silently():
    port = Port(read_only=True)
    RtuBus(port.seam).broadcast(bytes.fromhex("06 0064 0000"))
    assert port.ask(1, "03 0064 0001") == "03020001"


def test_an_offline_device_profile_is_silent_where_tcp_answers_0x0b():
    port = Port(profile="sdm630")
    device = port.devices[1]
    port.updater.change_faults({device: {"offline": 1}})
    assert port.ask(1, "04 0000 0002") == "840b"  # Modbus/TCP: gateway target failed to respond
    bus = RtuBus(port.seam)
    assert bus.answer(1, bytes.fromhex("04 0000 0002")) is None
    assert bus.answer(1, bytes.fromhex("10 0000 0001 02 0000")) is None


def test_framed_answers_carry_the_unit_id_and_a_valid_crc():
    answer = framed(9, bytes.fromhex("83 02"))
    assert answer[:3] == bytes.fromhex("09 83 02") and crc16(answer) == 0
    assert rtu.bad_crc(answer)[:3] == answer[:3] and crc16(rtu.bad_crc(answer)) != 0
