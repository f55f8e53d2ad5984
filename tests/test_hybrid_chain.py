"""The inverter's SunSpec chain (site-contract A4) as data: the built-in map sunspec-hybrid and
maps.hybrid.chain(), encoded by a Device for a site and decoded here as a SunSpec client would,
checked against pysunspec2's model definitions and the site's balance (pure: no sockets).

Configurations: 8 kWp with 10 kWh (5 kW), 8 kWp without a battery, and 40 kWp with 200 kWh and
100 kW, whose largest values raise scale factors.
"""
from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest
import sunspec2
from pyModbusTCP.constants import EXP_DATA_ADDRESS, EXP_DATA_VALUE, EXP_NONE
from sunspec2.modbus.client import SunSpecModbusClientDevice
from sunspec2.modbus.modbus import ModbusClientException

from meter_simulator import __version__
from meter_simulator.device.device import Device
from meter_simulator.maps import hybrid, mapfile, profiles
from meter_simulator.model import site
from meter_simulator.model.site import Site

MODELS_JSON = Path(sunspec2.__file__).parent / "models" / "json"
BASE = 40000
# the contract's table: (model id, first address, L) in order, then the end model's address
LAYOUT = {
    True: ([(1, 40002, 66), (103, 40070, 50), (120, 40122, 26), (123, 40150, 24), (124, 40176, 24),
            (160, 40202, 88), (802, 40292, 62)], 40356),
    False: ([(1, 40002, 66), (103, 40070, 50), (120, 40122, 26), (123, 40150, 24), (160, 40176, 48)], 40226),
}
CONFIGS = {  # name -> Site keywords
    "8kWp+10kWh": {"pv_kwp": 8.0, "battery_kwh": 10.0},
    "8kWp": {"pv_kwp": 8.0},
    "40kWp+200kWh+100kW": {"pv_kwp": 40.0, "battery_kwh": 200.0, "battery_kw": 100.0},
}
SCENES = {  # pins -> what the battery does
    "charging": {"load_w": 2000.0, "pv_available_w": 6000.0},
    "discharging": {"load_w": 7000.0, "pv_available_w": 2000.0},
    "night": {"load_w": 3000.0, "pv_available_w": 0.0},
    "full output": {"load_w": 100000.0, "pv_available_w": 100000.0},
}
# the map type of each SunSpec type
MAP_TYPES = {"uint16": "uint16", "enum16": "uint16", "bitfield16": "uint16", "count": "uint16",
             "pad": "uint16", "int16": "int16", "sunssf": "int16", "acc32": "acc32", "uint32": "uint32",
             "bitfield32": "uint32", "int32": "int32", "string": "string"}
NOT_IMPLEMENTED = {"uint16": 0xFFFF, "enum16": 0xFFFF, "bitfield16": 0xFFFF, "count": 0xFFFF,
                   "int16": -0x8000, "sunssf": -0x8000, "acc32": 0, "uint32": 0xFFFFFFFF,
                   "bitfield32": 0xFFFFFFFF, "int32": -0x80000000, "string": ""}
# the points site-contract A4 names implemented (besides the mandatory ones), with their scale factors
IMPLEMENTED = {
    1: {"Opt", "Vr", "DA", "Pad"},
    103: {"PPVphAB", "PPVphBC", "PPVphCA", "VA", "VA_SF", "VAr", "VAr_SF", "PF", "PF_SF", "DCA", "DCA_SF",
          "DCV", "DCV_SF", "DCW", "DCW_SF"},
    120: {"WHRtg", "WHRtg_SF", "AhrRtg", "AhrRtg_SF", "MaxChaRte", "MaxChaRte_SF", "MaxDisChaRte",
          "MaxDisChaRte_SF", "Pad"},
    123: {"WMaxLimPct_RvrtTms"},
    124: {"MinRsvPct", "ChaState", "InBatV", "ChaSt", "OutWRte", "InWRte", "InOutWRte_RvrtTms", "ChaGriSet",
          "MinRsvPct_SF", "ChaState_SF", "InBatV_SF", "InOutWRte_SF"},
    160: {"DCA_SF", "DCV_SF", "DCW_SF", "DCWH_SF", "Evt", "N", "ID", "IDStr", "DCA", "DCV", "DCW", "DCWH",
          "DCEvt"},
    802: {"SoCMax", "SoCMin", "SoCRsvMin", "SoH", "SoH_SF", "ChaSt", "W_SF"},
}
BATTERY_120 = {"WHRtg", "WHRtg_SF", "AhrRtg", "AhrRtg_SF", "MaxChaRte", "MaxChaRte_SF", "MaxDisChaRte",
               "MaxDisChaRte_SF"}  # not implemented without a battery
