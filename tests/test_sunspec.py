"""The SunSpec profiles through a real SunSpec client: `--profile sunspec` (models 1 + 203) and
`--profile sunspec-float` (models 1 + 213) scanned and decoded by pysunspec2, the edges of the map
(exceptions, long reads, writes) checked with pymodbus frames (profiles contract sections 2, 4, 5).

Read-only tests share module-scoped programs: `still_meters` never ticks (one image for the whole
module, a new meter's counters at 0), `fast_meters` ticks every 0.05 s at speed 3600 (an hour of
simulated time a second). Tests that write, the solar run and the gateway get programs of their own.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager

import pytest
from pymodbus.client import ModbusTcpClient
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP
from sunspec2.modbus.modbus import ModbusClientException

from meter_simulator import __version__
from support import MeterProcess, pymodbus_client, unit_kw, wait_for

PROFILES = ("sunspec", "sunspec-float")
MODEL = {"sunspec": 203, "sunspec-float": 213}  # the meter model each profile serves
LENGTH = {203: 105, 213: 124}  # the model's L
BASE = 40000
METER_MODEL_ADDRESS = 40070
END_MODEL = {203: 40177, 213: 40196}  # the end model's ID; its L is the next register
EXC_ILLEGAL_FUNCTION, EXC_ILLEGAL_ADDRESS, EXC_ILLEGAL_VALUE = 0x01, 0x02, 0x03
MAX_POWER_W = 3 * 253.0 * 63.0  # every phase at its band's top: what a meter can draw at most
FAST_SPEED = 3600.0
# model 203's fixed scale factors (profiles contract section 4), as its points name them
SCALE_FACTORS = {"A_SF": -2, "V_SF": -1, "Hz_SF": -2, "W_SF": 0, "VA_SF": 0, "VAR_SF": 0, "PF_SF": -2,
                 "TotWh_SF": 0, "TotVAh_SF": 0, "TotVArh_SF": 0}
PHASES = ("A", "B", "C")
# counters that stay 0 (SunSpec: not implemented) without solar panels: export, and the quadrants
# with P < 0 (Q2, Q3) or Q < 0 (Q3, Q4; the household is inductive)
NEVER_WITHOUT_PANELS = ("TotWhExp", "TotVAhExp", "TotVArhImpQ2", "TotVArhExpQ3", "TotVArhExpQ4")
GROWING = ("TotWhImp", "TotVAhImp", "TotVArhImpQ1")  # counters a consuming household moves


def program(profile: str, *options: str, **kwargs) -> MeterProcess:
    return MeterProcess("--profile", profile, *options, **kwargs)


@pytest.fixture(scope="module")
def still_meters():
    """One program per profile that does not tick during the module: every client sees one image."""
    meters = {profile: program(profile, "--seed", "5", "--interval", "3600") for profile in PROFILES}
    try:
        for meter in meters.values():
            meter.start()
        yield meters
    finally:
        for meter in meters.values():
            meter.__exit__()


@pytest.fixture(scope="module")
def fast_meters():
    """One program per profile ticking every 0.05 s at speed 3600; .launched_at: before its start."""
    meters = {profile: program(profile, "--seed", "6", "--interval", "0.05", "--speed", str(FAST_SPEED))
              for profile in PROFILES}
    try:
        for meter in meters.values():
            meter.launched_at = time.monotonic()
            meter.start()
        yield meters
    finally:
        for meter in meters.values():
            meter.__exit__()


# --- pysunspec2 ---

@contextmanager
def sunspec_device(port: int, unit_id: int = 1):
    """A pysunspec2 device for the program, scanned (SunS at 40000, then the model chain)."""
    device = SunSpecModbusClientDeviceTCP(slave_id=unit_id, ipaddr="127.0.0.1", ipport=port, timeout=5)
    try:
        device.scan()
        yield device
    finally:
        device.close()


def the_model(device, model_id: int):
    models = device.models.get(model_id)
    assert models, f"model {model_id} not found; the scan found {sorted(map(str, device.models))}"
    assert len(models) == 1
    model = models[0]
    assert model.error_info == "", model.error_info
    return model


def decoded(model) -> dict:
    """Every point of a model as pysunspec2 computes it (scale factors applied; None: not
    implemented)."""
    return {name: point.cvalue for name, point in model.points.items()}


def read_meter(device, model_id: int) -> dict:
    """The meter model read again (one request for model 203; 213's 126 registers take two, the
    second holding only Evt's low word) and decoded."""
    model = the_model(device, model_id)
    model.read()
    return decoded(model)


def snapshots(device, model_id: int, count: int, timeout: float = 15.0) -> list[dict]:
    """count readings of a ticking meter that differ from one another, polled with a deadline."""
    seen: list[dict] = []

    def enough() -> bool:
        values = read_meter(device, model_id)
        if not seen or values != seen[-1]:
            seen.append(values)
        return len(seen) >= count

    wait_for(enough, timeout=timeout, interval=0.02)
    return seen


# --- pymodbus ---

def call(client: ModbusTcpClient, method: str, *args, unit_id: int = 1, **kwargs):
    """A pymodbus request with the unit id keyword this pymodbus version takes."""
    bound = getattr(client, method)
    return bound(*args, **kwargs, **unit_kw(bound, unit_id))


def holding(client, address: int, count: int, unit_id: int = 1) -> list[int]:
    result = call(client, "read_holding_registers", address, count=count, unit_id=unit_id)
    assert not result.isError(), f"read {address}+{count}: {result}"
    return list(result.registers)


def exception_code(result) -> int:
    assert result.isError(), f"expected an exception, got {result}"
    return result.exception_code


def end_of_map(profile: str) -> int:
    """The last readable address: the end model's length register."""
    return END_MODEL[MODEL[profile]] + 1


# --- the rules every reading keeps (profiles contract section 2) ---

def near(actual: float, expected: float, relative: float, counts: float) -> bool:
    return abs(actual - expected) <= relative * abs(expected) + counts


def check_reading(values: dict, model_id: int, panels: bool = False) -> None:
    """Bands, per-phase identities, totals: within the encoding's rounding (scaled integers: 1 % + 4
    counts; float32: 0.5 % + 2 W); PF of 203 in percent. Without panels also the PF band and
    power drawn, never fed."""
    problems = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    if model_id == 203:
        rel, count = 0.01, {"A": 4 * 0.01, "V": 4 * 0.1, "W": 4, "PF": 4 * 0.01}
        pf_unit = 100.0  # percent
        ll = ("PhVphAB", "PhVphBC", "PhVphCA")
    else:
        rel, count = 0.005, {"A": 0.01, "V": 0.01, "W": 2, "PF": 0.002}
        pf_unit = 1.0
        ll = ("PPVphAB", "PPVphBC", "PPVphCA")
    instantaneous = [name for name in values if not name.startswith("Tot") and not name.endswith("_SF")]
    missing = [name for name in instantaneous if values[name] is None]
    assert missing == [], f"not implemented: {missing} in {values}"
    for name in instantaneous:
        assert math.isfinite(values[name]), f"{name} = {values[name]}"

    volts = [values[f"PhVph{x}"] for x in PHASES]
    amps = [values[f"Aph{x}"] for x in PHASES]
    for x, v, a in zip(PHASES, volts, amps):
        expect(207.0 <= v <= 253.0, f"PhVph{x} {v} outside 207-253 V")
        expect(0.0 <= a <= 63.0, f"Aph{x} {a} outside 0-63 A")
    expect(49.5 <= values["Hz"] <= 50.5, f"Hz {values['Hz']} outside 49.50-50.50")
    for (i, j), name in zip(((0, 1), (1, 2), (2, 0)), ll):
        vij = math.sqrt(volts[i] ** 2 + volts[j] ** 2 + volts[i] * volts[j])
        expect(near(values[name], vij, rel, count["V"]), f"{name} {values[name]} != {vij:.2f}")
    expect(near(values["PhV"], sum(volts) / 3, rel, count["V"]), f"PhV {values['PhV']} != mean {volts}")
    ll_mean = sum(values[name] for name in ll) / 3
    expect(near(values["PPV"], ll_mean, rel, count["V"]), f"PPV {values['PPV']} != mean {ll_mean:.2f}")
    expect(near(values["A"], sum(amps), rel, count["A"]), f"A {values['A']} != sum {amps}")

    for x, v, a in zip(PHASES, volts, amps):
        w, va, var, pf = (values[f"{stem}ph{x}"] for stem in ("W", "VA", "VAR", "PF"))
        pf_fraction = pf / pf_unit
        expect(near(w, v * a * pf_fraction, rel, count["W"]), f"W{x} {w} != V*A*PF {v}*{a}*{pf_fraction}")
        expect(near(va, v * a, rel, count["W"]), f"VA{x} {va} != V*A {v}*{a}")
        expect(near(va, math.hypot(w, var), rel, count["W"]), f"VA{x} {va} != |(W {w}, VAR {var})|")
        if abs(w) > count["W"]:
            expect((pf > 0) == (w > 0), f"PF{x} {pf} without the sign of W{x} {w}")
        if not panels:
            expect(0.8 * pf_unit <= abs(pf) <= pf_unit, f"PF{x} {pf} outside |PF| 0.800-1.000")
            expect(w >= -count["W"], f"W{x} {w} < 0 without panels")

    clamped = model_id == 203 and any(abs(values[name]) >= 32767 for name in ("W", "VA", "VAR"))
    if not clamped:  # past +-32767 the int16 totals of 203 are clamped (contract section 4)
        for stem in ("W", "VA", "VAR"):
            phases = [values[f"{stem}ph{x}"] for x in PHASES]
            expect(near(values[stem], sum(phases), rel, count["W"]), f"{stem} {values[stem]} != sum {phases}")
        if values["VA"] > 0:
            pf_total = values["W"] / values["VA"] * pf_unit
            expect(near(values["PF"], pf_total, rel, count["PF"]),
                   f"PF {values['PF']} != W/VA {pf_total:.4f}")
        if not panels:
            expect(0.8 * pf_unit <= abs(values["PF"]) <= pf_unit, f"PF {values['PF']} outside 0.800-1.000")
    assert problems == [], f"{problems} in {values}"


def counter(values: dict, name: str) -> float:
    """A counter's reading in Wh, VAh or varh; SunSpec's "not implemented" acc32 (None) is 0."""
    value = values[name]
    return 0.0 if value is None else value


def phase_counter_names(values: dict, total: str) -> list[str]:
    return [name for name in values if name.lower() in {f"{total}ph{x}".lower() for x in PHASES}]


# --- the scan and model 1 ---

@pytest.mark.parametrize("profile", PROFILES)
def test_scan_finds_common_and_meter_model(still_meters, profile):
    with sunspec_device(still_meters[profile].port) as device:
        assert device.base_addr == BASE
        assert [model.model_id for model in device.model_list] == [1, MODEL[profile]]
        assert [model.model_addr for model in device.model_list] == [BASE + 2, METER_MODEL_ADDRESS]
        assert [model.model_len for model in device.model_list] == [66, LENGTH[MODEL[profile]]]
        for model in device.model_list:
            assert model.error_info == "", model.error_info


@pytest.mark.parametrize("profile", PROFILES)
def test_marker_model_headers_and_end_model_raw(still_meters, profile):
    model_id = MODEL[profile]
    end = END_MODEL[model_id]
    with pymodbus_client(still_meters[profile].port) as client:
        assert holding(client, BASE, 4) == [0x5375, 0x6E53, 1, 66]  # "SunS", model 1's ID and L
        assert holding(client, METER_MODEL_ADDRESS, 2) == [model_id, LENGTH[model_id]]
        assert holding(client, end, 2) == [0xFFFF, 0]
        assert end == METER_MODEL_ADDRESS + 2 + LENGTH[model_id]


@pytest.mark.parametrize("profile", PROFILES)
def test_model_1_identity(still_meters, profile):
    with sunspec_device(still_meters[profile].port) as device:
        common = decoded(the_model(device, 1))
    assert common["Mn"] == "meter-simulator"
    assert common["Md"] == profile
    assert common["Opt"] == "electric"
    assert common["Vr"] == __version__
    assert common["SN"].isdigit(), common["SN"]
    assert common["DA"] == 1, "a meter outside gateway mode is meter 1"


def test_model_1_identity_does_not_depend_on_the_unit_id_asked(still_meters):
    """Outside gateway mode a meter answers every unit id, and is still meter 1."""
    port = still_meters["sunspec"].port
    with sunspec_device(port) as device:
        first = decoded(the_model(device, 1))
    with sunspec_device(port, unit_id=7) as device:
        assert decoded(the_model(device, 1)) == first


def test_serial_number_is_stable_across_restarts_and_distinct_between_meters():
    meter = program("sunspec", "--seed", "1", "--interval", "3600")
    with meter:
        with sunspec_device(meter.port) as device:
            first = decoded(the_model(device, 1))["SN"]
    again = program("sunspec", "--seed", "2", "--interval", "3600", port=meter.port)
    with again:
        with sunspec_device(again.port) as device:
            assert decoded(the_model(device, 1))["SN"] == first, "same port and unit id, same serial"
    with program("sunspec", "--interval", "3600", "--unit-ids", "1-3") as gateway:
        serials = set()
        for unit_id in (1, 2, 3):
            with sunspec_device(gateway.port, unit_id=unit_id) as device:
                common = decoded(the_model(device, 1))
            assert common["DA"] == unit_id, "in gateway mode DA is the meter's unit id"
            assert common["SN"].isdigit()
            serials.add(common["SN"])
        assert len(serials) == 3, serials


# --- the meter model: every point, the bands and the identities ---

@pytest.mark.parametrize("profile", PROFILES)
def test_every_point_decodes(still_meters, profile):
    model_id = MODEL[profile]
    with sunspec_device(still_meters[profile].port) as device:
        values = decoded(the_model(device, model_id))
    assert values["ID"] == model_id and values["L"] == LENGTH[model_id]
    assert values["Evt"] == 0, "no events"
    counters = [name for name in values if name.startswith("Tot") and not name.endswith("_SF")]
    assert len(counters) == 32
    # a new meter's counters are 0, which an acc32 of 203 shows as SunSpec's "not implemented"
    if model_id == 203:
        assert {name: values[name] for name in SCALE_FACTORS} == SCALE_FACTORS
        assert {name: values[name] for name in counters} == dict.fromkeys(counters, None)
    else:
        assert {name: values[name] for name in counters} == dict.fromkeys(counters, 0.0)
    check_reading(values, model_id)


@pytest.mark.parametrize("profile", PROFILES)
def test_readings_of_a_ticking_meter_keep_the_bands_and_identities(fast_meters, profile):
    model_id = MODEL[profile]
    with sunspec_device(fast_meters[profile].port) as device:
        for values in snapshots(device, model_id, 6):
            check_reading(values, model_id)


def test_float_model_never_serves_nan(fast_meters):
    """213 has no "not implemented" in use: every point, counters included, a finite number."""
    with sunspec_device(fast_meters["sunspec-float"].port) as device:
        for values in snapshots(device, 213, 4):
            bad = {name: value for name, value in values.items()
                   if value is None or not math.isfinite(value)}
            assert bad == {}


# --- counters ---

@pytest.mark.parametrize("profile", PROFILES)
def test_counters_grow_and_never_decrease(fast_meters, profile):
    model_id = MODEL[profile]
    meter = fast_meters[profile]
    rel, counts = (0.01, 4) if model_id == 203 else (0.005, 2)
    with sunspec_device(meter.port) as device:
        first = read_meter(device, model_id)
        wait_for(lambda: counter(read_meter(device, model_id), "TotWhImp") > counter(first, "TotWhImp") + 10,
                 timeout=15)
        readings = snapshots(device, model_id, 5)
        elapsed_s = time.monotonic() - meter.launched_at
    last = readings[-1]
    for name in GROWING:
        assert counter(last, name) > 0, f"{name} has not moved: {last}"
    # the program integrated at most elapsed_s x speed simulated seconds at at most MAX_POWER_W
    assert counter(last, "TotWhImp") <= MAX_POWER_W * elapsed_s * FAST_SPEED / 3600.0
    for earlier, later in zip([first, *readings], readings):
        for name in earlier:
            if name.startswith("Tot") and not name.endswith("_SF"):
                assert counter(later, name) >= counter(earlier, name), f"{name} decreased"
    for values in readings:
        for name in NEVER_WITHOUT_PANELS:
            for each in [name, *phase_counter_names(values, name)]:
                assert counter(values, each) == 0, f"{each} moved without solar panels: {values}"
        # without panels no phase exports: a total counter is the sum of its phase counters
        for name in GROWING:
            phases = [counter(values, each) for each in phase_counter_names(values, name)]
            assert len(phases) == 3
            assert near(counter(values, name), sum(phases), rel, counts), (name, values[name], phases)


@pytest.mark.parametrize("profile", PROFILES)
def test_solar_surplus_is_exported(profile):
    """With panels the power goes negative at midday and the export counter then grows; a
    simulated day takes under 2 s at speed 50000."""
    model_id = MODEL[profile]
    meter = program(profile, "--pv-kwp", "10", "--seed", "3", "--interval", "0.05", "--speed", "50000")
    with meter:
        with sunspec_device(meter.port) as device:
            def exporting():
                values = read_meter(device, model_id)
                return values if values["W"] < 0 else None

            values = wait_for(exporting, timeout=20)
            check_reading(values, model_id, panels=True)
            assert values["PF"] < 0, "PF has the sign of W"
            exported = counter(values, "TotWhExp")  # may still be 0 (None in 203): a first export
            wait_for(lambda: counter(read_meter(device, model_id), "TotWhExp") > exported, timeout=20)


# --- the edges of the map: function codes, ranges, long reads ---

@pytest.mark.parametrize("profile", PROFILES)
def test_input_registers_are_not_served(still_meters, profile):
    with pymodbus_client(still_meters[profile].port) as client:
        for address, count in ((BASE, 2), (BASE, 125), (0, 1)):
            result = call(client, "read_input_registers", address, count=count)
            assert exception_code(result) == EXC_ILLEGAL_ADDRESS


@pytest.mark.parametrize("profile", PROFILES)
def test_reads_outside_the_map_are_illegal_address(still_meters, profile):
    last = end_of_map(profile)
    outside = [(0, 1), (1, 10), (39999, 1), (39999, 2), (39990, 20), (last + 1, 1), (last, 2),
               (last - 123, 125), (50000, 1), (50000, 3), (65535, 1)]
    with pymodbus_client(still_meters[profile].port) as client:
        for address, count in outside:
            result = call(client, "read_holding_registers", address, count=count)
            assert exception_code(result) == EXC_ILLEGAL_ADDRESS, (address, count)
        assert holding(client, BASE, 2) == [0x5375, 0x6E53], "the connection still serves"


@pytest.mark.parametrize("profile", PROFILES)
def test_reads_of_up_to_125_registers_anywhere_inside_are_answered(still_meters, profile):
    last = end_of_map(profile)
    with pymodbus_client(still_meters[profile].port) as client:
        image = holding(client, BASE, 125) + holding(client, BASE + 125, last + 1 - BASE - 125)
        assert len(image) == last + 1 - BASE
        assert holding(client, last - 124, 125) == image[-125:]
        singles = [holding(client, address, 1)[0] for address in range(BASE, last + 1)]
        assert singles == image, "a 1-register read, even of half a 32-bit point, sees the same words"


@pytest.mark.parametrize("method, args", [
    ("read_coils", (0,)), ("read_discrete_inputs", (0,)),
    ("write_coil", (0, True)), ("write_coils", (0, [True, False])),
])
def test_coil_functions_are_illegal_function(still_meters, method, args):
    with pymodbus_client(still_meters["sunspec"].port) as client:
        kwargs = {"count": 1} if method.startswith("read") else {}
        assert exception_code(call(client, method, *args, **kwargs)) == EXC_ILLEGAL_FUNCTION


def test_no_int16_point_holds_the_not_implemented_sentinel(fast_meters):
    """203's int16 points never read 0x8000 (pysunspec2 would show None; here the raw words)."""
    with pymodbus_client(fast_meters["sunspec"].port) as client:
        for _ in range(5):
            words = holding(client, METER_MODEL_ADDRESS + 2, 36)  # A .. PF_SF: one int16 each
            assert 0x8000 not in words, words


# --- writes: DA only ---

@pytest.mark.parametrize("profile", PROFILES)
def test_device_address_is_writable_with_fc6_and_fc16(profile):
    da = BASE + 2 + 66  # model 1's DA
    with program(profile, "--interval", "3600") as meter:
        with sunspec_device(meter.port) as device:
            common = the_model(device, 1)
            common.DA.value = 42
            common.DA.write()  # pysunspec2 writes one register with FC 0x06
            common.read()
            assert common.DA.value == 42
        with pymodbus_client(meter.port) as client:
            for value in (1, 247, 100):
                assert not call(client, "write_register", da, value).isError()
                assert holding(client, da, 1) == [value]
            for value in (0, 248, 0xFFFF):
                assert exception_code(call(client, "write_register", da, value)) == EXC_ILLEGAL_VALUE
                assert exception_code(call(client, "write_registers", da, [value])) == EXC_ILLEGAL_VALUE
                assert holding(client, da, 1) == [100], "a refused write changes nothing"
            assert not call(client, "write_registers", da, [7]).isError()
            assert holding(client, da, 1) == [7]
        with sunspec_device(meter.port) as device:
            common = the_model(device, 1)
            common.DA.value = 0
            with pytest.raises(ModbusClientException, match="exception: 3"):
                common.DA.write()
            common.read()
            assert common.DA.value == 7


@pytest.mark.parametrize("profile", PROFILES)
def test_writes_other_than_device_address_are_illegal_address(profile):
    da = BASE + 2 + 66
    model_id = MODEL[profile]
    with program(profile, "--interval", "3600") as meter, pymodbus_client(meter.port) as client:
        before = holding(client, BASE, 125)
        for address in (BASE, BASE + 2, da + 1, METER_MODEL_ADDRESS, METER_MODEL_ADDRESS + 18,
                        END_MODEL[model_id], 0, 50000):
            result = call(client, "write_register", address, 1)
            assert exception_code(result) == EXC_ILLEGAL_ADDRESS, address
        for address, values in ((BASE + 4, [0x4142] * 16), (da, [5, 0]), (da - 1, [0x3100, 5]),
                                (METER_MODEL_ADDRESS + 6, [0])):
            result = call(client, "write_registers", address, values)
            assert exception_code(result) == EXC_ILLEGAL_ADDRESS, (address, values)
        assert holding(client, BASE, 125) == before, "refused writes change nothing"


def test_read_only_refuses_the_device_address_write():
    da = BASE + 2 + 66
    with program("sunspec", "--interval", "3600", "--read-only") as meter, \
            pymodbus_client(meter.port) as client:
        assert exception_code(call(client, "write_register", da, 5)) == EXC_ILLEGAL_FUNCTION
        assert exception_code(call(client, "write_registers", da, [5])) == EXC_ILLEGAL_FUNCTION
        assert holding(client, da, 1) == [1]
