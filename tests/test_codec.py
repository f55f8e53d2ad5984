"""Codec: every type's encoding, in both word orders, clamped or wrapped, and whole maps compiled
for every meter type (pure: no sockets)."""
from __future__ import annotations

import math
import random
import struct

import pytest

from meter_simulator.device.device import Device, serial_number
from meter_simulator.maps import codec, extremes, mapfile, points, profiles
from meter_simulator.model import quantities
from meter_simulator.model.meters import METER_TYPES, make_meter
from meter_simulator.model.reading import Reading


class Shown:
    """The device side a map reads (codec's m)."""

    online, unit_id, serial_number, demand_period, demand_time = 1, 7, 5021007, 60, 3.0

    def __init__(self, stored=None) -> None:
        self.stored = stored or {}


def encoded(entries: list[dict], reading: Reading | None = None, counters=None, meter_type="electric",
            word_order="big", blocks=()):
    """The holding registers an electric reading encodes to through a map of these entries."""
    document = {"name": "t", "word_order": word_order, "register": entries, "block": list(blocks)}
    profile = mapfile.parse(document, "t.toml")
    compiled = codec.compile_map(profile, meter_type)
    reading = reading or Reading(total=0.0, rate=0.0)
    image = compiled.encode(reading, counters or {}, {}, Shown())
    return image


def words(image, address: int, quantity: int, space: int = 3) -> list[int]:
    return image.words(address, quantity, space)


def one(type_: str, value, word_order="big", **keys) -> list[int]:
    entry = {"address": 0, "type": type_, "value": value, **keys}
    if word_order != "big" and type_ not in ("uint16", "int16"):
        entry["word_order"] = word_order
    image = encoded([entry])
    return words(image, 0, image.holding[0][1])


@pytest.mark.parametrize("type_, value, big, little", [
    ("uint16", 0x1234, [0x1234], [0x1234]),
    ("int16", -2, [0xFFFE], [0xFFFE]),
    ("uint32", 0x12345678, [0x1234, 0x5678], [0x5678, 0x1234]),
    ("int32", -2, [0xFFFF, 0xFFFE], [0xFFFE, 0xFFFF]),
    ("acc32", 70000, [0x0001, 0x1170], [0x1170, 0x0001]),
    ("uint64", 0x0102030405060708, [0x0102, 0x0304, 0x0506, 0x0708], [0x0708, 0x0506, 0x0304, 0x0102]),
    ("int64", -1, [0xFFFF] * 4, [0xFFFF] * 4),
    ("float32", 230.0, [0x4366, 0x0000], [0x0000, 0x4366]),
    ("float64", 1.5, [0x3FF8, 0, 0, 0], [0, 0, 0, 0x3FF8]),
])
def test_each_type_in_both_word_orders(type_, value, big, little):
    assert one(type_, value) == big
    assert one(type_, value, "little") == little


def test_a_string_is_nul_padded_first_character_high():
    assert one("string", "AB", length=3) == [0x4142, 0, 0]
    assert one("string", "ABC", length=2) == [0x4142, 0x4300]


def quantity_words(type_: str, quantity: str, reading: Reading, counters=None, **keys) -> list[int]:
    image = encoded([{"address": 0, "type": type_, "quantity": quantity, **keys}], reading, counters)
    return words(image, 0, image.holding[0][1])


@pytest.mark.parametrize("type_, physical, stored", [
    ("uint16", 7000.0, [65535]), ("uint16", -3.0, [0]), ("int16", 4000.0, [32767]),
    ("int16", -4000.0, [0x8001]), ("uint32", -1.0, [0, 0]), ("int32", -1e12, [0x8000, 1]),
])
def test_an_instantaneous_value_that_does_not_fit_is_clamped(type_, physical, stored):
    # signed types stop at -32767 (-2**31 + 1): -32768 is SunSpec's "not implemented"
    reading = Reading(total=0.0, rate=0.0, voltages_v=(physical, 0.0, 0.0))
    assert quantity_words(type_, "voltage_l1", reading, scale=10) == stored


@pytest.mark.parametrize("type_, value, stored", [
    ("int16", -32768, [0x8000]), ("int32", -(2**31), [0x8000, 0]), ("int64", -(2**63), [0x8000, 0, 0, 0]),
])
def test_a_constant_at_the_bottom_of_a_signed_type_is_stored_as_given(type_, value, stored):
    # SunSpec's "not implemented" for int16 and int32: a map stores it as a constant
    assert one(type_, value) == stored
    assert one(type_, value, "little") == stored[::-1]


