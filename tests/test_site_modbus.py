"""A site on a real port, read with pysunspec2 and pymodbus: the chain, the balance across both unit
ids on the values of one tick (site contract sections A2-A6), the control API's view of it, and
the battery's limits over simulated hours."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import struct
import urllib.request

import pytest

from meter_simulator.app.options import parse_args
from meter_simulator.app.simulator import Simulator
from support import pymodbus_client, unit_kw, wait_for

sunspec_client = pytest.importorskip("sunspec2.modbus.client")

STILL = "3600"  # an interval no test waits for: every read shows the same tick
CHAIN_WITH_BATTERY = [1, 103, 120, 123, 124, 160, 802]
CHAIN_WITHOUT = [1, 103, 120, 123, 160]


@contextlib.contextmanager
def running(*argv: str):
    """A site run on free loopback ports, its control port too."""
    config = dataclasses.replace(parse_args(["--site", "--http", "0", *argv]), port=0)
    simulator = Simulator(config, environ={})
    simulator.open()
    try:
        simulator.serve()
        yield simulator
    finally:
        simulator.stop()
        simulator.stopped()


def http(simulator, method: str, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(simulator.http_url.rstrip("/") + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def site_of(simulator, body=None) -> dict:
    port = simulator.server.port
    status, site = http(simulator, "PUT" if body else "GET", f"/api/sites/{port}", body)
    assert status == 200, site
    return site


def scanned(port: int, unit_id: int):
    device = sunspec_client.SunSpecModbusClientDeviceTCP(slave_id=unit_id, ipaddr="127.0.0.1",
                                                           ipport=port, timeout=5)
    device.scan()
    return device


def model_ids(device) -> list[int]:
    return [key for key in device.models if isinstance(key, int)]


def close_to(shown: float, expected: float, count: float) -> bool:
    """Within one count of the register's resolution (per register summed) plus 0.5 %."""
    return abs(shown - expected) <= count + 0.005 * abs(expected)


def evcc_view(port: int, battery: bool) -> dict:
    """What evcc's sunspec-hybrid template computes, decoded with each point's scale factor."""
    inverter = scanned(port, 1)
    grid = scanned(port, 200)
    try:
        model_103 = inverter.models[103][0]
        modules = inverter.models[160][0].module
        view = {"103_W": model_103.W.cvalue, "103_DCW": model_103.DCW.cvalue, "St": model_103.St.value,
                "pv": modules[0].DCW.cvalue + modules[1].DCW.cvalue,
                "grid": grid.models[203][0].W.cvalue}
        if battery:
            view["battery"] = -modules[2].DCW.cvalue + modules[3].DCW.cvalue
            view["802_W"] = inverter.models[802][0].W.cvalue
            view["soc"] = inverter.models[124][0].ChaState.cvalue
            view["802_SoC"] = inverter.models[802][0].SoC.cvalue
        return view
    finally:
        inverter.close()
        grid.close()


def assert_balances(site: dict, view: dict) -> None:
    """Section A6 on the values of one tick, and A3's identities on the API's values."""
    assert abs(site["grid_w"] - (site["load_w"] - site["inverter_w"])) <= 0.5
    assert abs(site["inverter_w"] - (site["pv_ac_w"] + site["battery_w"])) <= 0.5
    assert abs(site["pv_ac_w"] - 0.97 * site["pv_dc_w"]) <= 0.5
    assert site["pv_dc_w"] <= site["pv_available_w"] + 0.5
    assert close_to(view["grid"], site["grid_w"], 1)
    assert close_to(view["pv"], site["pv_dc_w"], 2)
    assert close_to(view["103_DCW"], site["pv_dc_w"], 1)
    assert close_to(view["103_W"], site["inverter_w"], 1)
    if "battery" in view:
        assert close_to(view["battery"], site["battery_w"], 2)
        assert close_to(view["802_W"], site["battery_w"], 1)
        assert close_to(view["soc"], site["soc_pct"], 0.01)
        assert view["soc"] == view["802_SoC"]
    assert view["St"] == {"MPPT": 4, "THROTTLED": 5, "SLEEPING": 2, "STANDBY": 8}[site["inverter_state"]]


def test_a_scan_of_unit_1_finds_the_models_in_order_and_unit_200_the_grid_meter():
    with running("--pv-kwp", "8", "--battery-kwh", "10", "--profile", "sunspec",
                 "--interval", STILL) as simulator:
        port = simulator.server.port
        inverter = scanned(port, 1)
        grid = scanned(port, 200)
        try:
            assert model_ids(inverter) == CHAIN_WITH_BATTERY
            assert model_ids(grid) == [1, 203]
            common = inverter.models[1][0]
            common.read()
            assert (common.Mn.value, common.Md.value, common.Opt.value) == (
                "meter-simulator", "hybrid-inverter", "site")
            grid_common = grid.models[1][0]
            assert common.SN.value != grid_common.SN.value
            assert grid_common.DA.value == 200
        finally:
            inverter.close()
            grid.close()


