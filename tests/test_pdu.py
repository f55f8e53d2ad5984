"""The PDU seam without sockets: request PDUs in, answer PDUs out, over real devices.

Each table row is a unit id, a request PDU and the answer PDU it must get, in hex
(spaces for reading only), asked of a fresh port: an electric meter on the seed map
that a FakeClock-driven updater ticked three times, or a gateway, a read-only port,
an SDM630 device profile. The answers are the contract's (meter-contract sections 4
and 5, profiles-contract section 3), byte for byte as they were when pyModbusTCP's
engine built them.
"""
from __future__ import annotations

import logging
import random
import struct

import pytest

from meter_simulator import __version__
from meter_simulator.device.updater import Updater
from meter_simulator.maps import profiles
from meter_simulator.modbus.handler import MeterDataHandler
from meter_simulator.modbus.pdu import Responder
from meter_simulator.modbus.server import MeterIdentification, device_identification, new_device
from meter_simulator.model.meters import make_meter
from support import FakeClock

VENDOR, PRODUCT_CODE, VERSION = b"meter-simulator", b"ELECTRIC-METER", __version__.encode()
PRODUCT_NAME, MODEL_NAME = b"meter-simulator electric meter", b"simulated electric meter"


class Port:
    """One port's PDU seam over real devices that a fake clock ticks."""

    def __init__(self, devices: dict[int, str] | None = None, profile: str = "seed",
                 read_only: bool = False, device_id=None) -> None:
        kinds = devices or {1: "electric"}
        self.clock = FakeClock()
        self.devices = {unit_id: new_device(make_meter(kind, random.Random(unit_id), 12 * 3600.0),
                                            profiles.built_in(profile), unit_id=unit_id)
                        for unit_id, kind in kinds.items()}
        self.updater = Updater(self.devices.values(), speed=3600.0, clock=self.clock)
        for _ in range(3):
            self.clock.now += 1.0
            self.updater.tick()
        single = None if devices else self.devices[1]
        self.handler = MeterDataHandler(self.updater, device=single, read_only=read_only,
                                        devices_by_id=self.devices if devices else None)
        self.seam = Responder(self.handler, device_id or device_identification("electric", profile))

    def ask(self, unit_id: int, request: str) -> str:
        """The answer PDU in hex to a request PDU in hex."""
        return self.seam.answer(unit_id, bytes.fromhex(request)).hex()


def hexed(*parts: bytes) -> str:
    return b"".join(parts).hex()


def objects(*items: tuple[int, bytes]) -> bytes:
    return b"".join(bytes((object_id, len(value))) + value for object_id, value in items)


BASIC = objects((0, VENDOR), (1, PRODUCT_CODE), (2, VERSION))
REGULAR = objects((4, PRODUCT_NAME), (5, MODEL_NAME))

