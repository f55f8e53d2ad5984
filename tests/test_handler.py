"""The data handler's rules through the PDU seam (contract section 5), as every framing reaches them.

Each helper builds the request PDU of one function code, hands it with a unit id to the
port's pdu.Responder (which calls the handler's callbacks as a served request does), and
decodes the answer PDU.
"""
from __future__ import annotations

import logging
import random
import struct

import pytest

from meter_simulator.device.updater import Updater
from meter_simulator.maps import points
from meter_simulator.maps.image import Image
from meter_simulator.modbus.handler import MeterDataHandler
from meter_simulator.modbus.pdu import Responder
from meter_simulator.modbus.server import device_identification, new_device
from meter_simulator.model.meters import make_meter
from support import FakeClock, words_u32

OK, ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE, GATEWAY_NO_RESPONSE = \
    0, 0x01, 0x02, 0x03, 0x04, 0x0B
ON, OFF = 0xFF00, 0x0000
READS = (0x01, 0x02, 0x03, 0x04)
IDENTIFICATION = device_identification("electric")  # what the seam answers FC 0x2B with


def pack_bits(bits: list[bool]) -> bytes:
    return sum(1 << i for i, bit in enumerate(bits) if bit).to_bytes((len(bits) + 7) // 8, "little")


class Client:
    """Asks the PDU seam as a framing does; answers (exception code, data)."""

    def __init__(self, seam: Responder, unit_id: int = 1) -> None:
        self.seam = seam
        self.unit_id = unit_id

    def ask(self, pdu: bytes) -> tuple[int, bytes | None]:
        """(0, the answer PDU), or (exception code, None) for an exception answer."""
        answer = self.seam.answer(self.unit_id, pdu)
        if answer[0] == pdu[0] | 0x80:
            assert len(answer) == 2, answer.hex()
            return answer[1], None
        assert answer[0] == pdu[0], answer.hex()
        return OK, answer

    def read(self, function_code: int, address: int, count: int):
        code, answer = self.ask(struct.pack(">BHH", function_code, address, count))
        if code:
            return code, None
        assert answer[1] == len(answer) - 2, answer.hex()
        if function_code >= 0x03:
            return OK, list(struct.unpack(f">{count}H", answer[2:]))
        return OK, [bool(answer[2 + i // 8] >> (i % 8) & 1) for i in range(count)]

    def write(self, pdu: bytes):
        """A write's answer: (0, None) when it echoes the request's first five bytes."""
        code, answer = self.ask(pdu)
        assert code or answer == pdu[:5], answer.hex()
        return code, None

    def write_coil(self, address: int, raw_value: int):  # FC 0x05
        return self.write(struct.pack(">BHH", 0x05, address, raw_value))

    def write_coils(self, address: int, bits: list[bool]):  # FC 0x0F
        data = pack_bits(bits)
        return self.write(struct.pack(">BHHB", 0x0F, address, len(bits), len(data)) + data)

    def write_register(self, address: int, value: int):  # FC 0x06
        return self.write(struct.pack(">BHH", 0x06, address, value))

    def write_registers(self, address: int, values: list[int]):  # FC 0x10
        return self.write(struct.pack(f">BHHB{len(values)}H", 0x10, address, len(values),
                                      2 * len(values), *values))

    def write_read_registers(self, write_address: int, values: list[int], read_address: int = 0,
                             read_count: int = 1):  # FC 0x17: the write first, then the read
        pdu = struct.pack(f">BHHHHB{len(values)}H", 0x17, read_address, read_count, write_address,
                          len(values), 2 * len(values), *values)
        code, answer = self.ask(pdu)
        assert code or answer[1:2] == bytes((2 * read_count,)) and len(answer) == 2 + 2 * read_count
        return code, None


class Meter:
    """One meter with some consumption behind a handler, and its observable state."""

    def __init__(self, meter_type: str = "electric", seed: int = 3, read_only: bool = False) -> None:
        self.clock = FakeClock()
        self.device = new_device(make_meter(meter_type, random.Random(seed), 12 * 3600.0))
        self.updater = Updater([self.device], speed=3600.0, clock=self.clock)
        self.tick(3)  # three simulated hours: a total of some kWh
        self.handler = MeterDataHandler(self.updater, device=self.device, read_only=read_only)
        self.seam = Responder(self.handler, IDENTIFICATION)
        self.client = Client(self.seam)

    def tick(self, count: int = 1) -> None:
        for _ in range(count):
            self.clock.now += 1.0
            self.updater.tick()

    def state(self) -> tuple:
        """Everything a write could change: the published spaces and the model's total."""
        image = self.device.bank.image
        return (image.words(0, 102), image.bit_list(0, 11), self.device.meter.total, self.device.online)

    def total_counts(self) -> int:
        return words_u32(*self.device.bank.image.words(0, 2))


@pytest.fixture
def meter() -> Meter:
    return Meter()


def online_view(meter: Meter) -> tuple:
    """(register 100, coil 0, discrete input 0, coil 2)"""
    client = meter.client
    return (client.read(0x03, 100, 1)[1][0], client.read(0x01, 0, 1)[1][0],
            client.read(0x02, 0, 1)[1][0], client.read(0x01, 2, 1)[1][0])


# --- online / offline ---

@pytest.mark.parametrize("go_offline, go_online", [
    (lambda c: c.write_coil(0, OFF), lambda c: c.write_coil(0, ON)),
    (lambda c: c.write_coils(0, [False]), lambda c: c.write_coils(0, [True])),
    (lambda c: c.write_register(100, 0), lambda c: c.write_register(100, 1)),
    (lambda c: c.write_registers(100, [0]), lambda c: c.write_registers(100, [1])),
    (lambda c: c.write_read_registers(100, [0]), lambda c: c.write_read_registers(100, [1])),
], ids=["fc05", "fc0f", "fc06", "fc10", "fc17"])
def test_online_and_offline_by_every_write(meter, go_offline, go_online):
    assert online_view(meter) == (1, True, True, True)
    stale = meter.client.read(0x03, 0, 23)[1]
    assert go_offline(meter.client) == (OK, None)
    assert online_view(meter) == (0, False, False, True)  # coil 2 stays ON
    meter.tick(2)
    assert meter.client.read(0x03, 0, 23)[1] == stale  # stale data while offline
    assert go_online(meter.client) == (OK, None)
    assert online_view(meter) == (1, True, True, True)
    assert meter.total_counts() > words_u32(*stale[0:2])  # includes what was consumed offline


def test_going_online_when_online_is_accepted(meter):
    assert meter.client.write_coil(0, ON) == (OK, None)
    assert meter.client.write_register(100, 1) == (OK, None)
    assert online_view(meter) == (1, True, True, True)


# --- reset ---

@pytest.mark.parametrize("reset", [
    lambda c: c.write_coil(10, ON), lambda c: c.write_coils(10, [True])], ids=["fc05", "fc0f"])
def test_coil_10_on_resets_the_total(meter, reset):
    assert meter.total_counts() > 0
    assert reset(meter.client) == (OK, None)
    assert meter.total_counts() == 0
    assert meter.client.read(0x03, 0, 2) == (OK, [0, 0])
    assert meter.client.read(0x04, 0, 2) == (OK, [0, 0])
    assert meter.client.read(0x01, 10, 1) == (OK, [False])  # the reset is a pulse


def test_reset_while_offline_shows_zero(meter):
    meter.client.write_coil(0, OFF)
    assert meter.client.write_coil(10, ON) == (OK, None)
    assert meter.client.read(0x03, 0, 2) == (OK, [0, 0])
    assert online_view(meter) == (0, False, False, True)


@pytest.mark.parametrize("no_reset", [
    lambda c: c.write_coil(10, OFF), lambda c: c.write_coils(10, [False])], ids=["fc05", "fc0f"])
def test_coil_10_off_is_accepted_and_does_nothing(meter, no_reset):
    before = meter.state()
    assert no_reset(meter.client) == (OK, None)
    assert meter.state() == before


def test_coils_read_back_as_the_contract_says(meter):
    assert meter.client.read(0x01, 0, 11) == (OK, [True, True, True] + [False] * 8)
    assert meter.client.read(0x02, 0, 11) == (OK, [True, True, True] + [False] * 8)
    meter.client.write_coil(10, ON)
    assert meter.client.read(0x01, 10, 1) == (OK, [False])


# --- bad values: 0x03, checked before the address ---

@pytest.mark.parametrize("value", [2, 3, 0x00FF, 0xFF00, 0xFFFF])
def test_register_100_other_values_are_illegal(meter, value):
    before = meter.state()
    assert meter.client.write_register(100, value) == (ILLEGAL_VALUE, None)
    assert meter.client.write_registers(100, [value]) == (ILLEGAL_VALUE, None)
    assert meter.client.write_read_registers(100, [value]) == (ILLEGAL_VALUE, None)
    assert meter.state() == before


@pytest.mark.parametrize("address", [0, 10, 1, 5, 11, 100, 65535])
@pytest.mark.parametrize("raw_value", [0x1234, 0x0001, 0x00FF, 0xFFFF, 0xFF01])
def test_fc05_other_values_are_illegal_even_on_a_wrong_address(meter, address, raw_value):
    before = meter.state()
    assert meter.client.write_coil(address, raw_value) == (ILLEGAL_VALUE, None)
    assert meter.state() == before


def test_a_bad_value_beside_a_bad_address_answers_the_value(meter):
    before = meter.state()
    assert meter.client.write_registers(99, [0, 2]) == (ILLEGAL_VALUE, None)
    assert meter.client.write_registers(100, [7, 0]) == (ILLEGAL_VALUE, None)
    assert meter.state() == before


# --- every other write: 0x02, nothing changes ---

@pytest.mark.parametrize("address", [1, 2, 3, 9, 11, 12, 100, 65535])
@pytest.mark.parametrize("raw_value", [ON, OFF])
def test_other_coils_are_not_writable(meter, address, raw_value):
    before = meter.state()
    assert meter.client.write_coil(address, raw_value) == (ILLEGAL_ADDRESS, None)
    assert meter.client.write_coils(address, [raw_value == ON]) == (ILLEGAL_ADDRESS, None)
    assert meter.state() == before


@pytest.mark.parametrize("address", [0, 1, 2, 3, 10, 16, 17, 20, 21, 22, 23, 99, 101, 102, 65535])
@pytest.mark.parametrize("value", [0, 1, 1234])
def test_other_registers_are_not_writable(meter, address, value):
    before = meter.state()
    assert meter.client.write_register(address, value) == (ILLEGAL_ADDRESS, None)
    assert meter.client.write_registers(address, [value]) == (ILLEGAL_ADDRESS, None)
    assert meter.client.write_read_registers(address, [value]) == (ILLEGAL_ADDRESS, None)
    assert meter.state() == before


@pytest.mark.parametrize("write", [
    lambda c: c.write_coils(0, [False, False]),  # coil 0 off, and coil 1
    lambda c: c.write_coils(0, [False] + [False] * 9 + [True]),  # 0 and 10, but 1 to 9 too
    lambda c: c.write_coils(9, [False, True]),  # 9 and a reset
    lambda c: c.write_coils(10, [True, False]),  # a reset and coil 11
    lambda c: c.write_registers(99, [0, 0]),
    lambda c: c.write_registers(100, [0, 0]),  # register 100 and 101
    lambda c: c.write_registers(98, [0, 0, 0]),
    lambda c: c.write_read_registers(100, [0, 1]),
], ids=["coils-0-1", "coils-0-10", "coils-9-10", "coils-10-11", "regs-99-100", "regs-100-101",
        "regs-98-100", "fc17-100-101"])
def test_a_multiple_write_touching_one_bad_address_changes_nothing(meter, write):
    before = meter.state()
    assert write(meter.client) == (ILLEGAL_ADDRESS, None)
    assert meter.state() == before


@pytest.mark.parametrize("read_address, read_count", [(101, 2), (0, 103), (102, 1), (65000, 1)])
def test_fc17_reading_past_101_writes_nothing(meter, read_address, read_count):
    before = meter.state()
    assert meter.client.write_read_registers(100, [0], read_address, read_count) == (ILLEGAL_ADDRESS, None)
    assert meter.state() == before  # still online: the write half did not land


def test_fc17_within_the_map_writes(meter):
    assert meter.client.write_read_registers(100, [0], 0, 102) == (OK, None)
    assert online_view(meter)[0] == 0


def test_fc17_through_the_seam_is_all_or_nothing(meter):
    before = meter.state()
    refused = meter.seam.answer(1, struct.pack(">BHHHHBH", 0x17, 101, 5, 100, 1, 2, 0))
    assert refused == bytes([0x97, ILLEGAL_ADDRESS])
    assert meter.state() == before
    answer = meter.seam.answer(1, struct.pack(">BHHHHBH", 0x17, 100, 2, 100, 1, 2, 0))
    assert answer == bytes([0x17, 4, 0, 0, 0, 0])  # offline, type 0: the read sees the write


# --- reads ---

@pytest.mark.parametrize("function_code", [0x03, 0x04])
@pytest.mark.parametrize("address, count", [(101, 2), (0, 103), (102, 1), (100, 3), (65535, 1), (0, 125)])
def test_register_reads_past_101_are_illegal(meter, function_code, address, count):
    assert meter.client.read(function_code, address, count) == (ILLEGAL_ADDRESS, None)


@pytest.mark.parametrize("function_code", [0x01, 0x02])
@pytest.mark.parametrize("address, count", [(10, 2), (11, 1), (0, 12), (65535, 1), (0, 2000)])
def test_bit_reads_past_10_are_illegal(meter, function_code, address, count):
    assert meter.client.read(function_code, address, count) == (ILLEGAL_ADDRESS, None)


@pytest.mark.parametrize("meter_type", ["electric", "water", "gas"])
def test_input_registers_are_the_holding_registers(meter_type):
    meter = Meter(meter_type)
    for _ in range(5):
        meter.tick()
        holding = meter.client.read(0x03, 0, 102)
        assert holding[0] == OK and len(holding[1]) == 102
        assert meter.client.read(0x04, 0, 102) == holding
        for address, count in ((0, 2), (10, 8), (20, 3), (100, 2), (101, 1)):
            assert meter.client.read(0x04, address, count) == meter.client.read(0x03, address, count)


def test_whole_spaces_read(meter):
    code, words = meter.client.read(0x03, 0, 102)
    assert code == OK and words[100] == 1 and words[101] == 0
    assert words == meter.device.bank.image.words(0, 102)


# --- read-only ---

def test_read_only_refuses_every_write_with_illegal_function():
    meter = Meter(read_only=True)
    before = meter.state()
    client = meter.client
    for answer in (client.write_coil(0, OFF), client.write_coil(10, ON), client.write_coil(5, ON),
                   client.write_coils(0, [False]), client.write_coils(10, [True]),
                   client.write_register(100, 0), client.write_registers(100, [0]),
                   client.write_read_registers(100, [0]), client.write_register(3, 1)):
        assert answer == (ILLEGAL_FUNCTION, None)
    assert meter.state() == before
    assert client.read(0x03, 0, 102)[0] == OK  # reads still served
    assert client.read(0x01, 0, 11)[0] == OK


# --- unit ids ---

@pytest.mark.parametrize("unit_id", [0, 1, 17, 247, 255])
def test_a_single_meter_answers_every_unit_id(meter, unit_id):
    client = Client(meter.seam, unit_id)
    assert client.read(0x03, 101, 1) == (OK, [0])
    assert client.write_coil(10, ON) == (OK, None)
    assert meter.total_counts() == 0


@pytest.fixture
def gateway():
    clock = FakeClock()
    devices = {uid: new_device(make_meter(meter_type, random.Random(uid), 12 * 3600.0))
             for uid, meter_type in ((1, "electric"), (5, "water"), (247, "gas"))}
    updater = Updater(devices.values(), speed=3600.0, clock=clock)
    for _ in range(3):
        clock.now += 1.0
        updater.tick()
    return devices, Responder(MeterDataHandler(updater, devices_by_id=devices), IDENTIFICATION)


def test_gateway_routes_by_unit_id(gateway):
    devices, seam = gateway
    for uid, code in ((1, 0), (5, 1), (247, 2)):
        assert Client(seam, uid).read(0x03, 101, 1) == (OK, [code])
        expected = devices[uid].bank.image.words(0, 102)
        assert Client(seam, uid).read(0x04, 0, 102) == (OK, expected)


def test_gateway_writes_reach_only_the_addressed_meter(gateway):
    devices, seam = gateway
    assert Client(seam, 5).write_coil(0, OFF) == (OK, None)
    assert [devices[uid].bank.image.words(100, 1)[0] for uid in (1, 5, 247)] == [1, 0, 1]
    assert Client(seam, 1).write_coil(10, ON) == (OK, None)
    assert words_u32(*devices[1].bank.image.words(0, 2)) == 0
    assert devices[247].meter.total > 0


@pytest.mark.parametrize("unit_id", [0, 2, 4, 6, 246, 248, 255])
def test_gateway_unknown_unit_id_gets_0x0b(gateway, unit_id):
    devices, seam = gateway
    before = [(u.bank.image.words(0, 102), u.bank.image.bit_list(0, 11)) for u in devices.values()]
    client = Client(seam, unit_id)
    for function_code in READS:
        assert client.read(function_code, 0, 1) == (GATEWAY_NO_RESPONSE, None)
    assert client.write_coil(10, ON) == (GATEWAY_NO_RESPONSE, None)
    assert client.write_coils(0, [False]) == (GATEWAY_NO_RESPONSE, None)
    assert client.write_register(100, 0) == (GATEWAY_NO_RESPONSE, None)
    assert client.write_registers(100, [0]) == (GATEWAY_NO_RESPONSE, None)
    after = [(u.bank.image.words(0, 102), u.bank.image.bit_list(0, 11)) for u in devices.values()]
    assert after == before


# --- the guard ---

def test_a_handler_bug_answers_0x04_and_is_logged(meter, caplog):
    def broken(*args):
        raise RuntimeError("bug")

    meter.updater.reset_total = broken
    with caplog.at_level(logging.ERROR, logger="meter_simulator.modbus.handler"):
        assert meter.client.write_coil(10, ON) == (DEVICE_FAILURE, None)
    assert [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]


@pytest.mark.parametrize("error", [KeyError, TypeError, AttributeError, ZeroDivisionError])
def test_a_read_bug_answers_0x04_not_pymodbustcps_silent_0x01(meter, caplog, error):
    class BrokenRegisters(Image):  # an image whose register reads fail
        def read_answer(self, function_code, address, quantity):
            if function_code >= 0x03:
                raise error("bug")
            return super().read_answer(function_code, address, quantity)

    image = meter.device.bank.image
    meter.device.bank.image = BrokenRegisters(image.holding, image.input, image.bits)
    with caplog.at_level(logging.ERROR, logger="meter_simulator.modbus.handler"):
        assert meter.client.read(0x03, 0, 1) == (DEVICE_FAILURE, None)
        assert meter.client.read(0x04, 0, 1) == (DEVICE_FAILURE, None)
    assert len([r for r in caplog.records if r.exc_info]) == 2
    assert meter.client.read(0x01, 0, 1) == (OK, [True])  # the other spaces still answer


# --- a device map's settings: every value of a write is checked before any is stored ---

def settings_unit(meter_type: str = "electric", **period):
    """A unit served through a map with unit_id (uint16, holding 0) beside demand_period (uint16,
    holding 1), both writable; period: the demand_period entry's own keys. Built by hand, as a map
    file from before the demand_period rules could be (mapfile now asks for allowed)."""
    unit_id = points.Point(address=0, space="holding", type="uint16", quantity="unit_id", writable=True,
                           label="register 1 (address 0)")
    demand_period = points.Point(address=1, space="holding", type="uint16", quantity="demand_period",
                                 writable=True, label="register 2 (address 1)", **period)
    profile = points.Profile(name="settings", meter_type=None, points=(unit_id, demand_period))
    clock = FakeClock()
    device = new_device(make_meter(meter_type, random.Random(3), 12 * 3600.0), profile, unit_id=5)
    updater = Updater([device], clock=clock)
    return device, Client(Responder(MeterDataHandler(updater, device=device), IDENTIFICATION))


def test_a_write_with_a_demand_period_the_model_lacks_changes_nothing_and_answers_0x03(caplog):
    device, client = settings_unit()  # no allowed: the map takes any number
    before = (device.bank.image, device.unit_id, device.meter.demand.period_min)
    with caplog.at_level(logging.DEBUG):
        assert client.write_registers(0, [9, 7]) == (ILLEGAL_VALUE, None)
    assert (device.bank.image, device.unit_id, device.meter.demand.period_min) == before  # unit_id kept 5
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert client.write_registers(0, [9, 15]) == (OK, None)
    assert (device.unit_id, device.meter.demand.period_min) == (9, 15)
    assert client.read(0x03, 0, 2) == (OK, [9, 15])


@pytest.mark.parametrize("words", [[248, 15], [0xFFFF, 15]])
def test_a_unit_id_the_device_cannot_have_changes_nothing_and_answers_0x03(words):
    device, client = settings_unit()
    assert client.write_registers(0, words) == (ILLEGAL_VALUE, None)
    assert (device.unit_id, device.meter.demand.period_min) == (5, 60)
    assert client.write_registers(0, [0, 15]) == (OK, None)  # 0 and 247 are unit ids
    assert client.write_registers(0, [247, 15]) == (OK, None) and device.unit_id == 247


def test_a_demand_period_write_to_a_meter_without_demand_answers_0x03():
    device, client = settings_unit("water", allowed=(0, 15))  # a map without a type serves water too
    assert device.meter.demand is None
    assert client.write_registers(0, [9, 15]) == (ILLEGAL_VALUE, None)
    assert device.unit_id == 5
    assert client.write_registers(0, [9]) == (OK, None) and device.unit_id == 9
