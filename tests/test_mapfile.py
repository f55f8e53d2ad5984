"""Map files: what a valid file becomes, and the one-line error each invalid one gives.

Real files in tmp_path, read by mapfile.load_map as the command line would; the working directory is
tmp_path, so the file is named as a user gives it ('mine.toml') and the messages are exact.
"""
from __future__ import annotations

import json
import os
import re

import pytest

from meter_simulator.maps import mapfile, points
from support import ROOT

VOLTAGE = '[[register]]\naddress = 0\nspace = "input"\ntype = "float32"\nquantity = "voltage_l1"\n'


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def write(text: str, name: str = "mine.toml") -> str:
    with open(name, "w", encoding="utf-8") as file:
        file.write(text)
    return name


def register(**keys) -> str:
    """One [[register]] table with these keys, in TOML."""
    lines = ["[[register]]"]
    for key, value in keys.items():
        lines.append(f"{key} = {toml(value)}")
    return "\n".join(lines) + "\n"


def toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml(item) for item in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def error_of(text: str, meter_type: str | None = None, name: str = "mine.toml") -> str:
    with pytest.raises(mapfile.MapError) as caught:
        mapfile.load_map(write(text, name), meter_type)
    message = str(caught.value)
    assert "\n" not in message
    return message


U16 = {"address": 20, "type": "uint16"}
R = "register 1 (address 20): "  # how the errors name a register at address 20
NO_SUNSSF = (R + "scale_factor 21 is not the address of an int16 constant from -10 to 10 in its space "
             "(a SunSpec sunssf)")

