"""The fleet's columns (model.columns): every row is an electric meter with the physics of
ElectricMeter (identities, bands, exact integration, demands), a row detach()es into the
ElectricMeter of its state, and the columns' statistics are the scalar model's."""
from __future__ import annotations

import math
import random
import statistics

import pytest
from test_physics import check_bands, check_identities, expected_increments

from meter_simulator.model.bands import BANDS
from meter_simulator.model.columnmeter import ColumnMeter
from meter_simulator.model.columns import ElectricColumns
from meter_simulator.model.demand import BUCKETS, INPUTS, Demand
from meter_simulator.model.demandcolumns import DemandColumns
from meter_simulator.model.electric import ElectricMeter
from meter_simulator.model.engine import make_columns
from meter_simulator.model.meters import make_meter
from meter_simulator.model.processes import DAY_S
from meter_simulator.model.quantities import DEMANDS, ELECTRIC_COUNTERS, MAX_DEMANDS

NOON_S = 12 * 3600.0
ROWS = 40


def rows(columns: ElectricColumns) -> list[ColumnMeter]:
    return [ColumnMeter(columns, row) for row in range(columns.count)]


@pytest.mark.parametrize("pv_kwp", (0.0, 10.0, 40.0))
@pytest.mark.parametrize("dt_s", (0.05, 1.0, 300.0, 3600.0, 1e6))
def test_every_row_in_band_with_exact_identities(dt_s, pv_kwp):
    rng = random.Random(int(dt_s * 100 + pv_kwp))
    columns = ElectricColumns(ROWS, rng, rng.uniform(0.0, DAY_S), pv_kwp)
    for _ in range(30):
        columns.step(dt_s)
        for meter in rows(columns):
            reading = meter.reading
            check_identities(reading)
            check_bands(reading, panels=pv_kwp > 0.0)


@pytest.mark.parametrize("pv_kwp", (0.0, 10.0))
@pytest.mark.parametrize("dt_s", (1.0, 60.0, 3600.0))
def test_every_counter_is_the_integral_of_the_shown_readings(dt_s, pv_kwp):
    columns = ElectricColumns(ROWS, random.Random(3), 6 * 3600.0, pv_kwp)
    meters = rows(columns)
    expected = [dict.fromkeys(ELECTRIC_COUNTERS, 0.0) for _ in meters]
    assert all(value == 0.0 for meter in meters for value in meter.counters.values())
    for _ in range(int(DAY_S / dt_s) if dt_s > 60.0 else 300):
        shown = [meter.reading for meter in meters]
        before = [meter.counters for meter in meters]
        columns.step(dt_s)
        for meter, reading, old, sums in zip(meters, shown, before, expected):
            for name, grow in expected_increments(reading, dt_s).items():
                sums[name] += grow
            counters = meter.counters
            assert all(counters[name] >= old[name] for name in ELECTRIC_COUNTERS)
    for meter, sums in zip(meters, expected):
        counters = meter.counters
        for name in ELECTRIC_COUNTERS:
            assert counters[name] == pytest.approx(sums[name], rel=1e-9, abs=1e-12), name
        assert meter.total == counters["energy_import"] == meter.reading.total


@pytest.mark.parametrize("dt_s", (1.0, 45.0, 360.0, 3600.0, 5e4))
@pytest.mark.parametrize("period_min", (0, 5, 60))
def test_demand_columns_keep_every_rows_demand_exactly(dt_s, period_min):
    rng = random.Random(int(dt_s) + period_min)
    columns = DemandColumns(6, period_min)
    singles = [Demand(period_min) for _ in range(6)]
    for _ in range(40):
        step_s = dt_s * rng.uniform(0.5, 1.5)
        inputs = [[rng.uniform(0.0, 5000.0) for _ in range(INPUTS)] for _ in singles]
        inputs = [[values[0], 0.0, *values[2:]] if rng.random() < 0.5 else [0.0, *values[1:]]
                  for values in inputs]
        columns.add(step_s, _array(inputs))
        powers = [rng.uniform(-5000.0, 5000.0) for _ in singles]
        others = [[rng.uniform(0.0, 5000.0) for _ in range(INPUTS - 2)] for _ in singles]
        shown = [[max(power, 0.0), max(-power, 0.0), *rest] for power, rest in zip(powers, others)]
        published = columns.update(_array(shown))
        for row, (demand, added, power, rest) in enumerate(zip(singles, inputs, powers, others)):
            demand.add(step_s, added[0] - added[1], *added[2:])
            demand.update(power, *rest)
            values = demand.values
            want = [values[name] for name in DEMANDS + MAX_DEMANDS]
            assert published[row].tolist() == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert columns.time_min == pytest.approx(singles[0].time_min)


def _array(values):
    import numpy as np
    return np.array(values, dtype=float)


