"""The seed map as a client reads it: scale, rounding, clamping, roll-over, word order, the coils."""
from __future__ import annotations

import pytest

from meter_simulator.maps import seed as registers
from meter_simulator.maps.seed import bits
from meter_simulator.model.reading import Reading
from support import seed_image, words_u32

ELECTRIC = Reading(total=1234.56, rate=2345.6, voltages_v=(229.9, 231.0, 230.4),
                   currents_a=(3.21, 0.5, 10.02), frequency_hz=50.01, power_factor=0.953)
WATER = Reading(total=12.346, rate=7.5, flow_l_min=7.5, temperature_c=11.3, pressure=3.52)
GAS = Reading(total=4321.09, rate=33.3, flow_l_min=33.3, temperature_c=-12.4, pressure=21.07)

# every address the contract names, per meter type
NAMED = {
    "electric": {0, 1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17, 100, 101},
    "water": {0, 1, 2, 3, 20, 21, 22, 100, 101},
    "gas": {0, 1, 2, 3, 20, 21, 22, 100, 101},
}


@pytest.mark.parametrize("meter_type, reading", [
    ("electric", ELECTRIC), ("water", WATER), ("gas", GAS)])
def test_every_unnamed_address_reads_zero(meter_type, reading):
    words = seed_image(reading, meter_type, online=True)
    assert len(words) == registers.REGISTER_COUNT == 102
    assert all(0 <= w <= 0xFFFF for w in words)
    for address in set(range(102)) - NAMED[meter_type]:
        assert words[address] == 0, address


@pytest.mark.parametrize("meter_type, code", [("electric", 0), ("water", 1), ("gas", 2)])
@pytest.mark.parametrize("online", [True, False])
def test_status_registers(meter_type, code, online):
    reading = {"electric": ELECTRIC, "water": WATER, "gas": GAS}[meter_type]
    words = seed_image(reading, meter_type, online=online)
    assert words[101] == code
    assert words[100] == (1 if online else 0)


def test_electric_image():
    words = seed_image(ELECTRIC, "electric", online=True)
    assert words_u32(words[0], words[1]) == 123456
    assert words_u32(words[2], words[3]) == 23456
    assert words[10:13] == [2299, 2310, 2304]
    assert words[13:16] == [321, 50, 1002]
    assert words[16] == 5001
    assert words[17] == 953
    assert words[20:23] == [0, 0, 0]  # no flow, temperature or pressure on an electric meter


@pytest.mark.parametrize("meter_type, reading, total, flow, temperature, pressure", [
    ("water", WATER, 1235, 75, 613, 352),  # (11.3 + 50) * 10 = 613
    ("gas", GAS, 432109, 333, 376, 2107),  # (-12.4 + 50) * 10 = 376
])
def test_flow_meter_image(meter_type, reading, total, flow, temperature, pressure):
    words = seed_image(reading, meter_type, online=True)
    assert words_u32(words[0], words[1]) == total
    assert words_u32(words[2], words[3]) == flow  # registers 2-3 and 20 show the same flow
    assert words[20] == flow
    assert words[21] == temperature
    assert words[22] == pressure
    assert words[10:18] == [0] * 8  # no voltages, currents, frequency, power factor


@pytest.mark.parametrize("temperature_c, stored", [
    (-50.0, 0), (-20.0, 300), (0.0, 500), (12.34, 623), (40.0, 900), (-51.0, 0)])
def test_temperature_offset(temperature_c, stored):
    reading = Reading(total=0.0, rate=0.0, temperature_c=temperature_c)
    assert seed_image(reading, "gas", online=True)[21] == stored


@pytest.mark.parametrize("total, counts", [
    (0.0, 0),
    (42949672.95, 2**32 - 1),  # the last value before the roll-over
    (42949672.96, 0),  # rolls over to 0 like a real meter's register
    (42949673.00, 4),
    (2 * 42949672.96 + 1.5, 150),
])
def test_total_rolls_over_modulo_2_32(total, counts):
    words = seed_image(Reading(total=total, rate=0.0), "electric", online=True)
    assert words_u32(words[0], words[1]) == counts


@pytest.mark.parametrize("rate, counts", [
    (-5.0, 0),  # an instantaneous value never wraps: a negative one clamps to 0
    (429496729.5, 2**32 - 1),
    (1e12, 2**32 - 1),  # clamped at the top, not rolled over
    (6553.6, 65536),  # a 32-bit rate: the high word is used
])
def test_rate_is_clamped_to_32_bits(rate, counts):
    words = seed_image(Reading(total=0.0, rate=rate), "electric", online=True)
    assert words_u32(words[2], words[3]) == counts


@pytest.mark.parametrize("field, value, address, stored", [
    ("voltages_v", (7000.0, 230.0, -3.0), 10, [65535, 2300, 0]),
    ("currents_a", (700.0, -1.0, 63.0), 13, [65535, 0, 6300]),
    ("frequency_hz", 1000.0, 16, [65535]),
    # a negative total PF (exporting, with solar panels) shows its magnitude (profiles contract 2)
    ("power_factor", -0.5, 17, [500]),
    ("power_factor", 70.0, 17, [65535]),
])
def test_electric_instantaneous_values_clamp(field, value, address, stored):
    reading = Reading(total=0.0, rate=0.0, **{field: value})
    words = seed_image(reading, "electric", online=True)
    assert words[address:address + len(stored)] == stored


def test_flow_meter_instantaneous_values_clamp():
    reading = Reading(total=0.0, rate=0.0, flow_l_min=-1.0, temperature_c=7000.0, pressure=-2.0)
    words = seed_image(reading, "water", online=True)
    assert words[20:23] == [0, 65535, 0]


@pytest.mark.parametrize("online, no_alarm, comm_ok", [
    (True, True, True), (False, True, True), (True, False, True), (False, False, False)])
def test_bits(online, no_alarm, comm_ok):
    flags = bits(online, no_alarm, comm_ok)
    assert len(flags) == registers.COIL_COUNT == 11
    assert flags[0] is online and flags[1] is no_alarm and flags[2] is comm_ok
    assert flags[3:] == [False] * 8  # 3 to 9 read OFF, and the reset coil 10 always reads OFF


def test_bits_comm_ok_defaults_on():
    assert bits(True, True)[registers.COIL_COMM_OK] is True


def test_addresses_are_the_contracts():
    assert (registers.ONLINE, registers.REGISTER_COUNT) == (100, 102)
    assert (registers.COIL_ONLINE, registers.COIL_NO_ALARM, registers.COIL_COMM_OK,
            registers.COIL_RESET, registers.COIL_COUNT) == (0, 1, 2, 10, 11)
