"""The state file (format, atomic save, load errors) and the saver, in process with real files."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re

import pytest

from meter_simulator.device.fleet import PortPlan, meter_key
from meter_simulator.device.updater import Updater
from meter_simulator.modbus.server import new_device
from meter_simulator.model import quantities
from meter_simulator.model.meters import make_meter
from meter_simulator.ops import state
from meter_simulator.ops.saver import Saver, devices_by_key
from support import FakeClock, u32, wait_for

# water meters, with totals whose shortest repr is long or tiny, and a gateway meter
METERS = {"5021": {"volume_total": 0.1 + 0.2}, "5022": {"volume_total": 1e-12},
          "5023": {"volume_total": 123456789.987654321}, "5024-7": {"volume_total": 0.0}}
ELECTRIC = state.counter_names("electric")


def valid_bytes(meter_type: str = "water", meters=None) -> bytes:
    return state.encode(meter_type, METERS if meters is None else meters, 1.7e9)


def document_bytes(meters, meter_type: str = "water") -> bytes:
    """A version-2 file's bytes as they are given, unchecked (encode() refuses bad values)."""
    document = {"format": state.FORMAT, "version": 2, "meter_type": meter_type, "units": "m3",
                "saved_at": "2024-05-01T12:00:00Z", "meters": meters}
    return json.dumps(document, indent=1).encode()


def version_1_bytes(totals, meter_type: str = "water") -> bytes:
    """A file as version 1 wrote it: one total per meter, gateway keys port/unit id."""
    document = {"format": state.FORMAT, "version": 1, "meter_type": meter_type,
                "unit": {"electric": "kWh"}.get(meter_type, "m3"),
                "saved_at": "2024-05-01T12:00:00Z", "totals": totals}
    return json.dumps(document, indent=1).encode()


def odd_values(names, seed: int = 3) -> dict[str, float]:
    """A value for each name whose repr is as long as a float's gets, and some extremes."""
    rng = random.Random(seed)
    extremes = [0.0, 5e-324, 2.2250738585072014e-308, quantities.COUNTER_MAX, 0.1 + 0.2, 1e-12]
    return {name: extremes[i] if i < len(extremes) else rng.random() * 10 ** rng.randrange(-3, 9)
            for i, name in enumerate(names)}


