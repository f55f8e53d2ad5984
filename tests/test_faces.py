"""Faults on the faces a request arrives on (rtu-contract sections 6 and 8), without sockets:
which fault acts on which face, the scope key face, the faults that could act on no face, matching
that skips a request outside a fault before its draw, and a meter's framing and serial line."""
from __future__ import annotations

import random

import pytest

from meter_simulator.device import faults
from meter_simulator.device.control import Control
from meter_simulator.device.faults import (
    MBAP_TCP,
    RTU_SERIAL,
    RTU_TCP,
    ActiveFault,
    FaultError,
    Scope,
    Topology,
    UnknownError,
)
from meter_simulator.device.fleet import PortPlan
from meter_simulator.device.updater import Updater
from meter_simulator.modbus.server import new_device
from meter_simulator.model.meters import make_meter
from support import FakeClock

FACES = (MBAP_TCP, RTU_TCP, RTU_SERIAL)
EVERY_FACE = frozenset(FACES)
LINE = {"port": 5020, "path": "/dev/pts/4", "link": "/tmp/meter.tty", "baud": 9600, "parity": "N",
        "stopbits": 1}
SHOWN_LINE = {key: LINE[key] for key in ("path", "link", "baud", "parity", "stopbits")}

# the contract's table: (type, corrupt mode) -> the faces it acts on
ACTS_ON = {
    ("delay", None): EVERY_FACE,
    ("no_answer", None): EVERY_FACE,
    ("close", None): frozenset({MBAP_TCP, RTU_TCP}),
    ("reset", None): frozenset({MBAP_TCP, RTU_TCP}),
    ("exception", None): EVERY_FACE,
    ("corrupt", "transaction_id"): frozenset({MBAP_TCP}),
    ("corrupt", "length"): frozenset({MBAP_TCP}),
    ("corrupt", "truncate"): EVERY_FACE,
    ("corrupt", "crc"): frozenset({RTU_TCP, RTU_SERIAL}),
    ("freeze", None): EVERY_FACE,
    ("offline", None): EVERY_FACE,
}

MBAP_ONLY = Topology({5020: None, 5021: None})
RTU_ONLY = Topology({5020: None, 5021: None}, "rtu")
MBAP_AND_SERIAL = Topology({5020: None}, "tcp", 5020)
RTU_AND_SERIAL = Topology({5020: None}, "rtu", 5020)
TWO_PORTS_AND_SERIAL = Topology({5020: None, 5021: None}, "tcp", 5020)  # no CLI makes it: still sound
GATEWAY_SERIAL = Topology({5020: frozenset({1, 2, 7})}, "rtu", 5020)


def control_of(*, gateway: bool = False, ports: int = 1, framing: str = "tcp", serial=None,
               seed: int | None = 1) -> Control:
    """A Control on a fake clock: a meter on each port from 5020, or three in gateway mode."""
    rng = random.Random(5)

    def device():
        return new_device(make_meter("electric", random.Random(rng.getrandbits(32)), 12 * 3600), None)

    plan = [PortPlan(5020, devices_by_id={1: device(), 2: device(), 7: device()})] if gateway else \
        [PortPlan(5020 + n, device=device()) for n in range(ports)]
    clock = FakeClock()
    updater = Updater([u for endpoint in plan for u in endpoint.devices], interval_s=1.0, clock=clock)
    return Control(updater, plan, seed=seed, clock=clock, framing=framing, serial=serial)


def fault(kind: str, mode: str | None = None, face: str | None = None) -> ActiveFault:
    return ActiveFault(id="f1", type=kind, scope=Scope(face=face),
                       parameters={} if mode is None else {"mode": mode})


# --- which fault acts on which face ---

def test_the_table_names_every_type_and_corrupt_mode():
    expected = {(kind, None) for kind in faults.FAULT_TYPES if kind != "corrupt"}
    expected |= {("corrupt", mode) for mode in faults.CORRUPT_MODES}
    assert set(ACTS_ON) == expected


