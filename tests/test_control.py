"""The control core without sockets: fault specs, scopes, which requests a fault hits, counting,
expiry on a fake clock, meter faults and pins published at once, readings by name."""
from __future__ import annotations

import random
import threading

import pytest

from meter_simulator.device import faults
from meter_simulator.device.control import Control, ControlError
from meter_simulator.device.faults import FaultError, Topology, UnknownError
from meter_simulator.device.fleet import PortPlan
from meter_simulator.device.updater import Updater
from meter_simulator.modbus.server import new_device
from meter_simulator.model.meters import make_meter
from support import FakeClock, wait_for

SINGLE = Topology({5020: None, 5021: None})
GATEWAY = Topology({5020: frozenset({1, 2, 7})})


def control_of(clock: FakeClock, *, gateway: bool = False, seed: int | None = 1,
               meter_type: str = "electric", profile=None, ports: int = 2) -> Control:
    """A Control over an updater on a fake clock (never started: ticks by hand): a meter on each
    of ports from 5020 up, or three in gateway mode on 5020."""
    rng = random.Random(5)

    def device():
        return new_device(make_meter(meter_type, random.Random(rng.getrandbits(32)), 12 * 3600), profile)

    plan = [PortPlan(5020, devices_by_id={1: device(), 2: device(), 7: device()})] if gateway else \
        [PortPlan(5020 + n, device=device()) for n in range(ports)]
    updater = Updater([u for endpoint in plan for u in endpoint.devices], interval_s=1.0, clock=clock)
    return Control(updater, plan, seed=seed, clock=clock)


@pytest.mark.parametrize(("spec", "message"), [
    ([], "a fault must be a JSON object"),
    ({"type": "slow"}, "type must be one of delay, no_answer, close, reset, exception, corrupt, "
                       "freeze, offline, not 'slow'"),
    ({"type": "delay"}, "a delay fault needs delay_ms (1 to 60000)"),
    ({"type": "delay", "delay_ms": 0}, "delay_ms must be from 1 to 60000, not 0"),
    ({"type": "delay", "delay_ms": 60001}, "delay_ms must be from 1 to 60000, not 60001"),
    ({"type": "delay", "delay_ms": True}, "delay_ms must be a whole number, not True"),
    ({"type": "close", "delay_ms": -1}, "delay_ms must be from 0 to 60000, not -1"),
    ({"type": "exception"}, "an exception fault needs code (1 to 255)"),
    ({"type": "exception", "code": 256}, "code must be from 1 to 255, not 256"),
    ({"type": "exception", "code": 0}, "code must be from 1 to 255, not 0"),
    ({"type": "corrupt", "mode": "bits"}, "mode must be one of transaction_id, length, truncate, crc, "
                                          "not 'bits'"),
    ({"type": "reset", "code": 3}, "unknown key 'code' for a reset fault"),
    ({"type": "no_answer", "probability": 0}, "probability must be a number above 0 and at most 1, "
                                              "not 0"),
    ({"type": "no_answer", "probability": 1.5}, "probability must be a number above 0 and at most 1, "
                                                "not 1.5"),
    ({"type": "no_answer", "count": 0}, "count must be from 1 to 2147483647, not 0"),
    ({"type": "no_answer", "duration_s": 0}, "duration_s must be a number of seconds above 0, not 0"),
    ({"type": "no_answer", "functions": []}, "functions must be a list of function codes, not []"),
    ({"type": "no_answer", "functions": [3, 300]}, "functions must be from 1 to 255, not 300"),
    ({"type": "freeze", "count": 2}, "a freeze fault takes duration_s only, not count"),
    ({"type": "offline", "probability": 0.5}, "an offline fault takes duration_s only, not probability"),
    ({"type": "freeze", "delay_ms": 5}, "unknown key 'delay_ms' for a freeze fault"),
    ({"type": "close", "scope": []}, "scope must be an object, not []"),
    ({"type": "close", "scope": {"host": 1}}, "unknown scope key 'host': give port, unit_id, meter or face"),
    ({"type": "close", "scope": {"meter": "5020", "port": 5020}},
     "scope meter stands alone, without port or unit_id"),
    ({"type": "close", "scope": {"unit_id": 256}}, "unit_id must be from 0 to 255, not 256"),
])
def test_a_bad_fault_is_refused_with_one_line(spec, message):
    with pytest.raises(FaultError) as refused:
        faults.fault_fields(spec, SINGLE)
    assert str(refused.value) == message


