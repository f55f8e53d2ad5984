"""A site controlled from outside (site contract part B): evcc's four battery modes as its
sunspec-inverter-control template writes them, pysunspec2's own write path, the refusals, the
revert timers on simulated time, curtailment, the reserve over simulated hours and an inverter
that stays silent at night. Real clients on loopback against the real server; every verdict
polls with a deadline."""
from __future__ import annotations

import socket
import struct
import time

import pytest
from test_site_modbus import scanned

from meter_simulator.modbus.rtu import crc16, framed
from meter_simulator.testing import MeterSimulator
from support import connect, pymodbus_client, recv_exactly, unit_kw, wait_for

# unit 1, with a battery (site contract A4)
W_103, ST_103, WRTG = 40084, 40108, 40125
WMAXLIMPCT, WMAXLIM_RVRT, WMAXLIM_ENA = 40155, 40157, 40159
STORCTL, MINRSV, CHASTATE, CHAST = 40181, 40183, 40184, 40187
OUTWRTE, INWRTE, RVRT, CHAGRISET, INOUTWRTE_SF = 40188, 40189, 40191, 40193, 40201
SOCRSVMIN, SOC_802, W_802 = 40302, 40303, 40339
BMAX = 5000.0
NIGHT = {"load_w": 2000, "pv_available_w": 0}
SURPLUS = {"load_w": 1000, "pv_available_w": 5000}  # PVa 4850 W: 3850 W more than the house takes


def raw(percent: float) -> int:
    """A percentage as its register holds it (scale factor -2, two's complement)."""
    return round(percent * 100) & 0xFFFF


def signed(word: int) -> int:
    return word - 0x10000 if word >= 0x8000 else word


def site_of_sim(**keywords) -> MeterSimulator:
    """A night site (8 kWp, 10 kWh / 5 kW), grid meter in SunSpec, unless told otherwise."""
    options = dict(site=True, pv_kwp=8, battery_kwh=10, battery_kw=5, start_time="00:00", seed=1,
                   profile="sunspec", interval=0.5)
    return MeterSimulator(**{**options, **keywords})


def write_one(client, address: int, word: int, unit: int = 1) -> int:
    """FC 0x06, one register; the exception code or 0."""
    answer = client.write_register(address, word, **unit_kw(client.write_register, unit))
    return answer.exception_code if answer.isError() else 0


def write_run(client, address: int, words: list[int], unit: int = 1) -> int:
    """FC 0x10, a run of registers; the exception code or 0."""
    answer = client.write_registers(address, words, **unit_kw(client.write_registers, unit))
    return answer.exception_code if answer.isError() else 0


def read(client, address: int, count: int = 1, unit: int = 1) -> list[int]:
    answer = client.read_holding_registers(address, count=count,
                                           **unit_kw(client.read_holding_registers, unit))
    assert not answer.isError(), answer
    return list(answer.registers)


def grid_shown(client, profile: str) -> float:
    """The grid meter's total power at unit 200 (W, + = import)."""
    if profile == "sdm630":
        answer = client.read_input_registers(0x0034, count=2, **unit_kw(client.read_input_registers, 200))
        return struct.unpack(">f", struct.pack(">HH", *answer.registers))[0]
    return signed(read(client, 40088, unit=200)[0])  # SunSpec 203 W, W_SF 0


def balance_shows(sim, client, battery_w: float, grid_w: float, profile: str = "sunspec") -> bool:
    """The API and the registers (802 W, 103 W, the grid meter) show this battery and grid power."""
    site = sim.site()
    if abs(site["battery_w"] - battery_w) > 0.5 or abs(site["grid_w"] - grid_w) > 0.5:
        return False
    return (abs(signed(read(client, W_802)[0]) - battery_w) <= 1
            and abs(signed(read(client, W_103)[0]) - site["inverter_w"]) <= 1
            and abs(grid_shown(client, profile) - grid_w) <= 1)


def within_two_ticks(sim, condition, *args) -> None:
    """condition(*args) holds within two ticks of now (polled, 10 s at most)."""
    first = sim.ticks
    wait_for(lambda: condition(*args), timeout=10)
    assert sim.ticks <= first + 2, f"seen {sim.ticks - first} ticks later"