@pytest.mark.parametrize("face", FACES, ids=lambda face: f"{face.kind}-{face.framing}")
@pytest.mark.parametrize(("kind", "mode"), list(ACTS_ON), ids=lambda value: str(value))
def test_which_fault_acts_on_which_face(kind, mode, face):
    assert faults.acts_on(fault(kind, mode), face) == (face in ACTS_ON[kind, mode])
    assert faults.effect_acts_on(kind, mode, face) == (face in ACTS_ON[kind, mode])


@pytest.mark.parametrize("face", FACES, ids=lambda face: f"{face.kind}-{face.framing}")
@pytest.mark.parametrize("scoped", ["tcp", "serial"])
@pytest.mark.parametrize(("kind", "mode"), [key for key in ACTS_ON if key[0] in faults.REQUEST_FAULTS],
                         ids=lambda value: str(value))
def test_a_scope_face_limits_a_fault_to_that_kind_of_face(kind, mode, scoped, face):
    expected = face in ACTS_ON[kind, mode] and face.kind == scoped
    assert faults.acts_on(fault(kind, mode, scoped), face) == expected


def test_faces_are_values():
    assert faults.Face("serial", "rtu") == RTU_SERIAL and hash(faults.Face("tcp", "rtu")) == hash(RTU_TCP)
    assert {MBAP_TCP.kind, RTU_TCP.kind, RTU_SERIAL.kind} == set(faults.FACE_KINDS)
    with pytest.raises(AttributeError):
        MBAP_TCP.kind = "serial"


# --- the scope key face ---

@pytest.mark.parametrize(("topology", "scope", "shown"), [
    (MBAP_ONLY, {"face": "tcp"}, {"face": "tcp"}),
    (MBAP_AND_SERIAL, {"face": "serial"}, {"face": "serial"}),
    (MBAP_AND_SERIAL, {"port": 5020, "face": "serial"}, {"port": 5020, "face": "serial"}),
    (MBAP_AND_SERIAL, {"meter": "5020", "face": "serial"}, {"port": 5020, "face": "serial"}),
    (MBAP_AND_SERIAL, {"meter": "5020", "face": "tcp"}, {"port": 5020, "face": "tcp"}),
    (MBAP_AND_SERIAL, {"unit_id": 1, "face": "serial"}, {"unit_id": 1, "face": "serial"}),
    (TWO_PORTS_AND_SERIAL, {"port": 5021, "face": "tcp"}, {"port": 5021, "face": "tcp"}),
    (GATEWAY_SERIAL, {"port": 5020, "unit_id": 7, "face": "serial"},
     {"port": 5020, "unit_id": 7, "face": "serial"}),
    (GATEWAY_SERIAL, {"meter": "5020-2", "face": "serial"}, {"port": 5020, "unit_id": 2, "face": "serial"}),
    (GATEWAY_SERIAL, {"unit_id": 2, "face": "serial"}, {"unit_id": 2, "face": "serial"}),
])
def test_face_scopes(topology, scope, shown):
    assert faults.fault_fields({"type": "no_answer", "scope": scope}, topology)["scope"].as_dict() == shown


@pytest.mark.parametrize("face", [None, "rtu", "mbap", "TCP", "", 1, True, ["tcp"], {"kind": "tcp"}])
@pytest.mark.parametrize("topology", [MBAP_ONLY, MBAP_AND_SERIAL])
def test_a_face_other_than_tcp_or_serial_is_refused(topology, face):
    with pytest.raises(FaultError) as refused:
        faults.fault_fields({"type": "no_answer", "scope": {"face": face}}, topology)
    assert str(refused.value) == f"scope face must be tcp or serial, not {face!r}"