def same_bits(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> bool:
    """The same meters with the same values in the same order, bit for bit."""
    return a.keys() == b.keys() and all(
        list(a[key]) == list(b[key]) and all(a[key][name].hex() == b[key][name].hex() for name in a[key])
        for key in a)


# --- format ---

def test_values_come_back_bit_for_bit(tmp_path):
    path = str(tmp_path / "totals.json")
    state.save(path, "water", METERS)
    loaded = state.load(path, "water")
    assert loaded == METERS and same_bits(loaded, METERS)


def test_every_electric_counter_and_maximum_demand_comes_back_bit_for_bit(tmp_path):
    assert ELECTRIC == quantities.ELECTRIC_COUNTERS + quantities.MAX_DEMANDS
    meters = {"5021": odd_values(ELECTRIC), "5021-7": odd_values(ELECTRIC, seed=4)}
    path = str(tmp_path / "totals.json")
    state.save(path, "electric", meters)
    loaded = state.load(path, "electric")
    assert same_bits(loaded, meters)
    assert list(loaded["5021"]) == list(ELECTRIC)  # every counter, in one order


def test_the_file_is_readable_json_naming_type_and_units(tmp_path):
    path = tmp_path / "totals.json"
    state.save(str(path), "water", {"5020": {"volume_total": 1.5}, "5020-7": {}}, saved_at_s=0)
    document = json.loads(path.read_text())
    assert document == {"format": state.FORMAT, "version": 2, "meter_type": "water", "units": "m3",
                        "saved_at": "1970-01-01T00:00:00Z",
                        "meters": {"5020": {"volume_total": 1.5}, "5020-7": {"volume_total": 0.0}}}


def test_each_meter_is_one_line_of_the_file(tmp_path):
    """A fleet's file is written fast (json's C encoder) and a meter is found with grep."""
    path = tmp_path / "totals.json"
    state.save(str(path), "gas", {"5020": 12.5, "5021-7": {"volume_total": 0.1 + 0.2}}, saved_at_s=0)
    assert path.read_text() == """\
{
 "format": "meter-simulator state",
 "version": 2,
 "meter_type": "gas",
 "units": "m3",
 "saved_at": "1970-01-01T00:00:00Z",
 "meters": {
  "5020": {"volume_total": 12.5},
  "5021-7": {"volume_total": 0.30000000000000004}
 }
}
"""
    state.save(str(path), "gas", {}, saved_at_s=0)
    assert path.read_text().endswith(' "meters": {}\n}\n') and state.load(str(path), "gas") == {}


def test_whole_numbers_and_the_largest_counters_are_numbers_too(tmp_path):
    path = tmp_path / "totals.json"
    path.write_bytes(document_bytes({"5021": {"energy_import": 12, "energy_export": 0}}, "electric"))
    loaded = state.load(str(path), "electric")["5021"]
    assert loaded["energy_import"] == 12.0 and all(type(value) is float for value in loaded.values())
    largest = dict.fromkeys(ELECTRIC, quantities.COUNTER_MAX)
    state.save(str(path), "electric", {"5021": largest, "5022": {"energy_import": 3}})
    assert same_bits(state.load(str(path), "electric"),
                     {"5021": largest, "5022": {**dict.fromkeys(ELECTRIC, 0.0), "energy_import": 3.0}})


def test_an_electric_meter_holds_every_counter_and_its_maximum_demands(tmp_path):
    path = tmp_path / "totals.json"
    values = dict(odd_values(ELECTRIC), energy_import=12.5)
    state.save(str(path), "electric", {"5020": values}, saved_at_s=0)
    document = json.loads(path.read_text())
    assert document["version"] == 2 and document["meter_type"] == "electric"
    assert "kWh" in document["units"] and "kvarh" in document["units"]
    assert document["meters"] == {"5020": values}
    assert list(document["meters"]["5020"]) == list(ELECTRIC)
    assert "max_demand_power_total" in ELECTRIC and "reactive_energy_export_l3" in ELECTRIC


@pytest.mark.parametrize("port, unit_id, key", [(5020, None, "5020"), (502, 7, "502-7")])
def test_meter_keys_are_the_control_apis_ids(port, unit_id, key):
    assert meter_key(port, unit_id) == key


def test_a_version_1_file_loads_its_totals_split_over_the_phases(tmp_path):
    path = tmp_path / "totals.json"
    path.write_bytes(version_1_bytes({"5021": 12.5, "5022/7": 0.1 + 0.2, "5023": 0}, "electric"))
    loaded = state.load(str(path), "electric")
    assert list(loaded) == ["5021", "5022-7", "5023"]  # gateway keys become the control API's ids
    for key, total in [("5021", 12.5), ("5022-7", 0.1 + 0.2), ("5023", 0.0)]:
        assert list(loaded[key]) == list(ELECTRIC)
        assert loaded[key]["energy_import"] == total
        assert [loaded[key][f"energy_import_{phase}"] for phase in ("l1", "l2", "l3")] == [total / 3] * 3
        others = [value for name, value in loaded[key].items() if not name.startswith("energy_import")]
        assert others == [0.0] * (len(ELECTRIC) - 4)
    assert loaded["5022-7"] == state.from_total("electric", 0.1 + 0.2)


def test_a_version_1_water_file_loads_as_volume_totals(tmp_path):
    path = tmp_path / "totals.json"
    path.write_bytes(version_1_bytes({"5021": 0.1 + 0.2, "5021/9": 1e-12}))
    loaded = state.load(str(path), "water")
    assert same_bits(loaded, {"5021": {"volume_total": 0.1 + 0.2}, "5021-9": {"volume_total": 1e-12}})


def test_a_meter_given_by_its_total_is_saved_as_a_version_1_total_loads(tmp_path):
    path = str(tmp_path / "totals.json")
    state.save(path, "electric", {"5021": 12.5, "5022": 0})
    assert state.load(path, "electric") == {"5021": state.from_total("electric", 12.5),
                                            "5022": state.from_total("electric", 0.0)}
    assert totals("electric", state.load(path, "electric")) == {"5021": 12.5, "5022": 0.0}


def test_counters_missing_from_a_meter_load_as_0(tmp_path):
    path = tmp_path / "totals.json"
    path.write_bytes(document_bytes({"5021": {"energy_import": 7.0, "max_demand_power_total": 830.0}},
                                    "electric"))
    loaded = state.load(str(path), "electric")["5021"]
    assert list(loaded) == list(ELECTRIC)
    assert loaded["energy_import"] == 7.0 and loaded["max_demand_power_total"] == 830.0
    assert sum(loaded.values()) == 837.0


def test_no_file_yet_is_none(tmp_path):
    assert state.load(str(tmp_path / "missing.json"), "gas") is None


def test_save_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    path = str(tmp_path / "totals.json")
    state.save(path, "gas", {"5020": {"volume_total": 1.0}})
    state.save(path, "gas", {"5020": {"volume_total": 2.0}})
    assert state.load(path, "gas") == {"5020": {"volume_total": 2.0}}
    assert os.listdir(tmp_path) == ["totals.json"]


def test_a_failed_save_leaves_the_old_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "totals.json"
    state.save(str(path), "gas", {"5020": 1.0})
    before = path.read_bytes()
    # every temporary name taken by a folder already there: the save fails even for root
    (tmp_path / ".totals.json.taken.tmp").mkdir()
    monkeypatch.setattr(state, "temporary_name", lambda name: f".{name}.taken.tmp")
    with pytest.raises(OSError):
        state.save(str(path), "gas", {"5020": 2.0})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [".totals.json.taken.tmp", "totals.json"]


UNWRITABLE = {  # values no save writes (the file could not be loaded back), and the reason
    "nan": ({"5021": {"volume_total": math.nan}},
            "the volume_total of meter '5021' is nan, not a number >= 0"),
    "negative": ({"5021": {"volume_total": -0.5}},
                 "the volume_total of meter '5021' is -0.5, not a number >= 0"),
    "infinite total": ({"5021-7": math.inf}, "the total of meter '5021-7' is inf, not a number >= 0"),
    "unknown name": ({"5021": {"energy_import": 1.0}},
                     "meter '5021' has 'energy_import', not a counter of water meters"),
    "above the largest counter": ({"5021": {"volume_total": 1.0000000000000002e15}},
                                  "the volume_total of meter '5021' is 1000000000000000.2, above "
                                  "the largest a counter holds (1e+15)"),
    "a total above it": ({"5021-7": 2e15}, "the total of meter '5021-7' is 2000000000000000.0, above "
                                           "the largest a counter holds (1e+15)"),
}


@pytest.mark.parametrize("name", UNWRITABLE)
def test_values_a_file_could_not_be_loaded_with_are_never_written(tmp_path, name):
    meters, problem = UNWRITABLE[name]
    path = tmp_path / "totals.json"
    state.save(str(path), "water", METERS)
    before = path.read_bytes()
    with pytest.raises(ValueError) as refused:
        state.save(str(path), "water", meters)
    assert str(refused.value) == problem
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["totals.json"]


def test_a_link_planted_where_a_temporary_file_goes_is_never_followed(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = tmp_path / "totals.json"
    # the name the temporary file once always had, and the next name it will draw
    (tmp_path / ".totals.json.tmp").symlink_to(victim)
    names = iter([".totals.json.planted.tmp", ".totals.json.free.tmp"])
    (tmp_path / ".totals.json.planted.tmp").symlink_to(victim)
    monkeypatch.setattr(state, "temporary_name", lambda name: next(names))
    state.save(str(path), "gas", {"5020": 2.0})
    assert victim.read_text() == "precious"
    assert state.load(str(path), "gas") == {"5020": {"volume_total": 2.0}}
    assert not (tmp_path / ".totals.json.free.tmp").exists()


def test_temporary_files_have_names_of_their_own(tmp_path):
    names = {state.temporary_name("totals.json") for _ in range(100)}
    assert len(names) == 100
    assert all(state.is_temporary_of(name, "totals.json") for name in names)
    assert not state.is_temporary_of("totals.json", "totals.json")
    assert not state.is_temporary_of(".totals.json.lock", "totals.json")


def test_a_save_into_a_missing_folder_fails_with_os_error(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    # a path whose parent is a regular file: refused even for root
    with pytest.raises(OSError):
        state.save(str(not_a_folder / "totals.json"), "gas", {"5020": 1.0})
    assert sorted(os.listdir(tmp_path)) == ["file"]


START_OVER = "; move the file away to start from 0"
BAD_FILES = {  # the bytes, and the problem the message names (a regex: the JSON parser's words vary)
    "empty": (b"", re.escape("the file is empty")),
    "blank": (b"  \n", re.escape("the file is empty")),
    "truncated": (valid_bytes()[:40], re.escape("not valid JSON, truncated or corrupt "
                                                "(Unterminated string starting at: line 3 column 2)")),
    "garbage": (b"total=12.5\n",
                re.escape("not valid JSON, truncated or corrupt (Expecting value: line 1 column 1)")),
    "binary": (bytes(range(128, 256)), re.escape("not a state file (not UTF-8 text)")),
    "a list": (b"[1, 2]", re.escape('not a state file (no "format": "meter-simulator state")')),
    "another format": (json.dumps({"format": "something else"}).encode(),
                       re.escape('not a state file (no "format": "meter-simulator state")')),
    "newer version": (valid_bytes().replace(b'"version": 2', b'"version": 3'),
                      re.escape("version 3 is not supported (expected 1 or 2)")),
    "no version": (valid_bytes().replace(b'"version"', b'"versio"'),
                   re.escape("version None is not supported (expected 1 or 2)")),
    "version as text": (valid_bytes().replace(b'"version": 2', b'"version": "2"'),
                        re.escape("version '2' is not supported (expected 1 or 2)")),
    "wrong type": (valid_bytes("gas"), re.escape("it is for gas meters, not water meters")),
    "no meters": (valid_bytes().replace(b'"meters"', b'"meter"'),
                  re.escape('"meters" is missing or not an object')),
    "meters a list": (document_bytes([12.5]), re.escape('"meters" is missing or not an object')),
    "a meter not an object": (document_bytes({"5021": 12.5}),
                              re.escape("meter '5021' is 12.5, not an object of counters")),
    "negative": (document_bytes({"5021": {"volume_total": -1.0}}),
                 re.escape("the volume_total of meter '5021' is -1.0, not a number >= 0")),
    "nan": (valid_bytes().replace(b"1e-12", b"NaN"),
            re.escape("the volume_total of meter '5022' is nan, not a number >= 0")),
    "infinite": (valid_bytes().replace(b"1e-12", b"Infinity"),
                 re.escape("the volume_total of meter '5022' is inf, not a number >= 0")),
    "text value": (valid_bytes().replace(b"1e-12", b'"12"'),
                   re.escape("the volume_total of meter '5022' is '12', not a number >= 0")),
    "boolean value": (valid_bytes().replace(b"1e-12", b"true"),
                      re.escape("the volume_total of meter '5022' is True, not a number >= 0")),
    "a misspelt counter": (document_bytes({"5021": {"volume_totl": 12.5}}),
                           re.escape("meter '5021' has 'volume_totl', not a counter of water meters")),
    "another type's counter": (document_bytes({"5021-7": {"volume_total": 1.0, "energy_import": 2.0}}),
                               re.escape("meter '5021-7' has 'energy_import', not a counter of water "
                                         "meters")),
    "version 1 without totals": (version_1_bytes({}).replace(b'"totals"', b'"total"'),
                                 re.escape('"totals" is missing or not an object')),
    "version 1 negative": (version_1_bytes({"5021": -1.0}),
                           re.escape("the total of meter '5021' is -1.0, not a number >= 0")),
    "version 1 nan": (version_1_bytes({"5022/7": math.nan}),
                      re.escape("the total of meter '5022/7' is nan, not a number >= 0")),
    "version 1 text total": (version_1_bytes({"5022": "12"}),
                             re.escape("the total of meter '5022' is '12', not a number >= 0")),
    "version 1 with meters": (version_1_bytes({}).replace(b'"totals": {}', b'"meters": {}'),
                              re.escape('"totals" is missing or not an object')),
    # hostile files: whatever is in them, one line
    "above the largest counter": (document_bytes({"5021": {"volume_total": 1e16}}),
                                  re.escape("the volume_total of meter '5021' is 1e+16, above the largest a "
                                            "counter holds (1e+15)")),
    "a whole number above it": (document_bytes({"5021": {"volume_total": 10**15 + 1}}),
                                re.escape("the volume_total of meter '5021' is 1000000000000001, above the "
                                          "largest a counter holds (1e+15)")),
    "400 digits": (document_bytes({"5021": {"volume_total": 10**400}}),
                   re.escape("the volume_total of meter '5021' is 1.000e+400, above the largest a counter "
                             "holds (1e+15)")),
    "400 digits below 0": (document_bytes({"5021": {"volume_total": -(10**400)}}),
                           re.escape("the volume_total of meter '5021' is -1.000e+400, not a number >= 0")),
    "version 1 400 digits": (version_1_bytes({"5021": 10**400}),
                             re.escape("the total of meter '5021' is 1.000e+400, above the largest a counter "
                                       "holds (1e+15)")),
    "version of 400 digits": (valid_bytes().replace(b'"version": 2', b'"version": ' + b"9" * 400),
                              re.escape("version 1.000e+400 is not supported (expected 1 or 2)")),
    "meter type of 400 digits": (valid_bytes().replace(b'"water"', b"1" + b"0" * 400),
                                 re.escape("it is for 1.000e+400 meters, not water meters")),
    "a meter of 400 digits": (document_bytes({"5021": 10**400}),
                              re.escape("meter '5021' is 1.000e+400, not an object of counters")),
    "5000 digits": (document_bytes({"5021": {"volume_total": 0}}).replace(b": 0", b": " + b"9" * 5000),
                    re.escape("not a state file (an integer of more digits than can be read)")),
    "nested too deeply": (document_bytes({"5021": {"volume_total": 0}}).replace(
        b": 0", b": " + b"[" * 100_000 + b"]" * 100_000), re.escape("not a state file (nested too deeply)")),
    "a deep version": (valid_bytes().replace(b'"version": 2', b'"version": ' + b"[" * 300 + b"]" * 300),
                       re.escape("version [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[...") +
                       re.escape(" is not supported (expected 1 or 2)")),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_file_that_cannot_be_used_is_an_error_never_zero(tmp_path, name):
    data, problem = BAD_FILES[name]
    path = tmp_path / "totals.json"
    path.write_bytes(data)
    with pytest.raises(state.StateError) as caught:
        state.load(str(path), "water")
    assert re.fullmatch(re.escape(f"state file {path}: ") + problem + re.escape(START_OVER),
                        str(caught.value)), str(caught.value)
    assert path.read_bytes() == data


def test_the_largest_counter_loads_and_saves(tmp_path):
    path = str(tmp_path / "totals.json")
    meters = {"5021": {"volume_total": quantities.COUNTER_MAX}, "5022": {"volume_total": 10**15}}
    state.save(path, "water", meters)
    assert state.load(path, "water") == {"5021": {"volume_total": 1e15}, "5022": {"volume_total": 1e15}}


def test_a_folder_in_place_of_the_file_is_an_error(tmp_path):
    with pytest.raises(state.StateError) as caught:
        state.load(str(tmp_path), "water")
    assert str(caught.value) == f"state file {tmp_path}: cannot read it: Is a directory"


# --- the saver, driven by hand: no thread unless it is started ---

def fleet(meter_type: str = "electric", ports=(5021, 5022), unit_ids=None) -> list[PortPlan]:
    rng = random.Random(5)

    def device():
        return new_device(make_meter(meter_type, random.Random(rng.getrandbits(32)), 12 * 3600))

    if unit_ids is None:
        return [PortPlan(port, device=device()) for port in ports]
    return [PortPlan(port, devices_by_id={uid: device() for uid in unit_ids}) for port in ports]


def published_total(device) -> int:
    return u32(device.bank.image.words(0, 2))


def make_saver(tmp_path, plan, clock=None, **kwargs) -> Saver:
    devices = [device for endpoint in plan for device in endpoint.devices]
    updater = Updater(devices, interval_s=1.0, speed=1000.0, clock=clock or FakeClock())
    return Saver(str(tmp_path / "totals.json"), devices[0].meter_type, plan, updater, **kwargs)


def totals(meter_type: str, meters: dict) -> dict[str, float]:
    """Each meter's total (kWh or m3: what registers 0-1 show) by key."""
    return {key: values.get(state.TOTAL_COUNTERS[meter_type], 0.0) for key, values in meters.items()}


def saved_totals(saver: Saver) -> dict[str, float]:
    return totals(saver.meter_type, state.load(saver.path, saver.meter_type))


def test_keys_name_every_meter_of_a_fleet_and_a_gateway():
    assert list(devices_by_key(fleet(ports=(502, 503)))) == ["502", "503"]
    assert list(devices_by_key(fleet(ports=(502,), unit_ids=(1, 9)))) == ["502-1", "502-9"]


@pytest.mark.parametrize("meter_type", ["electric", "water", "gas"])
def test_a_meter_saves_what_the_file_holds_and_resumes_it_bit_for_bit(meter_type):
    """meters.py's state_values() and restore_values() are the file's counters, and inverses."""
    # a fresh meter like the first at its start: its present demands are below the saved maxima
    meter, fresh = (make_meter(meter_type, random.Random(9), 12 * 3600) for _ in range(2))
    for _ in range(24):
        meter.step(3600.0)
    values = meter.state_values()
    assert list(values) == list(state.counter_names(meter_type))
    assert values[state.TOTAL_COUNTERS[meter_type]] == meter.total > 0
    fresh.restore_values(values)
    assert same_bits({"m": fresh.state_values()}, {"m": values})


def test_restore_resumes_and_publishes_each_meter_and_keeps_the_others(tmp_path):
    # maxima above any demand the new meters show (a restored maximum is never below its demand)
    values = {name: value + 1e6 if name.startswith("max_") else value
              for name, value in {**odd_values(ELECTRIC, seed=7), "energy_import": 12.5}.items()}
    kept = odd_values(ELECTRIC, seed=8)
    state.save(str(tmp_path / "totals.json"), "electric", {"5021": values, "9999": kept})
    plan = fleet()
    saver = make_saver(tmp_path, plan)
    assert saver.restore() == 1  # 5022 is new: it starts from 0
    first, second = plan[0].device, plan[1].device
    assert same_bits({"5021": first.meter.state_values()}, {"5021": values})
    assert first.meter.total == 12.5 and published_total(first) == 1250
    assert set(second.meter.counters.values()) == {0.0} and published_total(second) == 0
    saver.save()
    assert same_bits(state.load(saver.path, "electric"), {
        "9999": kept, "5021": first.meter.state_values(), "5022": second.meter.state_values()})


def test_a_version_1_file_resumes_a_gateway_and_the_next_save_writes_version_2(tmp_path):
    path = tmp_path / "totals.json"
    path.write_bytes(version_1_bytes({"5021/1": 12.0, "5021/9": 3.0, "5022": 1.5}, "electric"))
    plan = fleet(ports=(5021,), unit_ids=(1, 7))
    saver = make_saver(tmp_path, plan)
    assert saver.restore() == 1  # 5021-7 is new
    meter = plan[0].devices_by_id[1].meter
    resumed = meter.state_values()
    # the counters as version 1 had them; the maxima none were saved: the present demands
    assert resumed == {**state.from_total("electric", 12.0),
                       **{name: meter.demand.values[name[len("max_"):]] for name in quantities.MAX_DEMANDS}}
    assert resumed["energy_import_l1"] == resumed["energy_import_l2"] == resumed["energy_import_l3"] == 4.0
    assert published_total(plan[0].devices_by_id[1]) == 1200
    assert saver.save()
    document = json.loads(path.read_text())
    assert document["version"] == 2 and "totals" not in document
    assert list(document["meters"]) == ["5021-9", "5022", "5021-1", "5021-7"]
    assert document["meters"]["5021-9"] == state.from_total("electric", 3.0)  # kept, in version 2 keys
    assert document["meters"]["5021-1"] == resumed
    assert document["meters"]["5021-7"] == plan[0].devices_by_id[7].meter.state_values()
    assert set(plan[0].devices_by_id[7].meter.counters.values()) == {0.0}


def test_a_save_holds_the_values_of_the_last_tick(tmp_path):
    clock = FakeClock()
    saver = make_saver(tmp_path, fleet(), clock=clock)
    clock.now += 60
    saver.updater.tick()
    assert saver.save()
    saved = state.load(saver.path, "electric")
    assert same_bits(saved, {key: device.meter.state_values() for key, device in saver.devices.items()})
    assert all(values["energy_import"] > 0 and values["apparent_energy"] > 0 for values in saved.values())


def test_a_value_the_file_could_not_be_loaded_with_fails_the_save_and_writes_nothing(tmp_path, caplog,
                                                                                     monkeypatch):
    saver = make_saver(tmp_path, fleet("water"))
    assert saver.save()
    before = (tmp_path / "totals.json").read_bytes()
    monkeypatch.setattr(saver.devices["5022"].meter, "state_values", lambda: {"volume_total": math.nan})
    with caplog.at_level(logging.WARNING, logger="meter_simulator"):
        assert not saver.save()
    assert saver.failure == "the volume_total of meter '5022' is nan, not a number >= 0"
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot save state file {saver.path}: {saver.failure}; trying again in {saver.interval_s:g} s"]
    assert (tmp_path / "totals.json").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["totals.json", "totals.json.lock"]


def test_every_save_writes_the_file_also_when_no_total_moved(tmp_path):
    """An idle water meter whose file was removed or replaced: the next save puts it back."""
    saver = make_saver(tmp_path, fleet("water"))
    saver.updater.set_total(saver.devices["5021"], 12.5)
    path = tmp_path / "totals.json"
    assert saver.save()
    path.unlink()
    assert saver.save()
    assert saved_totals(saver)["5021"] == 12.5
    state.save(str(path), "water", {"5021": 0.0})  # replaced by an old copy
    assert saver.save()
    assert saved_totals(saver)["5021"] == 12.5


def test_stop_writes_the_file_also_when_no_total_moved(tmp_path):
    saver = make_saver(tmp_path, fleet("gas"), interval_s=86400)
    saver.updater.set_total(saver.devices["5022"], 3.25)
    saver.start()
    (tmp_path / "totals.json").unlink()
    saver.stop()
    assert saved_totals(saver)["5022"] == 3.25


# --- one process at a time ---

def test_a_second_saver_on_the_same_file_is_refused_naming_the_holder(tmp_path):
    first = make_saver(tmp_path, fleet())
    first.restore()
    second = make_saver(tmp_path, fleet())
    with pytest.raises(state.StateInUse) as refused:
        second.restore()
    assert str(refused.value) == (f"state file {tmp_path / 'totals.json'} is in use by process "
                                  f"{os.getpid()}: one process at a time may serve its meters (give "
                                  "this one another --state-file)")
    assert (tmp_path / "totals.json.lock").read_text().strip() == str(os.getpid())
    first.stop()
    second.restore()  # free once the first has stopped
    second.stop()


def test_a_saver_without_the_lock_never_writes(tmp_path, caplog):
    holder = state.StateLock(str(tmp_path / "totals.json"))
    holder.acquire()
    try:
        saver = make_saver(tmp_path, fleet())
        with caplog.at_level(logging.WARNING, logger="meter_simulator"):
            assert not saver.save()
        assert not (tmp_path / "totals.json").exists()
        assert saver.failure == f"in use by process {os.getpid()}"
        assert [r.getMessage() for r in caplog.records] == [
            f"cannot save state file {saver.path}: in use by process {os.getpid()}; trying again in "
            f"{saver.interval_s:g} s"]
    finally:
        holder.release()
    assert saver.save()
    saver.stop()


def test_taking_the_lock_removes_what_a_killed_holder_left(tmp_path):
    path = tmp_path / "totals.json"
    (tmp_path / ".totals.json.0123456789abcdef.tmp").write_text("half a save")
    (tmp_path / ".totals.json.tmp").symlink_to(tmp_path / "elsewhere")
    (tmp_path / ".other.json.0123456789abcdef.tmp").write_text("another file's")
    lock = state.StateLock(str(path))
    lock.acquire()
    lock.release()
    assert sorted(os.listdir(tmp_path)) == [".other.json.0123456789abcdef.tmp", "totals.json.lock"]


def test_a_lock_file_that_is_a_link_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "totals.json.lock").symlink_to(victim)
    with pytest.raises(OSError):
        state.StateLock(str(tmp_path / "totals.json")).acquire()
    assert victim.read_text() == "precious"


def test_a_failing_save_warns_once_retries_and_says_when_it_works_again(tmp_path, caplog):
    blocker = tmp_path / "state"
    blocker.write_text("")  # the state file's folder is a regular file
    plan = fleet()
    devices = [device for endpoint in plan for device in endpoint.devices]
    updater = Updater(devices, clock=FakeClock())
    saver = Saver(str(blocker / "totals.json"), "electric", plan, updater, interval_s=5)
    with caplog.at_level(logging.DEBUG, logger="meter_simulator"):
        assert not saver.save()
        assert not saver.save()
        blocker.unlink()
        blocker.mkdir()
        assert saver.save()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"cannot save state file {saver.path}: Not a directory; trying again in 5 s"]
    saver.stop()
    assert any("saved again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert saver.failure is None and state.load(saver.path, "electric") is not None


def test_a_reset_wakes_the_saver_thread_at_once(tmp_path):
    state.save(str(tmp_path / "totals.json"), "electric", {"5021": 500.0, "5022": 500.0})
    plan = fleet()
    saver = make_saver(tmp_path, plan, interval_s=86400)
    saver.restore()
    saver.updater.on_reset = saver.save_soon
    saver.start()
    try:
        saver.updater.reset_total(plan[0].device)
        wait_for(lambda: saved_totals(saver)["5021"] == 0.0, timeout=10)
        assert saved_totals(saver)["5022"] == 500.0
    finally:
        saver.stop()
    assert not saver._thread.is_alive()


def test_stop_saves_a_last_time(tmp_path):
    clock = FakeClock()
    saver = make_saver(tmp_path, fleet(), clock=clock, interval_s=86400)
    saver.start()
    clock.now += 3600
    saver.updater.tick()
    saver.stop()
    saved = state.load(saver.path, "electric")
    assert same_bits(saved, {key: device.meter.state_values() for key, device in saver.devices.items()})
    assert all(math.isfinite(total) and total > 0 for total in totals("electric", saved).values())