INVALID = [
    # the file as a whole
    ("registers = []\n", 'unknown top-level key "registers" (did you mean "register"?)'),
    ("colour = 1\n" + VOLTAGE,
     'unknown top-level key "colour" (one of name, type, word_order, write_functions, block, register)'),
    ("", "no registers: a map needs at least one [[register]]"),
    ('name = "x"\n', "no registers: a map needs at least one [[register]]"),
    ("register = 5\n", "register must be a list of tables ([[register]])"),
    ("name = 5\n" + VOLTAGE, "name 5 is not a one-line text"),
    ('name = ""\n' + VOLTAGE, 'name "" is not a one-line text'),
    ('name = "a\\nb"\n' + VOLTAGE, 'name "a\\nb" is not a one-line text'),
    ('type = "steam"\n' + VOLTAGE, 'unknown type "steam" (one of electric, water, gas)'),
    ('type = "electirc"\n' + VOLTAGE, 'unknown type "electirc" (did you mean "electric"?)'),
    ('type = "inverter"\n' + VOLTAGE, 'unknown type "inverter" (one of electric, water, gas)'),
    ('word_order = "middle"\n' + VOLTAGE, 'unknown word order "middle" (one of big, little)'),
    ("write_functions = [5]\n" + VOLTAGE,
     "write_functions [5] is not a list of 6 and 16 (FC 0x06, 0x10)"),
    ("write_functions = 16\n" + VOLTAGE,
     "write_functions 16 is not a list of 6 and 16 (FC 0x06, 0x10)"),
    ("write_functions = [6, 15]\n" + VOLTAGE,
     "write_functions [6, 15] is not a list of 6 and 16 (FC 0x06, 0x10)"),
    # blocks
    ("[[block]]\nstart = 10\nend = 5\n" + VOLTAGE, "block 1: start 10 is after end 5"),
    ("[[block]]\nstart = 0\nend = 5\n[[block]]\nstart = 0\nend = 70000\n" + VOLTAGE,
     "block 2: end 70000 is not an integer 0-65535"),
    ("[[block]]\nstart = -1\nend = 5\n" + VOLTAGE, "block 1: start -1 is not an integer 0-65535"),
    ("[[block]]\nstart = 0\n" + VOLTAGE, "block 1: end missing"),
    ('[[block]]\nspace = "coils"\nstart = 0\nend = 1\n' + VOLTAGE,
     'block 1: unknown space "coils" (one of holding, input, both)'),
    ("[[block]]\nstart = 0\nend = 1\nsize = 2\n" + VOLTAGE,
     'block 1: unknown key "size" (one of space, start, end)'),
    # entry keys, addresses, spaces, types
    (VOLTAGE + register(adress=1, type="uint16", value=0),
     'register 2: unknown key "adress" (did you mean "address"?)'),
    (register(**U16, value=1, units="V"),
     R + 'unknown key "units" (one of address, space, type, quantity, value, scale, '
     "offset, word_order, length, writable, allowed, min, max, absolute, meter_types, scale_factor, "
     "control)"),
    (register(type="uint16", value=1), "register 1: address missing"),
    (register(address=70000, type="uint16", value=1), "register 1: address 70000 is not an integer 0-65535"),
    (register(address=-1, type="uint16", value=1), "register 1: address -1 is not an integer 0-65535"),
    (register(address="20", type="uint16", value=1), 'register 1: address "20" is not an integer 0-65535'),
    (register(address=True, type="uint16", value=1), "register 1: address true is not an integer 0-65535"),
    (register(address=2.0, type="uint16", value=1), "register 1: address 2.0 is not an integer 0-65535"),
    (register(address=65535, type="uint32", value=1),
     "register 1 (address 65535): its 2 registers run past address 65535"),
    (register(address=65530, type="string", length=7, value="x"),
     "register 1 (address 65530): its 7 registers run past address 65535"),
    (register(**U16, space="coil", value=1),
     R + 'unknown space "coil" (one of holding, input, both)'),
    (register(**U16, space="holdings", value=1),
     R + 'unknown space "holdings" (did you mean "holding"?)'),
    (register(address=20, value=1), R + "type missing"),
    (register(address=20, type="uint23", value=1),
     R + 'unknown type "uint23" (did you mean "uint32"?)'),
    (register(address=20, type="bcd", value=1),
     R + 'unknown type "bcd" (one of uint16, int16, uint32, int32, acc32, float32, '
     "uint64, int64, acc64, float64, string)"),
    (register(address=20, type="uint32", word_order="middle", value=1),
     R + 'unknown word order "middle" (one of big, little)'),
    (register(**U16, word_order="little", value=1),
     R + "word_order applies to 32- and 64-bit types only, not uint16"),
    (register(address=20, type="string", length=2, word_order="little", value="ab"),
     R + "word_order applies to 32- and 64-bit types only, not string"),
    # quantity and value
    (register(address=20, type="float32", quantity="frequencyy"),
     R + 'unknown quantity "frequencyy" (did you mean "frequency"?)'),
    (register(address=20, type="float32", quantity="zzz"), R + 'unknown quantity "zzz"'),
    (register(address=20, type="float32", quantity=5), R + "unknown quantity 5"),
    (register(address=20, type="float32", quantity=["frequency"]),
     R + 'unknown quantity ["frequency"]'),
    (register(address=20, type="float32", quantity="frequency", value=50),
     R + "give either quantity or value, not both"),
    (register(address=20, type="float32"), R + "give a quantity, a value or a control"),
    (register(**U16, value=70000), R + "value 70000 does not fit a uint16 (0 to 65535)"),
    (register(**U16, value=-1), R + "value -1 does not fit a uint16 (0 to 65535)"),
    (register(address=20, type="int16", value=32768),
     R + "value 32768 does not fit an int16 (-32768 to 32767)"),
    (register(address=20, type="acc32", value=-5),
     R + "value -5 does not fit an acc32 (0 to 4294967295)"),
    (register(address=20, type="uint64", value=-1),
     R + "value -1 does not fit a uint64 (0 to 18446744073709551615)"),
    (register(**U16, value=1.5), R + "value 1.5 is not a whole number, as a uint16 stores"),
    (register(address=20, type="float32", value=1e39), R + "value 1e+39 does not fit a float32"),
    (register(address=20, type="float64", value=float("nan")),
     R + "value NaN is not a finite number"),
    (register(**U16, value=True), R + "value true is not a finite number"),
    (register(**U16, value="230"), R + 'value "230" is text: a uint16 holds a number'),
    (register(address=20, type="string", length=2, value=5),
     R + "value 5 is not text, as a string holds"),
    (register(address=20, type="string", length=2, value="abcde"),
     R + 'value "abcde" has 5 characters: 2 registers hold 4'),
    (register(address=20, type="string", length=2, value="\u00e9t\u00e9"),
     R + 'value "\u00e9t\u00e9" is not printable ASCII text'),
    (register(address=20, type="string", quantity="voltage_l1", length=4),
     R + 'quantity "voltage_l1" is a number: a string shows serial_number, version, '
     "profile or a text value"),
    (register(address=20, type="uint32", quantity="version"),
     R + 'quantity "version" is text: its type must be string'),
    (register(address=20, type="uint16", quantity="profile"),
     R + 'quantity "profile" is text: its type must be string'),
    # length
    (register(address=20, type="string", value="ab"),
     R + "length missing: a string needs its length in registers"),
    (register(address=20, type="string", length=0, value=""),
     R + "length 0 is not a whole number of registers, at least 1"),
    (register(address=20, type="string", length=2.5, value=""),
     R + "length 2.5 is not a whole number of registers, at least 1"),
    (register(address=20, type="uint32", length=2, quantity="flow"),
     R + "length applies to strings only: a uint32 takes 2"),
    # scale, offset, absolute
    (register(**U16, quantity="flow", scale=0), R + "scale 0 would store every value as 0"),
    (register(**U16, quantity="flow", scale="10"), R + 'scale "10" is not a finite number'),
    (register(**U16, quantity="flow", scale=float("inf")),
     R + "scale Infinity is not a finite number"),
    (register(**U16, quantity="flow", offset=float("-inf")),
     R + "offset -Infinity is not a finite number"),
    (register(**U16, quantity="flow", offset=True), R + "offset true is not a finite number"),
    (register(**U16, value=5, scale=10),
     R + "scale applies to a quantity: give the constant as the value to store"),
    (register(**U16, value=5, offset=1),
     R + "offset applies to a quantity: give the constant as the value to store"),
    (register(address=20, type="string", length=4, quantity="serial_number", scale=2),
     R + "scale applies to numbers, not to a string"),
    (register(**U16, quantity="flow", absolute=1), R + "absolute 1 is not true or false"),
    (register(**U16, value=1, absolute=True), R + "absolute applies to a numeric quantity"),
    # scale_factor: the address of a SunSpec sunssf, an int16 constant from -10 to 10
    (register(**U16, quantity="flow", scale_factor=21), NO_SUNSSF),
    (register(**U16, quantity="flow", scale_factor=21) + register(address=21, type="uint16", value=0),
     NO_SUNSSF),
    (register(**U16, quantity="flow", scale_factor=21) + register(address=21, type="int16", value=-32768),
     NO_SUNSSF),
    (register(**U16, quantity="flow", scale_factor=21)
     + register(address=21, type="int16", value=-1, space="input"),
     NO_SUNSSF),
    (register(**U16, quantity="flow", scale_factor=21) + register(address=21, type="int16", quantity="flow"),
     NO_SUNSSF),
    (register(**U16, quantity="flow", scale=1e9, scale_factor=21)
     + register(address=21, type="int16", value=-2),
     R + "scale 1e+09 x 10^2 is out of range: its magnitude must be from 1e-10 to 1e+10"),
    (register(**U16, quantity="flow", scale_factor=70000),
     R + "scale_factor 70000 is not an integer 0-65535"),
    (register(**U16, value=1, scale_factor=21),
     R + "scale_factor applies to a quantity in an integer type, not writable"),
    (register(address=20, type="float32", quantity="flow", scale_factor=22),
     R + "scale_factor applies to a quantity in an integer type, not writable"),
    (register(**U16, quantity="unit_id", writable=True, scale_factor=21),
     R + "scale_factor applies to a quantity in an integer type, not writable"),
    # writable and the ranges a write may store
    (register(**U16, quantity="flow", writable=True),
     R + 'quantity "flow" cannot be writable: only constants and unit_id and '
     "demand_period are"),
    (register(**U16, space="input", value=1, writable=True),
     R + "writable applies to holding registers: clients write no others"),
    (register(**U16, value=1, writable="yes"), R + 'writable "yes" is not true or false'),
    (register(**U16, value=1, allowed=[1, 2]),
     R + "allowed applies to a writable entry (writable = true)"),
    (register(**U16, quantity="unit_id", min=1),
     R + "min applies to a writable entry (writable = true)"),
    (register(**U16, value=1, writable=False, max=3),
     R + "max applies to a writable entry (writable = true)"),
    (register(address=20, type="string", length=2, value="ab", writable=True, allowed=[1]),
     R + "allowed applies to numbers, not to a string"),
    (register(**U16, value=1, writable=True, allowed=[]), R + "allowed [] is not a list of numbers"),
    (register(**U16, value=1, writable=True, allowed=5), R + "allowed 5 is not a list of numbers"),
    (register(**U16, value=1, writable=True, allowed=[1, "2"]),
     R + 'allowed value "2" is not a finite number'),
    (register(**U16, value=1, writable=True, allowed=[1, 70000]),
     R + "allowed value 70000 does not fit a uint16 (0 to 65535)"),
    (register(**U16, quantity="demand_period", scale=2000, writable=True, allowed=[5, 60]),
     R + "allowed value 120000 does not fit a uint16 (0 to 65535)"),
    (register(**U16, value=1, writable=True, min=5, max=3), R + "min 5 is above max 3"),
    (register(**U16, value=1, writable=True, min="1"), R + 'min "1" is not a finite number'),
    (register(**U16, value=7, writable=True, allowed=[1, 2]),
     R + "value 7 is not among allowed [1, 2]"),
    (register(**U16, value=7, writable=True, min=10),
     R + "value 7 is below min 10"),
    (register(**U16, value=7, writable=True, min=1, max=5),
     R + "value 7 is above max 5"),
    # meter types
    (register(**U16, value=1, meter_types=["steam"]),
     R + 'unknown meter type "steam" (one of electric, water, gas)'),
    (register(**U16, value=1, meter_types=[]), R + "meter_types [] is not a list of meter types"),
    (register(**U16, value=1, meter_types="water"),
     R + 'meter_types "water" is not a list of meter types'),
    ('type = "water"\n' + register(**U16, value=1, meter_types=["electric", "gas"]),
     R + 'meter_types ["electric", "gas"] leaves out the map\'s type "water": '
     "the entry would never be served"),
    # overlaps
    (register(address=20, type="uint32", value=1) + register(address=21, type="uint16", value=2),
     "register 2 (address 21): overlaps register 1 (address 20) in the holding registers"),
    (VOLTAGE + register(address=1, space="input", type="uint16", value=2),
     "register 2 (address 1): overlaps register 1 (address 0) in the input registers"),
    (VOLTAGE + register(address=1, space="both", type="uint16", value=2),
     "register 2 (address 1): overlaps register 1 (address 0) in the input registers"),
    (register(address=4, space="both", type="uint16", value=1) + register(address=4, type="uint16", value=2),
     "register 2 (address 4): overlaps register 1 (address 4) in the holding registers"),
    (register(address=4, type="string", length=10, value="x") + register(address=13, type="uint16", value=2),
     "register 2 (address 13): overlaps register 1 (address 4) in the holding registers"),
    (register(**U16, value=1, meter_types=["water", "gas"])
     + register(**U16, value=2, meter_types=["gas"]),
     "register 2 (address 20): overlaps register 1 (address 20) in the holding registers"),
    (register(**U16, value=1, meter_types=["water"]) + register(**U16, value=2),
     "register 2 (address 20): overlaps register 1 (address 20) in the holding registers"),
    # the register tables themselves
    ("register = [1]\n", "register 1: 1 is not a table"),
    # scale and offset bounds: every value a valid map shows fits its type (the review's maps)
    (register(address=20, type="float64", quantity="voltage_l1", scale=1e307),
     R + "scale 1e+307 is out of range: its magnitude must be from 1e-10 to 1e+10"),
    (register(address=20, type="float32", quantity="voltage_l1", scale=1e37),
     R + "scale 1e+37 is out of range: its magnitude must be from 1e-10 to 1e+10"),
    (register(address=20, type="float32", quantity="energy_import", scale=1e30),
     R + "scale 1e+30 is out of range: its magnitude must be from 1e-10 to 1e+10"),
    (register(**U16, quantity="flow", scale=-2e10),
     R + "scale -20000000000.0 is out of range: its magnitude must be from 1e-10 to 1e+10"),
    (register(**U16, quantity="flow", scale=1e-11),
     R + "scale 1e-11 is out of range: its magnitude must be from 1e-10 to 1e+10"),
    (register(**U16, quantity="flow", offset=-1e11),
     R + "offset -100000000000.0 is out of range: -1e+10 to 1e+10"),
    # a writable demand_period: listed periods of the demand model, electric meters only
    (register(**U16, quantity="demand_period", writable=True),
     R + "a writable demand_period needs allowed: a list of the periods (0, 5, 8, 10, 15, 20, 30, 60 min)"),
    (register(**U16, quantity="demand_period", writable=True, allowed=[15, 7]),
     R + "allowed value 7 is not a demand period (0, 5, 8, 10, 15, 20, 30, 60 min)"),
    (register(**U16, quantity="demand_period", writable=True, allowed=[15.5]),
     R + "allowed value 15.5 is not a demand period (0, 5, 8, 10, 15, 20, 30, 60 min)"),
    ('type = "water"\n' + register(**U16, quantity="demand_period", writable=True, allowed=[15]),
     R + "demand_period cannot be writable on a water meter: it has no demand"),
    (register(**U16, quantity="demand_period", writable=True, allowed=[15], meter_types=["electric", "gas"]),
     R + "demand_period cannot be writable on a gas meter: it has no demand"),
    (register(**U16, quantity="unit_id", writable=True, allowed=[1, 248]),
     R + "allowed value 248 is not a unit id (0 to 247)"),
    (register(**U16, quantity="unit_id", writable=True, allowed=[-1]),
     R + "allowed value -1 is not a unit id (0 to 247)"),
]