@pytest.mark.parametrize(("topology", "scope", "message"), [
    (MBAP_ONLY, {"face": "serial"}, "this run has no serial line"),
    (RTU_ONLY, {"face": "serial", "port": 5020}, "this run has no serial line"),
    (MBAP_ONLY, {"meter": "5020", "face": "serial"}, "this run has no serial line"),
    (TWO_PORTS_AND_SERIAL, {"face": "serial", "port": 5021},
     "the serial line serves port 5020, not port 5021"),
    (TWO_PORTS_AND_SERIAL, {"meter": "5021", "face": "serial"},
     "the serial line serves port 5020, not port 5021"),
    (MBAP_AND_SERIAL, {"face": "serial", "port": 6000}, "port 6000 is not served"),
    (GATEWAY_SERIAL, {"face": "serial", "unit_id": 3}, "unit id 3 is not a meter on port 5020"),
])
def test_a_face_scope_naming_what_is_not_served_is_unknown(topology, scope, message):
    with pytest.raises(UnknownError) as unknown:
        faults.fault_fields({"type": "no_answer", "scope": scope}, topology)
    assert str(unknown.value) == message


def test_meter_still_stands_alone_but_for_face():
    with pytest.raises(FaultError) as refused:
        faults.fault_fields({"type": "no_answer", "scope": {"meter": "5020", "unit_id": 1, "face": "tcp"}},
                            MBAP_AND_SERIAL)
    assert str(refused.value) == "scope meter stands alone, without port or unit_id"


@pytest.mark.parametrize("kind", ["freeze", "offline"])
@pytest.mark.parametrize("face", ["tcp", "serial"])
def test_a_meter_fault_cannot_be_scoped_by_face(kind, face):
    control = control_of(serial=LINE)
    with pytest.raises(FaultError) as refused:
        control.start_fault({"type": kind, "scope": {"meter": "5020", "face": face}})
    assert str(refused.value) == (f"{faults.article(kind)} {kind} fault acts on the meter on every face: "
                                  "scope it without face")
    assert control.faults() == [] and control.meter("5020").device.live



def test_describe_names_the_face():
    control = control_of(serial=LINE)
    assert control.start_fault({"type": "delay", "delay_ms": 500, "scope": {"port": 5020, "face": "serial"}}
                               ).describe() == "delay 500 ms on port 5020 (serial)"
    assert control.start_fault({"type": "corrupt", "mode": "crc", "scope": {"face": "serial"}}
                               ).describe() == "corrupt crc on every meter (serial)"
    assert control.start_fault({"type": "close"}).describe() == "close on every meter"


# --- faults that could act on no face their scope covers ---

@pytest.mark.parametrize(("topology", "spec", "message"), [
    (MBAP_ONLY, {"type": "corrupt", "mode": "crc"},
     "corrupt crc acts on RTU faces only, and this run has none"),
    (MBAP_AND_SERIAL, {"type": "corrupt", "mode": "crc", "scope": {"face": "tcp"}},
     "corrupt crc acts on RTU faces only, and its scope covers none"),
    (TWO_PORTS_AND_SERIAL, {"type": "corrupt", "mode": "crc", "scope": {"port": 5021}},
     "corrupt crc acts on RTU faces only, and its scope covers none"),
    (RTU_ONLY, {"type": "corrupt", "mode": "transaction_id"},
     "corrupt transaction_id acts on Modbus/TCP (MBAP) faces only, and this run has none"),
    (RTU_AND_SERIAL, {"type": "corrupt", "mode": "length", "scope": {"port": 5020}},
     "corrupt length acts on Modbus/TCP (MBAP) faces only, and this run has none"),
    (MBAP_AND_SERIAL, {"type": "corrupt", "mode": "length", "scope": {"face": "serial"}},
     "corrupt length acts on Modbus/TCP (MBAP) faces only, and its scope covers none"),
    (MBAP_AND_SERIAL, {"type": "close", "scope": {"face": "serial"}},
     "close does not act on the serial line"),
    (RTU_AND_SERIAL, {"type": "reset", "delay_ms": 5, "scope": {"meter": "5020", "face": "serial"}},
     "reset does not act on the serial line"),
])
def test_a_fault_that_could_act_on_no_face_is_refused(topology, spec, message):
    with pytest.raises(FaultError) as refused:
        faults.fault_fields(spec, topology)
    assert str(refused.value) == message


