"""A site's controls (site-contract B1-B5): one state behind every face that sets them.

SunSpec's points (models 123, 124, 802), a user map's control registers and the control API all
read and set this one state, by the names of CONTROLS. The state keeps SunSpec's settings as they
were written (StorCtl_Mod's bits, InWRte and OutWRte even while their bit is off, WMaxLimPct while
WMaxLim_Ena is 0), so that every face reads back exactly what was written; the names a user map
or the API takes (battery_discharge_limit_pct ...) are views of those settings.

What the battery and the inverter do with them is window() and cap_w(); the watchdogs that
return the limits to their defaults run on the site's simulated clock (expire()), never on the
wall clock, so that --speed 1000 reverts 60 s limits in 60 ms.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FULL_RATE_PCT = 100.0  # what a rate or limit reads while it does not act
MAX_REVERT_S = 65534  # SunSpec's uint16 time, 0xFFFF being "not implemented"
CHARGE_BIT, DISCHARGE_BIT = 1, 2  # StorCtl_Mod: InWRte acts, OutWRte acts
RATES, PV = "rates", "pv"  # the two watchdogs


@dataclass(frozen=True)
class ControlSpec:
    """One name a face sets a control by: its range, whether it takes whole numbers only, and
    the watchdog a write to it restarts (None: a setting, which no watchdog reverts)."""

    name: str
    low: float
    high: float
    whole: bool = False
    timer: str | None = None
    watts: bool = False  # a range of -Bmax..Bmax (W), scaled by the battery's power
    unit: str = "%"

    @property
    def battery(self) -> bool:
        """True for a control of the battery (the PV limit's are the inverter's)."""
        return self.timer != PV


CONTROLS = {control.name: control for control in (
    # the names of site-contract B7, for user maps and the control API
    ControlSpec("battery_charge_limit_pct", -100.0, 100.0, timer=RATES),
    ControlSpec("battery_discharge_limit_pct", -100.0, 100.0, timer=RATES),
    ControlSpec("battery_charge_limit_w", -1.0, 1.0, timer=RATES, watts=True, unit="W"),
    ControlSpec("battery_discharge_limit_w", -1.0, 1.0, timer=RATES, watts=True, unit="W"),
    ControlSpec("grid_charge", 0, 1, whole=True, unit="-"),
    ControlSpec("pv_limit_pct", 0.0, 100.0, timer=PV),
    ControlSpec("reserve_soc_pct", 0.0, 100.0),
    ControlSpec("revert_s", 0, MAX_REVERT_S, whole=True, timer=RATES, unit="s"),
    ControlSpec("pv_limit_revert_s", 0, MAX_REVERT_S, whole=True, timer=PV, unit="s"),
    # SunSpec's own points, each one setting as written (the built-in chain's map uses these)
    ControlSpec("storage_control_mode", 0, CHARGE_BIT | DISCHARGE_BIT, whole=True, timer=RATES, unit="-"),
    ControlSpec("charge_rate_pct", -100.0, 100.0, timer=RATES),
    ControlSpec("discharge_rate_pct", -100.0, 100.0, timer=RATES),
    ControlSpec("pv_limit_setting_pct", 0.0, 100.0, timer=PV),
    ControlSpec("pv_limit_enabled", 0, 1, whole=True, timer=PV, unit="-"),
)}
CONTROL_NAMES = tuple(CONTROLS)
# the limits a face can switch off without a value (the control API's null): the bit each clears
LIMITS = {"battery_charge_limit_pct": CHARGE_BIT, "battery_discharge_limit_pct": DISCHARGE_BIT,
          "battery_charge_limit_w": CHARGE_BIT, "battery_discharge_limit_w": DISCHARGE_BIT,
          "pv_limit_pct": 0}


class Controls:
    """One site's controls as written, and their watchdogs' deadlines (simulated seconds)."""

    def __init__(self, battery=None, reserve_pct: float = 5.0) -> None:
        self.battery = battery  # model.site.Battery, or None: the controls act on nothing
        self.max_w = battery.max_w if battery is not None else 0.0  # Bmax: the rates' 100 %
        self._reserve_pct = reserve_pct  # without a battery (a map may still write it)
        self.storage_mode = 0  # StorCtl_Mod
        self.charge_rate_pct = FULL_RATE_PCT  # InWRte
        self.discharge_rate_pct = FULL_RATE_PCT  # OutWRte
        self.grid_charge = 0  # ChaGriSet
        self.revert_s = 0  # InOutWRte_RvrtTms
        self.pv_limit_setting_pct = FULL_RATE_PCT  # WMaxLimPct
        self.pv_limit_enabled = 0  # WMaxLim_Ena
        self.pv_limit_revert_s = 0  # WMaxLimPct_RvrtTms
        self.deadlines: dict[str, float] = {}  # watchdog -> the simulated time it reverts at
        self._values: dict[str, float] | None = None  # values() until a control changes

    @property
    def reserve_pct(self) -> float:
        """The reserve (MinRsvPct = SoCRsvMin): the battery's own, which it discharges down to."""
        return self.battery.reserve_pct if self.battery is not None else self._reserve_pct

    @reserve_pct.setter
    def reserve_pct(self, reserve_pct: float) -> None:
        self._values = None
        if self.battery is not None:
            self.battery.reserve_pct = reserve_pct
        else:
            self._reserve_pct = reserve_pct

    # --- reading ---
    def value(self, name: str) -> float:
        """A control's present value by its name (a limit that does not act reads 100 % or Bmax)."""
        if name == "battery_charge_limit_pct":
            return self.charge_rate_pct if self.storage_mode & CHARGE_BIT else FULL_RATE_PCT
        if name == "battery_discharge_limit_pct":
            return self.discharge_rate_pct if self.storage_mode & DISCHARGE_BIT else FULL_RATE_PCT
        if name == "battery_charge_limit_w":
            return self.value("battery_charge_limit_pct") * self.max_w / 100.0
        if name == "battery_discharge_limit_w":
            return self.value("battery_discharge_limit_pct") * self.max_w / 100.0
        if name == "pv_limit_pct":
            return self.pv_limit_setting_pct if self.pv_limit_enabled else FULL_RATE_PCT
        if name == "reserve_soc_pct":
            return self.reserve_pct
        if name == "storage_control_mode":
            return self.storage_mode
        return getattr(self, name)

    def values(self) -> dict[str, float]:
        """Every control by name: what a map's control entries read (the balance of every tick
        carries it, so it is kept until a control changes; the caller must not change it)."""
        if self._values is None:
            self._values = {name: self.value(name) for name in CONTROL_NAMES}
        return self._values

    def view(self, now_s: float) -> dict:
        """The control API's controls (site-contract A7): a limit that does not act is null, and
        so is the reserve of a site without a battery."""
        charge = self.value("battery_charge_limit_pct") if self.storage_mode & CHARGE_BIT else None
        discharge = self.value("battery_discharge_limit_pct") if self.storage_mode & DISCHARGE_BIT else None
        return {"battery_charge_limit_pct": charge, "battery_discharge_limit_pct": discharge,
                "grid_charge": bool(self.grid_charge),
                "reserve_soc_pct": self.reserve_pct if self.battery is not None else None,
                "revert_s": self.revert_s, "revert_in_s": self.left_s(RATES, now_s),
                "pv_limit_pct": self.pv_limit_setting_pct if self.pv_limit_enabled else None,
                "pv_limit_revert_s": self.pv_limit_revert_s,
                "pv_limit_revert_in_s": self.left_s(PV, now_s)}

    def left_s(self, timer: str, now_s: float) -> float | None:
        """Simulated seconds until a watchdog reverts its limits (None: none runs)."""
        deadline = self.deadlines.get(timer)
        return None if deadline is None else max(deadline - now_s, 0.0)

    # --- writing ---
    def refusal(self, name: str, value: float) -> str | None:
        """Why a face may not set a control to value (one line), or None: it may."""
        control = CONTROLS[name]
        low, high = control.low, control.high
        if control.watts:
            low, high = low * self.max_w, high * self.max_w
        if value != value or not low <= value <= high:
            return f"{name} must be from {low:g} to {high:g} {control.unit}".rstrip(" -")
        if control.whole and value != int(value):
            return f"{name} must be a whole number"
        return None

    def set(self, changes: Mapping[str, float | None], now_s: float) -> None:
        """Set controls (each checked by refusal() first: none can fail here), in order, at the
        simulated time now_s; the watchdogs of the controls set restart. None switches a limit
        (LIMITS) off."""
        self._values = None
        timers = set()
        for name, value in changes.items():
            self._set(name, value)
            if CONTROLS[name].timer is not None:
                timers.add(CONTROLS[name].timer)
        for timer in timers:
            revert_s = self.revert_s if timer == RATES else self.pv_limit_revert_s
            if revert_s > 0:
                self.deadlines[timer] = now_s + revert_s
            else:
                self.deadlines.pop(timer, None)

    def _set(self, name: str, value: float | None) -> None:
        if value is None:
            self.storage_mode &= ~LIMITS[name]
            if name == "pv_limit_pct":
                self.pv_limit_enabled = 0
            return
        if name.endswith("_limit_w"):  # the same limit, as a share of Bmax
            name = name.replace("_limit_w", "_limit_pct")
            value = 100.0 * value / self.max_w if self.max_w else 0.0
        if name == "battery_charge_limit_pct":
            self.charge_rate_pct = float(value)
            self.storage_mode |= CHARGE_BIT
        elif name == "battery_discharge_limit_pct":
            self.discharge_rate_pct = float(value)
            self.storage_mode |= DISCHARGE_BIT
        elif name == "pv_limit_pct":  # 100 % is no limit: the limit is switched off
            self.pv_limit_setting_pct = float(value)
            self.pv_limit_enabled = int(value < FULL_RATE_PCT)
        elif name == "storage_control_mode":
            self.storage_mode = int(value)
        elif name == "reserve_soc_pct":
            self.reserve_pct = float(value)
        elif CONTROLS[name].whole:
            setattr(self, name, int(value))
        else:
            setattr(self, name, float(value))

    def expire(self, now_s: float) -> None:
        """Revert the limits whose watchdog ran out at or before now_s (a tick's simulated time):
        the rates to self-consumption, the PV limit off. Settings (ChaGriSet, the reserve, the
        revert times) stay."""
        deadlines = self.deadlines
        if not deadlines:
            return
        if deadlines.get(RATES, now_s + 1.0) <= now_s:
            del deadlines[RATES]
            self.storage_mode = 0
            self.charge_rate_pct = self.discharge_rate_pct = FULL_RATE_PCT
            self._values = None
        if deadlines.get(PV, now_s + 1.0) <= now_s:
            del deadlines[PV]
            self.pv_limit_enabled = 0
            self._values = None

    # --- what they do ---
    def window(self, pva_w: float) -> tuple[float, float]:
        """The battery's window (lo, hi) narrowed by the rate limits and ChaGriSet (site-contract
        B3), before the state of charge closes it; pva_w: the PV's AC equivalent."""
        max_w = self.max_w
        lo, hi = -max_w, max_w
        if self.storage_mode & CHARGE_BIT:  # InWRte < 0: discharge at least |InWRte| %
            lo = -max_w * self.charge_rate_pct / 100.0
        if self.storage_mode & DISCHARGE_BIT:  # OutWRte < 0: charge at least |OutWRte| %
            hi = max_w * self.discharge_rate_pct / 100.0
        if not self.grid_charge:  # the battery takes no energy from the grid
            lo, hi = max(lo, -pva_w), max(hi, -pva_w)
        return lo, hi

    def cap_w(self, rated_w: float) -> float:
        """The inverter's output cap: its rating, or the PV limit's share of it while enabled."""
        return rated_w * self.pv_limit_setting_pct / 100.0 if self.pv_limit_enabled else rated_w