@pytest.mark.parametrize(("topology", "scope", "message"), [
    (SINGLE, {"port": 6000}, "port 6000 is not served"),
    (SINGLE, {"meter": "5020-1"}, "no meter '5020-1'"),
    (SINGLE, {"meter": "abc"}, "no meter 'abc'"),
    (GATEWAY, {"meter": "5020"}, "no meter '5020'"),
    (GATEWAY, {"meter": "5020-3"}, "no meter '5020-3'"),
    (GATEWAY, {"unit_id": 3}, "unit id 3 is not a meter on any port"),
    (GATEWAY, {"port": 5020, "unit_id": 3}, "unit id 3 is not a meter on port 5020"),
])
def test_a_scope_naming_what_is_not_served_is_unknown(topology, scope, message):
    with pytest.raises(UnknownError) as unknown:
        faults.fault_fields({"type": "close", "scope": scope}, topology)
    assert str(unknown.value) == message


@pytest.mark.parametrize(("topology", "scope", "shown"), [
    (SINGLE, None, {}),
    (SINGLE, {}, {}),
    (SINGLE, {"port": 5021}, {"port": 5021}),
    (SINGLE, {"meter": "5021"}, {"port": 5021}),
    (SINGLE, {"unit_id": 9}, {"unit_id": 9}),  # requests carrying unit id 9, any meter
    (GATEWAY, {"meter": "5020-7"}, {"port": 5020, "unit_id": 7}),
    (GATEWAY, {"port": 5020, "unit_id": 2}, {"port": 5020, "unit_id": 2}),
])
def test_scopes(topology, scope, shown):
    assert faults.fault_fields({"type": "close", "scope": scope}, topology)["scope"].as_dict() == shown


@pytest.mark.parametrize("kind", ["freeze", "offline"])
@pytest.mark.parametrize("scope", [{"unit_id": 3}, {"port": 5021, "unit_id": 1}])
def test_a_meter_fault_outside_gateway_mode_cannot_be_scoped_by_unit_id(kind, scope):
    control = control_of(FakeClock())
    with pytest.raises(FaultError) as refused:
        control.start_fault({"type": kind, "scope": scope})
    assert str(refused.value) == (f"{faults.article(kind)} {kind} fault outside gateway mode cannot be "
                                  "scoped by unit_id: every meter answers every unit id; scope it by "
                                  "port or meter")
    assert control.faults() == []
    assert all(meter.device.live for meter in control.meters), "no meter went offline or froze"


def test_a_request_fault_outside_gateway_mode_may_be_scoped_by_unit_id():
    control = control_of(FakeClock())
    shown = control.view(control.start_fault({"type": "exception", "code": 6, "scope": {"unit_id": 3}}))
    assert shown["scope"] == {"unit_id": 3}
    assert all(meter.device.live for meter in control.meters)
    gateway = control_of(FakeClock(), gateway=True)
    assert gateway.start_fault({"type": "freeze", "scope": {"unit_id": 7}}).scope.as_dict() == {"unit_id": 7}
    assert [meter.device.live for meter in gateway.meters] == [True, True, False]