@pytest.mark.parametrize(("topology", "spec"), [
    (RTU_ONLY, {"type": "corrupt", "mode": "crc"}),
    (MBAP_AND_SERIAL, {"type": "corrupt", "mode": "crc"}),  # the serial line's answers
    (MBAP_AND_SERIAL, {"type": "corrupt", "mode": "crc", "scope": {"port": 5020}}),
    (MBAP_AND_SERIAL, {"type": "corrupt", "mode": "transaction_id"}),  # the TCP port's answers
    (MBAP_AND_SERIAL, {"type": "close"}),
    (MBAP_AND_SERIAL, {"type": "reset", "scope": {"port": 5020}}),
    (RTU_AND_SERIAL, {"type": "close", "scope": {"face": "tcp"}}),
    (RTU_AND_SERIAL, {"type": "corrupt", "mode": "truncate", "scope": {"face": "serial"}}),
    (MBAP_ONLY, {"type": "corrupt", "mode": "length"}),
])
def test_a_fault_that_acts_on_some_face_it_covers_is_made(topology, spec):
    assert faults.fault_fields(spec, topology)["type"] == spec["type"]


def test_a_refused_fault_changes_nothing():
    pushed = []
    control = control_of(framing="rtu")
    control._on_request_faults = pushed.append
    with pytest.raises(FaultError):
        control.start_fault({"type": "corrupt", "mode": "transaction_id"})
    assert control.faults() == [] and pushed == [] and control.request_faults(5020) == ()
    assert control.start_fault({"type": "no_answer"}).id == "f1", "no id was used up"


def test_the_topology_knows_its_faces():
    assert MBAP_ONLY.faces() == [MBAP_TCP] and RTU_ONLY.faces() == [RTU_TCP]
    assert RTU_AND_SERIAL.faces() == [RTU_TCP, RTU_SERIAL]
    assert TWO_PORTS_AND_SERIAL.faces(Scope(port=5021)) == [MBAP_TCP]
    assert TWO_PORTS_AND_SERIAL.faces(Scope(port=5020)) == [MBAP_TCP, RTU_SERIAL]
    assert TWO_PORTS_AND_SERIAL.faces(Scope(face="serial")) == [RTU_SERIAL]
    assert TWO_PORTS_AND_SERIAL.faces(Scope(unit_id=4, face="tcp")) == [MBAP_TCP]
    with pytest.raises(ValueError, match="framing must be tcp or rtu, not 'mbap'"):
        Topology({5020: None}, "mbap")
    with pytest.raises(ValueError, match="the serial line's port 5021 is not served"):
        Topology({5020: None}, "tcp", 5021)


# --- matching ---

def pattern(spec: dict, interleave: bool, requests: int = 200) -> tuple[list[bool], Control]:
    """Which of requests MBAP requests a fault (f1) hits, with or without a serial request (never
    hit) before each."""
    control = control_of(serial=LINE, seed=3)
    control.start_fault(spec)
    held = control.request_faults(5020)
    hits = []
    for _ in range(requests):
        if interleave:
            assert control.match(held, 1, 3, RTU_SERIAL) is None
        hits.append(control.match(held, 1, 3, MBAP_TCP) is not None)
    return hits, control


@pytest.mark.parametrize("spec", [
    {"type": "close", "probability": 0.5},
    {"type": "no_answer", "probability": 0.5, "scope": {"face": "tcp"}},
    {"type": "corrupt", "mode": "transaction_id", "probability": 0.5},
])
def test_a_request_outside_a_fault_draws_nothing_and_counts_nothing(spec):
    alone, _ = pattern(spec, interleave=False)
    interleaved, control = pattern(spec, interleave=True)
    assert interleaved == alone and 60 < sum(alone) < 140
    assert control.fault("f1")["applied"] == sum(alone)
    assert control.applied_counts()[spec["type"]] == sum(alone)