@pytest.mark.parametrize(("text", "problem"), INVALID)
def test_an_invalid_map_names_the_file_the_entry_and_the_problem(text, problem):
    assert error_of(text) == f"profile mine.toml: {problem}"


def test_the_error_is_a_value_error_and_names_the_file_as_given(tmp_path):
    os.mkdir("maps")
    path = write(register(**U16, value=70000), os.path.join("maps", "mine.toml"))
    with pytest.raises(ValueError, match=r"^profile maps/mine\.toml: register 1 \(address 20\): value 70000"):
        mapfile.load_map(path)
    absolute = str(tmp_path / "maps" / "mine.toml")
    with pytest.raises(mapfile.MapError, match=f"^profile {absolute}: "):
        mapfile.load_map(absolute)


def test_a_type_that_does_not_match_the_command_line_is_refused():
    text = 'type = "water"\n' + VOLTAGE
    assert error_of(text, "electric") == 'profile mine.toml: type "water" does not match --type electric'
    assert mapfile.load_map("mine.toml", "water").meter_type == "water"


def test_a_map_without_a_type_takes_any_meter_type():
    write(VOLTAGE)
    assert mapfile.load_map("mine.toml").meter_type is None
    assert mapfile.load_map("mine.toml", "gas").meter_type is None  # the caller's --type decides