def test_a_fault_hits_requests_in_its_scope_and_functions_only():
    clock = FakeClock()
    control = control_of(clock, gateway=True)
    control.start_fault({"type": "no_answer", "scope": {"meter": "5020-7"}, "functions": [3, 4]})
    candidates = control.request_faults(5020)
    assert control.match(candidates, 7, 3, faults.MBAP_TCP) is not None
    assert control.match(candidates, 7, 4, faults.MBAP_TCP) is not None
    assert control.match(candidates, 7, 6, faults.MBAP_TCP) is None
    assert control.match(candidates, 2, 3, faults.MBAP_TCP) is None
    assert control.fault("f1")["applied"] == 2


def test_count_ends_a_fault_and_misses_do_not_count():
    clock = FakeClock()
    control = control_of(clock)
    control.start_fault({"type": "exception", "code": 6, "count": 2, "functions": [3]})
    candidates = control.request_faults(5020)
    assert control.match(candidates, 1, 4, faults.MBAP_TCP) is None  # another function: not counted
    assert control.fault("f1")["remaining"] == 2
    assert control.match(candidates, 1, 3, faults.MBAP_TCP) is not None
    assert control.match(candidates, 1, 3, faults.MBAP_TCP) is not None
    assert control.faults() == []
    assert control.match(candidates, 1, 3, faults.MBAP_TCP) is None
    with pytest.raises(UnknownError):
        control.fault("f1")
    assert control.applied_by_type["exception"] == 2


def test_duration_ends_a_fault_on_the_clock_whether_or_not_it_applied():
    clock = FakeClock()
    control = control_of(clock)
    shown = control.view(control.start_fault({"type": "close", "duration_s": 2.5}))
    assert shown["expires_in_s"] == 2.5
    candidates = control.request_faults(5020)
    clock.now += 2.0
    assert control.fault("f1")["expires_in_s"] == 0.5
    assert control.match(candidates, 1, 3, faults.MBAP_TCP) is not None
    clock.now += 0.5
    assert control.match(candidates, 1, 3, faults.MBAP_TCP) is None
    assert control.faults() == []
    control.close()


def test_the_oldest_fault_that_applies_acts_alone():
    clock = FakeClock()
    control = control_of(clock)
    control.start_fault({"type": "exception", "code": 6, "functions": [4]})
    control.start_fault({"type": "close", "count": 5})
    candidates = control.request_faults(5020)
    assert control.match(candidates, 1, 3, faults.MBAP_TCP).id == "f2"  # f1 does not apply to FC 3
    assert control.match(candidates, 1, 4, faults.MBAP_TCP).id == "f1"
    assert control.fault("f2")["remaining"] == 4  # not consumed by the request f1 took


def hit_pattern(seed: int | None) -> list[bool]:
    control = control_of(FakeClock(), seed=seed)
    control.start_fault({"type": "no_answer", "probability": 0.3})
    candidates = control.request_faults(5020)
    return [control.match(candidates, 1, 3, faults.MBAP_TCP) is not None for _ in range(300)]


def test_probability_draws_from_the_seed_and_the_fault_id():
    first = hit_pattern(7)
    assert first == hit_pattern(7)
    assert first != hit_pattern(8)
    assert 50 < sum(first) < 130  # about 30 % of 300


def ids(request_faults: tuple) -> list[list[str]]:
    """What a port holds (Control.request_faults), as fault ids: [[its own], [every port's]]."""
    return [[fault.id for fault in part] for part in request_faults]


def test_a_request_fault_reaches_only_the_ports_it_may_act_on():
    pushed = []
    control = control_of(FakeClock(), ports=3)
    control._on_request_faults = pushed.append
    control.start_fault({"type": "close", "scope": {"port": 5021}})
    assert [{port: ids(held) for port, held in push.items()} for push in pushed] == [
        {5021: [["f1"], []]}]
    control.start_fault({"type": "delay", "delay_ms": 5})
    assert {port: ids(held) for port, held in pushed[-1].items()} == {
        5020: [[], ["f2"]], 5021: [["f1"], ["f2"]], 5022: [[], ["f2"]]}
    control.start_fault({"type": "freeze", "scope": {"port": 5022}})
    assert len(pushed) == 2, "a meter fault is no port's business"
    control.delete_fault("f1")
    assert {port: ids(held) for port, held in pushed[-1].items()} == {5021: [[], ["f2"]]}
    control.delete_fault("f2")
    assert pushed[-1] == {5020: (), 5021: (), 5022: ()}
    assert len(pushed) == 4


