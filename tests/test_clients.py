"""The meter read and written from outside by real clients: pymodbus 3.x, pyModbusTCP, mbpoll, raw frames.

Read-only tests share module-scoped servers (`still_servers` never ticks, so
every client sees one image; `fast_servers` ticks every 0.05 s at speed 600);
tests that write get servers of their own.
"""
from __future__ import annotations

import math
import socket
import struct
import time
from contextlib import contextmanager

import pytest
from pymodbus.client import ModbusTcpClient
from pyModbusTCP.client import ModbusClient
from pyModbusTCP.constants import EXP_DATA_ADDRESS, EXP_DATA_VALUE, EXP_NONE
from pyModbusTCP.utils import word_list_to_long

from meter_simulator import __version__
from support import (
    MeterProcess,
    ipv6_loopback_available,
    mbpoll_values,
    modbus_exchange,
    pymodbus_client,
    recv_exactly,
    run_mbpoll,
    u32,
    unit_kw,
    wait_for,
)

TYPES = ("electric", "water", "gas")
TYPE_CODES = {"electric": 0, "water": 1, "gas": 2}
READING_ADDRESSES = {  # addresses that may be non-zero, besides 100 and 101
    "electric": set(range(0, 4)) | set(range(10, 18)),
    "water": set(range(0, 4)) | {20, 21, 22},
    "gas": set(range(0, 4)) | {20, 21, 22},
}
EXC_ILLEGAL_FUNCTION, EXC_ILLEGAL_ADDRESS, EXC_ILLEGAL_VALUE = 0x01, 0x02, 0x03
MAX_POWER_W = 3 * 253.0 * 63.0  # every phase at its band's top: what a meter can consume at most
STANDBY_FLOOR_W = 80.0  # a household never draws less (fridge, router, standby: 3 x 30 W and up)
COUNTS_PER_KWH = 100


# --- pymodbus 3.x helpers ---

def call(client: ModbusTcpClient, method: str, *args, unit_id: int = 1, **kwargs):
    """A pymodbus request with the unit id keyword this pymodbus version takes."""
    bound = getattr(client, method)
    return bound(*args, **kwargs, **unit_kw(bound, unit_id))


def ok(result):
    assert not result.isError(), result
    return result


def exception_code(result) -> int:
    """The Modbus exception code of a pymodbus result (AssertionError when it is no exception)."""
    assert result.isError(), f"expected an exception, got {result}"
    return result.exception_code


def holding(client, address: int, count: int, unit_id: int = 1) -> list[int]:
    return list(ok(call(client, "read_holding_registers", address, count=count,
                        unit_id=unit_id)).registers)


def coils(client, address: int = 0, count: int = 11) -> list[bool]:
    return list(ok(call(client, "read_coils", address, count=count)).bits[:count])


def total_counts(client) -> int:
    return u32(holding(client, 0, 2))


# --- pymodbus: reads ---

@pytest.mark.parametrize("meter_type", TYPES)
def test_pymodbus_holding_and_input_registers_are_one_map(still_servers, meter_type):
    with pymodbus_client(still_servers[meter_type].port) as client:
        hregs = holding(client, 0, 102)
        iregs = list(ok(call(client, "read_input_registers", 0, count=102)).registers)
        for address in (0, 2, 10, 17, 20, 22, 100):  # a read from the middle sees the same words
            assert holding(client, address, 2) == hregs[address:address + 2]
    assert hregs == iregs
    assert len(hregs) == 102
    assert hregs[100] == 1 and hregs[101] == TYPE_CODES[meter_type]
    others = [a for a in range(100) if a not in READING_ADDRESSES[meter_type] and hregs[a] != 0]
    assert others == [], "every other address reads 0"


@pytest.mark.parametrize("method", ["read_holding_registers", "read_input_registers"])
@pytest.mark.parametrize("address, count", [(100, 3), (101, 2), (102, 1), (0, 103), (0, 125),
                                            (200, 1), (65535, 1)])
def test_pymodbus_read_past_101_is_illegal_address(still_servers, method, address, count):
    with pymodbus_client(still_servers["electric"].port) as client:
        assert exception_code(call(client, method, address, count=count)) == EXC_ILLEGAL_ADDRESS
        assert holding(client, 101, 1) == [0], "the connection still serves"