def test_a_toml_syntax_error_names_the_line():
    message = error_of(VOLTAGE + "[[register]]\naddress = = 3\n")
    assert message.startswith("profile mine.toml: invalid TOML: ")
    assert message.endswith("(at line 7, column 11)")


def test_a_json_syntax_error_names_the_line():
    message = error_of('{"register": [\n  {"address": 0,}\n]}', name="mine.json")
    assert message.startswith("profile mine.json: invalid JSON: ")
    # the line is the point; Python 3.13 names the trailing comma's column (16), earlier ones the brace's
    assert re.search(r"\(at line 2, column 1[67]\)$", message), message


def test_a_json_key_given_twice_is_an_error():
    text = '{"register": [{"address": 0, "address": 1, "type": "uint16", "value": 0}]}'
    assert error_of(text, name="mine.json") == 'profile mine.json: invalid JSON: key "address" given twice'


def test_a_json_document_must_be_a_table():
    assert error_of("[1, 2]", name="mine.json") == \
        "profile mine.json: the file must hold a table of keys at the top"


def test_an_unreadable_file_gives_the_reason():
    with pytest.raises(mapfile.MapError) as caught:
        mapfile.load_map("missing.toml")
    assert str(caught.value) == "profile missing.toml: cannot read it: No such file or directory"
    os.mkdir("folder.toml")
    with pytest.raises(mapfile.MapError, match=r"^profile folder\.toml: cannot read it: Is a directory$"):
        mapfile.load_map("folder.toml")