SEED_TABLE = [
    # reads of the status, which three ticks of an online meter fix
    ("03 0064 0002", "03 04 0001 0000"),  # register 100: online; 101: electric
    ("04 0064 0002", "04 04 0001 0000"),  # input registers are the holding registers
    ("01 0000 0001", "01 01 01"),  # coil 0: online
    ("01 0002 0009", "01 02 0100"),  # coil 2 (comm ok) on, 3 to 10 off
    ("02 0002 0009", "02 02 0100"),  # discrete inputs are the coils
    # writes: echoes (FC 0x05, 0x06) or address and quantity (FC 0x0F, 0x10)
    ("05 0000 0000", "05 0000 0000"),
    ("05 000A FF00", "05 000A FF00"),
    ("06 0064 0001", "06 0064 0001"),
    ("0F 0000 0001 01 01", "0F 0000 0001"),
    ("10 0064 0001 02 0001", "10 0064 0001"),
    ("17 0064 0002 0064 0001 02 0000", "17 04 0000 0000"),  # the read sees the write: offline
    # 0x01: function codes not served, MEI types other than 0x0E
    ("07", "87 01"), ("08 0000 0000", "88 01"), ("00", "80 01"), ("83 0000 0001", "83 01"),
    ("FF", "FF 01"), ("2B 0D 01 00", "AB 01"),
    # 0x02: past the map, addresses not writable, an object that does not exist
    ("03 0065 0002", "83 02"), ("04 0066 0001", "84 02"), ("01 000A 0002", "81 02"),
    ("02 0000 000C", "82 02"), ("05 0001 FF00", "85 02"), ("06 0000 0001", "86 02"),
    ("0F 0000 0002 01 00", "8F 02"), ("10 0063 0002 04 0000 0000", "90 02"),
    ("17 0065 0002 0064 0001 02 0000", "97 02"),  # the read half past the map: nothing written
    ("2B 0E 04 03", "AB 02"),  # individual access to the vendor URL, which this meter lacks
    # 0x03: quantities, sizes and values
    ("03 0000 0000", "83 03"), ("03 0000 007E", "83 03"), ("01 0000 07D1", "81 03"),
    ("03 0000 0001 00", "83 03"), ("01 0000", "81 03"), ("05 0000 1234", "85 03"),
    ("05 0000", "85 03"), ("06 0064 0002", "86 03"), ("10 0064 0001 02 0002", "90 03"),
    ("0F 0000 0000 00", "8F 03"), ("0F 0000 0008 02 0000", "8F 03"),
    ("0F 0000 07B1 F7" + "00" * 247, "8F 03"), ("0F 0000 0001 01", "8F 03"),
    ("10 0064 0000 00", "90 03"), ("10 0064 0002 02 0000", "90 03"),
    ("10 0000 007C F8" + "00" * 248, "90 03"), ("10 0064 0001 02 00", "90 03"),
    ("17 0064 0000 0064 0001 02 0000", "97 03"), ("17 0064 007C 0064 0001 02 0000", "97 03"),
    ("17 0064 0001 0064 0000 00", "97 03"), ("17 0064 0001 0064 0001 01 00", "97 03"),
    ("2B", "AB 03"), ("2B 0E 01", "AB 03"), ("2B 0E 01 00 00", "AB 03"),
    ("2B 0E 00 00", "AB 03"), ("2B 0E 05 00", "AB 03"),
    # device identification: streams, "more follows" off, conformity 0x83
    ("2B 0E 01 00", hexed(bytes.fromhex("2B 0E 01 83 00 00 03"), BASIC)),
    ("2B 0E 01 01", hexed(bytes.fromhex("2B 0E 01 83 00 00 02"), BASIC[2 + len(VENDOR):])),
    ("2B 0E 01 04", hexed(bytes.fromhex("2B 0E 01 83 00 00 03"), BASIC)),  # not basic: from 0
    ("2B 0E 01 7F", hexed(bytes.fromhex("2B 0E 01 83 00 00 03"), BASIC)),  # no such object
    ("2B 0E 02 00", hexed(bytes.fromhex("2B 0E 02 83 00 00 02"), REGULAR)),  # from 3, the first
    ("2B 0E 02 05", hexed(bytes.fromhex("2B 0E 02 83 00 00 01"), objects((5, MODEL_NAME)))),
    ("2B 0E 03 00", "2B 0E 03 83 00 00 00"),  # no extended objects
    ("2B 0E 04 01", hexed(bytes.fromhex("2B 0E 04 83 00 00 01"), objects((1, PRODUCT_CODE)))),
]


@pytest.mark.parametrize("request_pdu, answer", SEED_TABLE, ids=[row[0] for row in SEED_TABLE])
def test_a_seed_meter_answers_each_request_as_the_contract_says(request_pdu, answer):
    assert Port().ask(1, request_pdu) == answer.replace(" ", "").lower()


def test_the_answers_carry_the_published_readings():
    port = Port()
    image = port.devices[1].bank.image
    assert port.ask(1, "03 0000 0017") == hexed(bytes((0x03, 46)), image.holding[0][2][:46])
    assert port.ask(1, "04 000A 0003") == hexed(bytes((0x04, 6)), image.holding[0][2][20:26])


def test_writes_change_what_the_next_reads_answer():
    port = Port()
    assert port.ask(1, "05 0000 0000") == "0500000000"
    assert port.ask(1, "03 0064 0001") == "03020000"
    assert port.ask(1, "02 0000 0001") == "020100"  # offline
    assert port.ask(1, "02 0002 0001") == "020101"  # the server still serves
    assert port.ask(1, "0F 000A 0001 01 01") == "0f000a0001"  # a reset: the total goes to 0
    assert port.ask(1, "03 0000 0002") == "030400000000"
    assert port.ask(1, "17 0064 0001 0064 0001 02 0001") == "17020001"  # online again, read back


GATEWAY_TABLE = [
    (5, "03 0065 0001", "03 02 0001"),  # unit 5 is the water meter
    (2, "03 0000 0001", "83 0B"), (2, "01 0000 0001", "81 0B"), (2, "05 0000 FF00", "85 0B"),
    (2, "0F 0000 0001 01 01", "8F 0B"), (2, "10 0064 0001 02 0001", "90 0B"),
    (2, "17 0000 0001 0064 0001 02 0001", "97 0B"),
    (2, "07", "87 01"), (2, "10 0064 0001 02 00", "90 03"),  # the function, then the size
    (2, "03 0000 0000", "83 03"),  # the quantity before the unit id
    (2, "2B 0E 01 00", hexed(bytes.fromhex("2B 0E 01 83 00 00 03"), BASIC)),  # the port's objects
]


@pytest.mark.parametrize("unit_id, request_pdu, answer", GATEWAY_TABLE,
                         ids=[f"{row[0]}-{row[1]}" for row in GATEWAY_TABLE])
def test_a_gateway_answers_0x0b_for_a_unit_id_it_does_not_serve(unit_id, request_pdu, answer):
    port = Port({1: "electric", 5: "water"})
    assert port.ask(unit_id, request_pdu) == answer.replace(" ", "").lower()
    assert [device.online for device in port.devices.values()] == [True, True]