TABLE_SCALE_FACTORS = {  # the contract's scale factors, before any raising
    103: {"A_SF": -2, "V_SF": -1, "W_SF": 0, "Hz_SF": -2, "VA_SF": 0, "VAr_SF": 0, "PF_SF": -2, "WH_SF": 0,
          "DCA_SF": -2, "DCV_SF": -1, "DCW_SF": 0, "Tmp_SF": -1},
    120: {"WRtg_SF": 0, "VARtg_SF": 0, "VArRtg_SF": 0, "ARtg_SF": -1, "PFRtg_SF": -2, "WHRtg_SF": 0,
          "AhrRtg_SF": 0, "MaxChaRte_SF": 0, "MaxDisChaRte_SF": 0},
    123: {"WMaxLimPct_SF": -2, "OutPFSet_SF": -3},
    124: {"WChaMax_SF": 0, "WChaDisChaGra_SF": 0, "MinRsvPct_SF": -2, "ChaState_SF": -2, "InBatV_SF": -1,
          "InOutWRte_SF": -2},
    160: {"DCA_SF": -2, "DCV_SF": -1, "DCW_SF": 0, "DCWH_SF": 0},
    802: {"AHRtg_SF": 0, "WHRtg_SF": 0, "WChaDisChaMax_SF": 0, "SoC_SF": -2, "V_SF": -1, "CellV_SF": -3,
          "A_SF": -1, "AMax_SF": -1, "W_SF": 0},
}
RAISED_100_KW = {  # one decade up for WRtg = Bmax = 100 kW, E_max = 200 kWh
    103: ("W_SF", "VA_SF", "DCW_SF"),
    120: ("WRtg_SF", "VARtg_SF", "WHRtg_SF", "MaxChaRte_SF", "MaxDisChaRte_SF"),
    124: ("WChaMax_SF",), 160: ("DCW_SF",), 802: ("WHRtg_SF", "WChaDisChaMax_SF", "W_SF"),
}


class Bank:
    image = None

    def publish(self, image) -> None:
        self.image = image


def json_group(model_id: int) -> dict:
    return json.loads((MODELS_JSON / f"model_{model_id}.json").read_text())["group"]


def point_defs(model_id: int, modules: int = 0) -> list[tuple[str, int, dict]]:
    """(name, offset from the model's ID, definition) of a model's points, model 160's modules as
    'module<k>.<name>'."""
    group, out, offset = json_group(model_id), [], 0
    for pdef in group["points"]:
        out.append((pdef["name"], offset, pdef))
        offset += pdef.get("size", 1)
    for k in range(1, modules + 1):
        for pdef in group["groups"][0]["points"]:
            out.append((f"module{k}.{pdef['name']}", offset, pdef))
            offset += pdef.get("size", 1)
    return out


def raw_value(words: list[int], kind: str):
    data = struct.pack(f">{len(words)}H", *words)
    if kind == "string":
        return data.rstrip(b"\0").decode()
    code = {"int16": "h", "sunssf": "h", "int32": "i"}.get(kind, "H" if len(words) == 1 else "I")
    return struct.unpack(">" + code, data)[0]


class Chain:
    """An encoded image decoded as a SunSpec client does: walked from 40000, each model's points
    by pysunspec2's definitions, raw and with their scale factors."""

    def __init__(self, image) -> None:
        self.image = image
        assert image.words(BASE, 2) == [0x5375, 0x6E53]
        self.models: dict[int, tuple[int, int]] = {}  # id -> (address, L)
        self.raw: dict[int, dict[str, object]] = {}
        self.defs: dict[int, list] = {}
        address = BASE + 2
        while image.words(address, 1) != [0xFFFF]:
            model_id, length = image.words(address, 2)
            modules = (length - 8) // 20 if model_id == 160 else 0
            defs = point_defs(model_id, modules)
            self.models[model_id] = (address, length)
            self.defs[model_id] = defs
            self.raw[model_id] = {name: raw_value(image.words(address + offset, pdef.get("size", 1)),
                                                  pdef["type"]) for name, offset, pdef in defs}
            address += 2 + length
        self.end = address

    def value(self, model_id: int, name: str) -> float:
        """A point's value, raw x 10^SF."""
        pdef = next(pdef for point, _, pdef in self.defs[model_id] if point == name)
        factor = self.raw[model_id][pdef["sf"]] if "sf" in pdef else 0
        return self.raw[model_id][name] * 10.0 ** factor

    def count(self, model_id: int, name: str) -> float:
        """One count of a point: 10^SF."""
        pdef = next(pdef for point, _, pdef in self.defs[model_id] if point == name)
        return 10.0 ** self.raw[model_id][pdef["sf"]]