def test_a_file_that_is_not_utf8_is_refused():
    with open("mine.toml", "wb") as file:
        file.write(b'name = "\xff"\n')
    with pytest.raises(mapfile.MapError) as caught:
        mapfile.load_map("mine.toml")
    assert str(caught.value) == "profile mine.toml: cannot read it: not UTF-8 text (byte 8)"


def test_a_byte_order_mark_is_accepted():
    with open("mine.toml", "wb") as file:
        file.write(b"\xef\xbb\xbf" + VOLTAGE.encode())
    assert len(mapfile.load_map("mine.toml").points) == 1


VALID = """
name = "my-meter"
type = "electric"
word_order = "little"
write_functions = [16, 16]

[[block]]
space = "input"
start = 0
end = 99

[[block]]
start = 0xF000
end = 0xF00F

[[register]]
address = 0
space = "input"
type = "float32"
quantity = "voltage_l1"

[[register]]
address = 2
space = "input"
type = "uint32"
quantity = "energy_import"
scale = 1000
word_order = "big"

[[register]]
address = 0x0010
type = "string"
length = 8
quantity = "serial_number"

[[register]]
address = 0x0020
type = "uint16"
quantity = "unit_id"
writable = true
min = 1
max = 247

[[register]]
address = 0x0021
space = "both"
type = "uint16"
value = 100
writable = true
allowed = [60, 100, 200]

[[register]]
address = 0x0022
type = "float64"
quantity = "power_factor_total"
absolute = true
offset = 0.5

[[register]]
address = 0x0030
type = "int16"
value = -2
meter_types = ["electric"]

[[register]]
address = 0xFFFC
type = "acc64"
quantity = "energy_export"
"""


def test_a_valid_map_builds_its_profile():
    profile = mapfile.load_map(write(VALID))
    assert profile.name == "my-meter"
    assert profile.meter_type == "electric"
    assert profile.word_order == "little"
    assert profile.write_functions == (16,)
    assert profile.source == "mine.toml"
    assert profile.coils is False
    assert profile.blocks == (points.Block("input", 0, 99), points.Block("holding", 0xF000, 0xF00F))
    volts, energy, serial, device, pulse, pf, sf, export = profile.points
    assert volts == points.Point(address=0, space="input", type="float32", quantity="voltage_l1",
                                 word_order="little", length=2, label="register 1 (address 0)")
    assert (energy.length, energy.word_order, energy.scale, energy.offset) == (2, "big", 1000.0, 0.0)
    assert (serial.type, serial.length, serial.quantity) == ("string", 8, "serial_number")
    assert serial.space == "holding"
    assert serial.label == "register 3 (address 16)"
    assert (device.writable, device.minimum, device.maximum, device.allowed) == (True, 1, 247, None)
    assert (pulse.value, pulse.allowed, pulse.quantity, pulse.space) == (100, (60, 100, 200), None, "both")
    assert pulse.spaces() == ("holding", "input")
    assert (pf.length, pf.absolute, pf.offset, pf.word_order) == (4, True, 0.5, "little")
    assert (sf.value, sf.meter_types, sf.length) == (-2, ("electric",), 1)
    assert (export.address, export.length, export.end) == (0xFFFC, 4, 0x10000)


def test_defaults():
    profile = mapfile.load_map(write(register(address=7, type="uint16", quantity="flow"), "water-1.toml"))
    assert profile.name == "water-1"  # the file name without its extension
    assert profile.meter_type is None
    assert profile.word_order == "big"
    assert profile.write_functions == (6, 16)
    assert profile.blocks == ()
    (point,) = profile.points
    assert point == points.Point(address=7, space="holding", type="uint16", quantity="flow",
                                 label="register 1 (address 7)")
    assert type(point.scale) is float and type(point.offset) is float


def test_the_file_word_order_reaches_every_entry_without_its_own():
    text = ('word_order = "little"\n' + register(address=0, type="uint32", quantity="flow")
            + register(address=2, type="int64", quantity="flow", word_order="big")
            + register(address=6, type="uint16", quantity="flow"))
    assert [point.word_order for point in mapfile.load_map(write(text)).points] == ["little", "big", "little"]


@pytest.mark.parametrize(("kind", "length"), [(kind, size) for kind, size in points.TYPE_REGISTERS.items()
                                              if size is not None])
def test_each_type_takes_its_registers(kind, length):
    (point,) = mapfile.load_map(write(register(address=10, type=kind, value=1))).points
    assert (point.length, point.end) == (length, 10 + length)


@pytest.mark.parametrize(("kind", "value"), [("uint16", 65535), ("int16", -32768), ("uint32", 2**32 - 1),
                                             ("int32", -(2**31)), ("acc32", 0), ("uint64", 2**64 - 1),
                                             ("int64", 2**63 - 1), ("acc64", 2**64 - 1), ("uint16", 7.0),
                                             ("float32", -3.4e38), ("float64", 1e300)])
def test_constants_at_the_edges_of_their_type_fit(kind, value):
    (point,) = mapfile.load_map(write(register(address=0, type=kind, value=value))).points
    assert point.value == value
    if kind.startswith(("uint", "int", "acc")):
        assert type(point.value) is int


