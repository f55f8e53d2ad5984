"""A site's gauges on /metrics (site-contract A7): meter_simulator_site_power_watts by flow,
meter_simulator_site_soc_percent and meter_simulator_site_inverter_state, read with Prometheus'
own text parser from the real program with --site, against GET /api/sites of the same tick (a
site pinned with PUT, no tick in between: 1 h interval); the count of series, their labels,
the balance on every scrape of a ticking run, none of them without --site, and none above
1,000 sites.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_control_http import ControlProcess

from meter_simulator.http import metrics
from meter_simulator.model.site import Balance
from meter_simulator.testing import MeterSimulator
from support import scrape

PREFIX = "meter_simulator_"
POWER, SOC, STATE = (PREFIX + name for name in ("site_power_watts", "site_soc_percent",
                                                "site_inverter_state"))
FLOWS = ("load", "pv_dc", "pv_ac", "battery", "inverter", "grid")
ST_CODES = {"SLEEPING": 2, "MPPT": 4, "THROTTLED": 5, "STANDBY": 8}  # SunSpec 103 St
STILL = "3600"  # seconds between ticks: none during a test
HOME = ("--site", "--pv-kwp", "8", "--start-time", "12:00", "--seed", "3")
PIN = {"load_w": 2000, "pv_available_w": 6000}


def site_scrape(program: ControlProcess) -> dict:
    """The three site families of one GET /metrics (absent ones left out), by name."""
    reply = program.call("GET", "/metrics")
    assert reply.status == 200, reply
    families = {family.name: family for family in text_string_to_metric_families(reply.body.decode())}
    return {name: family for name, family in families.items() if name in (POWER, SOC, STATE)}


def series(families: dict, name: str) -> dict[tuple, float]:
    """{label values (site[, flow]): value} of one family; labels checked to be exactly these."""
    family = families.get(name)
    found = {}
    for sample in family.samples if family is not None else ():
        assert sample.name == name, sample
        labels = ("site", "flow") if name == POWER else ("site",)
        assert set(sample.labels) == set(labels), sample
        found[tuple(sample.labels[label] for label in labels)] = sample.value
    return found


@pytest.fixture(scope="module")
def homes():
    """Three sites with a 10 kWh battery that do not tick; the first pinned (2 kW load, 6 kW PV)."""
    with ControlProcess(*HOME, "--battery-kwh", "10", "--interval", STILL, count=3) as program:
        pinned = program.change("PUT", f"/api/sites/{program.port}", PIN)
        assert pinned["pins"] == {"load_w": 2000.0, "pv_available_w": 6000.0}
        yield program


def test_the_gauges_are_the_sites_of_the_same_tick(homes):
    before = homes.get("/api/sites?limit=1000")
    families = site_scrape(homes)
    after = homes.get("/api/sites?limit=1000")
    assert before == after, "a tick ran between the reads"
    assert set(families) == {POWER, SOC, STATE}
    assert all(families[name].type == "gauge" for name in families)
    power, soc, state = (series(families, name) for name in (POWER, SOC, STATE))
    sites = after["sites"]
    assert [site["port"] for site in sites] == [homes.port + i for i in range(3)]
    for site in sites:
        label = str(site["port"])
        for flow in FLOWS:
            assert power[(label, flow)] == site[flow + "_w"], (label, flow)
        assert soc[(label,)] == site["soc_pct"]
        assert state[(label,)] == ST_CODES[site["inverter_state"]]
    assert len(power) == 6 * 3 and len(soc) == len(state) == 3

    # the pinned site: the balance of site-contract A3 in the gauges themselves
    label = str(homes.port)
    flows = {flow: power[(label, flow)] for flow in FLOWS}
    assert flows["load"] == 2000.0 and flows["pv_dc"] == pytest.approx(6000.0)
    assert flows["pv_ac"] == pytest.approx(0.97 * 6000.0)
    assert flows["battery"] == pytest.approx(2000.0 - 5820.0)  # charging: below zero
    assert flows["inverter"] == pytest.approx(flows["pv_ac"] + flows["battery"])
    assert flows["grid"] == pytest.approx(flows["load"] - flows["inverter"], abs=0.5)
    assert state[(label,)] == ST_CODES["MPPT"]


def test_a_new_pin_shows_in_the_next_scrape(homes):
    port = homes.port + 1
    try:
        site = homes.change("PUT", f"/api/sites/{port}", {"load_w": 9000, "pv_available_w": 0})
        power = series(site_scrape(homes), POWER)
        assert power[(str(port), "load")] == 9000.0
        assert power[(str(port), "battery")] == site["battery_w"] == 5000.0  # discharging at its most
        assert power[(str(port), "grid")] == site["grid_w"] == pytest.approx(4000.0)  # importing
        assert series(site_scrape(homes), STATE)[(str(port),)] == ST_CODES["STANDBY"]
    finally:
        homes.change("PUT", f"/api/sites/{port}", {"load_w": None, "pv_available_w": None})


def test_sites_without_a_battery_have_no_state_of_charge():
    with ControlProcess(*HOME, "--interval", STILL, count=2) as program:
        program.change("PUT", f"/api/sites/{program.port}", {"load_w": 700, "pv_available_w": 0})
        families = site_scrape(program)
        sites = program.get("/api/sites")["sites"]
    assert set(families) == {POWER, STATE}
    power, state = series(families, POWER), series(families, STATE)
    assert len(power) == 6 * 2 and len(state) == 2
    for site in sites:
        assert site["soc_pct"] is None
        assert power[(str(site["port"]), "battery")] == 0.0
        assert state[(str(site["port"]),)] == ST_CODES[site["inverter_state"]]
    assert state[(str(program.port),)] == ST_CODES["SLEEPING"]
    assert power[(str(program.port), "grid")] == 700.0


def test_every_scrape_of_a_ticking_run_balances():
    with ControlProcess(*HOME, "--battery-kwh", "5", "--interval", "0.05", count=2) as program:
        seen = set()
        for _ in range(20):
            power = series(site_scrape(program), POWER)
            for port in (program.port, program.port + 1):
                flows = {flow: power[(str(port), flow)] for flow in FLOWS}
                assert flows["grid"] == pytest.approx(flows["load"] - flows["inverter"], abs=0.5), flows
                assert flows["inverter"] == pytest.approx(flows["pv_ac"] + flows["battery"], abs=0.5)
                assert flows["pv_ac"] == pytest.approx(0.97 * flows["pv_dc"], abs=0.5)
                seen.add(flows["load"])
        assert len(seen) > 2, "the household's load moves from tick to tick"


@pytest.mark.parametrize("keywords", [{}, {"count": 2, "pv_kwp": 5}, {"type": "water"}])
def test_a_run_without_site_has_none_of_the_families(keywords):
    with MeterSimulator(http=True, interval=3600, seed=1, **keywords) as sim:
        families = scrape(sim.http_url)
    assert PREFIX + "meters" in families
    assert not {name for name in families if name.startswith(PREFIX + "site_")}


def stub_collector(sites: int) -> SimpleNamespace:
    """What site_metrics reads of a collector: a control whose sites share one balance."""
    balance = Balance(load_w=1.0, pv_dc_w=2.0, pv_ac_w=1.94, battery_w=-0.94, inverter_w=1.0,
                      grid_w=0.0, soc_pct=50.0, state=4, has_battery=True)
    by_port = dict.fromkeys(range(20000, 20000 + sites))
    balances = [(port, balance) for port in by_port]
    return SimpleNamespace(control=SimpleNamespace(sites=SimpleNamespace(
        by_port=by_port, balances=lambda: balances)))


@pytest.mark.parametrize(("sites", "exported"), [(1000, True), (1001, False)])
def test_above_1000_sites_no_site_gauges(sites, exported):
    collected = metrics.SimulatorCollector.site_metrics(stub_collector(sites))
    families = {family.name: family for family in collected}
    if exported:
        assert [len(families[name].samples) for name in (POWER, SOC, STATE)] == [6000, 1000, 1000]
    else:
        assert families == {}
