"""Sites through the Python API and the pytest plugin (site-contract A8, A10): the site keywords
checked as the command line checks them, sim.site() and sim.set_site() beside GET and PUT
/api/sites/{port}, their errors beside the HTTP API's, both unit ids served on sim.port, a fleet
of sites on sim.ports, start_time with and without a site, and the factory fixture serving
sites."""
from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from meter_simulator.app import options
from meter_simulator.testing import MeterSimulator
from support import pymodbus_client, unit_kw

STILL = 3600  # seconds between ticks: no tick runs during a test, what is published stays
SUNS = [0x5375, 0x6E53]
HOUR_S = 3600.0


def control(sim: MeterSimulator, method: str, path: str, body=None) -> tuple[int, dict]:
    """One request to the simulator's control port: (status, JSON answer)."""
    url = urlsplit(sim.http_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request(method, path, body=None if body is None else json.dumps(body))
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"null")
    finally:
        connection.close()


def holding(port: int, address: int, count: int, unit_id: int) -> list[int]:
    with pymodbus_client(port) as client:
        method = client.read_holding_registers
        result = method(address, count=count, **unit_kw(method, unit_id))
        assert not result.isError(), result
        return list(result.registers)


def test_a_site_is_served_on_sim_port_and_sim_site_is_the_apis_site():
    with MeterSimulator(site=True, pv_kwp=8, battery_kwh=10, start_time="12:00", seed=1,
                        interval=STILL, http=True) as sim:
        assert repr(sim) == "<MeterSimulator site running>"
        assert sim.meter_ids == [f"{sim.port}-1", f"{sim.port}-200"]
        site = sim.site()
        status, answer = control(sim, "GET", f"/api/sites/{sim.port}")
        assert status == 200
        assert site == answer
        assert site["port"] == sim.port
        assert site["inverter"]["id"] == f"{sim.port}-1"
        assert site["grid_meter"]["id"] == f"{sim.port}-200"
        assert site["battery"]["capacity_kwh"] == 10.0
        assert site["battery"]["max_w"] == 5000.0  # --battery-kw's default: half the capacity
        assert site["soc_pct"] == 50.0  # a new battery
        assert site["time_of_day_s"] == 12 * HOUR_S  # no tick yet: the start time itself
        assert holding(sim.port, 40000, 2, unit_id=1) == SUNS  # the inverter's SunSpec chain
        assert holding(sim.port, 0, 4, unit_id=200)  # the grid meter, in the seed map


def test_set_site_pins_sets_the_soc_and_releases_as_put_does():
    with MeterSimulator(site=True, pv_kwp=8, battery_kwh=10, start_time="12:00", seed=1,
                        interval=STILL, http=True) as sim:
        site = sim.set_site(load_w=11000)
        assert site == sim.site()
        assert site["pins"] == {"load_w": 11000.0}
        assert site["load_w"] == 11000.0
        assert abs(site["grid_w"] - (site["load_w"] - site["inverter_w"])) <= 0.5
        site = sim.set_site(soc_pct=20, pv_available_w=0)
        assert site["soc_pct"] == 20.0
        assert site["pins"] == {"load_w": 11000.0, "pv_available_w": 0.0}
        assert site["pv_dc_w"] == 0.0
        assert site["battery_w"] == 5000.0  # the whole battery against an 11 kW load
        site = sim.set_site(load_w=None)
        assert site["pins"] == {"pv_available_w": 0.0}
        status, answer = control(sim, "PUT", f"/api/sites/{sim.port}", {"pv_available_w": None})
        assert status == 200
        assert answer["pins"] == {}
        assert sim.site()["pins"] == {}


BAD_CHANGES = [{"soc_pct": 101}, {"load_w": -1}, {"load_w": "1000"}, {"load_w": True},
               {"pv_available_w": 100001}, {"colour": 1}, {"soc_pct": None},
               {"controls": []}, {"controls": {"colour": 1}}, {"controls": {"grid_charge": 2}},
               {"controls": {"battery_discharge_limit_pct": -101}}, {"controls": {"revert_s": 65535}},
               {"controls": {"revert_s": None}}, {"controls": {"pv_limit_pct": "50"}},
               {"controls": {"reserve_soc_pct": True}},
               {"load_w": 10, "controls": {"battery_discharge_limit_w": 5001}}]


@pytest.mark.parametrize("changes", BAD_CHANGES, ids=lambda changes: json.dumps(changes))
def test_a_bad_change_is_the_http_apis_value_error_and_changes_nothing(changes):
    with MeterSimulator(site=True, battery_kwh=10, seed=3, interval=STILL, http=True) as sim:
        before = sim.site()
        with pytest.raises(ValueError) as refused:
            sim.set_site(**changes)
        status, answer = control(sim, "PUT", f"/api/sites/{sim.port}", changes)
        assert status == 400
        assert str(refused.value) == answer["error"]
        assert "\n" not in str(refused.value)
        assert sim.site() == before


