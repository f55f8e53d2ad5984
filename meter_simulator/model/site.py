"""Site: one home's energy balance: the household, the panels, a hybrid inverter and a battery.

Every tick the household draws its load L (the electric meter's model), the panels offer
P_avail (the solar model), and the balance decides the rest:

    PVa = 0.97 P_avail                   the PV's AC equivalent
    B   = clamp(L - PVa, lo, hi)         the battery, + = discharge (self-consumption)
    W   = PV_AC + B <= C                 the inverter's AC output, capped at its rating
    G   = L - W                          the grid, + = import

The battery's window [lo, hi] closes at the reserve (no discharge) and when full (no
charge). The battery charges from the PV on the DC side, before the cap, as a DC-coupled
hybrid does. The grid meter shows L_i - W/3 per phase: the inverter feeds three thirds.

Counters integrate what was shown during the tick, as the meters' counters do: the state of
charge with the cell efficiency each way, stopping at the reserve or at full within the
tick in which it gets there, so that the energy counters count only what flowed.
"""
from __future__ import annotations

import math
import random
from collections.abc import Mapping

from .controls import Controls
from .electric import KWH_PER_WS, LINE_OHM, NOMINAL_V, VOLTAGE_HIGH_V, VOLTAGE_LOW_V, ElectricMeter
from .meter import Meter, fast_reading, finite_non_negative
from .processes import S_PER_H
from .reading import Reading

INVERTER_EFFICIENCY = 0.97  # PV DC to AC
BATTERY_EFFICIENCY = 0.95  # the cells, each way
RESERVE_PCT = 5.0  # the state of charge the battery never discharges below
NEW_SOC_PCT = 50.0
STRING_SHARES = (0.6, 0.4)  # the PV strings' fixed shares of the DC power
MAX_BATTERY_KWH = 200.0
BATTERY_KW_RANGE = (0.1, 100.0)
MAX_SITE_PIN_W = 100000.0
BATTERY_V_EMPTY, BATTERY_V_FULL = 350.0, 420.0  # a high-voltage home battery, rising with SoC
STRING_V_DIM, STRING_V_BRIGHT = 420.0, 560.0  # MPP voltage of a string, rising with irradiance
CABINET_C_COOL, CABINET_C_RISE = 25.0, 25.0  # the cabinet warms with the output: 25-50 degrees C
GRID_ZERO_W = 1e-6  # a grid this close to 0 W is 0: floating-point rounding, not a flow
FULL_EPSILON = 1e-9  # relative: a state of charge this close to a limit is at it

# SunSpec 103 St: the inverter's operating state
SLEEPING, MPPT, THROTTLED, STANDBY = 2, 4, 5, 8
STATE_NAMES = {SLEEPING: "SLEEPING", MPPT: "MPPT", THROTTLED: "THROTTLED", STANDBY: "STANDBY"}
# SunSpec 124/802 ChaSt: the battery's charge state
EMPTY, DISCHARGING, CHARGING, FULL, HOLDING = 2, 3, 4, 5, 6

INVERTER_COUNTERS = ("inverter_energy", "pv_energy_1", "pv_energy_2", "battery_energy_charged",
                     "battery_energy_discharged")  # kWh
SITE_PINS = ("load_w", "pv_available_w")
SOC_KEY = "battery_soc"  # the state of charge among the inverter's saved values (%)
RESERVE_KEY = "battery_reserve"  # and the reserve (%)


class Balance:
    """One tick's flows of a site (W, + as the contract signs them) and what the inverter's
    registers show besides; read-only by convention, replaced every tick."""

    __slots__ = ("time_of_day_s", "load_w", "loads_w", "pv_available_w", "pv_dc_w", "pv_dc_w_1",
                 "pv_dc_w_2", "pv_ac_w", "battery_w", "inverter_w", "grid_w", "state", "soc_pct",
                 "charge_state", "battery_v", "string_v", "cabinet_c", "rated_w", "battery_max_w",
                 "capacity_kwh", "reserve_pct", "has_battery", "controls")

    def __init__(self, **fields) -> None:
        for name, value in fields.items():
            setattr(self, name, value)

    def flows(self) -> dict[str, float]:
        """The balance's powers by the control API's names."""
        return {name: getattr(self, name) for name in (
            "load_w", "pv_available_w", "pv_dc_w", "pv_ac_w", "battery_w", "inverter_w", "grid_w")}


