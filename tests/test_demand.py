"""Demand: the mean over the demand period (sliding, in sub-interval buckets), the mean since
the start before one period has passed, instantaneous with a period of 0; maxima since start."""
from __future__ import annotations

import random

import pytest

from meter_simulator.model.demand import BUCKETS, DEFAULT_PERIOD_MIN, PERIODS_MIN, Demand, neutral_current
from meter_simulator.model.meters import make_meter
from meter_simulator.model.quantities import DEMANDS, MAX_DEMANDS

MIN = 60.0


def readings(power_w: float, scale: float = 1.0) -> tuple[float, ...]:
    """(power, apparent, I1, I2, I3, In) of a house drawing power_w, currents scaled by scale."""
    currents = (2.0 * scale, 3.0 * scale, 5.0 * scale)
    return (power_w, abs(power_w) * 1.1, *currents, neutral_current(*currents))


def feed(demand: Demand, minutes: float, values: tuple[float, ...], dt_s: float = MIN) -> None:
    for _ in range(round(minutes * MIN / dt_s)):
        demand.add(dt_s, *values)
    demand.update(*values)


def test_the_demands_follow_the_averaged_inputs():
    assert DEMANDS == ("demand_power_total", "demand_power_import", "demand_power_export", "demand_apparent",
                       "demand_current_l1", "demand_current_l2", "demand_current_l3",
                       "demand_current_neutral")
    assert MAX_DEMANDS == tuple("max_" + name for name in DEMANDS)


def test_starts_at_zero_with_the_default_period():
    demand = Demand()
    assert demand.period_min == DEFAULT_PERIOD_MIN == 60
    assert list(demand.values) == [*DEMANDS, *MAX_DEMANDS]
    assert set(demand.values.values()) == {0.0} and demand.time_min == 0.0


def test_before_any_time_and_with_period_0_the_demands_are_the_readings():
    demand = Demand()
    demand.update(*readings(1500.0))
    assert demand.values["demand_power_total"] == 1500.0 == demand.values["demand_power_import"]
    zero = Demand(0)
    for power_w in (800.0, -300.0, 2500.0):
        feed(zero, 10, readings(power_w))
        values = zero.values
        assert values["demand_power_import"] == max(power_w, 0.0)
        assert values["demand_power_export"] == max(-power_w, 0.0)
        assert values["demand_power_total"] == max(power_w, 0.0)
        assert values["demand_apparent"] == abs(power_w) * 1.1
        assert (values["demand_current_l1"], values["demand_current_l2"], values["demand_current_l3"]) == (
            2.0, 3.0, 5.0)
        assert values["demand_current_neutral"] == pytest.approx(neutral_current(2.0, 3.0, 5.0))
        assert zero.time_min == 0.0
    assert zero.values["max_demand_power_import"] == 2500.0
    assert zero.values["max_demand_power_export"] == 300.0


def test_the_first_period_averages_since_the_start():
    demand = Demand(60)
    feed(demand, 10, readings(1000.0))
    assert demand.values["demand_power_total"] == pytest.approx(1000.0)
    feed(demand, 10, readings(3000.0, scale=2.0))
    assert demand.values["demand_power_total"] == pytest.approx(2000.0)
    assert demand.values["demand_apparent"] == pytest.approx(2200.0)
    assert demand.values["demand_current_l3"] == pytest.approx(7.5)
    assert demand.time_min == pytest.approx(20.0)


@pytest.mark.parametrize("minutes_after, expected", [(0, 1000.0), (6, 1200.0), (30, 2000.0), (33, 2100.0),
                                                     (57, 2900.0), (60, 3000.0), (200, 3000.0)])
def test_a_full_period_slides(minutes_after, expected):
    demand = Demand(60)
    feed(demand, 120, readings(1000.0))
    feed(demand, minutes_after, readings(3000.0))
    # the mean over the last 60 minutes: minutes_after at 3000 W, the rest at 1000 W
    assert demand.values["demand_power_total"] == pytest.approx(expected)
    assert demand.values["max_demand_power_total"] == pytest.approx(max(expected, 1000.0))


def test_the_window_follows_within_a_bucket_between_boundaries():
    demand = Demand(15)
    feed(demand, 30, readings(1000.0), dt_s=7.0)
    for step in range(1, 400):
        demand.add(7.0, *readings(2000.0))
        demand.update(*readings(2000.0))
        elapsed_min = step * 7.0 / MIN
        exact = 1000.0 + 1000.0 * min(elapsed_min / 15.0, 1.0)
        # within one sub-interval's share of the difference
        assert abs(demand.values["demand_power_total"] - exact) <= 1000.0 / BUCKETS + 1e-6


