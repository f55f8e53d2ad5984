"""--start-time on any run (site-contract A10), through the real program and its control port: a
meter's and a site's time_of_day_s start at the given time and follow the simulated clock, a
seeded run stays reproducible, and a site started at 23:00 has no sun and runs on its battery."""
from __future__ import annotations

import time

import pytest
from test_control_http import ControlProcess

from support import wait_for

ELEVEN_PM_S = 23 * 3600.0
DAY_S = 86400.0
STILL = "3600"  # --interval: no tick while a test reads the first one


def since_eleven(time_of_day_s: float) -> float:
    """Simulated seconds from 23:00 to a time of day (past midnight too)."""
    return (time_of_day_s - ELEVEN_PM_S) % DAY_S


@pytest.mark.parametrize("speed", ["1", "100"])
def test_a_meters_time_of_day_starts_at_the_start_time(speed):
    started = time.monotonic()
    with ControlProcess("--start-time", "23:00", "--speed", speed, "--interval", "0.2") as meter:
        shown = [meter.meter(meter.port)["time_of_day_s"]]
        wait_for(lambda: shown.append(meter.meter(meter.port)["time_of_day_s"]) or
                 since_eleven(shown[-1]) > 0, 10)
        simulated_s = (time.monotonic() - started) * float(speed)
        status, err = meter.stop()
    assert status == 0, err
    assert all(0.0 <= since_eleven(value) <= simulated_s for value in shown), (shown, simulated_s)
    assert [since_eleven(value) for value in shown] == sorted(since_eleven(value) for value in shown)


def first_view(*options: str, path: str = "/api/meters/{port}") -> dict:
    """What the control port shows of a run at tick 0 (a long --interval), less what names the
    port."""
    with ControlProcess(*options, "--interval", STILL) as run:
        view = run.get(path.format(port=run.port))
        status, err = run.stop()
    assert status == 0, err
    assert view["tick"] == 0
    for name in ("id", "port", "serial", "inverter", "grid_meter"):
        view.pop(name, None)
    return view


def test_a_seeded_run_with_a_start_time_is_reproducible():
    options = ("--seed", "7", "--start-time", "23:00")
    first = first_view(*options)
    assert first["time_of_day_s"] == ELEVEN_PM_S
    assert first_view(*options)["readings"] == first["readings"]
    assert first_view("--seed", "8", "--start-time", "23:00")["readings"] != first["readings"]
    night = first_view(*options, "--pv-kwp", "5")
    assert night["readings"]["pv_power"] == 0.0
    noon = first_view("--seed", "7", "--start-time", "12:00", "--pv-kwp", "5")
    assert noon["time_of_day_s"] == 12 * 3600.0
    assert noon["readings"]["pv_power"] > 0.0  # the panels follow the start time


def test_a_seeded_site_with_a_start_time_is_reproducible():
    options = ("--site", "--pv-kwp", "8", "--battery-kwh", "10", "--seed", "7", "--start-time", "13:00")
    first = first_view(*options, path="/api/sites/{port}")
    assert first["time_of_day_s"] == 13 * 3600.0
    assert first["pv_available_w"] > 0.0
    assert first_view(*options, path="/api/sites/{port}") == first


def test_a_site_at_eleven_pm_has_no_sun_and_discharges_its_battery():
    started = time.monotonic()
    with ControlProcess("--site", "--pv-kwp", "8", "--battery-kwh", "10", "--start-time", "23:00",
                        "--speed", "10", "--interval", "0.2") as home:
        views = []

        def ticked() -> bool:
            views.append(home.get(f"/api/sites/{home.port}"))
            return views[-1]["tick"] >= 3

        wait_for(ticked, 10)
        simulated_s = (time.monotonic() - started) * 10
        status, err = home.stop()
    assert status == 0, err
    for site in views:
        assert 0.0 <= since_eleven(site["time_of_day_s"]) <= simulated_s, site
        assert site["pv_available_w"] == 0.0 and site["pv_dc_w"] == 0.0, site
        above_reserve = site["soc_pct"] > site["battery"]["reserve_pct"]
        if site["load_w"] > 0.0 and above_reserve:
            assert site["battery_w"] > 0.0, site
            assert site["inverter_state"] == "STANDBY", site
    assert any(site["battery_w"] > 0.0 for site in views)
    assert views[-1]["soc_pct"] < 50.0  # discharging from a new battery's 50 %