# evcc's sunspec-inverter-control template: one point per request (FC 0x06), in its order
EVCC_WRITES = {
    "normal": [(STORCTL, 0), (OUTWRTE, raw(100))],
    "hold": [(STORCTL, 2), (OUTWRTE, 0), (RVRT, 0)],
    "charge": [(CHAGRISET, 1), (STORCTL, 2), (OUTWRTE, raw(-50)), (RVRT, 0)],
    "holdcharge": [(STORCTL, 1), (INWRTE, 0), (RVRT, 0)],
}
# (mode, pins, B, G): what the balance shows after the mode's writes (site contract B3)
EVCC_BALANCES = [
    ("hold", NIGHT, 0.0, 2000.0),  # no discharge: the grid covers the deficit
    ("hold", SURPLUS, -3850.0, 0.0),  # a PV surplus still charges
    ("charge", NIGHT, -0.5 * BMAX, 2000.0 + 0.5 * BMAX),  # from the grid: L + 50 % x WChaMax
    ("holdcharge", SURPLUS, 0.0, 1000.0 - 4850.0),  # no charging: the surplus is exported
    ("holdcharge", NIGHT, 2000.0, 0.0),  # a deficit is still covered
    ("normal", NIGHT, 2000.0, 0.0),  # self-consumption
    ("normal", SURPLUS, -3850.0, 0.0),
]


@pytest.mark.parametrize("profile", ["sunspec", "sdm630"])
def test_evccs_four_battery_modes_show_in_the_balance_within_two_ticks(profile):
    with site_of_sim(profile=profile) as sim, pymodbus_client(sim.port) as client:
        for mode, pins, battery_w, grid_w in EVCC_BALANCES:
            sim.set_site(**pins)
            for address, word in EVCC_WRITES[mode]:
                assert write_one(client, address, word) == 0, (mode, address)
                assert read(client, address) == [word]  # read back at once, exactly as written
            controls = sim.site()["controls"]
            limits = {"normal": (None, None), "hold": (None, 0.0), "charge": (None, -50.0),
                      "holdcharge": (0.0, None)}[mode]
            assert (controls["battery_charge_limit_pct"], controls["battery_discharge_limit_pct"]) == limits
            assert controls["grid_charge"] is (mode != "hold")  # ChaGriSet is a setting: it stays
            within_two_ticks(sim, balance_shows, sim, client, battery_w, grid_w, profile)


def test_pysunspec2s_own_write_path_holds_and_charges_the_battery():
    with site_of_sim() as sim, pymodbus_client(sim.port) as client:
        sim.set_site(**NIGHT)
        device = scanned(sim.port, 1)
        try:
            storage = device.models[124][0]
            storage.StorCtl_Mod.value = 2  # hold: one register each, FC 0x06
            storage.OutWRte.cvalue = 0
            storage.InOutWRte_RvrtTms.value = 0
            storage.write()
            within_two_ticks(sim, balance_shows, sim, client, 0.0, 2000.0)
            storage.ChaGriSet.value = 1  # charge at 40 %: OutWRte and InWRte in one FC 0x10 run
            storage.OutWRte.cvalue = -40
            storage.InWRte.cvalue = 100
            storage.write()
            within_two_ticks(sim, balance_shows, sim, client, -0.4 * BMAX, 2000.0 + 0.4 * BMAX)
            storage.read()
            assert (storage.StorCtl_Mod.value, storage.OutWRte.cvalue, storage.InWRte.cvalue,
                    storage.ChaGriSet.value) == (2, -40, 100, 1)
            controls = sim.site()["controls"]
            assert controls["battery_discharge_limit_pct"] == -40.0 and controls["grid_charge"] is True
        finally:
            device.close()


# (writes, pins, B, G): B3's other musts, ChaGriSet 0 (the default) unless written
WINDOWS = [
    ([(STORCTL, 2), (OUTWRTE, raw(-50))], NIGHT, 0.0, 2000.0),  # charging from the PV only
    ([(STORCTL, 2), (OUTWRTE, raw(-50))], SURPLUS, -3850.0, 0.0),  # at least 50 %: all the surplus
    ([(STORCTL, 1), (INWRTE, raw(-40))], SURPLUS, 2000.0, 1000.0 - 4850.0 - 2000.0),  # forced, exported
    ([(STORCTL, 3), (INWRTE, raw(-20)), (OUTWRTE, raw(30))], NIGHT, 1500.0, 500.0),  # both limits
]