def test_a_request_outside_a_fault_does_not_touch_its_generator_or_count():
    control = control_of(serial=LINE)
    held_fault = control.start_fault({"type": "reset", "probability": 0.5, "count": 3})
    state = held_fault.rng.getstate()
    held = control.request_faults(5020)
    for _ in range(50):
        assert control.match(held, 1, 3, RTU_SERIAL) is None
    assert held_fault.rng.getstate() == state
    assert control.fault("f1")["remaining"] == 3 and control.fault("f1")["applied"] == 0


def test_the_oldest_fault_acting_on_the_face_acts():
    control = control_of(serial=LINE, framing="rtu")
    control.start_fault({"type": "close", "count": 5})  # f1: not on the serial line
    control.start_fault({"type": "corrupt", "mode": "crc", "scope": {"face": "serial"}})  # f2
    control.start_fault({"type": "exception", "code": 6})  # f3
    held = control.request_faults(5020)
    assert control.match(held, 1, 3, RTU_SERIAL).id == "f2"
    assert control.match(held, 1, 3, RTU_TCP).id == "f1"
    assert control.fault("f1")["remaining"] == 4
    control.delete_fault("f2")
    assert control.match(control.request_faults(5020), 1, 3, RTU_SERIAL).id == "f3"


def test_a_port_scope_covers_the_serial_line_of_its_meters():
    control = control_of(ports=2, serial=LINE)
    control.start_fault({"type": "no_answer", "scope": {"port": 5020}})
    assert control.match(control.request_faults(5020), 1, 3, RTU_SERIAL).id == "f1"
    assert control.match(control.request_faults(5020), 1, 3, MBAP_TCP).id == "f1"
    assert control.request_faults(5021) == ()


# --- a meter's framing and serial line ---

@pytest.mark.parametrize("framing", ["tcp", "rtu"])
def test_details_show_the_framing_and_no_serial_line(framing):
    details = control_of(ports=2, framing=framing).details("5021")
    assert (details["framing"], details["serial"]) == (framing, None)


def test_details_show_the_serial_line_of_its_meters_only():
    control = control_of(ports=2, serial=LINE)
    assert control.details("5020")["serial"] == dict(SHOWN_LINE, unit_id=1)
    assert control.details("5021")["serial"] is None
    assert control.details("5020")["framing"] == "tcp"


def test_a_gateway_meter_answers_its_own_unit_id_on_the_line():
    control = control_of(gateway=True, framing="rtu", serial=dict(LINE, link=None, parity="E", baud=19200))
    for unit_id in (1, 2, 7):
        assert control.details(f"5020-{unit_id}")["serial"] == dict(
            SHOWN_LINE, link=None, parity="E", baud=19200, unit_id=unit_id)


def test_the_serial_line_is_set_once_it_is_open():
    control = control_of(ports=2)
    with pytest.raises(UnknownError):
        control.start_fault({"type": "no_answer", "scope": {"face": "serial"}})
    control.set_serial(LINE)
    assert control.details("5020")["serial"] == dict(SHOWN_LINE, unit_id=1)
    assert control.topology.serial_port == 5020 and control.topology.ports == {5020: None, 5021: None}
    shown = control.view(control.start_fault({"type": "no_answer", "scope": {"face": "serial"}}))
    assert shown["scope"] == {"face": "serial"}
    assert control.fault_ids(control.meter("5020")) == ["f1"]
    assert control.fault_ids(control.meter("5021")) == [], "5021's meter is not on the line"
    control.set_serial(None)
    assert control.details("5020")["serial"] is None and control.topology.serial_port is None
    with pytest.raises(ValueError):
        control.set_serial(dict(LINE, port=6000))


def test_the_listing_is_unchanged():
    control = control_of(serial=LINE, framing="rtu")
    summary = control.page()["meters"][0]
    assert "framing" not in summary and "serial" not in summary
