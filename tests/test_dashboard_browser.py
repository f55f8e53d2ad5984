"""The dashboard in a real browser (control-contract section 11): headless Chromium driven by
selenium loads the page, compares what it shows with Modbus reads, clicks its buttons and pages
through a thousand meters; the program is restarted under it.

Runs in its own tox environment (`tox -e browser`): the page is JavaScript in Chromium, the same
on every Python, while the server side it calls is tested on every Python by the HTTP tests.
It skips where selenium is not installed, and where Chromium or its driver are missing, except
in CI (CI set), which must have them (Debian: apt-get install chromium chromium-driver).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import time
import urllib.request

import pytest

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError as error:  # the browser environment has it; the others skip
    pytest.skip(f"selenium is not installed ({error}); tox -e browser runs this module",
                allow_module_level=True)

from test_control_http import ControlProcess
from test_testing_api import REGISTERS, decoded, holding

from meter_simulator.testing import MeterSimulator
from support import connect, modbus_exchange, pymodbus_client, u32, unit_kw, wait_for

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
EFFECT_S = 2.0  # a click's effect is visible to a Modbus read within 2 s (section 11)
LOAD_S = 20.0  # generous: a page and its first answers on a loaded machine
PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
READ_HOLDING = 0x03
ACTIONS = ("online", "offline", "reset", "fault-delay", "fault-no-answer", "fault-busy",
           "fault-freeze", "clear-faults")


def chromium_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        reason = f"{', '.join(missing)} not found (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must have them")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module; every test loads its own page in it."""
    chromium_or_skip()
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium's manager must not look for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(LOAD_S)
    try:
        yield driver
    finally:
        driver.quit()


# --- reading the page ---------------------------------------------------------------------------

def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def row_ids(driver) -> list[str]:
    return js(driver, "return [...document.querySelectorAll('#meter-rows tr')]"
                      ".map(row => row.dataset.meter)")


def row_reading(driver, meter_id: str, name: str) -> str:
    return js(driver, "const cell = document.querySelector("
                      "`tr[data-meter=\"${arguments[0]}\"] [data-reading=\"${arguments[1]}\"]`);"
                      "return cell ? cell.textContent : null", meter_id, name)


def panel_readings(driver) -> dict[str, str]:
    return js(driver, "const out = {}; for (const cell of document.querySelectorAll("
                      "'#meter-details [data-reading]')) out[cell.dataset.reading] = cell.textContent;"
                      "return out")


def summary_meters(driver) -> str:
    return js(driver, "return document.querySelector('[data-summary=\"meters\"]').textContent")


def until(condition, timeout: float = LOAD_S):
    """wait_for, taking an element not there yet, or re-rendered, as 'not yet'."""
    def attempt():
        try:
            return condition()
        except (NoSuchElementException, StaleElementReferenceException):
            return None
    return wait_for(attempt, timeout, interval=0.05)


def open_page(driver, url: str, rows: int) -> None:
    driver.get(url)
    until(lambda: len(row_ids(driver)) == rows)


def click_row(driver, meter_id: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#meter-rows tr[data-meter="{meter_id}"]').click()
    until(lambda: driver.find_element(By.ID, "meter-details").get_attribute("data-meter") == meter_id
          and panel_readings(driver).get("voltage_l1", panel_readings(driver).get("flow")))


def click(driver, action: str) -> float:
    """Click a button of the details panel; the time of the click."""
    button = driver.find_element(By.CSS_SELECTOR, f'#meter-details button[data-action="{action}"]')
    assert button.is_enabled(), action
    clicked = time.monotonic()
    button.click()
    return clicked


def within_effect_time(clicked: float, condition) -> None:
    """condition holds for a Modbus read within EFFECT_S of the click."""
    wait_for(condition, max(0.1, clicked + EFFECT_S - time.monotonic()), interval=0.02)


def severe_logs(driver) -> list[str]:
    """The page's severe console entries; not the refused polls of an earlier test's page, whose
    program stopped before the browser left it (the log holds them until it is read)."""
    origin = "/".join(driver.current_url.split("/")[:3]) + "/"
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
            and not ("ERR_CONNECTION_REFUSED" in entry["message"]
                     and not entry["message"].startswith(origin))]