@pytest.mark.parametrize("type_, kwh, stored", [
    ("uint16", 65.537, [1]), ("uint32", 4294967.297, [0, 1]), ("int32", 2147483.649, [0x8000, 1]),
])
def test_a_counter_wraps_like_a_meter_register(type_, kwh, stored):
    assert quantity_words(type_, "energy_import", Reading(total=0.0, rate=0.0),
                          {"energy_import": kwh}, scale=1000) == stored


def test_scale_offset_and_absolute():
    reading = Reading(total=0.0, rate=0.0, power_factor=-0.953)
    assert quantity_words("int16", "power_factor_total", reading, scale=10000) == [(-9530) & 0xFFFF]
    assert quantity_words("uint16", "power_factor_total", reading, scale=1000, absolute=True) == [953]
    water = Reading(total=0.0, rate=0.0, temperature_c=-12.5)
    image = encoded([{"address": 0, "type": "uint16", "quantity": "temperature", "offset": 50,
                      "scale": 10}], water, meter_type="water")
    assert words(image, 0, 1) == [375]


def test_gaps_read_zero_and_reads_outside_the_segments_have_no_answer():
    image = encoded([{"address": 2, "type": "uint16", "value": 5, "space": "input"},
                     {"address": 10, "type": "uint16", "value": 6, "space": "input"}],
                    blocks=[{"space": "input", "start": 0, "end": 5}])
    assert image.input[0][:2] == (0, 6) and image.input[1][:2] == (10, 11)
    assert words(image, 0, 6, 4) == [0, 0, 5, 0, 0, 0]
    assert words(image, 10, 1, 4) == [6]
    assert image.read_answer(4, 5, 2) is None  # runs from one segment into the gap
    assert image.read_answer(4, 9, 2) is None
    assert image.read_answer(3, 2, 1) is None  # nothing in the holding registers
    assert image.holding == ()


@pytest.mark.parametrize("type_", ["uint16", "int16", "uint32", "int32", "uint64", "float32", "float64"])
@pytest.mark.parametrize("word_order", ["big", "little"])
def test_decode_is_the_inverse_of_the_encoding(type_, word_order):
    entry = {"address": 0, "type": type_, "value": 1234, "writable": True}
    if type_ not in ("uint16", "int16"):
        entry["word_order"] = word_order
    profile = mapfile.parse({"register": [entry]}, "t.toml")
    compiled = codec.compile_map(profile, "electric")
    image = compiled.encode(Reading(total=0.0, rate=0.0), {}, {}, Shown({0: 1234}))
    point = compiled.writable[0]
    assert codec.written_value(point, words(image, 0, point.length)) == 1234


def meter_quantities() -> list[str]:
    """Every numeric quantity a meter's map may show (a site's inverter shows its own, too)."""
    return [n for n in quantities.NAMES if n not in quantities.STRINGS and n not in quantities.SITE]


def every_quantity_map(meter_type: str) -> dict:
    """A map that shows every numeric quantity as a float32, one after another."""
    entries = [{"address": 2 * i, "type": "float32", "quantity": name}
               for i, name in enumerate(meter_quantities())]
    return {"name": "all", "type": meter_type, "register": entries}


@pytest.mark.parametrize("meter_type", METER_TYPES)
def test_every_quantity_encodes_for_every_meter_type_and_never_as_nan(meter_type):
    profile = mapfile.parse(every_quantity_map(meter_type), "all.toml")
    meter = make_meter(meter_type, random.Random(3), 12 * 3600.0,
                       **({"pv_kwp": 10.0} if meter_type == "electric" else {}))
    device = Device(meter, _Bank(), profile, unit_id=7, serial=5021007)
    for _ in range(50):
        meter.step(600.0)
        device.publish()
        data = device.bank.image.holding[0][2]
        values = struct.unpack(f">{len(data) // 4}f", data)
        assert all(math.isfinite(value) for value in values)
    named = dict(zip(meter_quantities(), values))
    assert named["unit_id"] == 7 and named["serial_number"] == pytest.approx(5021007, rel=1e-6)
    assert named["meter_type"] == {"electric": 0, "water": 1, "gas": 2}[meter_type]
    if meter_type == "electric":
        assert named["voltage_l1"] > 200 and named["energy_import"] > 0
        assert named["flow"] == named["volume_total"] == 0
    else:
        assert named["voltage_l1"] == named["energy_import"] == 0 and named["volume_total"] > 0