def test_controls_set_through_the_api_read_back_in_the_registers_and_move_the_balance():
    with MeterSimulator(site=True, pv_kwp=8, battery_kwh=10, start_time="00:00", seed=1,
                        interval=STILL, http=True) as sim:
        sim.set_site(load_w=1000, pv_available_w=0)
        assert sim.site()["battery_w"] == 1000.0
        status, site = control(sim, "PUT", f"/api/sites/{sim.port}",
                               {"controls": {"battery_discharge_limit_pct": 0, "revert_s": 60,
                                             "grid_charge": True, "reserve_soc_pct": 20}})
        assert status == 200
        assert site["controls"] == {
            "battery_charge_limit_pct": None, "battery_discharge_limit_pct": 0.0, "grid_charge": True,
            "reserve_soc_pct": 20.0, "revert_s": 60, "revert_in_s": 60.0, "pv_limit_pct": None,
            "pv_limit_revert_s": 0, "pv_limit_revert_in_s": None}
        assert (site["battery_w"], site["grid_w"]) == (0.0, 1000.0)
        assert site["battery"]["reserve_pct"] == 20.0
        # 124: StorCtl_Mod, MinRsvPct; OutWRte; InOutWRte_RvrtTms, ChaGriSet; 802 SoCRsvMin
        assert holding(sim.port, 40181, 3, unit_id=1) == [2, 0xFFFF, 2000]
        assert holding(sim.port, 40188, 1, unit_id=1) == [0]
        assert holding(sim.port, 40191, 3, unit_id=1) == [60, 0xFFFF, 1]
        assert holding(sim.port, 40302, 1, unit_id=1) == [2000]
        site = sim.set_site(controls={"battery_discharge_limit_pct": None, "pv_limit_pct": 50})
        assert site["controls"]["battery_discharge_limit_pct"] is None
        assert site["controls"]["pv_limit_pct"] == 50.0
        assert site["battery_w"] == 1000.0  # the limit off: SoC 50 % is above the 20 % reserve
        assert holding(sim.port, 40155, 5, unit_id=1)[::2] == [5000, 0, 1]


def test_a_silent_inverter_is_silent_from_its_first_moment_at_night():
    with MeterSimulator(site=True, pv_kwp=8, battery_kwh=10, start_time="00:00", seed=1,
                        inverter_night="silent", interval=STILL, http=True) as sim:
        sim.set_site(load_w=500, soc_pct=5)  # at the reserve: nothing flows, no tick needed
        assert sim.site()["inverter_answering"] is False
    with MeterSimulator(site=True, pv_kwp=8, start_time="00:00", seed=1, inverter_night="silent",
                        interval=STILL, http=True) as sim:
        site = sim.site()  # no battery, no sun: asleep before any tick or change
        assert (site["tick"], site["inverter_state"], site["inverter_answering"]) == (0, "SLEEPING", False)


def test_battery_controls_without_a_battery_are_a_value_error_and_the_pv_limit_is_not():
    with MeterSimulator(site=True, pv_kwp=4, seed=3, interval=STILL) as sim:
        for name in ("reserve_soc_pct", "grid_charge", "battery_discharge_limit_pct", "revert_s"):
            with pytest.raises(ValueError, match=f"^{name}: this site has no battery$"):
                sim.set_site(controls={name: 0})
        assert sim.set_site(controls={"pv_limit_pct": 50})["controls"]["pv_limit_pct"] == 50.0


def test_soc_without_a_battery_is_a_value_error():
    with MeterSimulator(site=True, pv_kwp=4, seed=3, interval=STILL) as sim:
        assert sim.site()["battery"] is None
        with pytest.raises(ValueError, match="no battery"):
            sim.set_site(soc_pct=50)


def test_a_port_that_is_no_site_is_the_http_apis_key_error():
    with MeterSimulator(site=True, seed=3, interval=STILL, http=True) as sim:
        other = sim.port + 1 if sim.port < 65535 else sim.port - 1
        for call in (lambda: sim.site(other), lambda: sim.set_site(other, load_w=1)):
            with pytest.raises(KeyError) as refused:
                call()
            status, answer = control(sim, "GET", f"/api/sites/{other}")
            assert status == 404
            assert refused.value.args[0] == answer["error"]


def test_a_simulator_of_meters_has_no_site():
    with MeterSimulator(seed=3, interval=STILL) as sim:
        with pytest.raises(KeyError, match=str(sim.port)):
            sim.site()
        with pytest.raises(KeyError, match=str(sim.port)):
            sim.set_site(load_w=1000)