def test_without_a_battery_the_chain_has_no_storage_models():
    with running("--pv-kwp", "8", "--profile", "sunspec", "--interval", STILL) as simulator:
        device = scanned(simulator.server.port, 1)
        try:
            assert model_ids(device) == CHAIN_WITHOUT
            assert len(device.models[160][0].module) == 2
        finally:
            device.close()


@pytest.mark.parametrize("name, start, pins, battery", [
    ("noon", "12:00", {"load_w": 2000, "pv_available_w": 6000}, True),
    ("night discharging", "23:00", {"load_w": 1500}, True),
    ("no battery", "12:00", {"load_w": 900, "pv_available_w": 5000}, False),
    ("full", "12:00", {"load_w": 500, "pv_available_w": 7000, "soc_pct": 100}, True),
    ("empty", "23:00", {"load_w": 2500, "soc_pct": 5}, True),
    ("11 kW", "23:00", {"load_w": 11000}, True),
    ("throttled", "12:00", {"load_w": 0, "pv_available_w": 20000, "soc_pct": 100}, True),
])
def test_what_an_energy_manager_computes_balances_on_one_tick(name, start, pins, battery):
    argv = ["--pv-kwp", "8", "--profile", "sunspec", "--start-time", start, "--interval", STILL]
    with running(*argv, *(["--battery-kwh", "10"] if battery else [])) as simulator:
        site = site_of(simulator, pins)
        view = evcc_view(simulator.server.port, battery)
        assert site == site_of(simulator)  # no tick in between: the reads show this balance
        assert_balances(site, view)
        if name == "night discharging":
            assert site["battery_w"] == pytest.approx(1500.0) and site["inverter_state"] == "STANDBY"
        elif name == "full":
            assert site["battery_w"] == 0.0 and site["grid_w"] < 0.0
        elif name == "empty":
            assert site["battery_w"] == 0.0 and site["grid_w"] == pytest.approx(2500.0)
            assert site["inverter_state"] == "SLEEPING" and view["103_W"] == 0
        elif name == "11 kW":
            assert (site["battery_w"], site["grid_w"]) == (5000.0, 6000.0)
        elif name == "throttled":
            assert site["inverter_state"] == "THROTTLED" and view["103_W"] == 8000


@pytest.mark.parametrize("profile", ["sdm630", "sunspec-float", "seed"])
def test_the_grid_meter_shows_the_balance_in_every_profile(profile):
    with running("--pv-kwp", "8", "--battery-kwh", "10", "--profile", profile, "--start-time", "12:00",
                 "--interval", STILL) as simulator:
        site = site_of(simulator, {"load_w": 300, "pv_available_w": 9000, "soc_pct": 100})
        assert site["grid_w"] < -7000  # exporting
        with pymodbus_client(simulator.server.port) as client:
            kw = unit_kw(client.read_holding_registers, 200)
            if profile == "sdm630":
                answer = client.read_input_registers(0x0034, count=2, **kw)
                shown = struct.unpack(">f", struct.pack(">HH", *answer.registers))[0]
            elif profile == "sunspec-float":
                answer = client.read_holding_registers(40070, count=2, **kw)
                assert answer.registers == [213, 124]
                answer = client.read_holding_registers(40098, count=2, **kw)  # W
                shown = struct.unpack(">f", struct.pack(">HH", *answer.registers))[0]
            else:  # the seed map's power is unsigned import: 0 while exporting
                answer = client.read_holding_registers(2, count=2, **kw)
                shown = -float(answer.registers[0] | answer.registers[1] << 16)
        expected = 0.0 if profile == "seed" else site["grid_w"]
        assert close_to(shown, expected, 1)


def test_a_read_of_both_unit_ids_on_one_connection_after_a_change_shows_the_change():
    with running("--pv-kwp", "8", "--battery-kwh", "10", "--profile", "sunspec",
                 "--start-time", "23:00", "--interval", "0.2") as simulator:
        for load_w in (800, 4000, 11000):
            site = site_of(simulator, {"load_w": load_w})
            with pymodbus_client(simulator.server.port) as client:
                grid_w = client.read_holding_registers(40088, count=1, **unit_kw(
                    client.read_holding_registers, 200)).registers[0]
                inverter_w = client.read_holding_registers(40084, count=1, **unit_kw(
                    client.read_holding_registers, 1)).registers[0]
            signed = [value - 65536 if value >= 32768 else value for value in (grid_w, inverter_w)]
            # ticks move the SoC, not the pinned load: the two units always add up to the load
            assert abs(signed[0] + signed[1] - load_w) <= 2, (site, signed)