@pytest.mark.parametrize("method", ["read_coils", "read_discrete_inputs"])
def test_pymodbus_coils_and_discrete_inputs(still_servers, method):
    with pymodbus_client(still_servers["water"].port) as client:
        bits = list(ok(call(client, method, 0, count=11)).bits[:11])
        assert bits == [True, True, True] + [False] * 8
        for address, count in ((0, 12), (10, 2), (11, 1), (100, 1)):
            assert exception_code(call(client, method, address, count=count)) == EXC_ILLEGAL_ADDRESS


def test_pymodbus_device_identification(still_servers):
    for meter_type, server in still_servers.items():
        with pymodbus_client(server.port) as client:
            info = ok(call(client, "read_device_information", read_code=1)).information
        assert info[0] == b"meter-simulator"
        assert meter_type.upper().encode() in info[1].upper()
        assert info[2] == __version__.encode()


@pytest.mark.parametrize("object_id, value", [(0x00, b"meter-simulator"), (0x02, __version__.encode()),
                                              (0x05, b"simulated gas meter")])
def test_pymodbus_device_identification_of_one_object(still_servers, object_id, value):
    with pymodbus_client(still_servers["gas"].port) as client:
        info = ok(call(client, "read_device_information", read_code=4, object_id=object_id)).information
    assert info == {object_id: value}


@pytest.mark.parametrize("object_id", [0x03, 0x06, 0x7F, 0x80, 0xFF])
def test_device_identification_of_an_unknown_object_is_exception_0x02(still_servers, object_id):
    """Individual access (read device id code 4) to an object the meter does not have."""
    with socket.create_connection(("127.0.0.1", still_servers["gas"].port), timeout=5) as sock:
        answer = modbus_exchange(sock, bytes([0x2B, 0x0E, 4, object_id]))[3]
    assert answer == bytes([0xAB, EXC_ILLEGAL_ADDRESS])
    with pymodbus_client(still_servers["gas"].port) as client:
        assert exception_code(call(client, "read_device_information", read_code=4,
                                   object_id=object_id)) == EXC_ILLEGAL_ADDRESS


@pytest.mark.parametrize("read_code, object_id, expected", [
    (1, 0x00, [0, 1, 2]), (1, 0x01, [1, 2]), (1, 0x03, [0, 1, 2]), (1, 0x90, [0, 1, 2]),
    (2, 0x00, [4, 5]), (2, 0x04, [4, 5]), (2, 0x03, [4, 5]), (2, 0x06, [4, 5]),
])
def test_a_device_identification_stream_from_an_unknown_object_starts_over(still_servers, read_code,
                                                                           object_id, expected):
    """Streams (codes 1 and 2) from an object id the meter lacks answer as from the first object."""
    with socket.create_connection(("127.0.0.1", still_servers["gas"].port), timeout=5) as sock:
        answer = modbus_exchange(sock, bytes([0x2B, 0x0E, read_code, object_id]))[3]
    assert answer[:3] == bytes([0x2B, 0x0E, read_code])
    objects, at = [], 7
    for _ in range(answer[6]):
        objects.append(answer[at])
        at += 2 + answer[at + 1]
    assert objects == expected


@pytest.mark.parametrize("unit_id", [0, 1, 17, 247, 255])
def test_pymodbus_every_unit_id_is_answered(still_servers, unit_id):
    with pymodbus_client(still_servers["gas"].port) as client:
        assert holding(client, 100, 2, unit_id=unit_id) == [1, 2]


def test_ipv6_clients_are_served_like_ipv4(make_server):
    if not ipv6_loopback_available():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    server = make_server("water", host="::1", interval_s=3600)
    with pymodbus_client(server.port, host="::1") as client:
        assert holding(client, 100, 2) == [1, 1]
        ok(call(client, "write_coil", 0, False))
        assert holding(client, 100, 1) == [0]
    tcp = ModbusClient(host="::1", port=server.port, timeout=5, auto_open=True)
    try:
        assert tcp.read_input_registers(100, 2) == [0, 1]
        assert tcp.write_single_register(100, 1)
        assert tcp.read_coils(0, 3) == [True, True, True]
    finally:
        tcp.close()


# --- pymodbus: writes ---