def api(url: str, path: str):
    with urllib.request.urlopen(url + path, timeout=10) as answer:
        return json.loads(answer.read().decode("utf-8"))


def near(shown: str, value: float, scale: float) -> bool:
    """A page value equals a register's within one count of its scale."""
    return abs(float(shown) - value) <= 1.0001 / scale


# --- readings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("meter_type", ["electric", "water"])
def test_the_page_shows_what_a_modbus_read_shows(browser, meter_type):
    with MeterSimulator(type=meter_type, count=3, seed=5, interval=3600, http=True) as sim:
        open_page(browser, sim.http_url, rows=3)
        assert summary_meters(browser) == "3"
        assert row_ids(browser) == sorted(sim.meter_ids, key=int)  # the API lists by port
        total_name, rate_name = (("energy_import", "power_total") if meter_type == "electric"
                                 else ("volume_total", "flow"))
        for meter_id, port in zip(sim.meter_ids, sim.ports):
            with pymodbus_client(port) as client:
                registers = decoded(holding(client), meter_type)
            total_scale = REGISTERS[meter_type][total_name][2]
            rate_scale = REGISTERS[meter_type][rate_name][2]
            total, rate = row_reading(browser, meter_id, "total"), row_reading(browser, meter_id, "rate")
            assert PLAIN_NUMBER.fullmatch(total) and PLAIN_NUMBER.fullmatch(rate), (total, rate)
            assert near(total, registers[total_name], total_scale), (meter_id, total, registers)
            assert near(rate, registers[rate_name], rate_scale), (meter_id, rate, registers)

        chosen = sim.meter_ids[1]
        click_row(browser, chosen)
        shown = panel_readings(browser)
        with pymodbus_client(sim.ports[1]) as client:
            registers = decoded(holding(client), meter_type)
        for name, (_, _, scale) in REGISTERS[meter_type].items():
            assert PLAIN_NUMBER.fullmatch(shown[name]), (name, shown[name])
            assert near(shown[name], registers[name], scale), (name, shown[name], registers[name])
        if meter_type == "water":
            assert near(shown["temperature"], registers["temperature"], 10)
        # every reading of the API is in the panel, as a plain number
        assert set(sim.read(chosen)) <= set(shown)
        assert all(PLAIN_NUMBER.fullmatch(text) for text in shown.values()), shown
        assert severe_logs(browser) == []  # no script error, no refused load (the CSP)


def test_a_device_profiles_float_registers_show_at_their_precision(browser):
    with MeterSimulator(profile="sdm630", seed=2, interval=3600, http=True) as sim:
        open_page(browser, sim.http_url, rows=1)
        click_row(browser, sim.meter_ids[0])
        shown = panel_readings(browser)
        with pymodbus_client(sim.port) as client:
            method = client.read_input_registers
            result = method(0, count=2, **unit_kw(method))  # voltage L1, float32 big-endian
            assert not result.isError(), result
        volts = struct.unpack(">f", struct.pack(">HH", *result.registers))[0]
        assert abs(float(shown["voltage_l1"]) - volts) <= abs(volts) * 2 ** -23, (shown["voltage_l1"], volts)


def test_the_chart_draws_the_selected_meters_rate(browser):
    with MeterSimulator(count=2, seed=3, interval=0.1, http=True) as sim:
        open_page(browser, sim.http_url, rows=2)
        click_row(browser, sim.meter_ids[0])
        until(lambda: int(browser.find_element(By.ID, "chart").get_attribute("data-points")) >= 3)
        painted = js(browser, "const c = document.getElementById('chart');"
                              "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                              "let blue = 0; for (let i = 0; i < d.length; i += 4)"
                              " if (d[i + 2] > 200 && d[i] < 80 && d[i + 3] > 0) blue += 1; return blue")
        assert painted > 0  # the rate's line, drawn in the accent blue (none before a sample)