@pytest.mark.parametrize("request_pdu, answer", [
    ("05 0000 0000", "85 01"), ("05 0000 1234", "85 01"),  # read-only is checked before the value
    ("0F 0000 0001 01 00", "8F 01"), ("06 0064 0000", "86 01"), ("10 0064 0001 02 0000", "90 01"),
    ("17 0064 0001 0064 0001 02 0000", "97 01"), ("03 0064 0001", "03 02 0001"),
    ("01 0000 0001", "01 01 01"),
])
def test_a_read_only_port_refuses_every_write_with_0x01(request_pdu, answer):
    port = Port(read_only=True)
    assert port.ask(1, request_pdu) == answer.replace(" ", "").lower()
    assert port.devices[1].online


SDM630 = struct.pack(">f", 30.0).hex()  # an allowed demand period, as the float32 it is written as

SDM630_TABLE = [
    (f"10 0002 0002 04 {SDM630}", "10 0002 0002"),  # FC 0x10: the device's one write
    (f"06 0002 {SDM630[:4]}", "86 01"), (f"17 0000 0001 0002 0002 04 {SDM630}", "97 01"),
    ("05 0000 FF00", "85 01"), ("0F 0000 0001 01 01", "8F 01"),  # no coils
    ("01 0000 0001", "81 01"), ("02 0000 0001", "82 01"),
    (f"10 0002 0002 04 {struct.pack('>f', 7.0).hex()}", "90 03"),  # not an allowed value
    (f"10 0000 0002 04 {SDM630}", "90 02"),  # a voltage is not writable
    ("04 0000 0080", "84 03"), ("03 002E 0001", "83 02"),
    ("2B 0E 04 01", "2B 0E 04 83 00 00 01 01 06" + b"SDM630".hex()),
]


@pytest.mark.parametrize("request_pdu, answer", SDM630_TABLE, ids=[row[0] for row in SDM630_TABLE])
def test_a_device_profile_takes_only_its_own_writes(request_pdu, answer):
    assert Port(profile="sdm630").ask(1, request_pdu) == answer.replace(" ", "").lower()


def test_a_device_profile_write_is_read_back():
    port = Port(profile="sdm630")
    assert port.ask(1, f"10 0002 0002 04 {SDM630}") == "1000020002"
    assert port.ask(1, "03 0002 0002") == "0304" + SDM630
    assert port.devices[1].meter.demand.period_min == 30


@pytest.mark.parametrize("request_pdu", ["04 0000 0002", "03 0002 0002", "01 0000 0001", "07",
                                         f"10 0002 0002 04 {SDM630}", "06 0002 0000",
                                         "2B 0E 01 00", "2B 0D", "10 0002"])
def test_an_offline_device_profile_answers_nothing_but_0x0b(request_pdu):
    port = Port(profile="sdm630")
    device = port.devices[1]
    port.updater.set_online(device, False)
    assert device.unreachable
    unreachable = bytes((int(request_pdu[:2], 16) | 0x80, 0x0B)).hex()
    assert port.ask(1, request_pdu) == unreachable
    port.updater.set_online(device, True)
    assert port.ask(1, request_pdu) != unreachable


def extended(*sizes: int) -> MeterIdentification:
    """The seed objects and extended objects 0x80 on of these sizes (a letter a size)."""
    identification = device_identification("electric")
    for offset, size in enumerate(sizes):
        identification[0x80 + offset] = bytes((0x61 + offset,)) * size
    return identification


def test_a_stream_that_does_not_fit_one_pdu_says_more_follows_and_where():
    port = Port(device_id=extended(100, 100, 100))
    first = bytes.fromhex(port.ask(1, "2B 0E 03 00"))  # extended: starts at 0x80
    assert first[:7] == bytes.fromhex("2B 0E 03 83 FF 82 02") and len(first) == 7 + 2 * 102
    assert first[7:] == objects((0x80, b"a" * 100), (0x81, b"b" * 100))
    rest = bytes.fromhex(port.ask(1, "2B 0E 03 82"))
    assert rest == bytes.fromhex("2B 0E 03 83 00 00 01") + objects((0x82, b"c" * 100))


@pytest.mark.parametrize("size, head", [(244, "2B 0E 03 83 00 00 01"), (245, "2B 0E 03 83 FF 80 00")])
def test_an_object_fits_when_the_answer_is_at_most_253_bytes(size, head):
    answer = bytes.fromhex(Port(device_id=extended(size)).ask(1, "2B 0E 03 80"))
    assert answer[:7] == bytes.fromhex(head)
    assert len(answer) == (253 if size == 244 else 7)


def test_a_write_bug_answers_0x04_and_is_logged(caplog):
    port = Port()

    def broken(*args):
        raise RuntimeError("bug")

    port.updater.set_online = broken
    with caplog.at_level(logging.ERROR, logger="meter_simulator.modbus.handler"):
        assert port.ask(1, "06 0064 0000") == "8604"
        assert port.ask(1, "05 0000 0000") == "8504"
    assert len([record for record in caplog.records if record.exc_info]) == 2
    assert port.ask(1, "03 0064 0001") == "03020001"  # nothing changed, reads still answer