def new_site(config: str, **pins) -> Site:
    home = Site(random.Random(1), 12 * 3600.0, **CONFIGS[config])
    home.pin(pins or {"load_w": 2000.0, "pv_available_w": 6000.0})
    return home


def device_of(home: Site) -> Device:
    return Device(home.inverter, Bank(), hybrid.site_chain(home), unit_id=1, serial=5020001)


def chain_of(home: Site) -> Chain:
    device = device_of(home)
    device.publish()
    return Chain(device.bank.image)


# --- the layout ---

@pytest.mark.parametrize("config", CONFIGS)
def test_the_chain_walks_as_the_contract_lays_it_out(config):
    home = new_site(config)
    chain = chain_of(home)
    models, end = LAYOUT[home.battery is not None]
    assert [(model_id, *chain.models[model_id]) for model_id in chain.models] == models
    assert chain.end == end and chain.image.words(end, 2) == [0xFFFF, 0]
    assert [segment[:2] for segment in chain.image.holding] == [(BASE, end + 2)]  # readable: exactly these
    assert chain.image.input == ()
    assert chain.image.words(BASE - 1, 2) is None and chain.image.words(end + 1, 2) is None


@pytest.mark.parametrize("config", CONFIGS)
def test_every_point_lies_at_its_definitions_offset_type_and_size(config):
    home = new_site(config)
    profile = hybrid.site_chain(home)
    by_address = {point.address: point for point in profile.points}
    expected = {BASE: ("uint32", 2)}
    for model_id, start, length in LAYOUT[home.battery is not None][0]:
        modules = (length - 8) // 20 if model_id == 160 else 0
        for _, offset, pdef in point_defs(model_id, modules):
            expected[start + offset] = (MAP_TYPES[pdef["type"]], pdef.get("size", 1))
        assert offset + pdef.get("size", 1) == length + 2, model_id  # the definition fills L
    end = LAYOUT[home.battery is not None][1]
    expected.update({end: ("uint16", 1), end + 1: ("uint16", 1)})
    assert {address: (point.type, point.length) for address, point in by_address.items()} == expected