@pytest.mark.parametrize("writes, pins, battery_w, grid_w", WINDOWS)
def test_pv_only_charging_forced_discharge_and_both_limits(writes, pins, battery_w, grid_w):
    with site_of_sim() as sim, pymodbus_client(sim.port) as client:
        sim.set_site(**pins)
        for address, word in writes:
            assert write_one(client, address, word) == 0
        within_two_ticks(sim, balance_shows, sim, client, battery_w, grid_w)


def control_state(sim, client) -> tuple:
    """What a refused write must leave alone: models 123, 124 and 802 and the API's controls."""
    return read(client, 40150, 52), read(client, 40292, 64), sim.site()["controls"]


# (function, address, words, exception): writes the inverter refuses (site contract B2)
REFUSED_WRITES = [
    (6, STORCTL, [4], 3), (6, OUTWRTE, [raw(-100.01)], 3), (6, OUTWRTE, [raw(100.01)], 3),
    (6, INWRTE, [raw(100.01)], 3), (6, CHAGRISET, [2], 3), (6, WMAXLIM_ENA, [2], 3),
    (6, RVRT, [0xFFFF], 3), (6, WMAXLIM_RVRT, [0xFFFF], 3), (6, MINRSV, [raw(100.01)], 3),
    (6, SOCRSVMIN, [raw(100.01)], 3), (6, WMAXLIMPCT, [raw(100.01)], 3),
    (16, STORCTL, [4], 3),
    (6, CHAST, [4], 2), (6, CHASTATE, [5000], 2), (6, SOC_802, [5000], 2), (6, W_103, [0], 2),
    (6, W_802, [0], 2), (6, INOUTWRTE_SF, [0xFFFE], 2), (6, 40176, [124], 2), (6, 40177, [24], 2),
    (6, WRTG, [8000], 2),
    (16, CHAST, [4, raw(-50)], 2),  # a writable point and a read-only one: 0x02, nothing changes
    (16, CHAGRISET, [1, 0], 2),  # ChaGriSet and a scale factor
    (16, CHAST, [4, raw(100.01)], 3),  # wrong in both ways: the value first
    (16, OUTWRTE, [raw(-50), raw(100.01)], 3),  # all or nothing: OutWRte fine, InWRte not
]


def test_every_refused_write_changes_nothing():
    with site_of_sim(interval=3600) as sim, pymodbus_client(sim.port) as client:
        sim.set_site(**NIGHT)
        before = control_state(sim, client)
        for function, address, words, code in REFUSED_WRITES:
            single = function == 6
            shown = write_one(client, address, words[0]) if single else write_run(client, address, words)
            assert shown == code, (function, address, words)
            assert control_state(sim, client) == before, (function, address, words)
        assert sim.site()["battery_w"] == 2000.0


# a valid raw value of every writable control point
WRITABLE = {WMAXLIMPCT: raw(100), WMAXLIM_RVRT: 65534, WMAXLIM_ENA: 1, STORCTL: 3, MINRSV: raw(100),
            OUTWRTE: raw(-100), INWRTE: raw(100), RVRT: 65534, CHAGRISET: 1, SOCRSVMIN: raw(12.34)}


def test_every_control_takes_fc_0x06_and_0x10_and_runs_are_all_or_nothing():
    with site_of_sim(interval=3600) as sim, pymodbus_client(sim.port) as client:
        for address, word in WRITABLE.items():
            assert write_run(client, address, [word]) == 0 and read(client, address) == [word], address
        for address in WRITABLE:
            assert write_one(client, address, 0) == 0 and read(client, address) == [0], address
        assert write_run(client, OUTWRTE, [raw(-30), raw(40)]) == 0  # two controls in one request
        assert read(client, OUTWRTE, 2) == [raw(-30), raw(40)]
        assert write_run(client, WMAXLIMPCT, [raw(50)]) == 0
        assert write_one(client, MINRSV, raw(35)) == 0  # one value behind two points
        assert read(client, SOCRSVMIN) == [raw(35)] and sim.site()["controls"]["reserve_soc_pct"] == 35.0
        assert write_one(client, SOCRSVMIN, raw(15.5)) == 0
        assert read(client, MINRSV) == [raw(15.5)] and sim.site()["battery"]["reserve_pct"] == 15.5
        assert write_one(client, STORCTL, 3) == 0
        controls = sim.site()["controls"]
        assert (controls["battery_discharge_limit_pct"], controls["battery_charge_limit_pct"]) == (-30, 40)