# --- a site: its flows beside its two meters (site-contract A7) --------------------------------

SITE_FLOWS = ("load", "pv_dc", "pv_ac", "battery", "inverter", "grid")


def site_flows(driver, port: int) -> dict[str, str]:
    """The data-flow cells of the site panel of this port, by flow."""
    return js(driver, "const out = {}; for (const cell of document.querySelectorAll("
                      "`[data-site=\"${arguments[0]}\"] [data-flow]`))"
                      " out[cell.dataset.flow] = cell.textContent; return out", str(port))


def directions(driver) -> dict[str, str]:
    return js(driver, "const out = {}; for (const cell of document.querySelectorAll("
                      "'#site-panel [data-direction]')) out[cell.dataset.direction] = cell.textContent;"
                      "return out")


def shows_site(driver, site: dict) -> bool:
    """The panel shows the site's flows as plain numbers within their shown precision (0.1 W, and
    0.01 % for the state of charge)."""
    shown = site_flows(driver, site["port"])
    if set(shown) != {*SITE_FLOWS, "soc"} or not all(PLAIN_NUMBER.fullmatch(text) for text in shown.values()):
        return False
    return (all(near(shown[flow], site[flow + "_w"], 10) for flow in SITE_FLOWS)
            and near(shown["soc"], site["soc_pct"], 100))


def pin_site(program: ControlProcess, **pins) -> dict:
    return program.change("PUT", f"/api/sites/{program.port}", pins)


def test_a_sites_flows_show_beside_its_two_meters(browser):
    options = ("--site", "--pv-kwp", "8", "--battery-kwh", "10", "--start-time", "12:00",
               "--seed", "4", "--interval", "3600")
    with ControlProcess(*options, count=2) as program:
        port, url = program.port, f"http://127.0.0.1:{program.http_port}/"
        site = pin_site(program, load_w=2000, pv_available_w=6000)  # the battery takes the surplus
        open_page(browser, url, rows=4)
        assert js(browser, "return document.querySelector('[data-summary=\"sites\"]').textContent") == "2"
        assert not browser.find_element(By.ID, "site-panel").is_displayed()
        click_row(browser, f"{port}-200")
        until(lambda: shows_site(browser, site))
        assert directions(browser)["battery"] == "charging" and site["battery_w"] < -3000
        # the grid meter's power and currents are the balance's: no pin offered for them
        offered = js(browser, "return [...document.querySelectorAll('#pin-name option')].map(o => o.value)")
        assert "voltage_l1" in offered and "frequency" in offered
        assert not {"power_total", "current_l1", "current_l2", "current_l3"} & set(offered)

        site = pin_site(program, load_w=9000, pv_available_w=0)  # the evening: the battery and grid
        until(lambda: shows_site(browser, site))
        assert (site["battery_w"], site["grid_w"]) == (5000.0, pytest.approx(4000.0))
        assert {key: directions(browser)[key] for key in ("battery", "inverter", "grid")} == {
            "battery": "discharging", "inverter": "delivering", "grid": "import"}
        site = pin_site(program, load_w=500, pv_available_w=6000)  # the battery full-on, the rest exported
        until(lambda: shows_site(browser, site))
        assert site["grid_w"] < -100
        assert (directions(browser)["battery"], directions(browser)["grid"]) == ("charging", "export")

        # the inverter, selected from the site panel: its readings, and no pin of its own
        browser.find_element(By.ID, "site-inverter").click()
        until(lambda: browser.find_element(By.ID, "meter-details").get_attribute("data-meter") == f"{port}-1"
              and "inverter_power" in panel_readings(browser))
        shown = panel_readings(browser)
        readings = program.meter(f"{port}-1")["readings"]
        assert all(PLAIN_NUMBER.fullmatch(text) for text in shown.values()), shown
        assert float(shown["inverter_power"]) == pytest.approx(readings["inverter_power"], abs=1e-6)
        assert float(shown["battery_soc"]) == pytest.approx(readings["battery_soc"], abs=1e-6)
        assert not browser.find_element(By.ID, "pin-form").is_displayed()
        assert browser.find_element(By.CSS_SELECTOR, f'[data-site="{port}"]').is_displayed()

        # the site's own pins, from its panel
        browser.find_element(By.CSS_SELECTOR, '#site-pin-name option[value="load_w"]').click()
        browser.find_element(By.ID, "site-pin-value").send_keys("1234.5")
        clicked = click(browser, "site-pin")
        within_effect_time(clicked, lambda: program.get(f"/api/sites/{port}")["pins"]["load_w"] == 1234.5)
        until(lambda: site_flows(browser, port)["load"] == "1234.5")
        clicked = click(browser, "site-release-all")
        within_effect_time(clicked, lambda: program.get(f"/api/sites/{port}")["pins"] == {})
        assert program.get(f"/api/sites/{port + 1}")["pins"] == {}  # the other site never saw any
        assert severe_logs(browser) == []
        browser.get("about:blank")  # no poll of the stopped program logs into the next test


