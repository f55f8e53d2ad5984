"""The site's options and --start-time on the command line (site contract sections A1 and A10)."""
from __future__ import annotations

import pytest

from meter_simulator.app.main import start_line
from meter_simulator.app.options import UsageError, parse_args
from support import MeterProcess, pymodbus_client, run_program, unit_kw


def test_the_site_options_are_in_the_usage_text_with_their_defaults():
    config = parse_args(["--site", "--pv-kwp", "8", "--battery-kwh", "10"])
    shown = (config.site, config.battery_kwh, config.battery_kw, config.start_time_s)
    assert shown == (True, 10.0, None, None)
    assert parse_args([]).site is False
    assert parse_args(["--site", "--battery-kwh", "10", "--battery-kw", "3.3"]).battery_kw == 3.3


@pytest.mark.parametrize("text, seconds", [("00:00", 0.0), ("12:00", 43200.0), ("23:59", 86340.0),
                                           ("07:30:15", 27015.0)])
def test_start_time_takes_a_time_of_day_on_any_run(text, seconds):
    assert parse_args(["--start-time", text]).start_time_s == seconds
    assert parse_args(["--site", "--start-time", text]).start_time_s == seconds


TIME_ERROR = "--start-time must be a time of day from 00:00 to 23:59 (HH:MM), not "
NEEDS_BATTERY = "--battery-kw needs a battery: give --battery-kwh above 0"
KW_RANGE = "--battery-kw must be from 0.1 to 100, not "


@pytest.mark.parametrize("argv, reason", [
    (["--site", "--unit-ids", "1-3"], "--site serves fixed unit ids (1 and 200): leave out --unit-ids"),
    (["--site", "--type", "water"], "--site serves an electric grid meter, not --type water"),
    (["--site", "--meter-type", "gas"], "--site serves an electric grid meter, not --meter-type gas"),
    (["--start-time", "25:00"], TIME_ERROR + "'25:00'"),
    (["--start-time", "12:60"], TIME_ERROR + "'12:60'"),
    (["--start-time", "noon"], TIME_ERROR + "'noon'"),
    (["--start-time", "1:00"], TIME_ERROR + "'1:00'"),
    (["--site", "--battery-kwh", "-1"], "--battery-kwh must be from 0 to 200, not -1"),
    (["--site", "--battery-kwh", "201"], "--battery-kwh must be from 0 to 200, not 201"),
    (["--site", "--battery-kwh", "abc"], "--battery-kwh must be a number, not 'abc'"),
    (["--site", "--battery-kwh", "nan"], "--battery-kwh must be a number, not 'nan'"),
    (["--site", "--battery-kwh", "10", "--battery-kw", "0.05"], KW_RANGE + "0.05"),
    (["--site", "--battery-kwh", "10", "--battery-kw", "101"], KW_RANGE + "101"),
    (["--battery-kwh", "10"], "--battery-kwh is a site's battery: give --site too"),
    (["--battery-kw", "3"], "--battery-kw is a site's battery: give --site too"),
    (["--site", "--battery-kw", "3"], NEEDS_BATTERY),
    (["--site", "--battery-kwh", "0", "--battery-kw", "3"], NEEDS_BATTERY),
    # part B's options want --site even at their default values (site-contract A1)
    (["--inverter-night", "asleep"], "--inverter-night sets a site's inverter: give --site too"),
    (["--inverter-profile", "sunspec-hybrid"], "--inverter-profile sets a site's inverter: give --site too"),
    (["--inverter-profile=sunspec-hybrid", "--type", "water"],
     "--inverter-profile sets a site's inverter: give --site too"),
    (["--inverter-p", "sunspec-hybrid"], "--inverter-profile sets a site's inverter: give --site too"),
])
def test_site_usage_errors_name_the_option(argv, reason):
    with pytest.raises(UsageError) as caught:
        parse_args(argv)
    assert str(caught.value) == reason


def test_a_usage_error_exits_2_with_one_line_and_starts_nothing():
    result = run_program("--site", "--unit-ids", "1-3")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == ("meter-simulator: --site serves fixed unit ids (1 and 200): "
                                             "leave out --unit-ids")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argv, line", [
    (["--site", "--pv-kwp", "8", "--battery-kwh", "10", "--profile", "sunspec"],
     "site (grid meter sunspec, 8 kWp, battery 10 kWh / 5 kW) serving Modbus/TCP on 127.0.0.1:5020: "
     "inverter unit id 1, grid meter unit id 200"),
    (["--site", "--count", "3", "--pv-kwp", "8", "--profile", "sdm630"],
     "3 sites (grid meter sdm630, 8 kWp, no battery) serving Modbus/TCP on 127.0.0.1:5020-5022: "
     "inverter unit id 1, grid meter unit id 200"),
    (["--site", "--battery-kwh", "0.1"],
     "site (grid meter seed, no panels, battery 0.1 kWh / 0.1 kW) serving Modbus/TCP on 127.0.0.1:5020: "
     "inverter unit id 1, grid meter unit id 200"),
])
def test_the_start_line_names_the_site(argv, line):
    assert start_line(parse_args(argv), 5020) == line


def test_the_program_logs_the_site_line_and_serves_both_unit_ids():
    with MeterProcess("--site", "--pv-kwp", "8", "--battery-kwh", "10", "--read-only") as program:
        with pymodbus_client(program.port) as client:
            for unit_id, address in ((1, 40068), (200, 1)):
                kw = unit_kw(client.write_register, unit_id)
                assert client.write_register(address, 1, **kw).exception_code == 0x01  # --read-only
        status, _, err = program.stop()
    assert status == 0
    assert ("site (grid meter seed, 8 kWp, battery 10 kWh / 5 kW) serving Modbus/TCP on "
            f"127.0.0.1:{program.port}") in err