@pytest.mark.parametrize(("factor", "scale"), [(-2, 100.0), (0, 1.0), (1, 0.1), (3, 0.001)])
def test_a_point_with_a_scale_factor_stores_its_quantity_times_scale_over_ten_to_the_factor(factor, scale):
    text = (register(address=0, type="uint16", quantity="frequency", scale_factor=3)
            + register(address=1, type="acc32", quantity="energy_import", scale=1000, scale_factor=3)
            + register(address=3, type="int16", value=factor))
    frequency, energy, sunssf = mapfile.load_map(write(text)).points
    assert (frequency.scale, frequency.scale_factor) == (scale, 3)
    assert (energy.scale, energy.scale_factor) == (pytest.approx(1000 * scale), 3)
    assert (sunssf.value, sunssf.scale_factor) == (factor, None)


def test_a_built_in_map_may_be_a_sites_inverter_map_showing_its_quantities():
    text = 'type = "inverter"\n' + register(address=0, type="int16", quantity="battery_power")
    (point,) = mapfile.load_map(write(text), types=mapfile.MAP_TYPES).points
    assert point.quantity == "battery_power"
    assert mapfile.MAP_TYPES == ("electric", "water", "gas", "inverter")


def test_entries_of_different_meter_types_may_share_addresses():
    text = (register(address=0, type="uint32", quantity="energy_import", meter_types=["electric"])
            + register(address=0, type="uint32", quantity="volume_total", meter_types=["water", "gas"])
            + register(address=1, type="uint16", value=0, space="input"))
    found = mapfile.load_map(write(text)).points
    assert [point.meter_types for point in found] == [("electric",), ("water", "gas"), None]


def test_holding_and_input_entries_do_not_overlap_each_other():
    text = (register(address=0, type="uint32", value=1)
            + register(address=0, space="input", type="uint32", value=2))
    assert len(mapfile.load_map(write(text)).points) == 2


def test_an_entry_may_end_at_the_last_address_and_a_block_cover_everything():
    text = ('[[block]]\nspace = "both"\nstart = 0\nend = 65535\n'
            + register(address=65534, type="int32", value=-1))
    profile = mapfile.load_map(write(text))
    assert profile.blocks == (points.Block("both", 0, 65535),)
    assert profile.points[0].end == 65536


def test_an_empty_write_function_list_makes_a_read_only_map():
    assert mapfile.load_map(write("write_functions = []\n" + VOLTAGE)).write_functions == ()


def test_strings_take_text_constants_and_the_text_quantities():
    text = (register(address=0, type="string", length=4, value="meter-si")
            + register(address=4, type="string", length=4, quantity="version")
            + register(address=8, type="string", length=1, quantity="profile")
            + register(address=9, type="string", length=3, value="", writable=True))
    found = mapfile.load_map(write(text)).points
    assert [(point.value, point.quantity, point.length) for point in found] == [
        ("meter-si", None, 4), (None, "version", 4), (None, "profile", 1), ("", None, 3)]
    assert found[3].writable


def test_a_setting_may_be_writable_with_a_scale():
    text = register(address=0, type="uint16", quantity="demand_period", scale=10, writable=True,
                    allowed=[0, 5, 8, 10, 15, 20, 30, 60])
    (point,) = mapfile.load_map(write(text)).points
    assert point.writable and point.allowed == (0, 5, 8, 10, 15, 20, 30, 60) and point.scale == 10.0


def test_json_with_the_same_structure_is_accepted():
    document = {"name": "j", "type": "gas", "word_order": "little",
                "block": [{"space": "input", "start": 0, "end": 9}],
                "register": [{"address": 0, "space": "input", "type": "uint32", "quantity": "volume_total",
                              "scale": 1000},
                             {"address": 2, "type": "string", "length": 2, "value": "gas"}]}
    profile = mapfile.load_map(write(json.dumps(document), "mine.json"))
    assert (profile.name, profile.meter_type, profile.source) == ("j", "gas", "mine.json")
    assert [(point.type, point.length, point.word_order) for point in profile.points] == [
        ("uint32", 2, "little"), ("string", 2, "little")]
    assert profile.blocks == (points.Block("input", 0, 9),)
    del document["name"]
    assert mapfile.load_map(write(json.dumps(document), "MINE.JSON")).name == "MINE"


def test_json_and_toml_give_the_same_profile():
    document = {"register": [{"address": 3, "type": "float32", "quantity": "frequency"}]}
    from_json = mapfile.load_map(write(json.dumps(document), "same.json"))
    toml_text = register(address=3, type="float32", quantity="frequency")
    from_toml = mapfile.load_map(write(toml_text, "same.toml"))
    assert from_json.points == from_toml.points


def test_json_errors_read_as_toml_errors():
    document = {"register": [{"address": 20, "type": "float32", "quantity": "frequencyy"}]}
    assert error_of(json.dumps(document), name="mine.json") == (
        'profile mine.json: register 1 (address 20): unknown quantity "frequencyy" '
        '(did you mean "frequency"?)')
    document = {"register": [{"address": 20, "type": "float32", "value": None}]}
    assert error_of(json.dumps(document), name="mine.json") == (
        "profile mine.json: register 1 (address 20): value null is not a finite number")