# --- buttons ------------------------------------------------------------------------------------

def test_every_button_takes_effect_on_the_modbus_side_within_2_s(browser):
    with MeterSimulator(count=2, seed=4, interval=0.1, http=True) as sim:
        meter_id, port = sim.meter_ids[1], sim.ports[1]
        open_page(browser, sim.http_url, rows=2)
        click_row(browser, meter_id)
        for action in ACTIONS:
            assert browser.find_element(By.CSS_SELECTOR, f'#meter-details [data-action="{action}"]')
        with pymodbus_client(port) as client:
            clicked = click(browser, "offline")
            within_effect_time(clicked, lambda: holding(client, 100, 1) == [0])
            until(lambda: row_reading(browser, meter_id, "total") is not None
                  and "offline" in browser.find_element(By.ID, "details-state").text)
            clicked = click(browser, "online")
            within_effect_time(clicked, lambda: holding(client, 100, 1) == [1])

            sim.set_total(1234.5, meter=meter_id)
            clicked = click(browser, "reset")
            within_effect_time(clicked, lambda: u32(holding(client, 0, 2)) < 100)

            clicked = click(browser, "fault-busy")
            within_effect_time(clicked, lambda: exception_code(client) == 6)
            clicked = click(browser, "clear-faults")
            within_effect_time(clicked, lambda: exception_code(client) is None)

            # a fault's own end button stays one element while the fault counts its hits
            click(browser, "fault-busy")
            end = until(lambda: browser.find_element(By.CSS_SELECTOR, '#faults [data-action="end-fault"]'))
            assert exception_code(client) == 6
            until(lambda: "applied 1" in browser.find_element(By.ID, "faults").text)
            assert exception_code(client) == 6
            until(lambda: "applied 2" in browser.find_element(By.ID, "faults").text)
            clicked = time.monotonic()
            end.click()  # found before the refreshes: not stale
            within_effect_time(clicked, lambda: exception_code(client) is None)

            # clicks go in order, each after the one before has its answer: the last one wins
            click(browser, "offline")
            clicked = click(browser, "online")
            within_effect_time(clicked, lambda: sim.meter()["online"])
            until(lambda: "is online" in browser.find_element(By.ID, "action-result").text)
            assert holding(client, 100, 1) == [1]

            clicked = click(browser, "fault-freeze")
            within_effect_time(clicked, lambda: [f["type"] for f in sim.faults()] == ["freeze"])
            frozen = holding(client, 0, 23)
            ticks = sim.ticks
            sim.wait_ticks(3)
            assert sim.ticks >= ticks + 3 and holding(client, 0, 23) == frozen
            clicked = click(browser, "clear-faults")
            within_effect_time(clicked, lambda: sim.faults() == [])

        with pymodbus_client(port) as client:
            clicked = click(browser, "fault-delay")
            until(lambda: [f["type"] for f in sim.faults()] == ["delay"], EFFECT_S)
            started = time.monotonic()
            holding(client, 100, 1)
            assert time.monotonic() - started >= 0.95
            assert started - clicked < EFFECT_S
            click(browser, "clear-faults")
            until(lambda: sim.faults() == [], EFFECT_S)

        click(browser, "fault-no-answer")
        until(lambda: [f["type"] for f in sim.faults()] == ["no_answer"], EFFECT_S)
        with connect(port) as sock:
            sock.settimeout(0.5)
            with pytest.raises(socket.timeout):
                modbus_exchange(sock, bytes([READ_HOLDING, 0, 100, 0, 1]))
        click(browser, "clear-faults")
        until(lambda: sim.faults() == [], EFFECT_S)
        # the other meter never saw any of it
        assert sim.meter(sim.meter_ids[0])["online"] and sim.meter(sim.meter_ids[0])["faults"] == []
        assert severe_logs(browser) == []


