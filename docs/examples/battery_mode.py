"""evcc's battery modes, written over Modbus to a simulated home and checked at its grid meter.

Run: python docs/examples/battery_mode.py (from a checkout with the package installed).

It starts a site in this process (a hybrid inverter with 8 kWp and a 10 kWh / 5 kW battery at
unit id 1, a SunSpec grid meter at unit id 200) at midnight, pins the house load, and then writes
the modes as evcc's sunspec-inverter-control template does, one register per request (FC 0x06):

- "charge": ChaGriSet = 1, StorCtl_Mod = 2, OutWRte = -50 %, InOutWRte_RvrtTms = 0 (no revert): the
  battery charges at half its power from the grid, which shows the load plus the charge rate;
- "normal": StorCtl_Mod = 0, OutWRte = 100 %: self-consumption again, the battery covers the load
  and the grid shows nothing.

After each mode it reads the grid meter's 203 W and the battery's 802 W until they show what the
mode must show (at most 5 s), prints them and exits 0; a mismatch exits 1 with a message.
"""
from __future__ import annotations

import inspect
import sys
import time

from pymodbus.client import ModbusTcpClient

from meter_simulator.testing import MeterSimulator

INVERTER, GRID = 1, 200  # the site's unit ids
LOAD_W = 1500.0  # the house load, pinned
BATTERY_KW = 5.0  # the battery's largest power: the rates' 100 % (124 WChaMax)
CHARGE_PCT = 50  # evcc's maxchargerate: "charge" writes OutWRte = -50 %
STOR_CTL_MOD, OUT_W_RTE, RVRT_TMS, CHA_GRI_SET = 40181, 40188, 40191, 40193  # model 124 points
GRID_W, GRID_W_SF = 40088, 40092  # the grid meter's 203 W and its scale factor
BATTERY_W = 40339  # the inverter's 802 W (+ = discharge, W_SF 0 here)
DEADLINE_S = 5.0  # the balance must show a mode within 2 ticks: a second here is plenty


def unit(method, unit_id: int) -> dict:
    """pymodbus's unit id keyword: device_id= from 3.10 on, slave= before."""
    params = inspect.signature(method).parameters
    return {"device_id": unit_id} if "device_id" in params else {"slave": unit_id}


def signed(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


class Site:
    """The two devices behind one connection."""

    def __init__(self, client: ModbusTcpClient) -> None:
        self.client = client

    def write(self, address: int, value: int) -> None:
        """One register of the inverter (FC 0x06), a negative value as its int16 word."""
        result = self.client.write_register(address, value & 0xFFFF,
                                            **unit(self.client.write_register, INVERTER))
        if result.isError():
            raise SystemExit(f"writing {value} to {address} was refused: {result}")

    def read(self, address: int, count: int, unit_id: int) -> list[int]:
        result = self.client.read_holding_registers(address, count=count,
                                                    **unit(self.client.read_holding_registers, unit_id))
        if result.isError():
            raise SystemExit(f"reading {count} registers at {address} of unit {unit_id} failed: {result}")
        return result.registers

    def powers(self) -> tuple[float, float]:
        """(grid W, + import; battery W, + discharge) as a client decodes them."""
        words = self.read(GRID_W, GRID_W_SF - GRID_W + 1, GRID)
        grid_w = signed(words[0]) * 10.0 ** signed(words[-1])
        battery_w = float(signed(self.read(BATTERY_W, 1, INVERTER)[0]))
        return grid_w, battery_w


def wait_for(site: Site, mode: str, grid_w: float, battery_w: float) -> tuple[float, float]:
    """Read until the grid and the battery show the expected powers (1 W and 0.5 % apart at most),
    or fail with what was read last."""
    def close(seen: float, expected: float) -> bool:
        return abs(seen - expected) <= 1.0 + 0.005 * abs(expected)

    deadline = time.monotonic() + DEADLINE_S
    while True:
        seen = site.powers()
        if close(seen[0], grid_w) and close(seen[1], battery_w):
            print(f"{mode}: grid {seen[0]:+.0f} W (import +), battery {seen[1]:+.0f} W (discharge +)")
            return seen
        if time.monotonic() > deadline:
            raise SystemExit(f"{mode}: expected grid {grid_w:+.0f} W and battery {battery_w:+.0f} W, "
                             f"read grid {seen[0]:+.0f} W and battery {seen[1]:+.0f} W")
        time.sleep(0.1)  # the next read; the deadline decides


def main() -> int:
    with MeterSimulator(site=True, profile="sunspec", pv_kwp=8, battery_kwh=10, start_time="00:00",
                        seed=1, interval=0.5, http=True) as sim:
        sim.set_site(load_w=LOAD_W)  # midnight: no PV; the load pinned
        print(f"site on 127.0.0.1:{sim.port}, control port {sim.http_url}, load {LOAD_W:.0f} W")
        client = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=3)
        if not client.connect():
            raise SystemExit(f"cannot connect to 127.0.0.1:{sim.port}")
        site = Site(client)
        try:
            # evcc "charge", in its order: ChaGriSet, StorCtl_Mod, OutWRte, the revert time
            for address, value in ((CHA_GRI_SET, 1), (STOR_CTL_MOD, 2),
                                   (OUT_W_RTE, -CHARGE_PCT * 100), (RVRT_TMS, 0)):  # SF -2: -50.00 %
                site.write(address, value)
            charge_w = CHARGE_PCT / 100 * BATTERY_KW * 1000
            wait_for(site, "charge", LOAD_W + charge_w, -charge_w)
            controls = sim.site()["controls"]
            print(f"  controls: discharge limit {controls['battery_discharge_limit_pct']} %, "
                  f"grid charge {controls['grid_charge']}, revert time {controls['revert_s']} s (none)")

            # evcc "normal": StorCtl_Mod = 0, OutWRte = 100 %
            site.write(STOR_CTL_MOD, 0)
            site.write(OUT_W_RTE, 100 * 100)
            wait_for(site, "normal", 0.0, LOAD_W)  # self-consumption: the battery covers the load
            controls = sim.site()["controls"]
            print(f"  controls: discharge limit {controls['battery_discharge_limit_pct']} (off), "
                  f"grid charge {controls['grid_charge']} (a setting: it stays)")
        finally:
            client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
