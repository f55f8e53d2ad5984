"""The state file (format, atomic save, load errors) and the saver, in process with real files."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re

import pytest

from meter_simulator import registers, state
from meter_simulator.fleet import Endpoint
from meter_simulator.meters import make_meter
from meter_simulator.saver import Saver, keyed_units
from meter_simulator.server import new_unit
from meter_simulator.updater import Updater
from support import FakeClock, u32, wait_for

TOTALS = {"5021": 0.1 + 0.2, "5022": 1e-12, "5023": 123456789.987654321, "5024/7": 0.0}


def valid_bytes(meter_type: str = "water", totals=None) -> bytes:
    return state.encode(meter_type, TOTALS if totals is None else totals, 1.7e9)


# --- format ---

def test_totals_come_back_bit_for_bit(tmp_path):
    path = str(tmp_path / "totals.json")
    state.save(path, "water", TOTALS)
    loaded = state.load(path, "water")
    assert loaded == TOTALS
    assert all(loaded[key].hex() == total.hex() for key, total in TOTALS.items())


def test_the_file_is_readable_json_naming_type_and_unit(tmp_path):
    path = tmp_path / "totals.json"
    state.save(str(path), "electric", {"5020": 1.5}, saved_at_s=0)
    document = json.loads(path.read_text())
    assert document == {"format": state.FORMAT, "version": 1, "meter_type": "electric",
                        "unit": "kWh", "saved_at": "1970-01-01T00:00:00Z", "totals": {"5020": 1.5}}


@pytest.mark.parametrize("port, unit_id, key", [(5020, None, "5020"), (502, 7, "502/7")])
def test_meter_keys(port, unit_id, key):
    assert state.meter_key(port, unit_id) == key


def test_no_file_yet_is_none(tmp_path):
    assert state.load(str(tmp_path / "missing.json"), "gas") is None


def test_save_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    path = str(tmp_path / "totals.json")
    state.save(path, "gas", {"5020": 1.0})
    state.save(path, "gas", {"5020": 2.0})
    assert state.load(path, "gas") == {"5020": 2.0}
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
    assert state.load(str(path), "gas") == {"5020": 2.0}
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
    "newer version": (valid_bytes().replace(b'"version": 1', b'"version": 2'),
                      re.escape("version 2 is not supported (expected 1)")),
    "wrong type": (valid_bytes("gas"), re.escape("it is for gas meters, not water meters")),
    "no totals": (valid_bytes().replace(b'"totals"', b'"total"'),
                  re.escape('"totals" is missing or not an object')),
    "negative": (valid_bytes(totals={"5021": -1.0}),
                 re.escape("the total of meter '5021' is -1.0, not a number >= 0")),
    "nan": (valid_bytes().replace(b"1e-12", b"NaN"),
            re.escape("the total of meter '5022' is nan, not a number >= 0")),
    "text total": (valid_bytes().replace(b"1e-12", b'"12"'),
                   re.escape("the total of meter '5022' is '12', not a number >= 0")),
    "boolean total": (valid_bytes().replace(b"1e-12", b"true"),
                      re.escape("the total of meter '5022' is True, not a number >= 0")),
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


def test_a_folder_in_place_of_the_file_is_an_error(tmp_path):
    with pytest.raises(state.StateError) as caught:
        state.load(str(tmp_path), "water")
    assert str(caught.value) == f"state file {tmp_path}: cannot read it: Is a directory"


# --- the saver, driven by hand: no thread unless it is started ---

def fleet(meter_type: str = "electric", ports=(5021, 5022), unit_ids=None) -> list[Endpoint]:
    rng = random.Random(5)

    def unit():
        return new_unit(make_meter(meter_type, random.Random(rng.getrandbits(32)), 12 * 3600))

    if unit_ids is None:
        return [Endpoint(port, unit=unit()) for port in ports]
    return [Endpoint(port, units_by_id={uid: unit() for uid in unit_ids}) for port in ports]


def published_total(unit) -> int:
    return u32(unit.bank.get_holding_registers(registers.TOTAL, 2))


def make_saver(tmp_path, plan, clock=None, **kwargs) -> Saver:
    units = [unit for endpoint in plan for unit in endpoint.units]
    updater = Updater(units, interval_s=1.0, speed=1000.0, clock=clock or FakeClock())
    return Saver(str(tmp_path / "totals.json"), units[0].meter_type, plan, updater, **kwargs)


def test_keys_name_every_meter_of_a_fleet_and_a_gateway():
    assert list(keyed_units(fleet(ports=(502, 503)))) == ["502", "503"]
    assert list(keyed_units(fleet(ports=(502,), unit_ids=(1, 9)))) == ["502/1", "502/9"]


def test_restore_resumes_and_publishes_each_meter_and_keeps_the_others(tmp_path):
    state.save(str(tmp_path / "totals.json"), "electric", {"5021": 12.5, "9999": 7.0})
    plan = fleet()
    saver = make_saver(tmp_path, plan)
    assert saver.restore() == 1  # 5022 is new: it starts from 0
    first, second = plan[0].unit, plan[1].unit
    assert first.meter.total == 12.5 and published_total(first) == 1250
    assert second.meter.total == 0.0 and published_total(second) == 0
    saver.save()
    assert state.load(saver.path, "electric") == {"5021": 12.5, "5022": 0.0, "9999": 7.0}


def test_a_save_holds_the_totals_of_the_last_tick(tmp_path):
    clock = FakeClock()
    saver = make_saver(tmp_path, fleet(), clock=clock)
    clock.now += 60
    saver.updater.tick()
    assert saver.save()
    saved = state.load(saver.path, "electric")
    assert saved == {key: unit.meter.total for key, unit in saver.units.items()}
    assert all(total > 0 for total in saved.values())


def test_every_save_writes_the_file_also_when_no_total_moved(tmp_path):
    """An idle water meter whose file was removed or replaced: the next save puts it back."""
    saver = make_saver(tmp_path, fleet("water"))
    saver.updater.set_total(saver.units["5021"], 12.5)
    path = tmp_path / "totals.json"
    assert saver.save()
    path.unlink()
    assert saver.save()
    assert state.load(str(path), "water")["5021"] == 12.5
    state.save(str(path), "water", {"5021": 0.0})  # replaced by an old copy
    assert saver.save()
    assert state.load(str(path), "water")["5021"] == 12.5
    assert saver.saves == 3


def test_stop_writes_the_file_also_when_no_total_moved(tmp_path):
    saver = make_saver(tmp_path, fleet("gas"), interval_s=86400)
    saver.updater.set_total(saver.units["5022"], 3.25)
    saver.start()
    (tmp_path / "totals.json").unlink()
    saver.stop()
    assert state.load(str(tmp_path / "totals.json"), "gas")["5022"] == 3.25


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
    units = [unit for endpoint in plan for unit in endpoint.units]
    updater = Updater(units, clock=FakeClock())
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
        saver.updater.reset_total(plan[0].unit)
        wait_for(lambda: state.load(saver.path, "electric")["5021"] == 0.0, timeout=10)
        assert state.load(saver.path, "electric")["5022"] == 500.0
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
    assert saved == {key: unit.meter.total for key, unit in saver.units.items()}
    assert all(math.isfinite(total) and total > 0 for total in saved.values())