def exception_code(client) -> int | None:
    method = client.read_holding_registers
    result = method(100, count=1, **unit_kw(method))
    return result.exception_code if result.isError() else None


def test_pins_set_and_released_from_the_panel_show_on_modbus(browser):
    with MeterSimulator(type="water", seed=6, interval=3600, http=True) as sim:
        open_page(browser, sim.http_url, rows=1)
        click_row(browser, sim.meter_ids[0])
        browser.find_element(By.CSS_SELECTOR, '#pin-name option[value="flow"]').click()
        browser.find_element(By.ID, "pin-value").send_keys("42.5")
        clicked = click(browser, "pin")
        with pymodbus_client(sim.port) as client:
            within_effect_time(clicked, lambda: holding(client, 20, 1) == [425])
            until(lambda: "flow = 42.5" in browser.find_element(By.ID, "pins").text)
            clicked = click(browser, "release")
            within_effect_time(clicked, lambda: sim.meter()["overrides"] == {})


def test_read_only_disables_every_button(browser):
    with MeterSimulator(seed=7, interval=3600, read_only=True, http=True) as sim:
        open_page(browser, sim.http_url, rows=1)
        click_row(browser, sim.meter_ids[0])
        assert browser.find_element(By.ID, "read-only").is_displayed()
        buttons = browser.find_elements(By.CSS_SELECTOR, "#meter-details button[data-action]")
        assert {b.get_attribute("data-action") for b in buttons} >= set(ACTIONS)
        assert not any(button.is_enabled() for button in buttons)
        assert sim.meter()["online"]


# --- token, paging, restarts ----------------------------------------------------------------

def test_the_page_asks_once_for_a_token_missing_from_its_fragment(browser):
    token = "lab+token/="  # a + that form decoding would turn into a space
    with MeterSimulator(seed=8, interval=3600, http=True, http_token=token) as sim:
        browser.get(sim.http_url)
        form = until(lambda: browser.find_element(By.ID, "token-form").is_displayed()
                     and browser.find_element(By.ID, "token-form"))
        assert row_ids(browser) == []
        browser.find_element(By.ID, "token-input").send_keys(token)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        until(lambda: row_ids(browser) == sim.meter_ids)
        assert not browser.find_element(By.ID, "token-form").is_displayed()
        assert browser.get_cookies() == []
        click_row(browser, sim.meter_ids[0])
        clicked = click(browser, "offline")
        within_effect_time(clicked, lambda: not sim.meter()["online"])

        browser.get(sim.http_url + f"#token={token}&meter={sim.meter_ids[0]}")
        until(lambda: row_ids(browser) == sim.meter_ids)
        assert not browser.find_element(By.ID, "token-form").is_displayed()
        # read, then taken out of the address (history, a shared link): the page keeps it alone
        assert browser.current_url.endswith(f"#meter={sim.meter_ids[0]}"), browser.current_url
        until(lambda: browser.find_element(By.ID, "meter-details").get_attribute("data-meter")
              == sim.meter_ids[0])

        browser.get(sim.http_url + "#token=wrong")
        until(lambda: browser.find_element(By.ID, "token-form").is_displayed())
        assert "refused" in browser.find_element(By.ID, "token-error").text