def test_read_only_refuses_every_write_with_0x01():
    with site_of_sim(read_only=True, interval=3600) as sim, pymodbus_client(sim.port) as client:
        before = control_state(sim, client)
        for address, word in WRITABLE.items():
            assert write_one(client, address, word) == 1 and write_run(client, address, [word]) == 1
        assert write_one(client, CHAST, 4) == 1 and write_run(client, OUTWRTE, [0, 0]) == 1
        assert write_one(client, 40068, 7, unit=200) == 1  # the grid meter's DA
        assert control_state(sim, client) == before


FAST = dict(speed=1000, interval=0.05)  # 50 simulated seconds a tick


def reverted_after(sim, key: str, left_key: str, earliest_s: float) -> list[float]:
    """Poll the API until the control `key` reads null (reverted); it reverts at the first tick
    at or after its watchdog's deadline (time_s + the count `left_key` shows), never before
    earliest_s. The counts seen on the way, in order."""
    samples: list[tuple[float, float]] = []

    def reverted() -> dict | None:
        site = sim.site()
        if site["controls"][key] is None:
            return site
        samples.append((site["time_s"], site["controls"][left_key]))
        return None

    site = wait_for(reverted, timeout=10)
    assert samples and site["controls"][left_key] is None
    deadline_s = max(time_s + left for time_s, left in samples)  # a tick's time and what it had left
    assert deadline_s >= earliest_s - 1e-6
    assert all(time_s < deadline_s for time_s, _ in samples)  # in force until the deadline
    assert site["time_s"] >= deadline_s - 1e-6, (site["time_s"], deadline_s)
    return [left for _, left in samples]


def test_the_rate_limits_revert_n_simulated_seconds_after_the_last_write():
    revert_s = 600
    with site_of_sim(**FAST) as sim, pymodbus_client(sim.port) as client:
        sim.set_site(**NIGHT)
        assert write_one(client, RVRT, revert_s) == 0
        written_s = sim.site()["time_s"]  # the write below comes later: its deadline is later
        assert write_one(client, STORCTL, 2) == 0 and write_one(client, OUTWRTE, 0) == 0
        wait_for(lambda: balance_shows(sim, client, 0.0, 2000.0))  # hold
        counts = reverted_after(sim, "battery_discharge_limit_pct", "revert_in_s", written_s + revert_s)
        assert counts and all(0 < left <= revert_s for left in counts)
        assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]  # counting down
        assert read(client, STORCTL) == [0] and read(client, OUTWRTE, 2) == [raw(100), raw(100)]
        assert read(client, RVRT) == [revert_s]  # a setting: it stays
        wait_for(lambda: balance_shows(sim, client, 2000.0, 0.0))  # self-consumption again


def test_a_watchdog_that_rewrites_the_mode_keeps_it():
    revert_s = 2000
    with site_of_sim(**FAST) as sim, pymodbus_client(sim.port) as client:
        sim.set_site(**NIGHT)
        assert write_one(client, RVRT, revert_s) == 0 and write_one(client, OUTWRTE, 0) == 0
        written_s = start_s = sim.site()["time_s"]
        assert write_one(client, STORCTL, 2) == 0
        deadline = time.monotonic() + 20
        while written_s < start_s + 2 * revert_s:  # rewritten every eighth of the revert time
            assert time.monotonic() < deadline, "the simulated clock stalls"
            site = sim.site()
            assert site["controls"]["battery_discharge_limit_pct"] == 0.0 and site["battery_w"] == 0.0
            assert read(client, STORCTL) == [2]
            if site["time_s"] >= written_s + revert_s / 8:
                written_s = site["time_s"]
                assert write_one(client, STORCTL, 2) == 0
            time.sleep(0.01)  # the pace of the polls, no verdict
        reverted_after(sim, "battery_discharge_limit_pct", "revert_in_s", written_s + revert_s)
        assert read(client, STORCTL) == [0]