class _Bank:
    image = None

    def publish(self, image) -> None:
        self.image = image


@pytest.mark.parametrize("name", profiles.BUILT_IN)
def test_the_built_in_maps_compile_and_their_spaces_are_as_documented(name):
    profile = profiles.built_in(name)
    compiled = profiles.compiled(profile, "electric")
    assert profiles.compiled(profile, "electric") is compiled  # once per process
    meter = make_meter("electric", random.Random(1))
    device = Device(meter, _Bank(), profile)
    device.publish()
    image = device.bank.image
    ranges = {"seed": ([(0, 102)], [(0, 102)]),
              "sdm630": ([(0, 0x2E), (0xF910, 0xF912), (0xFC00, 0xFC04)], [(0, 0x17E)]),
              "sunspec": ([(40000, 40179)], []),
              "sunspec-float": ([(40000, 40198)], [])}[name]
    assert [segment[:2] for segment in image.holding] == ranges[0]
    assert [segment[:2] for segment in image.input] == ranges[1]
    assert (image.bits is not None) is (name == "seed")


def test_sdm630_float32_values_are_high_word_first():
    meter = make_meter("electric", random.Random(1))
    device = Device(meter, _Bank(), profiles.built_in("sdm630"), unit_id=3)
    device.publish()
    volts = struct.unpack(">f", device.bank.image.input[0][2][:4])[0]
    assert volts == pytest.approx(meter.reading.voltages_v[0], abs=1e-4)
    meter_id = struct.unpack(">f", struct.pack(">2H", *device.bank.image.words(0x14, 2)))[0]
    assert meter_id == 3.0


# --- floats that would not fit, and the check of every map at the extremes ---

F32_MAX = 3.4028234663852886e38
F64_MAX = 1.7976931348623157e308


def unchecked(kind: str, scale: float, word_order: str = "big") -> points.Profile:
    """A profile of one point past the map file's bounds, built by hand (mapfile refuses it)."""
    point = points.Point(address=0, space="holding", type=kind, quantity="voltage_l1", scale=scale,
                         word_order=word_order, length=points.TYPE_REGISTERS[kind],
                         label="register 1 (address 0)")
    return points.Profile(name="t", meter_type=None, points=(point,), source="t.toml")


def first_float(profile: points.Profile, volts: float) -> float:
    kind = profile.points[0].type
    image = codec.compile_map(profile, "electric").encode(
        Reading(total=0.0, rate=0.0, voltages_v=(volts, 0.0, 0.0)), {}, {}, Shown())
    data = image.holding[0][2]
    if profile.points[0].word_order == "little":
        data = b"".join(data[i:i + 2] for i in range(len(data) - 2, -1, -2))
    return struct.unpack(">f" if kind == "float32" else ">d", data)[0]


@pytest.mark.parametrize("volts, shown", [
    (math.inf, F32_MAX), (-math.inf, -F32_MAX), (math.nan, codec.NAN_STORED), (1.0000001, F32_MAX),
    (-1.0000001, -F32_MAX), (1.0, F32_MAX), (0.5, struct.unpack(">f", struct.pack(">f", F32_MAX / 2))[0]),
])
@pytest.mark.parametrize("word_order", ["big", "little"])
def test_a_float32_point_that_could_overflow_is_clamped_and_never_nan(volts, shown, word_order):
    profile = unchecked("float32", F32_MAX, word_order)  # 1 V is the largest float32
    assert codec.needs_clamp(profile.points[0])
    assert first_float(profile, volts) == shown


@pytest.mark.parametrize("volts, shown", [
    (math.inf, F64_MAX), (-math.inf, -F64_MAX), (math.nan, 0.0), (2.0, F64_MAX), (-2.0, -F64_MAX),
])
def test_a_float64_point_that_could_overflow_serves_its_largest_value_never_inf(volts, shown):
    assert first_float(unchecked("float64", 1e308), volts) == shown


def test_a_nan_or_infinite_scale_is_clamped_too():
    assert first_float(unchecked("float32", math.nan), 230.0) == codec.NAN_STORED
    assert first_float(unchecked("float64", math.inf), 230.0) == F64_MAX