def test_a_ports_own_faults_and_every_ports_act_oldest_first():
    control = control_of(FakeClock())
    control.start_fault({"type": "exception", "code": 6, "functions": [4]})  # f1, every port
    control.start_fault({"type": "close", "scope": {"port": 5020}})  # f2
    control.start_fault({"type": "no_answer"})  # f3, every port
    control.start_fault({"type": "exception", "code": 4, "scope": {"port": 5020}})  # f4
    on_5020, on_5021 = control.request_faults(5020), control.request_faults(5021)
    assert (ids(on_5020), ids(on_5021)) == ([["f2", "f4"], ["f1", "f3"]], [[], ["f1", "f3"]])
    assert control.match(on_5020, 1, 4, faults.MBAP_TCP).id == "f1"
    assert control.match(on_5020, 1, 3, faults.MBAP_TCP).id == "f2"
    assert control.match(on_5021, 1, 3, faults.MBAP_TCP).id == "f3"
    assert control.match(on_5021, 1, 4, faults.MBAP_TCP).id == "f1"


def test_a_meters_faults_are_found_without_looking_at_other_ports_faults(monkeypatch):
    control = control_of(FakeClock(), ports=3)
    for _ in range(200):
        control.start_fault({"type": "no_answer", "scope": {"port": 5021}})
    control.start_fault({"type": "offline", "scope": {"port": 5020}})  # f201
    control.start_fault({"type": "exception", "code": 6})  # f202, every meter
    looked_at = []
    covers = faults.Scope.covers

    def counted(scope, port, unit_id):
        looked_at.append(scope)
        return covers(scope, port, unit_id)

    monkeypatch.setattr(faults.Scope, "covers", counted)
    assert control.fault_ids(control.meter("5020")) == ["f201", "f202"]
    assert control.fault_ids(control.meter("5022")) == ["f202"]
    assert len(looked_at) == 3


class CountingBank:
    """A meter's bank that counts the images published to it."""

    def __init__(self, bank) -> None:
        self.bank = bank
        self.published = 0

    def publish(self, image) -> None:
        self.published += 1
        self.bank.publish(image)


def test_clearing_gives_each_port_and_meter_one_change():
    control = control_of(FakeClock(), ports=20)
    for n in range(400):
        port = 5020 + n % 20
        kind = ("no_answer", "freeze", "offline", "delay")[n % 4]
        spec = {"type": kind, "delay_ms": 10} if kind == "delay" else {"type": kind}
        control.start_fault(dict(spec, scope={"port": port}) if n % 3 else spec)
    assert not any(meter.device.live or meter.device.online for meter in control.meters)
    pushed = []
    control._on_request_faults = pushed.append
    banks = [CountingBank(meter.device.bank) for meter in control.meters]
    for meter, bank in zip(control.meters, banks):
        meter.device.bank = bank
    assert control.clear_faults() == 400
    assert pushed == [dict.fromkeys(range(5020, 5040), ())], "every port told once"
    assert [bank.published for bank in banks] == [1] * 20, "every meter published once"
    assert all(meter.device.live and meter.device.online for meter in control.meters)
    assert all(meter.device.shown[0] is meter.device.meter.reading for meter in control.meters)
    assert control.faults() == [] and control.fleet_summary()["faults"] == 0
    assert all(control.fault_ids(meter) == [] for meter in control.meters)
    assert all(control.request_faults(port) == () for port in range(5020, 5040))