def test_exports_count_as_export_demand_and_the_net_never_goes_negative():
    demand = Demand(5)
    feed(demand, 10, readings(-2500.0))
    values = demand.values
    assert values["demand_power_total"] == 0.0 and values["demand_power_import"] == 0.0
    assert values["demand_power_export"] == pytest.approx(2500.0)
    feed(demand, 2, readings(1000.0))  # 3 min export, 2 min import in the last 5
    assert demand.values["demand_power_total"] == 0.0
    assert demand.values["demand_power_import"] == pytest.approx(400.0)
    assert demand.values["demand_power_export"] == pytest.approx(1500.0)


@pytest.mark.parametrize("period_min", PERIODS_MIN)
def test_maxima_are_the_highest_demands_and_never_below_them(period_min):
    rng = random.Random(period_min)
    demand = Demand(period_min)
    highest = dict.fromkeys(DEMANDS, 0.0)
    for _ in range(2000):
        values = readings(rng.uniform(-5000.0, 8000.0), scale=rng.uniform(0.0, 4.0))
        demand.add(rng.choice((0.05, 1.0, 30.0, 400.0)), *values)
        demand.update(*values)
        now = demand.values
        for name in DEMANDS:
            assert now[name] >= 0.0
            highest[name] = max(highest[name], now[name])
            assert now["max_" + name] == highest[name] >= now[name]


def test_a_new_period_restarts_the_averaging_and_keeps_the_maxima():
    demand = Demand(60)
    feed(demand, 90, readings(4000.0))
    demand.period_min = 15
    assert demand.period_min == 15 and demand.time_min == 0.0
    feed(demand, 5, readings(1000.0))
    assert demand.values["demand_power_total"] == pytest.approx(1000.0)  # only since the change
    assert demand.values["max_demand_power_total"] == pytest.approx(4000.0)


@pytest.mark.parametrize("period_min", (1, 7, -5, 61, 15.5, "15", None, True))
def test_only_the_sdm630_periods_are_accepted(period_min):
    with pytest.raises(ValueError):
        Demand(period_min)
    demand = Demand(30)
    with pytest.raises(ValueError):
        demand.period_min = period_min
    assert demand.period_min == 30


def test_time_min_counts_through_each_period():
    demand = Demand(10)
    feed(demand, 4, readings(500.0))
    assert demand.time_min == pytest.approx(4.0)
    feed(demand, 21, readings(500.0))
    assert demand.time_min == pytest.approx(5.0)  # 25 minutes: the third period, 5 minutes in
    demand.add(1e6, *readings(500.0))
    assert demand.time_min == pytest.approx((25.0 + 1e6 / MIN) % 10.0, abs=1e-6)


def test_a_long_step_fills_the_window_and_memory_stays_small():
    demand = Demand(60)
    ring = len(demand._ring)
    feed(demand, 30, readings(100.0))
    demand.add(1e6, *readings(900.0))
    demand.update(*readings(900.0))
    assert demand.values["demand_power_total"] == pytest.approx(900.0)
    for _ in range(5000):
        demand.add(1.0, *readings(900.0))
    assert len(demand._ring) == ring == BUCKETS * 7


def test_short_and_long_steps_agree():
    fine, coarse = Demand(15), Demand(15)
    for minute in range(120):
        values = readings(1000.0 + 37.0 * (minute % 11))
        feed(fine, 1, values, dt_s=0.5)
        feed(coarse, 1, values, dt_s=60.0)
        assert fine.values == pytest.approx(coarse.values, rel=1e-9)


def test_clear_and_restore_maxima():
    demand = Demand(5)
    feed(demand, 10, readings(5000.0))
    feed(demand, 10, readings(1000.0))
    demand.clear_maxima()
    values = demand.values
    assert values["max_demand_power_total"] == values["demand_power_total"] == pytest.approx(1000.0)
    demand.restore_maxima({"max_demand_power_total": 7000.0, "max_demand_apparent": 1.0, "other": 3.0})
    assert demand.values["max_demand_power_total"] == 7000.0
    assert demand.values["max_demand_apparent"] == pytest.approx(1100.0)  # never below the present


def test_the_meter_steps_its_demand_with_the_shown_readings():
    meter = make_meter("electric", random.Random(2), 12 * 3600.0)
    meter.demand.period_min = 0
    for _ in range(20):
        reading = meter.step(30.0)
        values = meter.demand.values
        assert values["demand_power_total"] == pytest.approx(reading.rate)
        assert values["demand_apparent"] == pytest.approx(sum(reading.apparent_va))
        assert [values[f"demand_current_l{i}"] for i in (1, 2, 3)] == pytest.approx(list(reading.currents_a))
        assert values["demand_current_neutral"] == pytest.approx(reading.current_neutral_a)
    meter.demand.period_min = 15
    shown = []
    for _ in range(15):
        shown.append(meter.reading)
        meter.step(60.0)
    mean_w = sum(reading.rate for reading in shown) / len(shown)
    assert meter.demand.values["demand_power_total"] == pytest.approx(mean_w)
    assert meter.demand.time_min == pytest.approx(0.0, abs=1e-9)