def test_a_fleet_of_sites_names_each_site_after_its_port():
    with MeterSimulator(site=True, count=3, battery_kwh=5, seed=4, interval=STILL) as sim:
        assert len(sim.ports) == 3
        assert [sim.site(port)["port"] for port in sim.ports] == sim.ports
        assert sim.site()["port"] == sim.port == sim.ports[0]
        assert sim.site(str(sim.ports[2]))["inverter"]["id"] == f"{sim.ports[2]}-1"
        sim.set_site(sim.ports[1], soc_pct=80)
        assert [sim.site(port)["soc_pct"] for port in sim.ports] == [50.0, 80.0, 50.0]
        for port in sim.ports:
            assert holding(port, 40000, 2, unit_id=1) == SUNS


@pytest.mark.parametrize(("keywords", "argv"), [
    ({"battery_kwh": 5}, ["--battery-kwh", "5"]),
    ({"battery_kw": 2}, ["--battery-kw", "2"]),
    ({"site": True, "battery_kwh": 201}, ["--site", "--battery-kwh", "201"]),
    ({"site": True, "battery_kwh": -1}, ["--site", "--battery-kwh", "-1"]),
    ({"site": True, "battery_kwh": "abc"}, ["--site", "--battery-kwh", "abc"]),
    ({"site": True, "battery_kwh": 10, "battery_kw": 101}, ["--site", "--battery-kwh", "10",
                                                            "--battery-kw", "101"]),
    ({"site": True, "battery_kw": 2}, ["--site", "--battery-kw", "2"]),
    ({"site": True, "unit_ids": "1-3"}, ["--site", "--unit-ids", "1-3"]),
    ({"site": True, "type": "water"}, ["--site", "--type", "water"]),
    ({"start_time": "25:00"}, ["--start-time", "25:00"]),
    ({"start_time": "12:60"}, ["--start-time", "12:60"]),
    ({"start_time": "noon"}, ["--start-time", "noon"]),
    ({"site": True, "start_time": "abc"}, ["--site", "--start-time", "abc"]),
])
def test_a_bad_site_keyword_is_the_command_lines_value_error(keywords, argv):
    with pytest.raises(options.UsageError) as command_line:
        options.parse_args(argv)
    with pytest.raises(ValueError) as refused:
        MeterSimulator(**keywords)
    assert str(refused.value) == str(command_line.value)
    assert "\n" not in str(refused.value)


def test_site_keywords_are_the_command_lines_options():
    config = MeterSimulator(site=True, pv_kwp=8, battery_kwh=10, battery_kw=3.5,
                            start_time="06:30").config
    assert config.site and config.pv_kwp == 8.0
    assert (config.battery_kwh, config.battery_kw) == (10.0, 3.5)
    assert config.start_time_s == 6 * HOUR_S + 30 * 60
    assert not MeterSimulator(site=False).config.site


def test_start_time_sets_a_meters_time_of_day_without_a_site():
    with MeterSimulator(start_time="23:00", seed=5, interval=STILL) as sim:
        assert sim.meter()["time_of_day_s"] == 23 * HOUR_S
    with MeterSimulator(start_time="23:00", interval=STILL) as sim:  # unseeded: the same
        assert sim.meter()["time_of_day_s"] == 23 * HOUR_S


def site_without_ids(sim: MeterSimulator) -> dict:
    """The site as first published, less what names its (free) port."""
    site = sim.site()
    del site["port"], site["inverter"]["id"], site["grid_meter"]["id"]
    return site


def test_the_same_seed_and_site_keywords_give_the_same_site():
    keywords = {"site": True, "pv_kwp": 8, "battery_kwh": 10, "start_time": "12:00",
                "interval": STILL}
    with MeterSimulator(seed=7, **keywords) as sim:
        first = site_without_ids(sim)
    with MeterSimulator(seed=7, **keywords) as sim:
        assert site_without_ids(sim) == first
    with MeterSimulator(seed=8, **keywords) as sim:
        assert site_without_ids(sim) != first


def test_a_site_at_night_discharges_into_the_load():
    with MeterSimulator(site=True, pv_kwp=8, battery_kwh=10, start_time="23:00", seed=6,
                        interval=STILL) as sim:
        site = sim.site()
        assert site["pv_available_w"] == 0.0
        assert site["load_w"] > 0.0
        assert site["battery_w"] > 0.0
        assert site["inverter_state"] == "STANDBY"


def test_the_factory_fixture_serves_sites(meter_simulator_factory):
    sim = meter_simulator_factory(site=True, battery_kwh=10, interval=STILL)
    other = meter_simulator_factory(site=True, pv_kwp=6, interval=STILL)
    assert sim.site()["battery"]["capacity_kwh"] == 10.0
    assert other.site()["battery"] is None
    assert holding(other.port, 40000, 2, unit_id=1) == SUNS