def test_parse_takes_a_document_already_read():
    profile = mapfile.parse({"register": [{"address": 1, "type": "uint16", "quantity": "online"}]},
                            "tables/seed.toml")
    assert (profile.name, profile.source, profile.points[0].label) == ("seed", "tables/seed.toml",
                                                                       "register 1 (address 1)")
    mismatch = r'^profile seed\.toml: type "gas" does not match --type water$'
    with pytest.raises(mapfile.MapError, match=mismatch):
        mapfile.parse({"type": "gas", "register": []}, "seed.toml", "water")
    with pytest.raises(mapfile.MapError, match=r"^profile x: the file must hold a table of keys at the top$"):
        mapfile.parse([], "x")


def test_the_first_problem_in_file_order_is_the_one_named():
    text = register(address=0, type="uint16", value=1) + register(address=0, type="uint16", value=99999)
    assert error_of(text) == ("profile mine.toml: register 2 (address 0): "
                              "value 99999 does not fit a uint16 (0 to 65535)")


def test_scale_and_offset_may_reach_their_bounds():
    text = (register(address=0, type="float32", quantity="energy_total", scale=1e10, offset=-1e10)
            + register(address=2, type="int16", quantity="power_total", scale=-1e-10, offset=1e10))
    first, second = mapfile.load_map(write(text)).points
    assert (first.scale, first.offset, second.scale, second.offset) == (1e10, -1e10, -1e-10, 1e10)


def test_a_writable_demand_period_is_fine_on_an_electric_entry_of_any_map():
    entry = register(**U16, quantity="demand_period", writable=True, allowed=[0, 15, 60],
                     meter_types=["electric"])
    for text in ('type = "electric"\n' + entry, entry, 'type = "water"\n' + register(
            **U16, quantity="demand_period")):  # read-only, a water meter's reads 0 as the contract says
        assert len(mapfile.load_map(write(text)).points) == 1


LONG = 10**400  # a 401-digit integer: float() and math.isfinite() of it raise OverflowError
WIDE = "1.000e+400"  # how a message shows it


@pytest.mark.parametrize(("text", "problem"), [
    (register(address=LONG, type="uint16", value=1), f"register 1: address {WIDE} is not an integer 0-65535"),
    (register(address=20, type="string", length=LONG, value="x"),
     R + f"its {WIDE} registers run past address 65535"),
    (register(**U16, value=LONG), R + f"value {WIDE} does not fit a uint16 (0 to 65535)"),
    (register(address=20, type="int64", value=-LONG),
     R + f"value -{WIDE} does not fit an int64 (-9223372036854775808 to 9223372036854775807)"),
    (register(address=20, type="float32", value=LONG), R + f"value {WIDE} does not fit a float32"),
    (register(address=20, type="float64", value=LONG), R + f"value {WIDE} does not fit a float64"),
    (register(**U16, quantity="flow", scale=LONG),
     R + f"scale {WIDE} is out of range: its magnitude must be from 1e-10 to 1e+10"),
    (register(**U16, quantity="flow", offset=-LONG), R + f"offset -{WIDE} is out of range: -1e+10 to 1e+10"),
    (register(**U16, value=1, writable=True, allowed=[1, LONG]),
     R + f"allowed value {WIDE} does not fit a uint16 (0 to 65535)"),
    (register(**U16, quantity="unit_id", writable=True, allowed=[LONG]),
     R + f"allowed value {WIDE} is not a unit id (0 to 247)"),
    (register(**U16, quantity="demand_period", writable=True, allowed=[-LONG]),
     R + f"allowed value -{WIDE} is not a demand period (0, 5, 8, 10, 15, 20, 30, 60 min)"),
    (register(**U16, value=1, writable=True, min=LONG), R + f"value 1 is below min {WIDE}"),
    (register(**U16, value=1, writable=True, max=-LONG), R + f"value 1 is above max -{WIDE}"),
    (register(**U16, value=1, writable=True, min=LONG, max=1), R + f"min {WIDE} is above max 1"),
    (f"write_functions = [{LONG}]\n" + VOLTAGE, "write_functions [1000000000000000000000000000000000"),
    (f"[[block]]\nstart = {LONG}\nend = 1\n" + VOLTAGE, f"block 1: start {WIDE} is not an integer 0-65535"),
    (f"[[block]]\nstart = 0\nend = {-LONG}\n" + VOLTAGE, f"block 1: end -{WIDE} is not an integer 0-65535"),
])
@pytest.mark.parametrize("language", ["toml", "json"])
def test_an_integer_of_hundreds_of_digits_in_any_number_is_one_line(text, problem, language):
    if language == "json":  # the same document as JSON: huge integers stay integers there too
        text, name = json.dumps(mapfile.toml_parser().loads(text)), "mine.json"
    else:
        name = "mine.toml"
    message = error_of(text, name=name)
    assert message.startswith(f"profile {name}: {problem}")
    assert len(message) < 200


def test_huge_bounds_of_a_write_are_compared_exactly():
    (point,) = mapfile.load_map(write(register(**U16, value=1, writable=True, min=-LONG, max=LONG))).points
    assert (point.minimum, point.maximum) == (-LONG, LONG)


DEEP = 100_000  # far deeper than the parsers' recursion goes