def test_at_most_max_faults_are_active_and_one_more_changes_nothing():
    pushed = []
    control = control_of(FakeClock())
    control._on_request_faults = pushed.append
    for n in range(faults.MAX_FAULTS):
        control.start_fault({"type": "no_answer", "scope": {"port": 5020 + n % 2}})
    told = len(pushed)
    for spec in ({"type": "offline"}, {"type": "close", "duration_s": 5}):
        with pytest.raises(faults.FaultLimitError) as refused:
            control.start_fault(spec)
        assert isinstance(refused.value, ValueError)
        assert str(refused.value) == ("too many faults: 1000 are active, the most a run keeps; "
                                      "end some first")
    assert len(control.faults()) == faults.MAX_FAULTS and len(pushed) == told
    assert all(meter.device.online for meter in control.meters)
    assert not [thread for thread in threading.enumerate() if thread.name == "fault-timer"]
    control.delete_fault("f7")
    assert control.start_fault({"type": "offline"}).id == "f1001"
    assert not any(meter.device.online for meter in control.meters)


def fault_timers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("fault-timer")]


def test_timed_faults_end_from_one_thread_started_by_the_first_and_joined_on_close():
    clock = FakeClock()
    control = control_of(clock)
    before = fault_timers()
    control.start_fault({"type": "no_answer"})
    assert fault_timers() == before, "no thread without a timed fault"
    try:
        timed = [control.start_fault({"type": "no_answer", "duration_s": 10.0 + n}) for n in range(50)]
        frozen = control.start_fault({"type": "freeze", "scope": {"port": 5021}, "duration_s": 5})
        assert len(fault_timers()) == len(before) + 1
        assert not control.meter("5021").device.live
        clock.now += 30.0  # the thread notices a moved clock within its longest wait
        wait_for(lambda: not control.is_active(frozen), timeout=5)
        wait_for(lambda: not any(control.is_active(fault) for fault in timed[:21]), timeout=5)
        assert all(control.is_active(fault) for fault in timed[21:])
        assert control.meter("5021").device.live
        control.delete_fault(timed[30].id)  # its entry is dropped when its time comes
        clock.now += 100.0
        wait_for(lambda: not any(control.is_active(fault) for fault in timed), timeout=5)
        assert [fault["id"] for fault in control.faults()] == ["f1"]
    finally:
        control.close()
    assert fault_timers() == before