@pytest.mark.parametrize("pv_kwp", (0.0, 8.0))
def test_a_detached_row_is_the_electric_meter_of_its_state(pv_kwp):
    columns = ElectricColumns(ROWS, random.Random(11), NOON_S, pv_kwp)
    for _ in range(200):
        columns.step(30.0)
    for row in (0, 17, ROWS - 1):
        meter = ColumnMeter(columns, row)
        reading, counters, demands = meter.shown(columns.tick)
        alone = meter.detach()
        assert isinstance(alone, ElectricMeter) and (alone.panels is not None) == (pv_kwp > 0.0)
        assert alone.reading == reading  # the scalar derivation of the row's raw values
        assert alone.counters == counters and alone.demand.values == demands
        assert alone.time_of_day_s == columns.time_of_day_s and columns.detached[row]
        assert alone.state_values() == meter.state_values()
        total = alone.total
        for _ in range(20):  # it goes on stepping on its own, integrating what it showed
            shown = alone.reading
            alone.step(60.0)
            total += expected_increments(shown, 60.0)["energy_import"]
            check_identities(alone.reading)
        assert alone.total == pytest.approx(total, rel=1e-12)


def test_same_seed_same_columns_different_seed_different():
    def run(seed):
        columns = ElectricColumns(5, random.Random(seed), NOON_S, 5.0)
        return [columns.step(60.0).table.tolist() for _ in range(20)]

    assert run(1) == run(1)
    assert run(1) != run(2)
    table = run(3)[-1]
    assert len({tuple(row) for row in table}) == 5  # the meters differ from one another


def test_resuming_a_row_follows_the_meter_rules():
    columns = ElectricColumns(3, random.Random(5), NOON_S)
    columns.step(600.0)
    meter, alone = ColumnMeter(columns, 1), make_meter("electric", random.Random(1), NOON_S)
    other = ColumnMeter(columns, 0).state_values()
    for target in (meter, alone):
        target.set_total(1234.5)
    assert meter.total == alone.total == 1234.5
    assert [meter.counters[f"energy_import_l{k}"] for k in (1, 2, 3)] == [1234.5 / 3] * 3
    assert meter.set_total(-3.0).total == 0.0
    with pytest.raises(ValueError):
        meter.set_total(math.nan)
    saved = dict.fromkeys(ELECTRIC_COUNTERS, 7.0) | {"max_demand_power_total": 1e6, "bogus": 1.0,
                                                     "energy_export": -1.0, "ampere_hours": math.inf}
    before = meter.state_values()
    meter.restore_values(saved)
    values = meter.state_values()
    assert values["energy_import"] == 7.0 and values["max_demand_power_total"] == 1e6
    assert values["energy_export"] == before["energy_export"]  # below 0: ignored
    assert values["ampere_hours"] == before["ampere_hours"]  # not finite: ignored
    assert "bogus" not in values
    assert ColumnMeter(columns, 0).state_values() == other  # the other rows keep theirs


@pytest.mark.slow
def test_the_columns_draw_the_households_of_the_scalar_model():
    """Over two simulated days at 60 s steps the fleet's mean power per phase, the share of time
    each phase's voltage spends above 230 V and the mean frequency match the scalar meters'."""
    columns = ElectricColumns(60, random.Random(21), 0.0)
    singles = [make_meter("electric", random.Random(seed), 0.0) for seed in range(60)]
    fleet_w, single_w, fleet_v, single_v = [], [], [], []
    for _ in range(int(2 * DAY_S / 60.0)):
        tick = columns.step(60.0)
        fleet_w.extend(tick.table[:, 9:12].sum(axis=1).tolist())
        fleet_v.extend(tick.table[:, 0].tolist())
        for meter in singles:
            reading = meter.step(60.0)
            single_w.append(sum(reading.powers_w))
            single_v.append(reading.voltages_v[0])
    assert statistics.fmean(fleet_w) == pytest.approx(statistics.fmean(single_w), rel=0.08)
    assert statistics.fmean(fleet_v) == pytest.approx(statistics.fmean(single_v), abs=0.3)
    assert statistics.pstdev(fleet_v) == pytest.approx(statistics.pstdev(single_v), rel=0.15)
    assert BUCKETS == 10  # the demand window both keep