@pytest.mark.parametrize(("text", "name", "problem"), [
    ("value = " + "[" * DEEP + "]" * DEEP + "\n", "mine.toml", "invalid TOML: nested too deeply"),
    ("x = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n", "mine.toml", "invalid TOML: nested too deeply"),
    ('{"register": [{"value": ' + "[" * DEEP + "]" * DEEP + "}]}", "mine.json",
     "invalid JSON: nested too deeply"),
    ('{"name": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}", "mine.json", "invalid JSON: nested too deeply"),
])
def test_nesting_deeper_than_the_parser_goes_is_one_line(text, name, problem):
    assert error_of(text, name=name) == f"profile {name}: {problem}"


def test_nesting_the_parser_reads_is_shown_cut_short():
    text = json.dumps({"register": [{"address": 20, "type": "uint16", "value": [[[[[[[[1]]]]]]]] * 30}]})
    message = error_of(text, name="mine.json")
    assert message.startswith(R.join(("profile mine.json: ", "value [[[[[[[[1]]]]]]], [[[[[[[1]]]]]]], ")))
    assert message.endswith('... is not a finite number')
    nested = 300  # under the parser's limit, deeper than a message should show
    text = json.dumps({"register": [{"address": 20, "type": "uint16", "value": 1}]})[:-3] + \
        ', "meter_types": ' + "[" * nested + "]" * nested + "}]}"
    assert error_of(text, name="mine.json") == (
        "profile mine.json: register 1 (address 20): unknown meter type " + "[" * 117 + "... "
        "(one of electric, water, gas)")


@pytest.mark.parametrize("name", ["mine.toml", "mine.json"])
def test_an_integer_longer_than_python_reads_is_one_line(name):
    digits = "9" * 5000  # Python 3.11 (and 3.9.14, 3.10.7) refuse to read it: ValueError, no decode error
    text = f"value = {digits}\n" if name.endswith(".toml") else f'{{"name": {digits}}}'
    language = "TOML" if name.endswith(".toml") else "JSON"
    assert error_of(text, name=name) == (f"profile {name}: invalid {language}: an integer of more "
                                         "digits than can be read")  # the same on every Python


def test_a_map_of_more_registers_than_the_limit_is_refused_before_they_are_checked():
    text = "".join(f'[[register]]\naddress = {n}\ntype = "nope"\n'  # each would be refused (its type)
                   for n in range(mapfile.MAX_POINTS + 1))
    assert error_of(text) == "profile mine.toml: 10,001 registers: a map holds at most 10,000"


def test_a_map_at_the_register_limit_loads():
    text = "".join(f"[[register]]\naddress = {n}\ntype = \"uint16\"\nvalue = 0\n"
                   for n in range(mapfile.MAX_POINTS))
    assert len(mapfile.load_map(write(text)).points) == mapfile.MAX_POINTS


def test_a_file_larger_than_the_limit_is_refused_unread():
    with open("mine.toml", "w", encoding="utf-8") as file:
        file.write(VOLTAGE)
        file.write("# padding\n" * (mapfile.MAX_FILE_BYTES // 10))
    with pytest.raises(mapfile.MapError) as caught:
        mapfile.load_map("mine.toml")
    assert str(caught.value) == ("profile mine.toml: larger than 4 MiB, too large for a map "
                                 "(at most 10,000 registers)")


def test_a_large_map_loads_quickly():
    text = "".join(register(address=2 * n, type="uint32", quantity="energy_import") for n in range(5000))
    assert len(mapfile.load_map(write(text)).points) == 5000


@pytest.mark.parametrize(("name", "meter_type"), [("water-meter.toml", "water"),
                                                  ("electric-meter.toml", "electric")])
def test_the_example_maps_load(name, meter_type):
    path = str(ROOT / "docs" / "examples" / name)
    profile = mapfile.load_map(path, meter_type)
    assert profile.meter_type == meter_type
    assert profile.name == name.removesuffix(".toml")
    assert profile.points and profile.blocks
    with pytest.raises(mapfile.MapError, match="does not match --type gas"):
        mapfile.load_map(path, "gas")


def test_the_water_example_shows_what_it_says():
    profile = mapfile.load_map(str(ROOT / "docs" / "examples" / "water-meter.toml"))
    by_quantity = {point.quantity: point for point in profile.points if point.quantity}
    volume = profile.points[0]
    assert (volume.quantity, volume.type, volume.scale) == ("volume_total", "uint32", 1000.0)
    assert volume.space == "input"
    assert {"flow", "temperature", "pressure", "serial_number"} <= by_quantity.keys()
    assert by_quantity["serial_number"].type == "string"
    assert any(point.writable and point.quantity is None for point in profile.points)


def test_the_electric_example_shows_what_it_says():
    profile = mapfile.load_map(str(ROOT / "docs" / "examples" / "electric-meter.toml"))
    by_quantity = {point.quantity: point for point in profile.points if point.quantity}
    for stem in ("voltage", "current", "power"):
        for phase in (1, 2, 3):
            assert by_quantity[f"{stem}_l{phase}"].type == "float32"
    for name in ("energy_import", "energy_export"):
        assert (by_quantity[name].type, by_quantity[name].scale) == ("uint32", 1000.0)
    assert (by_quantity["frequency"].type, by_quantity["frequency"].scale) == ("int16", 100.0)
    assert any(point.word_order == "little" for point in profile.points)
    assert profile.write_functions == (16,)