def battery_window(lo: float, hi: float, soc_pct: float, reserve_pct: float) -> tuple[float, float]:
    """(lo, hi) of the battery's power closed for discharge at or below the reserve and for
    charge when full."""
    if soc_pct <= reserve_pct * (1.0 + FULL_EPSILON):
        hi = min(hi, 0.0)
    if soc_pct >= 100.0 * (1.0 - FULL_EPSILON):
        lo = max(lo, 0.0)
    return lo, hi


def split(load_w: float, pv_available_w: float, cap_w: float,
          window: tuple[float, float]) -> tuple[float, float]:
    """(PV_AC, B): the PV's AC share and the battery's power for a load, the PV offered (DC),
    the inverter's output cap and the battery's window (lo > hi: no battery flow)."""
    pva_w = INVERTER_EFFICIENCY * pv_available_w
    lo, hi = window
    battery_w = min(max(load_w - pva_w, lo), hi) if lo <= hi else 0.0
    if battery_w > 0.0:  # a discharge is cut first by the cap
        battery_w = min(battery_w, max(0.0, cap_w - pva_w))
    pv_ac_w = min(pva_w, cap_w - battery_w)  # then the PV is throttled
    return max(pv_ac_w, 0.0), battery_w + 0.0


def inverter_state(pv_available_w: float, pv_ac_w: float, battery_w: float) -> int:
    """SunSpec St: MPPT, THROTTLED while the cap takes less than the PV offers, SLEEPING with no
    PV and no battery flow, STANDBY with the battery alone."""
    if pv_available_w > 0.0:
        return THROTTLED if pv_ac_w < INVERTER_EFFICIENCY * pv_available_w else MPPT
    return SLEEPING if battery_w == 0.0 else STANDBY


class Battery:
    """The cells: capacity, power limit, reserve and the stored energy (Wh)."""

    def __init__(self, capacity_kwh: float, max_kw: float | None = None) -> None:
        if not (math.isfinite(capacity_kwh) and 0.0 < capacity_kwh <= MAX_BATTERY_KWH):
            raise ValueError(f"a battery of {capacity_kwh!r} kWh: above 0 to {MAX_BATTERY_KWH:g} kWh")
        if max_kw is None:
            max_kw = max(capacity_kwh / 2.0, BATTERY_KW_RANGE[0])
        low, high = BATTERY_KW_RANGE
        if not (math.isfinite(max_kw) and low <= max_kw <= high):
            raise ValueError(f"a battery power of {max_kw!r} kW: {low:g} to {high:g} kW")
        self.capacity_wh = capacity_kwh * 1000.0
        self.max_w = max_kw * 1000.0
        self.reserve_pct = RESERVE_PCT
        self.energy_wh = self.capacity_wh * NEW_SOC_PCT / 100.0

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.energy_wh / self.capacity_wh

    @soc_pct.setter
    def soc_pct(self, soc_pct: float) -> None:
        self.energy_wh = self.capacity_wh * min(max(soc_pct, 0.0), 100.0) / 100.0

    def voltage(self) -> float:
        return BATTERY_V_EMPTY + (BATTERY_V_FULL - BATTERY_V_EMPTY) * self.soc_pct / 100.0

    def window(self, lo: float | None = None, hi: float | None = None) -> tuple[float, float]:
        """The window (lo, hi), the full power's by default, closed by the state of charge."""
        max_w = self.max_w
        return battery_window(-max_w if lo is None else lo, max_w if hi is None else hi,
                              self.soc_pct, self.reserve_pct)

    def flow(self, battery_w: float, dt_s: float) -> float:
        """Run the cells dt_s seconds at battery_w (AC side, + = discharge); the AC energy (Wh,
        + = discharged) that flowed before the reserve or full stopped it."""
        if battery_w > 0.0:
            floor_wh = min(self.energy_wh, self.capacity_wh * self.reserve_pct / 100.0)
            taken_wh = min(battery_w * dt_s / S_PER_H / BATTERY_EFFICIENCY, self.energy_wh - floor_wh)
            self.energy_wh -= taken_wh
            return taken_wh * BATTERY_EFFICIENCY
        if battery_w < 0.0:
            stored_wh = min(-battery_w * dt_s / S_PER_H * BATTERY_EFFICIENCY,
                            max(self.capacity_wh - self.energy_wh, 0.0))
            self.energy_wh += stored_wh
            if self.capacity_wh - self.energy_wh <= self.capacity_wh * FULL_EPSILON:
                self.energy_wh = self.capacity_wh
            return -stored_wh / BATTERY_EFFICIENCY
        return 0.0

    def charge_state(self, battery_w: float) -> int:
        """SunSpec ChaSt of the battery now."""
        if battery_w < 0.0:
            return CHARGING
        if battery_w > 0.0:
            return DISCHARGING
        lo, hi = self.window()
        return FULL if lo >= 0.0 else EMPTY if hi <= 0.0 else HOLDING