def test_the_pv_limit_reverts_to_disabled_and_keeps_its_percentage():
    revert_s = 300
    with site_of_sim(start_time="12:00", **FAST) as sim, pymodbus_client(sim.port) as client:
        sim.set_site(load_w=500, pv_available_w=6000, soc_pct=100)
        assert write_one(client, WMAXLIM_RVRT, revert_s) == 0 and write_one(client, WMAXLIMPCT, raw(25)) == 0
        written_s = sim.site()["time_s"]
        assert write_one(client, WMAXLIM_ENA, 1) == 0 and sim.site()["controls"]["pv_limit_pct"] == 25.0
        wait_for(lambda: signed(read(client, W_103)[0]) <= 2000 + 1)  # 25 % of 8 kW
        counts = reverted_after(sim, "pv_limit_pct", "pv_limit_revert_in_s", written_s + revert_s)
        assert counts and all(0 < left <= revert_s for left in counts)
        assert read(client, WMAXLIMPCT, 5) == [raw(25), 0xFFFF, revert_s, 0xFFFF, 0]
        wait_for(lambda: sim.site()["inverter_state"] == "MPPT" and signed(read(client, W_103)[0]) > 5800)


def test_curtailment_caps_the_output_and_throttles_the_pv():
    with site_of_sim(start_time="12:00") as sim, pymodbus_client(sim.port) as client:
        sim.set_site(load_w=1000, pv_available_w=6000, soc_pct=100)
        rated_w = read(client, WRTG)[0]
        assert rated_w == 8000
        assert write_one(client, WMAXLIMPCT, raw(37.5)) == 0 and write_one(client, WMAXLIM_ENA, 1) == 0

        def capped() -> bool:
            site = sim.site()
            return (signed(read(client, W_103)[0]) <= 0.375 * rated_w + 1 and read(client, ST_103) == [5]
                    and site["inverter_state"] == "THROTTLED" and site["pv_dc_w"] < site["pv_available_w"])

        def shows(address: int, word: int, battery_w: float, grid_w: float) -> bool:
            return read(client, address) == [word] and balance_shows(sim, client, battery_w, grid_w)

        within_two_ticks(sim, capped)
        assert balance_shows(sim, client, 0.0, 1000.0 - 3000.0)
        assert write_one(client, WMAXLIM_ENA, 0) == 0  # lifted
        within_two_ticks(sim, shows, ST_103, 4, 0.0, -4820.0)
        assert write_one(client, WMAXLIMPCT, 0) == 0 and write_one(client, WMAXLIM_ENA, 1) == 0  # no output
        within_two_ticks(sim, shows, W_103, 0, 0.0, 1000.0)
        sim.set_site(soc_pct=50)  # the battery still charges from the PV, on the DC side
        within_two_ticks(sim, shows, W_103, 0, -4820.0, 1000.0)


def socs_over(sim, hours: float) -> list[float]:
    """The state of charge the API shows, sampled until `hours` more simulated hours have run."""
    end_s = sim.site()["time_s"] + hours * 3600
    socs: list[float] = []

    def done() -> bool:
        site = sim.site()
        socs.append(site["soc_pct"])
        return site["time_s"] >= end_s

    wait_for(done, timeout=20)
    return socs


def test_a_raised_reserve_stops_discharging_and_holds_over_simulated_hours():
    with site_of_sim(speed=10000) as sim, pymodbus_client(sim.port) as client:  # 5000 s a tick
        sim.set_site(**NIGHT, soc_pct=50)
        assert write_one(client, MINRSV, raw(60)) == 0  # above the state of charge, with a deficit
        held_pct = sim.site()["soc_pct"]
        within_two_ticks(sim, balance_shows, sim, client, 0.0, 2000.0)
        assert read(client, CHAST) == [2]  # EMPTY: at or below the reserve
        socs = socs_over(sim, 5)
        assert held_pct - 0.1 <= min(socs) <= max(socs) <= held_pct + 0.1  # no discharge, no grid charge
        assert write_one(client, SOCRSVMIN, raw(40)) == 0  # lowered below it: discharges to 40 %
        assert read(client, MINRSV) == [raw(40)]
        within_two_ticks(sim, balance_shows, sim, client, 2000.0, 0.0)
        socs = socs_over(sim, 5)
        assert min(socs) >= 40.0 - 0.1 and socs[-1] <= 40.0 + 0.1
        assert sim.site()["battery_w"] == 0.0 and read(client, SOC_802)[0] >= raw(39.9)


READ_SUNS = bytes.fromhex("03 9c40 0002")  # holding 40000-40001: "SunS" on both unit ids
SUNS_ANSWER = bytes.fromhex("03 04 5375 6e53")