def offline_by(client, how: str, online: bool):
    """Take the meter online or offline the way a client would: coil 0 or register 100."""
    if how == "FC05 coil 0":
        return ok(call(client, "write_coil", 0, online))
    if how == "FC15 coil 0":
        return ok(call(client, "write_coils", 0, [online]))
    if how == "FC06 register 100":
        return ok(call(client, "write_register", 100, int(online)))
    if how == "FC16 register 100":
        return ok(call(client, "write_registers", 100, [int(online)]))
    if how == "FC23 register 100":
        return ok(call(client, "readwrite_registers", read_address=100, read_count=1,
                       address=100, values=[int(online)]))
    raise ValueError(how)


@pytest.mark.parametrize("how", ["FC05 coil 0", "FC15 coil 0", "FC06 register 100",
                                 "FC16 register 100", "FC23 register 100"])
def test_offline_keeps_stale_readings_and_online_catches_up(make_server, how):
    speed = 3600.0  # an hour a second: the offline spell consumes many counts
    server = make_server("electric", interval_s=0.05, speed=speed)
    with pymodbus_client(server.port) as client:
        assert server.updater.wait_ticks(2, timeout=10)
        offline_by(client, how, online=False)
        offline_at = time.monotonic()
        stale = holding(client, 0, 23)
        assert server.updater.wait_ticks(3, timeout=10)
        assert holding(client, 0, 23) == stale, "offline: readings keep their last values"
        assert holding(client, 100, 1) == [0]
        assert coils(client, 0, 3) == [False, True, True], "offline: coil 0 OFF, coil 2 stays ON"
        assert list(ok(call(client, "read_discrete_inputs", 0, count=1)).bits[:1]) == [False]
        online_at = time.monotonic()
        offline_by(client, how, online=True)
        assert holding(client, 100, 1) == [1] and coils(client, 0, 1) == [True]
        assert server.updater.wait_ticks(2, timeout=10)
        back = holding(client, 0, 23)
    assert back != stale, "online again: the readings move"
    consumed_floor = STANDBY_FLOOR_W * (online_at - offline_at) * speed / 3.6e6 * COUNTS_PER_KWH
    assert u32(back[0:2]) - u32(stale[0:2]) >= math.floor(consumed_floor) - 1, \
        "the total includes what was consumed while offline"


def preset_total(server, total_kwh: float) -> None:
    """Give the meter a large total, as a restart from a saved state would."""
    device = server.updater.devices[0]
    with server.updater.lock:
        device.meter.set_total(total_kwh)
        device.publish_total()


def test_reset_coil_restarts_the_total_and_is_never_lost_to_a_tick(make_server):
    speed = 600.0
    server = make_server("electric", interval_s=0.05, speed=speed)
    old_counts = 5_000_000  # 50,000 kWh
    with pymodbus_client(server.port) as client:
        for _ in range(25):  # ticks run every 0.05 s: some resets meet a tick head-on
            preset_total(server, old_counts / COUNTS_PER_KWH)
            assert total_counts(client) >= old_counts
            written_at = time.monotonic()
            ok(call(client, "write_coil", 10, True))
            after = total_counts(client)
            elapsed_s = time.monotonic() - written_at
            bound = 1 + math.ceil(MAX_POWER_W * elapsed_s * speed / 3.6e6 * COUNTS_PER_KWH)
            assert after <= bound, f"after a reset the total read {after}, more than {bound}"
            assert coils(client, 10, 1) == [False], "the reset coil is a pulse"
        assert server.updater.wait_ticks(3, timeout=10)
        assert total_counts(client) < old_counts, "no later tick brings the old total back"


def test_reset_coil_off_does_nothing(make_server):
    server = make_server("water", interval_s=3600)
    preset_total(server, 1234.56)
    with pymodbus_client(server.port) as client:
        ok(call(client, "write_coil", 10, False))
        assert total_counts(client) == 123456
        ok(call(client, "write_coils", 10, [True]))  # FC 15 resets as FC 5 does
        assert total_counts(client) == 0