def test_other_unit_ids_get_0x0b_and_unit_1_has_no_input_registers_or_coils():
    with running("--pv-kwp", "8", "--interval", STILL) as simulator, \
            pymodbus_client(simulator.server.port) as client:
        for unit_id in (0, 2, 199, 201, 255):
            answer = client.read_holding_registers(40000, count=2, **unit_kw(client.read_holding_registers,
                                                                            unit_id))
            assert answer.isError() and answer.exception_code == 0x0B
        kw = unit_kw(client.read_holding_registers, 1)
        assert client.read_input_registers(40000, count=2, **kw).exception_code == 0x02
        assert client.read_coils(0, count=1, **kw).exception_code == 0x01
        assert client.read_holding_registers(39999, count=2, **kw).exception_code == 0x02
        assert client.read_holding_registers(40226, count=2, **kw).registers == [0xFFFF, 0]
        assert client.read_holding_registers(40227, count=2, **kw).exception_code == 0x02
        assert client.write_register(40100, 1, **kw).exception_code == 0x02


def test_the_soc_stays_within_its_limits_over_simulated_hours():
    with running("--pv-kwp", "8", "--battery-kwh", "10", "--start-time", "21:00", "--speed", "20000",
                 "--interval", "0.05") as simulator:
        site_of(simulator, {"load_w": 4000, "pv_available_w": 0})
        socs: list[float] = []

        def emptied() -> bool:
            socs.append(site_of(simulator)["soc_pct"])
            return socs[-1] <= 5.0 + 1e-9

        wait_for(emptied, timeout=30)
        site = site_of(simulator, {"load_w": 0, "pv_available_w": 12000})

        def filled() -> bool:
            socs.append(site_of(simulator)["soc_pct"])
            return socs[-1] >= 100.0

        wait_for(filled, timeout=30)
        for _ in range(5):
            socs.append(site_of(simulator)["soc_pct"])
        assert min(socs) >= 5.0 - 0.1 and max(socs) <= 100.0
        site = site_of(simulator)
        assert site["battery_w"] == 0.0 and site["battery"]["charged_kwh"] > 9.0


def test_the_control_api_refuses_bad_site_changes_and_changes_nothing():
    with running("--pv-kwp", "8", "--interval", STILL) as simulator:
        port = simulator.server.port
        before = site_of(simulator, {"load_w": 1000})
        for body, words in [({"load_w": -1}, "load_w must be from 0 to 100000"),
                            ({"load_w": "1"}, "load_w must be a finite number"),
                            ({"pv_available_w": True}, "must be a finite number"),
                            ({"soc_pct": 50}, "no battery"),
                            ({"bogus": 1}, "unknown site key"),
                            ([1], "JSON object")]:
            status, answer = http(simulator, "PUT", f"/api/sites/{port}", body)
            assert status == 400 and words in answer["error"], answer
        assert site_of(simulator) == before
        assert http(simulator, "GET", f"/api/sites/{port + 1}")[0] == 404
        assert http(simulator, "GET", "/api/sites/abc")[0] == 404
        page = http(simulator, "GET", "/api/sites?limit=1")[1]
        assert (page["count"], len(page["sites"])) == (1, 1)
        assert http(simulator, "GET", "/api/sites?limit=0")[0] == 400


def test_the_devices_are_meters_of_the_control_api():
    with running("--pv-kwp", "8", "--battery-kwh", "10", "--interval", STILL) as simulator:
        port = simulator.server.port
        site = site_of(simulator, {"load_w": 3000, "pv_available_w": 1000})
        ids = [meter["id"] for meter in http(simulator, "GET", "/api/meters")[1]["meters"]]
        assert ids == [f"{port}-1", f"{port}-200"]
        inverter = http(simulator, "GET", f"/api/meters/{port}-1")[1]
        grid = http(simulator, "GET", f"/api/meters/{port}-200")[1]
        assert inverter["type"] == "inverter" and inverter["rate"] == pytest.approx(site["inverter_w"])
        assert inverter["readings"]["battery_soc"] == pytest.approx(site["soc_pct"])
        assert grid["readings"]["power_total"] == pytest.approx(site["grid_w"], abs=1e-6)
        status, answer = http(simulator, "PUT", f"/api/meters/{port}-200/overrides", {"power_total": 5})
        assert status == 400 and "load_w" in answer["error"]
        status, _ = http(simulator, "PUT", f"/api/meters/{port}-200/overrides", {"voltage_l1": 240})
        assert status == 200
        assert site_of(simulator)["grid_w"] == pytest.approx(site["grid_w"])


def test_an_offline_fault_on_the_inverter_leaves_the_grid_meter_answering():
    with running("--pv-kwp", "8", "--interval", STILL) as simulator:
        port = simulator.server.port
        fault = {"type": "offline", "scope": {"meter": f"{port}-1"}}
        status, _ = http(simulator, "POST", "/api/faults", fault)
        assert status in (200, 201)
        with pymodbus_client(port) as client:
            kw = unit_kw(client.read_holding_registers, 1)
            answer = client.read_holding_registers(40000, count=2, **kw)
            assert answer.isError() and answer.exception_code == 0x0B
            answer = client.read_holding_registers(0, count=2, **unit_kw(client.read_holding_registers, 200))
            assert not answer.isError()  # the seed map