def next_answer(sock: socket.socket) -> tuple[int, int, bytes]:
    """(transaction id, unit id, PDU) of the next Modbus/TCP answer on the connection."""
    transaction_id, _, length, unit_id = struct.unpack(">HHHB", recv_exactly(sock, 7))
    return transaction_id, unit_id, recv_exactly(sock, length - 1)


def unit_1_answers(sock: socket.socket, transaction_id: int) -> bool:
    """Read SunS from unit 1, then from unit 200 (MBAP, hand-made frames, one connection): True
    when unit 1 answers, False when the first bytes back are unit 200's answer."""
    frames = [struct.pack(">HHHB", transaction_id + k, 0, len(READ_SUNS) + 1, unit_id) + READ_SUNS
              for k, unit_id in enumerate((1, 200))]
    sock.sendall(b"".join(frames))
    first = next_answer(sock)
    answered = first == (transaction_id, 1, SUNS_ANSWER)
    if answered:
        first = next_answer(sock)
    assert first == (transaction_id + 1, 200, SUNS_ANSWER)
    return answered


def unit_1_answers_rtu(sock: socket.socket) -> bool:
    """unit_1_answers in RTU over TCP: a frame to unit 1, then one to unit 200."""
    sock.sendall(framed(1, READ_SUNS) + framed(200, READ_SUNS))
    first = recv_exactly(sock, 9)
    answered = first == framed(1, SUNS_ANSWER)
    if answered:
        first = recv_exactly(sock, 9)
    assert first == framed(200, SUNS_ANSWER) and crc16(first) == 0
    return answered


def asleep_silent(sim) -> bool:
    site = sim.site()
    return site["inverter_state"] == "SLEEPING" and site["inverter_answering"] is False


def test_a_silent_inverter_answers_nothing_at_night_and_the_grid_meter_goes_on():
    with site_of_sim(inverter_night="silent") as sim, connect(sim.port) as sock:
        sim.set_site(load_w=500, pv_available_w=0, soc_pct=5)  # at the reserve: no battery flow
        wait_for(lambda: asleep_silent(sim))
        assert not unit_1_answers(sock, 1) and not unit_1_answers(sock, 3)
        sock.settimeout(0.3)  # nothing else is on the way, and the connection is open
        with pytest.raises(socket.timeout):
            sock.recv(1)
        sock.settimeout(10)
        assert asleep_silent(sim)
        sim.set_site(pv_available_w=3000)  # the sun is up: unit 1 answers again within 2 ticks
        transaction_ids = iter(range(10, 100000, 2))
        within_two_ticks(sim, lambda: unit_1_answers(sock, next(transaction_ids)))
        assert sim.site()["inverter_answering"] is True and sim.site()["inverter_state"] == "MPPT"


def test_asleep_is_the_default_and_answers_zeros_with_st_2():
    with site_of_sim() as sim, pymodbus_client(sim.port) as client:
        sim.set_site(load_w=500, pv_available_w=0, soc_pct=5)
        wait_for(lambda: sim.site()["inverter_state"] == "SLEEPING")
        assert read(client, ST_103) == [2]
        model_103, model_160 = read(client, 40070, 52), read(client, 40202, 90)
        model_802 = read(client, 40292, 64)
        for address in (40072, 40073, 40074, 40075, 40084, 40088, 40090, 40097, 40101):  # A, W, VA, VAr, DC
            assert model_103[address - 40070] == 0, address
        for module in range(4):  # the strings' and the battery's DCA and DCW
            assert model_160[19 + 20 * module] == model_160[21 + 20 * module] == 0, module
        assert model_802[40336 - 40292] == model_802[W_802 - 40292] == 0  # A, W
        assert sim.site()["inverter_answering"] is True


def test_a_silent_inverter_is_silent_over_rtu_framing_too():
    with site_of_sim(inverter_night="silent", framing="rtu") as sim, connect(sim.port) as sock:
        sim.set_site(controls={"battery_discharge_limit_pct": 0}, **NIGHT)  # hold: no battery flow
        wait_for(lambda: asleep_silent(sim))
        assert not unit_1_answers_rtu(sock) and not unit_1_answers_rtu(sock)
        sim.set_site(controls={"battery_discharge_limit_pct": None})  # the battery covers the house
        within_two_ticks(sim, lambda: unit_1_answers_rtu(sock))
        assert sim.site()["inverter_state"] == "STANDBY"