@pytest.mark.parametrize("method, args", [
    ("write_register", (100, 2)),
    ("write_register", (100, 0xFFFF)),
    ("write_registers", (100, [7])),
    ("readwrite_registers", ()),
])
def test_bad_value_for_register_100_is_illegal_value(make_server, method, args):
    server = make_server("gas", interval_s=3600)
    with pymodbus_client(server.port) as client:
        if method == "readwrite_registers":
            result = call(client, method, read_address=0, read_count=1, address=100, values=[3])
        else:
            result = call(client, method, *args)
        assert exception_code(result) == EXC_ILLEGAL_VALUE
        assert holding(client, 100, 2) == [1, 2] and coils(client, 0, 1) == [True], "nothing changed"


@pytest.mark.parametrize("method, args", [
    ("write_coil", (1, True)),
    ("write_coil", (2, False)),
    ("write_coil", (5, True)),
    ("write_coil", (11, True)),
    ("write_coils", (0, [False, True])),  # coil 0 with coil 1: nothing at all changes
    ("write_coils", (9, [False, True])),  # coil 9 with the reset coil: no reset
    ("write_coils", (10, [True, True])),
    ("write_register", (0, 1)),
    ("write_register", (101, 0)),
    ("write_register", (99, 0)),
    ("write_register", (102, 1)),
    ("write_registers", (99, [0, 0])),  # touches register 100 too: it stays online
    ("write_registers", (100, [0, 2])),
    ("write_registers", (0, [0, 0])),
    ("readwrite_registers", ()),
])
def test_write_to_any_other_address_is_illegal_address(make_server, method, args):
    server = make_server("electric", interval_s=3600)
    preset_total(server, 100.0)
    with pymodbus_client(server.port) as client:
        before = holding(client, 0, 102)
        if method == "readwrite_registers":
            result = call(client, method, read_address=0, read_count=2, address=0, values=[1])
        else:
            result = call(client, method, *args)
        assert exception_code(result) == EXC_ILLEGAL_ADDRESS
        assert holding(client, 0, 102) == before, "nothing changed"
        assert coils(client) == [True, True, True] + [False] * 8


# --- pyModbusTCP's client ---

@contextmanager
def tcp_client(port: int, unit_id: int = 1):
    client = ModbusClient(host="127.0.0.1", port=port, unit_id=unit_id, timeout=5, auto_open=True)
    try:
        yield client
    finally:
        client.close()


@pytest.mark.parametrize("meter_type", TYPES)
def test_pymodbustcp_reads_the_same_map(still_servers, meter_type):
    port = still_servers[meter_type].port
    with tcp_client(port, unit_id=17) as client:
        hregs = client.read_holding_registers(0, 102)
        iregs = client.read_input_registers(0, 102)
        bits = client.read_coils(0, 11)
        inputs = client.read_discrete_inputs(0, 11)
    with pymodbus_client(port) as other:
        assert hregs == iregs == holding(other, 0, 102)
    assert bits == inputs == [True, True, True] + [False] * 8
    total, rate = word_list_to_long(hregs[0:4], big_endian=False)  # low word first
    assert total == u32(hregs[0:2]) == (hregs[1] << 16) | hregs[0]
    assert rate == u32(hregs[2:4])
    if meter_type == "electric":
        assert rate > 0
    else:
        assert rate == hregs[20], "registers 2-3 and 20 hold the same flow"


def test_pymodbustcp_last_except(make_server):
    server = make_server("electric", interval_s=3600)
    with tcp_client(server.port) as client:
        assert client.read_holding_registers(101, 2) is None
        assert client.last_except == EXP_DATA_ADDRESS
        assert client.read_coils(11, 1) is None
        assert client.last_except == EXP_DATA_ADDRESS
        assert not client.write_single_register(100, 2)
        assert client.last_except == EXP_DATA_VALUE
        assert not client.write_single_coil(3, True)
        assert client.last_except == EXP_DATA_ADDRESS
        assert not client.write_multiple_registers(0, [1, 2])
        assert client.last_except == EXP_DATA_ADDRESS
        assert client.read_holding_registers(100, 1) == [1], "nothing changed"
        assert client.write_single_coil(0, False)
        assert client.last_except == EXP_NONE
        assert client.read_holding_registers(100, 1) == [0]
        assert client.write_single_register(100, 1)
        assert client.read_coils(0, 1) == [True]


def test_pymodbustcp_power_matches_the_phases(still_servers):
    with tcp_client(still_servers["electric"].port) as client:
        regs = client.read_holding_registers(0, 18)
    assert_power_matches(regs)


# --- mbpoll: the seed's commands, with the port as an option ---