class GridMeter(ElectricMeter):
    """The meter at the house connection: the household's load less the inverter's output.

    It draws the household as the electric meter does; the site's panels (drawn from their
    own generator) feed the inverter. Its powers are exact: P_i = L_i - W/3, so the grid's
    total equals the load less the inverter's output on every tick.
    """

    def __init__(self, site: Site, rng: random.Random, time_of_day_s: float, pv_kwp: float) -> None:
        self.site = site
        # the next step's household, drawn with every other site's (model.sitecolumns), or None
        self.drawn: tuple | None = None
        super().__init__(rng, time_of_day_s, pv_kwp)

    @property
    def inverter(self) -> Inverter:
        return self.site.inverter

    def _draw(self, dt_s: float) -> None:
        if self.drawn is not None:
            self._raw, self.drawn = self.drawn, None
            return
        real_w, reactive_var = self._loads(dt_s)
        panels = self.panels
        pv_available_w = 0.0 if panels is None else panels.step(dt_s, self.time_of_day_s)
        gauss = self._rng.gauss
        # the supply's voltages before the line's drop, which _derive takes off with the balance
        supply_v = tuple(voltage.step(dt_s) + gauss(0.0, 0.15) for voltage in self._voltages)
        frequency_hz = round(self._frequency.step(dt_s) + gauss(0.0, 0.003), 2)
        self._raw = (supply_v, (real_w, reactive_var), pv_available_w, frequency_hz)

    def _derive(self) -> Reading:
        supply_v, (real_w, reactive_var), pv_available_w, frequency_hz = self._raw
        balance = self.site.balanced(real_w, reactive_var, pv_available_w, self.time_of_day_s)
        get = self.overrides.get
        frequency_hz = get("frequency", frequency_hz)
        pinned_pf = get("power_factor_total")
        household_w = real_w[0] + real_w[1] + real_w[2]
        # a pinned load scales the household's reactive power with its real power
        scale = balance.load_w / household_w if household_w > 0.0 else 0.0
        third_w = balance.inverter_w / 3.0
        nets = [balance.loads_w[0] - third_w, balance.loads_w[1] - third_w]
        # the third phase closes the sum on the grid's total, so that the phases add up to it
        # exactly (a grid at 0 W shows 0, and its counters integrate no rounding noise)
        nets.append(balance.grid_w - (nets[0] + nets[1]))
        voltages, currents, factors, powers, reactive, apparent = [], [], [], [], [], []
        for i, (supply, power_w, var) in enumerate(zip(supply_v, nets, reactive_var)):
            power_w += 0.0
            var *= scale
            pf_pin = pinned_pf if pinned_pf is not None else get(f"power_factor_l{i + 1}")
            if pf_pin:  # the pin sets the phase angle; the balance keeps P
                va = abs(power_w) / pf_pin
                var = math.sqrt(max(va * va - power_w * power_w, 0.0))
            else:
                va = math.hypot(power_w, var)
            # the line's drop: importing lowers the voltage, exporting raises it
            volts = supply - LINE_OHM * math.copysign(math.hypot(power_w, var), power_w) / NOMINAL_V
            volts = get(f"voltage_l{i + 1}", round(min(max(volts, VOLTAGE_LOW_V), VOLTAGE_HIGH_V), 1))
            voltages.append(volts)
            currents.append(va / volts if volts > 0.0 else 0.0)
            factors.append(math.copysign(power_w / va if va > 0.0 else 1.0, power_w))
            powers.append(power_w)
            reactive.append(var)
            apparent.append(va)
        reading = self._reading(tuple(voltages), tuple(currents), tuple(factors), frequency_hz,
                                pinned_pf, powers, reactive, apparent, 0.0)
        reading.__dict__["site"] = balance  # for a map that shows the site's quantities
        return reading