def test_a_fault_whose_timer_cannot_start_leaves_nothing_behind(monkeypatch):
    pushed = []
    control = control_of(FakeClock())
    control._on_request_faults = pushed.append

    def cannot_start(thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", cannot_start)
    for spec in ({"type": "no_answer", "duration_s": 5}, {"type": "offline", "duration_s": 5},
                 {"type": "freeze", "scope": {"port": 5021}, "duration_s": 5}):
        with pytest.raises(RuntimeError):
            control.start_fault(spec)
    monkeypatch.undo()
    assert control.faults() == [] and pushed == []
    assert all(meter.device.live and meter.device.online for meter in control.meters)
    assert control.fault_ids(control.meter("5020")) == [] and control.request_faults(5020) == ()
    try:
        shown = control.view(control.start_fault({"type": "offline", "duration_s": 5}))
        assert [fault["id"] for fault in control.faults()] == [shown["id"]]
        assert not control.meter("5020").device.online
    finally:
        control.close()


def registers(control: Control, meter_id: str = "5020") -> list[int]:
    return control.meter(meter_id).device.bank.image.words(0, 23)


def test_freeze_keeps_the_registers_and_the_end_publishes_the_meter_at_once():
    clock = FakeClock()
    control = control_of(clock)
    control.updater.speed = 3600.0
    before = registers(control)
    control.start_fault({"type": "freeze", "scope": {"port": 5020}})
    clock.now += 1.0
    control.updater.tick()
    assert registers(control) == before
    assert control.meter("5020").device.online
    assert registers(control, "5021") != before  # the other meter moves on
    frozen_total = control.details("5020")["total"]
    control.clear_faults()
    assert control.details("5020")["total"] > frozen_total  # the hour consumed meanwhile shows
    assert registers(control) != before


def test_offline_fault_ends_in_the_online_state_the_meter_would_have():
    clock = FakeClock()
    control = control_of(clock)
    control.start_fault({"type": "offline"})
    assert not control.details("5020")["online"]
    control.set_online("5020", False)
    control.set_online("5021", True)
    control.clear_faults()
    assert not control.details("5020")["online"]
    assert control.details("5021")["online"]


def test_an_offline_device_profile_is_unreachable():
    from meter_simulator.maps import profiles

    clock = FakeClock()
    control = control_of(clock, profile=profiles.profile_named("sdm630", "electric"))
    device = control.meter("5020").device
    control.start_fault({"type": "offline", "scope": {"meter": "5020"}})
    assert device.unreachable
    control.clear_faults()
    assert not device.unreachable
    control.set_online("5020", False)
    assert device.unreachable


def test_a_short_fault_ending_by_its_timer_leaves_no_meter_frozen():
    control = control_of(FakeClock())
    for _ in range(20):
        control.start_fault({"type": "freeze", "duration_s": 1e-6})
    control.close()
    for fault in list(control._faults.values()):
        control._end(fault, None)
    assert all(meter.device.live for meter in control.meters)


def test_pins_are_published_at_once_and_the_total_integrates_them():
    clock = FakeClock()
    control = control_of(clock)
    control.set_overrides("5020", {"power_total": 3600.0})
    assert control.readings("5020")["power_total"] == pytest.approx(3600.0)
    assert registers(control)[2] == 36000  # registers 2-3: W x10, low word first
    start = control.details("5020")["total"]
    clock.now += 3600.0
    control.updater.tick()
    assert control.details("5020")["total"] - start == pytest.approx(3.6, rel=1e-9)
    assert control.details("5020")["overrides"] == {"power_total": 3600.0}
    control.release("5020")
    assert control.details("5020")["overrides"] == {}


def test_a_total_jump_shows_rolled_over_in_the_registers():
    control = control_of(FakeClock())
    control.set_total("5020", 42949672.96)
    words = registers(control)
    assert words[0] | words[1] << 16 == round(42949672.96 * 100) % 2**32
    with pytest.raises(ControlError):
        control.set_total("5020", -1)
    with pytest.raises(ControlError):
        control.set_total("5020", 1e9 + 1)
    with pytest.raises(ControlError):  # a JSON integer too big for a float
        control.set_total("5020", 10**400)


def test_listing_pages_meters_in_port_then_unit_id_order():
    control = control_of(FakeClock(), gateway=True)
    page = control.page(1, 1)
    assert (page["count"], [m["id"] for m in page["meters"]]) == (3, ["5020-2"])
    assert [m["id"] for m in control.page()["meters"]] == ["5020-1", "5020-2", "5020-7"]
    with pytest.raises(ControlError):
        control.page(0, 1001)


def test_unknown_meters_and_faults_are_key_errors_with_the_message():
    control = control_of(FakeClock())
    with pytest.raises(KeyError) as unknown:
        control.details("9999")
    assert str(unknown.value) == "no meter '9999'"
    with pytest.raises(KeyError) as unknown:
        control.delete_fault("f9")
    assert str(unknown.value) == "no fault 'f9'"


def test_readings_of_a_water_meter_carry_their_units():
    control = control_of(FakeClock(), meter_type="water")
    details = control.details("5020")
    assert set(details["readings"]) == {"volume_total", "flow", "temperature", "pressure"}
    assert details["units"] == {"volume_total": "m³", "flow": "L/min", "temperature": "°C",
                                "pressure": "bar"}