@pytest.mark.parametrize("config", CONFIGS)
def test_every_scaled_quantity_names_its_definitions_scale_factor(config):
    home = new_site(config)
    by_address = {point.address: point for point in hybrid.site_chain(home).points}
    linked = 0
    for model_id, start, length in LAYOUT[home.battery is not None][0]:
        defs = point_defs(model_id, (length - 8) // 20 if model_id == 160 else 0)
        offsets = {name: offset for name, offset, _ in defs}
        for _, offset, pdef in defs:
            point = by_address[start + offset]
            if (point.quantity is not None or point.control is not None) and "sf" in pdef:
                assert point.scale_factor == start + offsets[pdef["sf"]], point.label
                linked += 1
            else:
                assert point.scale_factor is None, point.label
    assert linked == (57 if home.battery else 30)  # 103: 18, 120: 7 (3), 123: 1, 124: 6, 160: 16 (8), 802: 9


@pytest.mark.parametrize("config", CONFIGS)
def test_mandatory_and_named_points_are_implemented_and_every_other_reads_not_implemented(config):
    home = new_site(config, **SCENES["charging"])
    home.step(3600.0)  # every counter moves: an acc32 of 0 reads "not implemented"
    home.pin(SCENES["discharging"])
    home.step(3600.0)
    chain = chain_of(home)
    for model_id, defs in chain.defs.items():
        for name, _, pdef in defs:
            raw = chain.raw[model_id][name]
            implemented = pdef.get("mandatory") == "M" or name.split(".")[-1] in IMPLEMENTED[model_id]
            implemented = implemented and not (model_id == 120 and not home.battery and name in BATTERY_120)
            if pdef["type"] == "pad":
                assert raw == 0
            elif implemented:
                assert raw != NOT_IMPLEMENTED[pdef["type"]], (model_id, name)
            else:
                assert raw == NOT_IMPLEMENTED[pdef["type"]], (model_id, name, raw)


def test_the_identity_and_the_constants_read_the_contracts_values():
    chain = chain_of(new_site("8kWp+10kWh"))
    common = chain.raw[1]
    assert (common["Mn"], common["Md"], common["Opt"], common["SN"], common["DA"]) == (
        "meter-simulator", "hybrid-inverter", "site", "5020001", 1)
    assert common["Vr"] == __version__
    assert chain.raw[120]["DERTyp"] == 82
    assert {name: chain.value(123, name) for name in ("WMaxLimPct", "OutPFSet")} == {
        "WMaxLimPct": 100.0, "OutPFSet": 1.0}
    assert [chain.raw[123][name] for name in ("Conn", "WMaxLimPct_RvrtTms", "WMaxLim_Ena", "OutPFSet_Ena",
                                              "VArPct_Ena")] == [1, 0, 0, 0, 0]
    storage = chain.raw[124]
    assert [storage[name] for name in ("WChaGra", "WDisChaGra", "StorCtl_Mod", "InOutWRte_RvrtTms",
                                       "ChaGriSet")] == [100, 100, 0, 0, 0]
    assert chain.value(124, "OutWRte") == chain.value(124, "InWRte") == 100.0
    assert chain.value(124, "MinRsvPct") == chain.value(802, "SoCRsvMin") == 5.0
    battery = chain.raw[802]
    assert [battery[name] for name in ("LocRemCtl", "Typ", "State", "SetOp", "SetInvState", "Evt1", "Evt2",
                                       "EvtVnd1", "EvtVnd2", "AlmRst")] == [0, 4, 3, 1, 3, 0, 0, 0, 0, 0]
    assert [chain.value(802, name) for name in ("SoCMax", "SoCMin", "SoH")] == [100.0, 0.0, 100.0]
    assert [chain.raw[160][f"module{k}.IDStr"] for k in (1, 2, 3, 4)] == ["String 1", "String 2", "StCha",
                                                                         "StDisCha"]
    assert (chain.raw[103]["Evt1"], chain.raw[103]["Evt2"], chain.raw[160]["Evt"]) == (0, 0, 0)


def test_without_a_battery_the_mppt_model_has_the_two_strings():
    chain = chain_of(new_site("8kWp"))
    assert (chain.raw[160]["N"], chain.models[160][1], chain.raw[120]["DERTyp"]) == (2, 48, 4)
    assert [chain.raw[160][f"module{k}.IDStr"] for k in (1, 2)] == ["String 1", "String 2"]
    assert 124 not in chain.models and 802 not in chain.models


# --- the values: the balance, decoded with the scale factors ---

def within_a_count(chain: Chain, model_id: int, name: str, expected: float) -> None:
    assert chain.value(model_id, name) == pytest.approx(expected, abs=chain.count(model_id, name)), \
        (model_id, name)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("scene", SCENES)
def test_the_decoded_values_are_the_balance(config, scene):
    home = new_site(config, **SCENES[scene])
    balance = home.balance
    chain = chain_of(home)
    within_a_count(chain, 103, "W", balance.inverter_w)
    within_a_count(chain, 103, "VA", abs(balance.inverter_w))
    within_a_count(chain, 103, "DCW", balance.pv_dc_w)
    within_a_count(chain, 120, "WRtg", home.rated_w)
    assert chain.raw[103]["St"] == balance.state
    strings = chain.value(160, "module1.DCW") + chain.value(160, "module2.DCW")
    assert strings == pytest.approx(balance.pv_dc_w, abs=2 * chain.count(160, "module1.DCW"))
    if home.battery is None:
        return
    battery_w = chain.value(160, "module4.DCW") - chain.value(160, "module3.DCW")
    assert battery_w == pytest.approx(balance.battery_w, abs=chain.count(160, "module3.DCW"))
    within_a_count(chain, 802, "W", balance.battery_w)
    within_a_count(chain, 124, "ChaState", balance.soc_pct)
    assert chain.value(124, "ChaState") == chain.value(802, "SoC")
    within_a_count(chain, 120, "MaxChaRte", home.battery.max_w)
    within_a_count(chain, 120, "WHRtg", home.battery.capacity_wh)
    within_a_count(chain, 802, "WHRtg", home.battery.capacity_wh)
    within_a_count(chain, 124, "WChaMax", home.battery.max_w)
    assert chain.raw[124]["ChaSt"] == chain.raw[802]["ChaSt"] == balance.charge_state
    within_a_count(chain, 802, "A", balance.battery_w / balance.battery_v)
    within_a_count(chain, 802, "V", balance.battery_v)


def test_the_signs_while_the_battery_charges_and_discharges():
    charging = chain_of(new_site("8kWp+10kWh", **SCENES["charging"]))
    assert charging.value(802, "W") < 0 and charging.value(802, "A") < 0 and charging.value(103, "W") > 0
    assert charging.value(160, "module3.DCW") > 0 and charging.value(160, "module4.DCW") == 0
    assert charging.raw[802]["ChaSt"] == site.CHARGING and charging.raw[103]["St"] == site.MPPT
    discharging = chain_of(new_site("8kWp+10kWh", **SCENES["discharging"]))
    assert discharging.value(802, "W") > 0 and discharging.value(802, "A") > 0
    assert discharging.value(160, "module3.DCW") == 0 and discharging.value(160, "module4.DCW") > 0
    assert discharging.raw[802]["ChaSt"] == site.DISCHARGING
    night = chain_of(new_site("8kWp+10kWh", **SCENES["night"]))
    assert night.raw[103]["St"] == site.STANDBY and night.value(103, "DCW") == 0


def test_the_counters_are_lifetime_energies_in_wh_that_wrap():
    home = new_site("8kWp+10kWh")
    home.step(3600.0)
    chain = chain_of(home)
    counters = home.inverter.counters
    assert chain.raw[103]["WH"] == round(counters["inverter_energy"] * 1000)
    assert chain.raw[160]["module1.DCWH"] == round(counters["pv_energy_1"] * 1000)
    assert chain.raw[160]["module3.DCWH"] == round(counters["battery_energy_charged"] * 1000)
    counters["inverter_energy"] = 2**32 / 1000 + 1.0  # kWh: one past the acc32's range in Wh
    assert chain_of(home).raw[103]["WH"] == 1000


# --- scale factors ---

@pytest.mark.parametrize("config", CONFIGS)
def test_scale_factors_are_the_tables_raised_only_where_the_largest_value_does_not_fit(config):
    chain = chain_of(new_site(config))
    big = config == "40kWp+200kWh+100kW"
    for model_id, factors in TABLE_SCALE_FACTORS.items():
        if model_id not in chain.models:
            continue
        for name, factor in factors.items():
            raised = big and name in RAISED_100_KW.get(model_id, ())
            if model_id == 120 and chain.raw[120]["DERTyp"] == 4 and name in BATTERY_120:
                assert chain.raw[120][name] == NOT_IMPLEMENTED["sunssf"]
            else:
                assert chain.raw[model_id][name] == factor + raised, (model_id, name)


def test_the_largest_values_fit_once_raised():
    home = new_site("40kWp+200kWh+100kW", **SCENES["full output"])
    chain = chain_of(home)
    assert chain.raw[103]["W"] == 10000 and chain.value(103, "W") == 100000.0  # W_SF 1
    assert chain.raw[120]["WHRtg"] == 20000 and chain.raw[120]["MaxChaRte"] == 10000
    assert chain.value(802, "WChaRteMax") == 100000.0
    home.pin({"load_w": 0.0, "pv_available_w": 100000.0})  # the PV charges the battery at 97 kW
    chain = chain_of(home)
    within_a_count(chain, 802, "W", -97000.0)
    within_a_count(chain, 160, "module3.DCW", 97000.0)
    within_a_count(chain, 103, "DCW", 100000.0)


def test_the_bounds_follow_the_configuration():
    bounds = hybrid.largest(100000.0, 100000.0, 200000.0)
    assert bounds["pv_dc_power"] == pytest.approx(200000.0 / 0.97)
    assert bounds["pv_dc_power_1"] == pytest.approx(0.6 * 200000.0 / 0.97)
    assert bounds["current_sum"] == pytest.approx(100000.0 / 207.0)
    assert bounds["battery_current"] == pytest.approx(100000.0 / 350.0)
    assert bounds["battery_capacity"] == 200.0


# --- pysunspec2, the SunSpec Alliance's client, scanning the image ---

class ImageDevice(SunSpecModbusClientDevice):
    """pysunspec2's Modbus device with its reads served from an encoded image (no socket): its own
    scan() walks the chain and its model classes decode every point."""

    def __init__(self, image) -> None:
        super().__init__()
        self.image = image

    def read(self, addr: int, count: int, op=None) -> bytes:
        words = self.image.words(addr, count)
        if words is None:
            raise ModbusClientException("exception 0x02: illegal data address")
        return struct.pack(f">{count}H", *words)


@pytest.mark.parametrize("config", CONFIGS)
def test_pysunspec2_scans_the_chain_and_decodes_the_balance(config):
    home = new_site(config, **SCENES["charging"])
    home.step(3600.0)
    device = device_of(home)
    device.publish()
    client = ImageDevice(device.bank.image)
    client.scan()
    expected = [model_id for model_id, _, _ in LAYOUT[home.battery is not None][0]]
    assert [model.model_id for model in client.model_list] == expected
    assert all(model.error_info == "" for model in client.model_list)
    balance = home.balance
    inverter = client.models[103][0]
    assert inverter.W.cvalue == pytest.approx(balance.inverter_w, abs=10)  # a count: 1 W, or 10 W
    assert inverter.DCW.cvalue == pytest.approx(balance.pv_dc_w, abs=10)
    assert inverter.St.cvalue == site.MPPT
    assert inverter.TmpSnk.cvalue is None  # not implemented: pysunspec2 shows None
    modules = client.models[160][0].groups["module"]
    assert [module.IDStr.cvalue for module in modules] == (
        ["String 1", "String 2", "StCha", "StDisCha"] if home.battery else ["String 1", "String 2"])
    assert sum(module.DCW.cvalue for module in modules[:2]) == pytest.approx(balance.pv_dc_w, abs=20)
    assert client.common[0].Md.cvalue == "hybrid-inverter"
    if home.battery is None:
        assert client.models[120][0].MaxChaRte.cvalue is None and client.models[120][0].DERTyp.cvalue == 4
        return
    battery = client.models[802][0]
    assert battery.W.cvalue == pytest.approx(balance.battery_w, abs=10)
    assert modules[3].DCW.cvalue - modules[2].DCW.cvalue == pytest.approx(balance.battery_w, abs=10)
    assert battery.SoC.cvalue == client.models[124][0].ChaState.cvalue
    assert battery.SoC.cvalue == pytest.approx(balance.soc_pct, abs=0.01)
    assert client.models[120][0].WHRtg.cvalue == home.battery.capacity_wh


# --- writes, the cache, the map types ---

def test_da_and_the_controls_of_b2_are_writable():
    device = device_of(new_site("8kWp+10kWh"))
    assert device.check_write(40068, [7])[0] == EXP_NONE
    assert device.check_write(40068, [0])[0] == device.check_write(40068, [248])[0] == EXP_DATA_VALUE
    for address in (40000, 40084, 40154, 40160, 40178, 40184, 40187, 40303, 40342, 40356):
        assert device.check_write(address, [1])[0] == EXP_DATA_ADDRESS, address
    # 123 WMaxLimPct, RvrtTms, Ena; 124 StorCtl_Mod, MinRsvPct, OutWRte, InWRte, RvrtTms, ChaGriSet;
    # 802 SoCRsvMin
    assert set(device.map.writable) == {40068, 40155, 40157, 40159, 40181, 40183, 40188, 40189,
                                        40191, 40193, 40302}
    without = device_of(new_site("8kWp"))
    assert set(without.map.writable) == {40068, 40155, 40157, 40159}


def test_one_profile_a_configuration_shared_by_every_site():
    first, second = new_site("8kWp+10kWh"), new_site("8kWp+10kWh")
    assert hybrid.site_chain(first) is hybrid.site_chain(second)
    assert hybrid.site_chain(first) is not hybrid.site_chain(new_site("8kWp"))
    assert device_of(first).map is device_of(second).map  # compiled once


def test_the_chain_is_a_built_in_map_of_type_inverter_that_only_an_inverter_can_serve(tmp_path):
    built_in = profiles.built_in("sunspec-hybrid")
    assert (built_in.meter_type, built_in.name) == ("inverter", "sunspec-hybrid")
    assert "sunspec-hybrid" not in profiles.BUILT_IN  # not a --profile: a meter cannot serve it
    copy = tmp_path / "mine.toml"
    copy.write_text(Path(profiles.built_in_path("sunspec-hybrid")).read_text(encoding="utf-8"),
                    encoding="utf-8")
    with pytest.raises(mapfile.MapError) as caught:
        mapfile.load_map(copy)
    assert str(caught.value) == f'profile {copy}: unknown type "inverter" (one of electric, water, gas)'
    served = profiles.inverter_profile_named(str(copy))  # --inverter-profile FILE
    assert served.points == built_in.points
    assert profiles.inverter_profile_named("sunspec-hybrid") is None  # the configuration's chain