class Inverter(Meter):
    """The hybrid inverter and its battery as a meter: its counters integrate the site's flows
    and its reading carries the tick's Balance (reading.site) for its register map."""

    meter_type = "inverter"
    counter_names = INVERTER_COUNTERS
    total_counter = "inverter_energy"

    def __init__(self, site: Site) -> None:
        self.site = site
        super().__init__(random.Random(0), site.grid.time_of_day_s)

    @property
    def time_of_day_s(self) -> float:  # the site's clock: the household's
        return self.site.grid.time_of_day_s

    @time_of_day_s.setter
    def time_of_day_s(self, _value: float) -> None:
        pass

    @property
    def battery(self) -> Battery | None:
        return self.site.battery

    def _draw(self, dt_s: float) -> None:
        pass  # the site draws: Site.step

    def _derive(self) -> Reading:
        balance = self.site.balance
        grid = self.site.grid.reading
        volts = grid.voltages_v
        amps = tuple(abs(balance.inverter_w) / 3.0 / v if v > 0.0 else 0.0 for v in volts)
        return fast_reading(total=self.counters["inverter_energy"], rate=balance.inverter_w,
                            voltages_v=volts, currents_a=amps, frequency_hz=grid.frequency_hz,
                            power_factor=1.0, in_band=True, site=balance)

    def _accumulate(self, dt_s: float) -> None:
        balance = self.site.balance
        counters = self.counters
        k = dt_s * KWH_PER_WS
        if balance.inverter_w > 0.0:
            counters["inverter_energy"] += balance.inverter_w * k
        counters["pv_energy_1"] += balance.pv_dc_w_1 * k
        counters["pv_energy_2"] += balance.pv_dc_w_2 * k
        battery = self.site.battery
        if battery is not None:
            flowed_wh = battery.flow(balance.battery_w, dt_s)
            if flowed_wh > 0.0:
                counters["battery_energy_discharged"] += flowed_wh / 1000.0
            else:
                counters["battery_energy_charged"] -= flowed_wh / 1000.0

    def state_values(self) -> dict[str, float]:
        values = super().state_values()
        if self.battery is not None:
            values[SOC_KEY] = self.battery.soc_pct
            values[RESERVE_KEY] = self.battery.reserve_pct
        return values

    def restore_values(self, values: Mapping[str, float]) -> Reading:
        battery = self.battery
        if battery is not None:
            soc = values.get(SOC_KEY)
            if finite_non_negative(soc) and soc <= 100.0:
                battery.soc_pct = soc
            reserve = values.get(RESERVE_KEY)
            if finite_non_negative(reserve) and reserve <= 100.0:
                self.site.controls.reserve_pct = reserve  # the battery's, through its controls
        super().restore_values(values)
        self.site.rebalance()
        return self.reading