@pytest.fixture(scope="module")
def program():
    """The real program, electric, not ticking during the module: mbpoll and pymodbus see one image."""
    with MeterProcess("--type", "electric", "--seed", "5", "--interval", "3600") as meter:
        yield meter


MBPOLL_TIMEOUT = ("-o", "5")  # seconds; mbpoll's default of 1 s is tight on a loaded machine


def mbpoll_read(port: int, *args: str) -> dict[int, int]:
    done = run_mbpoll("-1", *MBPOLL_TIMEOUT, *args, "-p", str(port), "127.0.0.1")
    assert done.returncode == 0, done.stdout + done.stderr
    return mbpoll_values(done.stdout)


@pytest.mark.parametrize("reference, count", [(1, 6), (11, 8), (101, 2)])
def test_mbpoll_seed_commands(program, reference, count):
    values = mbpoll_read(program.port, "-t", "4", "-r", str(reference), "-c", str(count))
    with pymodbus_client(program.port) as client:
        expected = holding(client, reference - 1, count)  # mbpoll counts references from 1
    assert values == {reference + i: word for i, word in enumerate(expected)}
    if reference == 101:
        assert values == {101: 1, 102: 0}, "online, electric"


def test_mbpoll_input_registers_coils_and_discrete_inputs(program):
    iregs = mbpoll_read(program.port, "-t", "3", "-r", "1", "-c", "102")
    hregs = mbpoll_read(program.port, "-t", "4", "-r", "1", "-c", "102")
    assert iregs == hregs and len(iregs) == 102
    assert_power_matches([iregs[ref] for ref in range(1, 19)])
    expected_bits = {ref: int(ref <= 3) for ref in range(1, 12)}
    assert mbpoll_read(program.port, "-t", "0", "-r", "1", "-c", "11") == expected_bits
    assert mbpoll_read(program.port, "-t", "1", "-r", "1", "-c", "11") == expected_bits


def test_mbpoll_read_past_the_map_fails(program):
    done = run_mbpoll("-1", *MBPOLL_TIMEOUT, "-t", "4", "-r", "102", "-c", "2", "-p", str(program.port),
                      "127.0.0.1")
    assert done.returncode != 0
    assert "illegal data address" in (done.stdout + done.stderr).lower()


def test_mbpoll_words_of_32768_and_more_read_unsigned(make_server):
    """mbpoll prints such a word with its signed reading after it ("47047 (-18489)")."""
    server = make_server("electric", interval_s=3600)
    counts = 0xABCD_9876  # both words >= 32768
    preset_total(server, counts / COUNTS_PER_KWH)
    assert mbpoll_read(server.port, "-t", "4", "-r", "1", "-c", "2") == {1: 0x9876, 2: 0xABCD}
    assert mbpoll_read(server.port, "-t", "3", "-r", "1", "-c", "2") == {1: 0x9876, 2: 0xABCD}


def test_mbpoll_listing_parser():
    listing = "-- Polling slave 1...\n[1]: \t1349\n[2]: \t0\n[3]: \t47047 (-18489)\n[4]: \t-2\n"
    assert mbpoll_values(listing) == {1: 1349, 2: 0, 3: 47047, 4: 0xFFFE}


def mbpoll_write(port: int, *args: str) -> None:
    """mbpoll writing: its options, then the host, then the value (the last of args)."""
    done = run_mbpoll(*MBPOLL_TIMEOUT, *args[:-1], "-p", str(port), "127.0.0.1", args[-1])
    assert done.returncode == 0, done.stdout + done.stderr


def test_mbpoll_writes_online_and_reset(make_server):
    server = make_server("water", interval_s=3600)
    preset_total(server, 12.0)
    mbpoll_write(server.port, "-t", "0", "-r", "1", "0")  # coil 0 OFF: offline
    assert mbpoll_read(server.port, "-t", "4", "-r", "101", "-c", "2") == {101: 0, 102: 1}
    mbpoll_write(server.port, "-t", "4", "-r", "101", "1")  # register 100 = 1: online
    assert mbpoll_read(server.port, "-t", "0", "-r", "1", "-c", "1") == {1: 1}
    assert mbpoll_read(server.port, "-t", "4", "-r", "1", "-c", "2") == {1: 1200, 2: 0}
    mbpoll_write(server.port, "-t", "0", "-r", "11", "1")  # coil 10 ON: reset
    assert mbpoll_read(server.port, "-t", "4", "-r", "1", "-c", "2") == {1: 0, 2: 0}
    done = run_mbpoll(*MBPOLL_TIMEOUT, "-t", "4", "-r", "1", "-p", str(server.port), "127.0.0.1", "7")
    assert done.returncode != 0 and "illegal data address" in (done.stdout + done.stderr).lower()