@pytest.mark.parametrize("name", profiles.BUILT_IN)
def test_no_float_point_of_a_valid_map_needs_the_clamp(name):
    # the bounds on scale and offset make every value fit: a tick pays no clamp (about 5 % of an
    # SDM630 meter's tick if every float point had one)
    assert not any(codec.needs_clamp(point) for point in profiles.built_in(name).points if
                   point.type in points.FLOAT_TYPES)
    widest = mapfile.parse({"register": [{"address": 0, "type": "float32", "quantity": "energy_total",
                                          "scale": -1e10, "offset": 1e10}]}, "t.toml")
    assert not codec.needs_clamp(widest.points[0])
    assert "v :=" not in codec.compile_map(widest, "electric").source
    assert "v :=" in codec.compile_map(unchecked("float32", 1e30), "electric").source


@pytest.mark.parametrize(("name", "meter_type"), [(name, "electric") for name in profiles.BUILT_IN]
                         + [("seed", "water"), ("seed", "gas")])
def test_the_built_in_maps_encode_every_source_at_its_extremes(name, meter_type):
    compiled = extremes.check_encodes(profiles.built_in(name), meter_type)
    assert compiled.meter_type == meter_type


def test_a_map_at_the_bounds_encodes_every_quantity_at_its_extremes_and_finite():
    names = meter_quantities()
    entries = [{"address": 4 * i, "type": kind, "quantity": name, "scale": 1e10, "offset": -1e10}
               for i, name in enumerate(names) for kind in ("float32",)]
    entries += [{"address": 4 * i + 2, "type": "int16", "quantity": name, "scale": -1e10}
                for i, name in enumerate(names)]
    entries.append({"address": 60000, "type": "float64", "value": 1.5, "writable": True})
    entries.append({"address": 60004, "type": "string", "length": 3, "value": "ab", "writable": True})
    profile = mapfile.parse({"register": entries}, "t.toml")
    for meter_type in METER_TYPES:
        compiled = extremes.check_encodes(profile, meter_type)
        image = compiled.encode(*extremes.extreme_tick(compiled, "highest"))
        floats = [struct.unpack(">f", struct.pack(">2H", *words(image, 4 * i, 2)))[0]
                  for i in range(len(names))]
        assert all(math.isfinite(value) for value in floats)


def test_a_map_that_cannot_encode_is_refused_naming_the_register():
    good = points.Point(address=0, space="holding", type="uint16", quantity="frequency",
                        label="register 1 (address 0)")
    bad = points.Point(address=4, space="input", type="int32", quantity="energy_import", scale=math.inf,
                       label="register 2 (address 4)")  # round(inf) raises: mapfile refuses such a scale
    profile = points.Profile(name="t", meter_type="electric", points=(good, bad), source="t.toml")
    with pytest.raises(extremes.EncodeError) as caught:
        extremes.check_encodes(profile, "electric")
    assert str(caught.value) == ("register 2 (address 4): cannot be encoded for electric meters with every "
                                 "reading at its lowest (ValueError: cannot convert float NaN to integer)")
    with pytest.raises(profiles.ProfileError) as caught:
        profiles.check(profile)
    assert str(caught.value).startswith("profile t.toml: register 2 (address 4): cannot be encoded")


def test_the_extreme_device_is_what_the_simulator_can_reach():
    assert extremes.SERIAL_NUMBER_MAX == serial_number(65535, quantities.UNIT_ID_MAX)
    highest = extremes.extreme_tick(codec.compile_map(profiles.built_in("sdm630"), "electric"), "highest")
    reading, counters, demands, device = highest
    assert reading.voltages_v == (6553.5,) * 3 and reading.powers_w[0] == 6553.5 * 655.35
    assert set(counters.values()) == {quantities.COUNTER_MAX}
    assert counters.keys() == set(quantities.ELECTRIC_COUNTERS + quantities.FLOW_COUNTERS)
    assert (device.unit_id, device.demand_period, device.online) == (247, 60, 1)


@pytest.mark.parametrize(("name", "nbytes"), [
    ("seed", 2 * 102 + 100), ("sdm630", 2 * (0x2E + 2 + 4 + 0x17E) + 4 * 100), ("sunspec", 2 * 179 + 100)])
def test_the_image_bytes_of_a_map(name, nbytes):
    assert codec.image_bytes(profiles.built_in(name), "electric") == nbytes