class Site:
    """One home: its grid meter (the household), its panels, its inverter and battery."""

    def __init__(self, rng: random.Random, time_of_day_s: float = 12 * S_PER_H, *,
                 pv_kwp: float = 0.0, battery_kwh: float = 0.0,
                 battery_kw: float | None = None) -> None:
        self.battery = Battery(battery_kwh, battery_kw) if battery_kwh else None
        if battery_kw is not None and self.battery is None:
            raise ValueError("a battery power needs a battery: --battery-kwh above 0")
        self.rated_w = 1000.0 * max(pv_kwp, self.battery.max_w / 1000.0 if self.battery else 0.0)
        self.pv_kwp = pv_kwp
        self.time_s = 0.0  # simulated seconds since the start
        self.pins: dict[str, float] = {}  # load_w, pv_available_w
        self.balance: Balance | None = None
        self.controls = Controls(self.battery, RESERVE_PCT)
        self.grid = GridMeter(self, rng, time_of_day_s, pv_kwp)  # its first draw balances
        self.inverter = Inverter(self)

    @property
    def cap_w(self) -> float:
        """The inverter's output cap: its rating, lowered by a PV limit (curtailment)."""
        return self.controls.cap_w(self.rated_w)

    def window(self, pva_w: float) -> tuple[float, float]:
        """The battery's window for the PV's AC equivalent pva_w: narrowed by the controls, then
        closed by the state of charge (site-contract B3)."""
        if self.battery is None:
            return 0.0, 0.0
        return self.battery.window(*self.controls.window(pva_w))

    def balanced(self, real_w, reactive_var, pv_available_w: float, time_of_day_s: float) -> Balance:
        """The balance of the household's phase loads and the PV offered, with the site's pins;
        kept as self.balance."""
        load_w = self.pins.get("load_w")
        household_w = real_w[0] + real_w[1] + real_w[2]
        if load_w is None:
            loads_w = tuple(real_w)
            load_w = household_w
        elif household_w > 0.0:
            loads_w = tuple(w * load_w / household_w for w in real_w)
        else:
            loads_w = (load_w / 3.0,) * 3
        pv_available_w = self.pins.get("pv_available_w", pv_available_w)
        window = self.window(INVERTER_EFFICIENCY * pv_available_w)
        pv_ac_w, battery_w = split(load_w, pv_available_w, self.cap_w, window)
        self.balance = self._balance(time_of_day_s, load_w, loads_w, pv_available_w, pv_ac_w,
                                     battery_w)
        return self.balance

    def _balance(self, time_of_day_s: float, load_w: float, loads_w: tuple, pv_available_w: float,
                 pv_ac_w: float, battery_w: float) -> Balance:
        inverter_w = pv_ac_w + battery_w
        if abs(load_w - inverter_w) < GRID_ZERO_W:  # the battery covers the house: L - PVa + PVa
            inverter_w = load_w  # is L within a rounding, which the grid would show as 1e-13 W
        pv_dc_w = pv_ac_w / INVERTER_EFFICIENCY
        battery = self.battery
        brightness = min(pv_available_w / max(self.pv_kwp * 1000.0, 1.0), 1.0)
        return Balance(
            time_of_day_s=time_of_day_s, load_w=load_w, loads_w=loads_w,
            pv_available_w=pv_available_w, pv_dc_w=pv_dc_w, pv_dc_w_1=pv_dc_w * STRING_SHARES[0],
            pv_dc_w_2=pv_dc_w * STRING_SHARES[1], pv_ac_w=pv_ac_w, battery_w=battery_w,
            inverter_w=inverter_w, grid_w=load_w - inverter_w + 0.0,
            state=inverter_state(pv_available_w, pv_ac_w, battery_w),
            soc_pct=battery.soc_pct if battery else 0.0,
            charge_state=battery.charge_state(battery_w) if battery else 0,
            battery_v=battery.voltage() if battery else 0.0,
            string_v=STRING_V_DIM + (STRING_V_BRIGHT - STRING_V_DIM) * brightness if pv_dc_w > 0.0 else 0.0,
            cabinet_c=CABINET_C_COOL + CABINET_C_RISE * abs(inverter_w) / max(self.rated_w, 1.0),
            rated_w=self.rated_w, battery_max_w=battery.max_w if battery else 0.0,
            capacity_kwh=battery.capacity_wh / 1000.0 if battery else 0.0,
            reserve_pct=battery.reserve_pct if battery else 0.0, has_battery=battery is not None,
            controls=self.controls.values())

    def step(self, dt_s: float, grid_integrated_s: float = 0.0,
             inverter_integrated_s: float = 0.0) -> None:
        """Advance dt_s simulated seconds: integrate what both devices showed (the battery first,
        so the new balance sees its state of charge), then draw and balance the new tick.

        *_integrated_s: the part of dt_s each device's counters already hold (a catch-up)."""
        dt_s = max(dt_s, 0.0)
        self.time_s += dt_s
        self.inverter.integrate(dt_s - inverter_integrated_s)
        self.controls.expire(self.time_s)  # a watchdog that ran out acts on the new balance
        self.grid.step(dt_s, grid_integrated_s)
        self.inverter.reading = self.inverter._derive()

    def rebalance(self) -> None:
        """Balance the present moment again (pins or the state of charge changed), drawing
        nothing; the caller integrated the time shown until now."""
        self.grid.reading = self.grid._derive()
        self.inverter.reading = self.inverter._derive()

    def pin(self, pins: Mapping[str, float | None]) -> None:
        """Replace the site's pins (load_w, pv_available_w; None releases) and rebalance."""
        self.pins = {name: float(value) for name, value in pins.items() if value is not None}
        self.rebalance()

    def control(self, changes: Mapping[str, float], now_s: float) -> None:
        """Set controls (checked: model.controls.Controls.refusal) at the simulated time now_s
        (the watchdogs count from it) and rebalance."""
        self.controls.set(changes, now_s)
        self.rebalance()

    def set_soc(self, soc_pct: float) -> None:
        """Set the battery's state of charge (it goes on from there) and rebalance."""
        self.battery.soc_pct = soc_pct
        self.rebalance()