# --- raw frames ---

def exchange(port: int, pdu: bytes, transaction_id: int = 0x4D21, unit_id: int = 0x11):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        answer = modbus_exchange(sock, pdu, transaction_id, unit_id)
        # the same connection goes on serving after an exception
        follow_up = modbus_exchange(sock, struct.pack(">BHH", 0x03, 101, 1), 7, 1)
        assert follow_up == (7, 0, 1, bytes([0x03, 2, 0, 0]))
        return answer


@pytest.mark.parametrize("pdu", [
    b"\x07",  # read exception status (serial line only): the request is the function code alone
    b"\x08\x00\x00\x12\x34",  # diagnostics, echo query
    b"\x0b",  # get comm event counter
    b"\x11",  # report server id
    b"\x14\x00",  # read file record
    b"\x16\x00\x64\xff\xff\x00\x00",  # mask write register
    b"\x18\x00\x00",  # read FIFO queue
    b"\x2b\x0d\x00\x00",  # encapsulated interface, CANopen: another MEI type than 0x0E
    b"\x41\x01\x02\x03",  # user-defined function code
    b"\x7f",
], ids=lambda pdu: f"fc{pdu[0]:02x}")
def test_unknown_function_code_is_illegal_function(still_servers, pdu):
    tid, pid, uid, answer = exchange(still_servers["electric"].port, pdu)
    assert (tid, pid, uid) == (0x4D21, 0, 0x11), "transaction id and unit id are echoed"
    assert answer == bytes([pdu[0] | 0x80, EXC_ILLEGAL_FUNCTION])


@pytest.mark.parametrize("pdu", [
    struct.pack(">BHH", 0x05, 0, 0x1234),  # the online coil, neither ON nor OFF
    struct.pack(">BHH", 0x05, 10, 0x0001),
    struct.pack(">BHH", 0x05, 5, 0x1234),  # wrong address too: the value check comes first
])
def test_single_coil_value_other_than_on_or_off_is_illegal_value(make_server, pdu):
    server = make_server("electric", interval_s=3600)
    preset_total(server, 10.0)
    tid, _, uid, answer = exchange(server.port, pdu, 3, 255)
    assert (tid, uid) == (3, 255)
    assert answer == bytes([0x85, EXC_ILLEGAL_VALUE])
    with pymodbus_client(server.port) as client:
        assert holding(client, 100, 1) == [1] and total_counts(client) == 1000


def hung_up(sock: socket.socket) -> bool:
    """True when the peer closed the connection (an orderly close, or a reset over unread bytes)."""
    try:
        return sock.recv(256) == b""
    except ConnectionResetError:
        return True


def test_broken_clients_do_not_harm_a_working_one(still_servers):
    port = still_servers["gas"].port
    read = struct.pack(">BHH", 0x03, 100, 2)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as steady:
        assert modbus_exchange(steady, read, 1)[3] == bytes([0x03, 4, 0, 1, 0, 2])
        hanging = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            hanging.sendall(struct.pack(">HHHB", 9, 0, 6, 1) + b"\x03\x00")  # half a request, then silence
            broken = [  # (bytes, whether they are plainly not Modbus/TCP and the server hangs up)
                (struct.pack(">HHHB", 1, 0, 6, 1) + b"\x03", False),  # truncated, then the client leaves
                (struct.pack(">HHH", 1, 0, 6), False),  # half a header
                (struct.pack(">HHHB", 1, 0x1234, 6, 1) + read, True),  # protocol id is not Modbus
                (struct.pack(">HHHB", 1, 0, 0, 1), True),  # length 0
                (struct.pack(">HHHB", 1, 0, 1000, 1) + read, True),  # longer than any PDU
                (b"GET / HTTP/1.1\r\nHost: meter\r\n\r\n", True),
            ]
            for number, (garbage, hangs_up) in enumerate(broken, start=2):
                with socket.create_connection(("127.0.0.1", port), timeout=5) as bad:
                    bad.sendall(garbage)
                    if hangs_up:
                        assert hung_up(bad), "the server ends a connection that is not Modbus/TCP"
                assert modbus_exchange(steady, read, number)[3] == bytes([0x03, 4, 0, 1, 0, 2])
            with socket.create_connection(("127.0.0.1", port), timeout=5) as newcomer:
                assert modbus_exchange(newcomer, read, 77)[3] == bytes([0x03, 4, 0, 1, 0, 2])
        finally:
            hanging.close()