def test_a_thousand_meters_page_50_at_a_time_with_one_request_a_refresh(browser):
    with MeterSimulator(count=5, unit_ids="1-200", seed=9, interval=3600, http=True) as sim:
        every = [meter["id"] for meter in api(sim.http_url, "api/meters?limit=1000")["meters"]]
        assert len(every) == 1000
        open_page(browser, sim.http_url, rows=50)
        assert summary_meters(browser) == "1000"
        assert row_ids(browser) == every[:50]
        for page in range(1, 20):
            browser.find_element(By.CSS_SELECTOR, '[data-page="next"]').click()
            until(lambda page=page: row_ids(browser) == every[50 * page:50 * page + 50])
        assert not browser.find_element(By.CSS_SELECTOR, '[data-page="next"]').is_enabled()
        assert "951–1000 of 1000" in browser.find_element(By.ID, "page-info").text
        browser.find_element(By.CSS_SELECTOR, '[data-page="first"]').click()
        until(lambda: row_ids(browser) == every[:50])
        browser.find_element(By.CSS_SELECTOR, '[data-page="last"]').click()
        until(lambda: row_ids(browser) == every[950:])
        last = every[-1]
        click_row(browser, last)
        assert browser.find_element(By.ID, "meter-details").get_attribute("data-meter") == last

        # the page polls the listing once a refresh, and only the selected meter besides it
        js(browser, "performance.clearResourceTimings()")
        requests = lambda: js(browser, "return performance.getEntriesByType('resource')"  # noqa: E731
                                       ".map(e => new URL(e.name).pathname + new URL(e.name).search)")
        seen = until(lambda: [r for r in requests() if r.startswith("/api/meters?")][3:] and requests())
        listings = [r for r in seen if r.startswith("/api/meters?")]
        singles = [r for r in seen if r.startswith("/api/meters/")]
        assert {r.split("?")[0] for r in singles} == {"/api/meters/" + last}
        assert len(singles) <= len(listings) + 1
        assert all("limit=50" in r and "summary=1" in r for r in listings)

        # a button acts on the one meter behind its port and unit id
        port, unit_id = (int(part) for part in last.split("-"))
        clicked = click(browser, "offline")
        with pymodbus_client(port) as client:
            within_effect_time(clicked, lambda: holding(client, 100, 1, unit_id=unit_id) == [0])
            assert holding(client, 100, 1, unit_id=unit_id - 1) == [1]


def test_the_page_says_so_while_the_program_is_down_and_goes_on_after_a_restart(browser):
    first = ControlProcess("--interval", "0.2", "--seed", "1", count=2).start()
    try:
        url = f"http://127.0.0.1:{first.http_port}/"
        open_page(browser, url, rows=2)
        ids = row_ids(browser)
        click_row(browser, ids[0])
        until(lambda: browser.find_element(By.ID, "connection").get_attribute("data-state") == "ok")
        assert first.stop()[0] == 0
        line = browser.find_element(By.ID, "connection")
        until(lambda: line.get_attribute("data-state") == "lost")
        assert "Cannot reach" in line.text
    finally:
        first.stop()
    second = ControlProcess("--interval", "0.2", "--seed", "1", count=2, port=first.port,
                            http=f"127.0.0.1:{first.http_port}").start()
    try:
        until(lambda: line.get_attribute("data-state") in ("reconnected", "ok"))
        assert "Reconnected" in line.text or line.get_attribute("data-state") == "ok"
        assert row_ids(browser) == ids
        until(lambda: browser.find_element(By.ID, "meter-details").get_attribute("data-meter") == ids[0]
              and "online" in browser.find_element(By.ID, "details-state").text)
        clicked = click(browser, "offline")
        with pymodbus_client(second.port) as client:
            within_effect_time(clicked, lambda: holding(client, 100, 1) == [0])
    finally:
        second.stop()