@pytest.mark.parametrize("meter_type", ("water", "gas"))
@pytest.mark.parametrize("dt_s", (1.0, 60.0, 3600.0))
def test_flow_rows_in_band_rounded_and_exactly_integrated(meter_type, dt_s):
    columns = make_columns(meter_type, ROWS, random.Random(int(dt_s)), 6 * 3600.0)
    meters = rows(columns)
    bands = BANDS[meter_type]
    volumes = [0.0] * ROWS
    for _ in range(int(DAY_S / dt_s) if dt_s > 60.0 else 400):
        shown = [meter.reading for meter in meters]
        columns.step(dt_s)
        for index, (meter, before) in enumerate(zip(meters, shown)):
            volumes[index] += before.flow_l_min * dt_s / 60.0 / 1000.0
            reading = meter.reading
            assert reading.rate == reading.flow_l_min and reading.in_band
            for name, value, decimals in (("flow_l_min", reading.flow_l_min, 1),
                                          ("temperature_c", reading.temperature_c, 1),
                                          ("pressure", reading.pressure, 2)):
                assert bands[name][0] <= value <= bands[name][1] and round(value, decimals) == value
    for meter, volume in zip(meters, volumes):
        assert meter.total == pytest.approx(volume, rel=1e-12, abs=1e-15)
        assert meter.state_values() == {"volume_total": meter.total} and meter.demand is None


@pytest.mark.parametrize("meter_type", ("water", "gas"))
def test_a_detached_flow_row_is_the_meter_of_its_state(meter_type):
    columns = make_columns(meter_type, ROWS, random.Random(4), 18 * 3600.0)
    for _ in range(300):
        columns.step(20.0)
    flowing = [row for row in range(ROWS) if ColumnMeter(columns, row).reading.flow_l_min > 0.0]
    for row in flowing[:3] + [0]:
        meter = ColumnMeter(columns, row)
        reading, counters, _ = meter.shown(columns.tick)
        alone = meter.detach()
        assert type(alone).__name__ == f"{meter_type.capitalize()}Meter"
        assert alone.reading == reading and alone.counters == counters
        on = columns._fixtures.on[row].tolist()
        assert [fixture.on for fixture in alone._fixtures] == on
        assert sorted(alone._fixture_flow) == [index for index, is_on in enumerate(on) if is_on]
        if reading.flow_l_min and meter_type == "water":  # the open fixtures' flows make the flow
            assert round(min(sum(alone._fixture_flow.values()), 40.0), 1) == reading.flow_l_min
        for _ in range(50):
            alone.step(30.0)
            assert alone.reading.in_band


@pytest.mark.parametrize("meter_type", ("water", "gas"))
def test_the_flow_columns_draw_the_households_of_the_scalar_model(meter_type):
    columns = make_columns(meter_type, 80, random.Random(8), 0.0)
    singles = [make_meter(meter_type, random.Random(seed), 0.0) for seed in range(80)]
    fleet, alone = [], []
    for _ in range(int(3 * DAY_S / 120.0)):
        fleet.extend(columns.step(120.0).table[:, 0].tolist())
        alone.extend(meter.step(120.0).flow_l_min for meter in singles)
    assert statistics.fmean(fleet) == pytest.approx(statistics.fmean(alone), rel=0.12)
    share = [sum(1 for flow in flows if flow > 0.0) / len(flows) for flows in (fleet, alone)]
    assert share[0] == pytest.approx(share[1], rel=0.12)


def test_same_seed_same_flow_columns():
    def run(meter_type, seed):
        columns = make_columns(meter_type, 6, random.Random(seed), NOON_S)
        return [columns.step(60.0).table.tolist() for _ in range(30)]

    for meter_type in ("water", "gas"):
        assert run(meter_type, 1) == run(meter_type, 1) != run(meter_type, 2)


@pytest.mark.parametrize("meter_type", ("electric", "water", "gas"))
def test_the_total_and_rate_are_what_the_reading_shows(meter_type):
    columns = make_columns(meter_type, 5, random.Random(2), 19 * 3600.0)
    for _ in range(50):
        columns.step(60.0)
    for meter in rows(columns):
        reading = meter.reading
        rate = sum(reading.powers_w) if meter_type == "electric" else reading.rate
        assert meter.total_and_rate() == pytest.approx((reading.total, rate), rel=1e-12)


def test_an_image_built_of_a_tick_keeps_none_of_its_arrays_alive():
    import gc
    import weakref

    from meter_simulator.device import fleet
    from meter_simulator.device.updater import Updater
    from meter_simulator.modbus.server import new_device

    endpoints = fleet.plan("electric", 1, 1, (1, 2), random.Random(1), NOON_S, new_device)
    devices = [device for endpoint in endpoints for device in endpoint.devices]
    now = [0.0]
    updater = Updater(devices, clock=lambda: now[0])
    first = devices[0].bank.image  # built of the first tick
    old_table = weakref.ref(devices[0].meter.tick.table)
    for _ in range(3):
        now[0] += 1.0
        updater.tick()
    gc.collect()
    assert old_table() is None  # the image built of it did not keep the tick's arrays
    assert devices[0].bank.image is not first  # a read after the ticks builds a new one
    assert devices[0].bank.image is devices[0].bank.image  # and keeps it until the next tick