def test_a_request_split_across_packets_is_served(still_servers):
    frame = struct.pack(">HHHB", 5, 0, 6, 1) + struct.pack(">BHH", 0x03, 100, 2)
    with socket.create_connection(("127.0.0.1", still_servers["water"].port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for offset in range(0, len(frame), 3):
            sock.sendall(frame[offset:offset + 3])
        header = recv_exactly(sock, 7)
        assert struct.unpack(">HHHB", header) == (5, 0, 7, 1)
        assert recv_exactly(sock, 6) == bytes([0x03, 4, 0, 1, 0, 1])


# --- readings from outside (contract section 6), on fast servers ---

BANDS = {  # register: (low, high) in register counts, from the contract's normal bands
    "electric": {10: (2070, 2530), 11: (2070, 2530), 12: (2070, 2530), 13: (0, 6300), 14: (0, 6300),
                 15: (0, 6300), 16: (4950, 5050), 17: (800, 1000)},
    "water": {20: (0, 400), 21: (500, 800), 22: (100, 800)},
    "gas": {20: (0, 1000), 21: (300, 900), 22: (1700, 2500)},
}


def assert_power_matches(regs) -> None:
    """Active power (registers 2-3) is sum V*I*PF of the same read, within 1 % or 5 W."""
    power_w = u32(regs[2:4]) / 10
    pf = regs[17] / 1000
    phases_w = sum(regs[10 + ph] / 10 * regs[13 + ph] / 100 * pf for ph in range(3))
    assert abs(power_w - phases_w) <= max(0.01 * phases_w, 5.0), (power_w, phases_w, regs[:18])


# the fast case: 100 reads over 8 ticks; the slow one: 300 reads over 40 ticks (2 s)
@pytest.mark.parametrize("meter_type, min_reads, min_ticks", [
    *((meter_type, 100, 8) for meter_type in TYPES),
    *(pytest.param(meter_type, 300, 40, marks=pytest.mark.slow) for meter_type in TYPES),
])
def test_readings_in_band_consistent_and_total_never_decreases(fast_servers, meter_type, min_reads,
                                                                min_ticks):
    server = fast_servers[meter_type]
    reads, distinct, last_total = 0, set(), -1
    ticks_at_start = server.updater.ticks
    deadline = time.monotonic() + 60
    with pymodbus_client(server.port) as client:
        # at least min_reads reads spread over at least min_ticks ticks, bounded in time
        while (reads < min_reads or server.updater.ticks - ticks_at_start < min_ticks) and reads < 5000:
            assert time.monotonic() < deadline, f"only {reads} reads in 60 s"
            regs = holding(client, 0, 23)
            bits = coils(client, 0, 3)
            reads += 1
            assert bits == [True, True, True], f"coil 1 (no alarm) must stay ON: {regs}"
            for address, (low, high) in BANDS[meter_type].items():
                assert low <= regs[address] <= high, (address, regs[address], regs)
            if meter_type == "electric":
                assert_power_matches(regs)
            else:
                assert u32(regs[2:4]) == regs[20], "registers 2-3 and 20 hold the same flow"
            total = u32(regs[0:2])
            assert total >= last_total, f"total went from {last_total} to {total}"
            last_total = total
            distinct.add(tuple(regs))
    assert len(distinct) > 5, "the readings move"


def test_total_grows_while_reading_electric(fast_servers):
    server = fast_servers["electric"]
    with pymodbus_client(server.port) as client:
        first = total_counts(client)
        # 30 simulated seconds a tick: even at 80 W standby, 3 counts (30 Wh) take under 50 ticks
        wait_for(lambda: total_counts(client) >= first + 3, timeout=30)
