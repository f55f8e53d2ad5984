"""Request faults (control-contract section 5) on the wire, seen by raw sockets, pymodbus and
pyModbusTCP: delay, no_answer, close, reset, exception, corrupt; their scope, function filter,
checks, counting, timing, and that one connection's fault never harms another.

In-process through MeterSimulator (the control core the HTTP API uses); test_faults_meter.py
has the meter faults, the metrics and the real program's HTTP API. Meters tick once an hour
unless a test says otherwise, so two reads of a register see the same value."""
from __future__ import annotations

import socket
import struct
import threading
import time
from contextlib import contextmanager

import pytest
from pymodbus.client import ModbusTcpClient
from pyModbusTCP.client import ModbusClient
from pyModbusTCP.constants import MB_EXCEPT_ERR, MB_NO_ERR, MB_RECV_ERR, MB_TIMEOUT_ERR

from meter_simulator.testing import MeterSimulator
from support import connect, free_port, free_ports, recv_exactly, u32, unit_kw, wait_for

MBAP = struct.Struct(">HHHB")
READ_STATUS = bytes([0x03, 0, 100, 0, 2])  # registers 100 (online) and 101 (meter type)
STATUS_ONLINE = bytes([0x03, 4, 0, 1, 0, 0])  # an electric meter, online
STATUS_OFFLINE = bytes([0x03, 4, 0, 0, 0, 0])
READ_POWER = bytes([0x03, 0, 2, 0, 2])  # registers 2-3: active power, W x10
COIL_0_OFF = bytes([0x05, 0, 0, 0, 0])  # take the meter offline (echoed when done)
LATE_S = 0.1 + 0.3  # the contract's 100 ms on an idle machine, plus slack for a loaded one
QUIET_S = 0.3  # how long "nothing arrives" is watched for, once the fault is known to have acted


@pytest.fixture
def sim():
    with MeterSimulator(type="electric", seed=1, interval=3600) as simulator:
        yield simulator


@contextmanager
def fleet(count: int, **keywords):
    """count meters on consecutive free ports, started. The ports are chosen here: port 0 with
    count > 1 plans ports 0, 1, 2... (see test_faults_meter.py)."""
    for _ in range(5):
        simulator = MeterSimulator(type="electric", seed=1, interval=3600, count=count,
                                   port=free_ports(count), **keywords)
        try:
            simulator.start()
        except Exception as exc:  # a port taken between the draw and the bind
            if "in use" not in str(exc):
                raise
            continue
        try:
            yield simulator
        finally:
            simulator.stop()
        return
    raise AssertionError(f"no {count} consecutive free ports")


def frame(pdu: bytes, tid: int = 1, unit: int = 1) -> bytes:
    return MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu


def answer(sock: socket.socket) -> tuple[int, int, int, bytes]:
    """The next answer on the connection: (transaction id, protocol id, unit id, PDU)."""
    tid, pid, length, unit = MBAP.unpack(recv_exactly(sock, MBAP.size))
    return tid, pid, unit, recv_exactly(sock, length - 1)


def ask(sock: socket.socket, pdu: bytes, tid: int = 1, unit: int = 1) -> tuple[int, int, int, bytes]:
    sock.sendall(frame(pdu, tid, unit))
    return answer(sock)


def quiet(sock: socket.socket, seconds: float = QUIET_S) -> bool:
    """True when nothing at all arrives on the connection for seconds (and it is not closed)."""
    sock.settimeout(seconds)
    try:
        sock.recv(1)
        return False
    except socket.timeout:
        return True
    finally:
        sock.settimeout(10)


def status(port: int, unit: int = 1) -> bytes:
    """Registers 100-101 read on a new connection."""
    with connect(port) as sock:
        return ask(sock, READ_STATUS, unit=unit)[3]


def hit(port: int, unit: int = 1, pdu: bytes = READ_STATUS) -> bool:
    """True when an exception fault (code 6) acts on this request, False when it is served."""
    with connect(port) as sock:
        got = ask(sock, pdu, tid=5, unit=unit)
    assert got[:3] == (5, 0, unit)
    if got[3] == bytes([pdu[0] | 0x80, 6]):
        return True
    assert not got[3][0] & 0x80, got
    return False


# --- each request fault ----------------------------------------------------------------------

def test_delay_answers_no_earlier_than_delay_ms_and_not_much_later(sim):
    with connect(sim.port) as sock:
        normal = ask(sock, READ_STATUS, tid=7)
        with sim.fault("delay", delay_ms=300, count=2) as fault:
            for tid in (8, 9):
                sent_s = time.monotonic()
                got = ask(sock, READ_STATUS, tid=tid)
                took_s = time.monotonic() - sent_s
                assert got == (tid, 0, 1, normal[3]), "the normal answer"
                assert 0.3 <= took_s <= 0.3 + LATE_S
                assert fault.active is (tid == 8)
        sent_s = time.monotonic()
        assert ask(sock, READ_STATUS, tid=10)[3] == normal[3]
        assert time.monotonic() - sent_s < LATE_S, "served at once when the count is used up"


def test_delay_executes_the_request_when_the_answer_is_built(sim):
    sim.set(power_total=1000)
    with connect(sim.port) as sock:
        assert abs(u32(struct.unpack(">HH", ask(sock, READ_POWER)[3][2:])) - 10000) <= 100
        with sim.fault("delay", delay_ms=600, count=1) as fault:
            sock.sendall(frame(READ_POWER, tid=2))
            wait_for(lambda: not fault.active, timeout=5, interval=0.005)
            sim.set(power_total=2000)  # while the request waits
            tid, _, _, pdu = answer(sock)
    assert tid == 2
    assert abs(u32(struct.unpack(">HH", pdu[2:])) - 20000) <= 200, "the value when answered"


def test_no_answer_sends_nothing_keeps_the_connection_and_serves_the_next_request(sim):
    with connect(sim.port) as sock:
        with sim.fault("no_answer", count=1) as fault:
            sock.sendall(frame(READ_STATUS, tid=1))
            wait_for(lambda: not fault.active, timeout=5, interval=0.005)
            assert quiet(sock)
            assert ask(sock, READ_STATUS, tid=2) == (2, 0, 1, STATUS_ONLINE)
        # pipelined behind a silenced request, the next one gets the only answer
        with sim.fault("no_answer", count=1):
            sock.sendall(frame(READ_STATUS, tid=3) + frame(READ_STATUS, tid=4))
            assert answer(sock) == (4, 0, 1, STATUS_ONLINE)
            assert quiet(sock)


def test_close_ends_the_connection_with_fin(sim):
    with connect(sim.port) as sock, sim.fault("close") as fault:
        sock.sendall(frame(READ_STATUS))
        assert sock.recv(100) == b"", "an orderly close, no answer"
        assert fault.applied == 1
    assert status(sim.port) == STATUS_ONLINE


def test_reset_ends_the_connection_with_rst(sim):
    with connect(sim.port) as sock, sim.fault("reset", count=1):
        sock.sendall(frame(READ_STATUS))
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
    assert status(sim.port) == STATUS_ONLINE


REQUESTS = [bytes([0x01, 0, 0, 0, 3]), bytes([0x02, 0, 0, 0, 3]), READ_STATUS,
            bytes([0x04, 0, 0, 0, 2]), COIL_0_OFF, bytes([0x06, 0, 100, 0, 0]),
            bytes([0x0F, 0, 0, 0, 1, 1, 0]), bytes([0x10, 0, 100, 0, 1, 2, 0, 0]),
            bytes([0x2B, 0x0E, 1, 0]), bytes([0x41])]  # the last: a function code nobody serves


@pytest.mark.parametrize("code", [0x01, 0x04, 0x06, 0x0B, 0xFF])
def test_exception_answers_function_code_plus_0x80_with_the_code_and_echoes_tid_and_unit(sim, code):
    with connect(sim.port) as sock, sim.fault("exception", code=code) as fault:
        for n, pdu in enumerate(REQUESTS):
            tid, unit = 0xFFF0 + n, (0, 1, 7, 0x2A, 255)[n % 5]
            assert ask(sock, pdu, tid, unit) == (tid, 0, unit, bytes([pdu[0] | 0x80, code]))
        assert fault.applied == len(REQUESTS)
    assert status(sim.port) == STATUS_ONLINE, "no write was executed"


def test_corrupt_transaction_id_adds_one_modulo_2_16(sim):
    with connect(sim.port) as sock, sim.fault("corrupt", mode="transaction_id", count=2):
        assert ask(sock, READ_STATUS, tid=0x1234) == (0x1235, 0, 1, STATUS_ONLINE)
        assert ask(sock, READ_STATUS, tid=0xFFFF, unit=9) == (0, 0, 9, STATUS_ONLINE)
        assert ask(sock, READ_STATUS, tid=0xFFFF) == (0xFFFF, 0, 1, STATUS_ONLINE)


def test_corrupt_length_announces_one_byte_more_and_sends_none(sim):
    normal = frame(STATUS_ONLINE, tid=3)
    with connect(sim.port) as sock, sim.fault("corrupt", mode="length", count=1):
        sock.sendall(frame(READ_STATUS, tid=3))
        got = recv_exactly(sock, len(normal))
        assert got == normal[:4] + struct.pack(">H", len(STATUS_ONLINE) + 2) + normal[6:]
        assert quiet(sock), "no extra byte"
        assert ask(sock, READ_STATUS, tid=4) == (4, 0, 1, STATUS_ONLINE)


def test_corrupt_truncate_sends_the_first_half_then_nothing_until_the_client_sends(sim):
    normal = frame(STATUS_ONLINE, tid=3)  # 13 bytes: the first 6 come
    with connect(sim.port) as sock, sim.fault("corrupt", mode="truncate", count=1):
        sock.sendall(frame(READ_STATUS, tid=3))
        assert recv_exactly(sock, len(normal) // 2) == normal[:6]
        assert quiet(sock)
        assert ask(sock, READ_STATUS, tid=4) == (4, 0, 1, STATUS_ONLINE)


@pytest.mark.parametrize("kind, parameters", [
    ("close", {}), ("reset", {}), ("exception", {"code": 6}),
    ("corrupt", {"mode": "transaction_id"}), ("corrupt", {"mode": "truncate"})])
def test_delay_ms_comes_before_the_effect_of_every_other_fault(sim, kind, parameters):
    with connect(sim.port) as sock, sim.fault(kind, delay_ms=250, count=1, **parameters):
        sent_s = time.monotonic()
        sock.sendall(frame(READ_STATUS, tid=3))
        try:
            assert sock.recv(100) != b"" or kind == "close"
        except ConnectionResetError:
            assert kind == "reset"
        assert 0.25 <= time.monotonic() - sent_s <= 0.25 + LATE_S


def test_no_answer_with_delay_ms_still_answers_nothing(sim):
    with connect(sim.port) as sock, sim.fault("no_answer", delay_ms=200, count=1):
        sent_s = time.monotonic()
        sock.sendall(frame(READ_STATUS, tid=1) + frame(READ_STATUS, tid=2))
        assert answer(sock) == (2, 0, 1, STATUS_ONLINE)
        assert time.monotonic() - sent_s >= 0.2, "the next request waits behind it"


WRITE_FAULTS = [  # (type, parameters, the write is executed)
    ("no_answer", {}, False), ("close", {}, False), ("reset", {}, False),
    ("exception", {"code": 6}, False), ("exception", {"code": 4, "delay_ms": 50}, False),
    ("delay", {"delay_ms": 50}, True), ("corrupt", {"mode": "transaction_id"}, True),
    ("corrupt", {"mode": "length"}, True), ("corrupt", {"mode": "truncate"}, True)]


@pytest.mark.parametrize("kind, parameters, executed", WRITE_FAULTS)
def test_a_faulted_write_is_executed_only_for_delay_and_corrupt(sim, kind, parameters, executed):
    echo = frame(COIL_0_OFF, tid=1)  # the normal answer to the write
    with connect(sim.port) as sock, sim.fault(kind, count=1, **parameters):
        sock.sendall(echo)
        if kind == "no_answer":
            got = ask(sock, READ_STATUS, tid=2)  # on the same connection: the write is done with
            assert got[0] == 2
        elif kind in ("close", "reset"):
            try:
                assert sock.recv(100) == b""
            except ConnectionResetError:
                pass
        elif kind == "exception":
            assert answer(sock) == (1, 0, 1, bytes([0x85, parameters["code"]]))
        elif parameters.get("mode") == "truncate":
            assert recv_exactly(sock, len(echo) // 2) == echo[:len(echo) // 2]
        else:
            got = recv_exactly(sock, len(echo))
            if kind == "delay":
                assert got == echo
            elif parameters["mode"] == "transaction_id":
                assert got == b"\x00\x02" + echo[2:]
            else:
                assert got == echo[:4] + b"\x00\x07" + echo[6:]
    assert status(sim.port) == (STATUS_OFFLINE if executed else STATUS_ONLINE)
    assert sim.meter()["online"] is not executed


def leave(sock: socket.socket, how: str) -> None:
    """A client goes away: an orderly close (FIN) or a reset (RST, SO_LINGER 0)."""
    if how == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def served(port: int, pdu: bytes = READ_STATUS) -> bytes | None:
    """The answer to one request on a new connection; None when the connection is refused or
    closed (the port's --max-clients slots are taken)."""
    try:
        with connect(port) as sock:
            return ask(sock, pdu)[3]
    except OSError:
        return None


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_client_gone_during_a_delay_gives_its_slot_back_at_once(how):
    with MeterSimulator(type="electric", seed=1, interval=3600, max_clients=1) as sim:
        with sim.fault("delay", delay_ms=5000, count=1) as fault:
            gone = connect(sim.port)
            gone.sendall(frame(READ_STATUS))
            wait_for(lambda: not fault.active, timeout=5, interval=0.005)  # its request is held
            leave(gone, how)
            # the held request kept the only slot for the whole 5 s delay before
            assert wait_for(lambda: served(sim.port), timeout=2) == STATUS_ONLINE


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_delayed_write_whose_client_has_gone_is_not_applied(how):
    with MeterSimulator(type="electric", seed=1, interval=3600, max_clients=1) as sim:
        with sim.fault("delay", delay_ms=1000, count=1) as fault:
            gone = connect(sim.port)
            gone.sendall(frame(COIL_0_OFF))
            wait_for(lambda: not fault.active, timeout=5, interval=0.005)
            leave(gone, how)
            # served once the held request's connection has ended: nothing of it is left to run
            assert wait_for(lambda: served(sim.port), timeout=10) == STATUS_ONLINE
        assert sim.meter()["online"] is True


def test_stopping_ends_a_held_request_at_once():
    sim = MeterSimulator(type="electric", seed=1, interval=3600).start()
    try:
        with connect(sim.port) as sock, sim.fault("delay", delay_ms=60000, count=1) as fault:
            sock.sendall(frame(READ_STATUS))
            wait_for(lambda: not fault.active, timeout=5, interval=0.005)
            held = [thread for thread in threading.enumerate() if "modbus-connection" in thread.name]
            assert held
            sim.stop()  # joins each connection thread for up to 2 s
            assert not [thread for thread in held if thread.is_alive()]
            assert sock.recv(100) == b"", "closed, no answer"
    finally:
        sim.stop()


def test_a_request_sent_during_a_delay_is_served_after_the_delayed_one(sim):
    with connect(sim.port) as sock, sim.fault("delay", delay_ms=300, count=1) as fault:
        sock.sendall(frame(READ_STATUS, tid=1))
        wait_for(lambda: not fault.active, timeout=5, interval=0.005)  # held: the next one waits
        sock.sendall(frame(READ_STATUS, tid=2))
        assert [answer(sock) for _ in range(2)] == [(1, 0, 1, STATUS_ONLINE), (2, 0, 1, STATUS_ONLINE)]


def test_the_idle_clock_restarts_when_a_delayed_answer_goes_out():
    with MeterSimulator(type="electric", seed=1, interval=3600, idle_timeout=0.5) as sim, \
            connect(sim.port) as sock:
        with sim.fault("delay", delay_ms=1000, count=1):
            assert ask(sock, READ_STATUS, tid=1) == (1, 0, 1, STATUS_ONLINE)
        # sent at once: before, the connection's idle time had run out during the delay
        assert ask(sock, READ_STATUS, tid=2) == (2, 0, 1, STATUS_ONLINE)


# --- what client libraries see ----------------------------------------------------------------

def test_pymodbus_sees_the_injected_exception_and_its_write_changes_nothing(sim):
    client = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=3, retries=0)
    assert client.connect()
    try:
        kw = unit_kw(client.write_coil)
        with sim.fault("exception", code=6, functions=[5]) as fault:
            result = client.write_coil(0, False, **kw)
            assert result.isError() and result.exception_code == 6
            assert fault.applied == 1
        assert client.read_holding_registers(100, count=1, **kw).registers == [1], "still online"
        assert sim.meter()["online"] is True
        with sim.fault("exception", code=0xFF, count=1):
            result = client.read_input_registers(0, count=2, **kw)
            assert result.isError() and result.exception_code == 0xFF
        with sim.fault("delay", delay_ms=300, count=1):
            sent_s = time.monotonic()
            assert not client.write_coil(0, False, **kw).isError()
            assert time.monotonic() - sent_s >= 0.3
        assert client.read_holding_registers(100, count=1, **kw).registers == [0], "executed"
    finally:
        client.close()


def test_pymodbus_no_answer_times_out_and_the_next_request_is_served(sim):
    client = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=0.3, retries=0)
    assert client.connect()
    try:
        kw = unit_kw(client.read_holding_registers)
        with sim.fault("no_answer", count=1):
            try:
                result = client.read_holding_registers(100, count=2, **kw)
            except Exception as exc:  # pymodbus raises ModbusIOException on a timeout
                result = exc
            assert not hasattr(result, "registers"), result
        assert client.read_holding_registers(100, count=2, **kw).registers == [1, 0]
    finally:
        client.close()


@pytest.mark.parametrize("kind, parameters, error", [
    ("exception", {"code": 6}, MB_EXCEPT_ERR), ("no_answer", {}, MB_TIMEOUT_ERR),
    ("close", {}, MB_RECV_ERR), ("reset", {}, MB_RECV_ERR),
    ("corrupt", {"mode": "transaction_id"}, MB_RECV_ERR),
    ("corrupt", {"mode": "length"}, MB_TIMEOUT_ERR), ("corrupt", {"mode": "truncate"}, MB_TIMEOUT_ERR)])
def test_pymodbustcp_sees_each_fault_then_recovers(sim, kind, parameters, error):
    client = ModbusClient(host="127.0.0.1", port=sim.port, timeout=0.3, auto_open=True)
    try:
        assert client.read_holding_registers(100, 2) == [1, 0]
        with sim.fault(kind, **parameters) as fault:
            assert client.read_holding_registers(100, 2) is None
            assert client.last_error == error
            if kind == "exception":
                assert client.last_except == 6
            assert fault.applied == 1
        assert client.read_holding_registers(100, 2) == [1, 0], "served again (reopened if need be)"
        assert client.last_error == MB_NO_ERR
    finally:
        client.close()


@pytest.mark.parametrize("code", [0x06, 0x0B, 0xFF])
def test_pymodbustcp_last_except_is_the_injected_code(sim, code):
    client = ModbusClient(host="127.0.0.1", port=sim.port, unit_id=3, timeout=3, auto_open=True)
    try:
        with sim.fault("exception", code=code, count=2):
            assert client.read_input_registers(0, 2) is None and client.last_except == code
            assert not client.write_single_coil(0, False) and client.last_except == code
        assert client.read_coils(0, 1) == [True], "the write did nothing"
    finally:
        client.close()


# --- scope and function filter ----------------------------------------------------------------

def test_scope_every_meter_or_one_port():
    with fleet(2) as sim:
        first, second = sim.ports
        with sim.fault("exception", code=6):
            assert hit(first) and hit(second)
        with sim.fault("exception", code=6, scope={}):
            assert hit(first) and hit(second, unit=200)
        with sim.fault("exception", code=6, scope={"port": second}) as fault:
            assert [shown["id"] for shown in sim.meter(str(second))["faults"]] == [fault.id]
            assert sim.meter(str(first))["faults"] == []
            assert not hit(first) and hit(second) and not hit(first, unit=9)
            assert fault.applied == 1


def test_scope_one_meter_or_one_unit_id_in_gateway_mode():
    with fleet(2, unit_ids=[1, 2, 3]) as sim:
        first, second = sim.ports
        with sim.fault("exception", code=6, scope={"meter": f"{second}-2"}):
            assert [hit(port, unit) for port in (first, second) for unit in (1, 2, 3)] == [
                False, False, False, False, True, False]
        with sim.fault("exception", code=6, scope={"port": first, "unit_id": 3}):
            assert [hit(port, unit) for port in (first, second) for unit in (1, 2, 3)] == [
                False, False, True, False, False, False]
        with sim.fault("exception", code=6, unit_id=2):  # that unit id on every port
            assert [hit(port, unit) for port in (first, second) for unit in (1, 2, 3)] == [
                False, True, False, False, True, False]


def test_scope_unit_id_outside_gateway_mode_matches_requests_carrying_it(sim):
    with sim.fault("exception", code=6, scope={"unit_id": 7}) as fault:
        assert hit(sim.port, 7) and hit(sim.port, 7)
        assert not hit(sim.port, 1) and not hit(sim.port, 0) and not hit(sim.port, 255)
        assert fault.applied == 2
    with sim.fault("exception", code=6, scope={"unit_id": 0}):
        assert hit(sim.port, 0) and not hit(sim.port, 1)


def test_scope_naming_nothing_served_is_unknown_and_creates_nothing():
    with MeterSimulator(type="electric", seed=1, interval=3600, unit_ids=[1, 2]) as gateway, \
            MeterSimulator(type="electric", seed=1, interval=3600) as single:
        unserved = free_port()
        for sim, scope in [(single, {"port": unserved}), (single, {"meter": str(unserved)}),
                           (single, {"meter": f"{single.port}-1"}), (single, {"meter": "nonsense"}),
                           (gateway, {"port": unserved}), (gateway, {"meter": str(gateway.port)}),
                           (gateway, {"meter": f"{gateway.port}-3"}), (gateway, {"unit_id": 3}),
                           (gateway, {"port": gateway.port, "unit_id": 9})]:
            with pytest.raises(KeyError):
                sim.fault("exception", code=6, scope=scope)
            assert sim.faults() == []
        assert not hit(gateway.port, 1) and not hit(single.port)


def test_functions_limits_a_fault_to_those_function_codes(sim):
    read_input = bytes([0x04, 0, 100, 0, 2])
    with sim.fault("exception", code=6, functions=[4, 1]) as fault:
        assert hit(sim.port, pdu=read_input) and hit(sim.port, pdu=bytes([0x01, 0, 0, 0, 1]))
        assert not hit(sim.port, pdu=READ_STATUS) and not hit(sim.port, pdu=bytes([0x02, 0, 0, 0, 1]))
        assert fault.info()["functions"] == [1, 4] and fault.applied == 2


BAD_SPECS = [
    {"type": "slow"}, {"type": None}, {"type": "delay"}, {"type": "delay", "delay_ms": 0},
    {"type": "delay", "delay_ms": 60001}, {"type": "delay", "delay_ms": "100"},
    {"type": "close", "delay_ms": -1}, {"type": "exception"}, {"type": "exception", "code": 0},
    {"type": "exception", "code": 256}, {"type": "corrupt"}, {"type": "corrupt", "mode": "bits"},
    {"type": "no_answer", "probability": 0}, {"type": "no_answer", "probability": 1.5},
    {"type": "no_answer", "probability": "half"}, {"type": "no_answer", "count": 0},
    {"type": "no_answer", "count": 1.5}, {"type": "no_answer", "duration_s": 0},
    {"type": "no_answer", "duration_s": -3}, {"type": "freeze", "probability": 0.5},
    {"type": "freeze", "count": 1}, {"type": "offline", "count": 2},
    {"type": "offline", "probability": 1}, {"type": "no_answer", "colour": "red"},
    {"type": "delay", "delay_ms": 10, "code": 6}, {"type": "freeze", "delay_ms": 10},
    {"type": "no_answer", "functions": "3"}, {"type": "no_answer", "functions": [0]},
    {"type": "no_answer", "scope": {"port": "x"}}, {"type": "no_answer", "scope": {"host": 1}},
    {"type": "no_answer", "scope": {"unit_id": 256}}, {"type": "no_answer", "scope": []},
    {"type": "no_answer", "probability": 10**400}, {"type": "no_answer", "duration_s": 10**400},
    {"type": "delay", "delay_ms": 10**400}, {"type": "no_answer", "count": 10**400},
]


def test_a_bad_spec_is_refused_whole_and_creates_nothing(sim):
    for spec in BAD_SPECS:
        with pytest.raises(ValueError) as refused:
            sim.control.start_fault(spec)
        assert "\n" not in str(refused.value), spec
        assert sim.faults() == [], spec
    assert status(sim.port) == STATUS_ONLINE and sim.meter()["online"] is True


# --- counting and timing ----------------------------------------------------------------------

def hit_pattern(seed: int, requests: int = 200) -> tuple[list[bool], int]:
    """Which of requests sent one at a time a probability 0.3 fault hits, and its applied count."""
    with MeterSimulator(type="electric", seed=seed, interval=3600) as sim, connect(sim.port) as sock:
        with sim.fault("exception", code=6, probability=0.3) as fault:
            pattern = [ask(sock, READ_STATUS, tid=n)[3][0] == 0x83 for n in range(requests)]
            return pattern, fault.applied


def test_probability_gives_the_same_hits_on_every_run_with_the_same_seed():
    pattern, applied = hit_pattern(seed=5)
    assert hit_pattern(seed=5) == (pattern, applied)
    assert applied == sum(pattern)
    assert 30 <= applied <= 90, "about 0.3 of 200"
    assert hit_pattern(seed=6)[0] != pattern


def test_count_ends_the_fault_after_that_many_hits(sim):
    with sim.fault("exception", code=6, count=3, probability=0.5) as fault:
        assert fault.info()["remaining"] == 3
        hits = [hit(sim.port) for _ in range(200) if fault.active]
        assert hits.count(True) == 3 and hits[-1] is True, "misses do not count"
        assert not fault.active and sim.faults() == []
        with pytest.raises(KeyError):
            sim.control.fault(fault.id)
        with pytest.raises(KeyError):
            sim.control.delete_fault(fault.id)
        assert not hit(sim.port)


def test_duration_ends_the_fault_whether_or_not_it_applied(sim):
    with sim.fault("exception", code=6, duration_s=0.3, functions=[16]) as fault:
        assert 0 < fault.info()["expires_in_s"] <= 0.3
        wait_for(lambda: not fault.active, timeout=5)
        assert fault.applied == 0 and sim.faults() == []
    with sim.fault("exception", code=6, duration_s=0.3) as fault:
        assert hit(sim.port)
        wait_for(lambda: not hit(sim.port), timeout=5)
        with pytest.raises(KeyError):
            sim.control.fault(fault.id)


def test_count_and_duration_whichever_comes_first(sim):
    with sim.fault("exception", code=6, count=2, duration_s=60) as by_count:
        assert hit(sim.port) and hit(sim.port) and not hit(sim.port)
        assert not by_count.active
    with sim.fault("exception", code=6, count=10**6, duration_s=0.3) as by_time:
        assert hit(sim.port)
        wait_for(lambda: not by_time.active, timeout=5)
        assert not hit(sim.port)


def test_the_oldest_fault_that_applies_acts_alone_and_the_others_are_not_consumed(sim):
    with sim.fault("exception", code=6, probability=0.5) as older, \
            sim.fault("exception", code=4, count=1000) as younger, \
            sim.fault("no_answer", count=5) as youngest, connect(sim.port) as sock:
        assert [fault["id"] for fault in sim.faults()] == [older.id, younger.id, youngest.id]
        codes = [ask(sock, READ_STATUS, tid=n)[3][1] for n in range(100)]
        assert set(codes) == {6, 4}
        assert older.applied == codes.count(6) and younger.applied == codes.count(4)
        assert younger.info()["remaining"] == 1000 - codes.count(4)
        assert youngest.applied == 0 and youngest.info()["remaining"] == 5


def test_a_fault_acts_on_the_very_next_request_and_ends_for_the_next_one(sim):
    with connect(sim.port) as sock:
        for n in range(30):
            fault = sim.fault("exception", code=6)
            assert ask(sock, READ_STATUS, tid=n) == (n, 0, 1, bytes([0x83, 6]))
            fault.end()
            assert ask(sock, READ_STATUS, tid=n) == (n, 0, 1, STATUS_ONLINE)
        sim.fault("exception", code=6)
        sim.fault("no_answer", functions=[1])
        assert sim.clear_faults() == 2 and sim.faults() == []
        assert ask(sock, READ_STATUS, tid=99) == (99, 0, 1, STATUS_ONLINE)


# --- isolation and the meter's own state ------------------------------------------------------

@pytest.mark.slow
def test_a_long_delay_on_one_connection_never_delays_another():
    with fleet(2) as sim:
        first, second = sim.ports
        read_input = bytes([0x04, 0, 100, 0, 2])
        with sim.fault("delay", delay_ms=2000, scope={"port": first}, functions=[3]) as fault, \
                connect(first) as slow, connect(first) as same_port, connect(second) as other_port:
            sent_s = time.monotonic()
            slow.sendall(frame(READ_STATUS, tid=1))
            wait_for(lambda: fault.info()["applied"] == 1, timeout=5, interval=0.005)
            worst_s = 0.0
            for n in range(20):  # while the slow request waits
                for sock, pdu in ((same_port, read_input), (other_port, READ_STATUS)):
                    asked_s = time.monotonic()
                    assert ask(sock, pdu, tid=n)[3][2:] == STATUS_ONLINE[2:]
                    worst_s = max(worst_s, time.monotonic() - asked_s)
            assert time.monotonic() - sent_s < 1.5, "all answered during the delay"
            assert worst_s < 0.5
            assert answer(slow) == (1, 0, 1, STATUS_ONLINE)
            assert time.monotonic() - sent_s >= 2.0
            assert fault.applied == 1


def test_a_delayed_answer_keeps_the_order_of_pipelined_requests(sim):
    read_input = bytes([0x04, 0, 100, 0, 2])
    with connect(sim.port) as sock:
        with sim.fault("delay", delay_ms=300, count=1):  # the first waits, the others behind it
            sent_s = time.monotonic()
            sock.sendall(b"".join(frame(READ_STATUS, tid=tid) for tid in (1, 2, 3)))
            assert [answer(sock)[0] for _ in range(3)] == [1, 2, 3]
            assert time.monotonic() - sent_s >= 0.3
        with sim.fault("delay", delay_ms=300, functions=[4]):  # the middle one waits
            sock.sendall(frame(READ_STATUS, tid=4) + frame(read_input, tid=5) + frame(READ_STATUS, tid=6))
            assert [answer(sock)[:3] for _ in range(3)] == [(4, 0, 1), (5, 0, 1), (6, 0, 1)]


def test_totals_keep_integrating_during_faults():
    with MeterSimulator(type="electric", seed=1, interval=0.05, speed=3600) as sim, \
            connect(sim.port) as sock:
        read_total = bytes([0x04, 0, 0, 0, 2])
        before = u32(struct.unpack(">HH", ask(sock, read_total)[3][2:]))
        with sim.fault("exception", code=6, functions=[3]):
            assert hit(sim.port)
            assert sim.wait_ticks(4)
            during = u32(struct.unpack(">HH", ask(sock, read_total, tid=2)[3][2:]))
            assert during > before
        assert sim.wait_ticks(1)
        after = u32(struct.unpack(">HH", ask(sock, bytes([0x03, 0, 0, 0, 2]), tid=3)[3][2:]))
        assert after >= during


def test_once_every_fault_has_ended_the_meter_answers_exactly_as_before(sim):
    probes = REQUESTS[:4] + [bytes([0x03, 0, 0, 0, 102]), bytes([0x03, 0, 101, 0, 2]),
                             bytes([0x01, 0, 11, 0, 1])] + REQUESTS[8:]
    with connect(sim.port) as sock:
        before = [ask(sock, pdu, tid=n) for n, pdu in enumerate(probes)]
    faults = [("delay", {"delay_ms": 1}), ("no_answer", {}), ("close", {}), ("reset", {}),
              ("exception", {"code": 6}), ("corrupt", {"mode": "transaction_id"}),
              ("corrupt", {"mode": "length"}), ("corrupt", {"mode": "truncate"})]
    for kind, parameters in faults:  # each acted out on a connection of its own
        with connect(sim.port) as sock, sim.fault(kind, count=1, **parameters) as fault:
            sock.sendall(frame(READ_STATUS))
            wait_for(lambda: not fault.active, timeout=5, interval=0.005)
    overlapping = [sim.fault("exception", code=6, functions=[3]), sim.fault("delay", delay_ms=5)]
    assert hit(sim.port)
    for fault in overlapping:
        fault.end()
    assert sim.faults() == []
    with connect(sim.port) as sock:
        assert [ask(sock, pdu, tid=n) for n, pdu in enumerate(probes)] == before
    assert sim.meter()["online"] is True and sim.meter()["overrides"] == {}


def test_a_fault_on_one_connection_leaves_no_half_processed_request_on_another(sim):
    stop = threading.Event()
    seen: list[tuple] = []

    def poll() -> None:
        with connect(sim.port) as sock:
            n = 0
            while not stop.is_set():
                seen.append(ask(sock, bytes([0x04, 0, 100, 0, 2]), tid=n & 0xFFFF))
                n += 1

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for kind in ("close", "reset", "no_answer"):
            with connect(sim.port) as sock, sim.fault(kind, functions=[3], count=1) as fault:
                sock.sendall(frame(READ_STATUS))
                wait_for(lambda: not fault.active, timeout=5, interval=0.005)
    finally:
        stop.set()
        poller.join(10)
    assert seen and all(got[1:] == (0, 1, bytes([0x04, 4, 0, 1, 0, 0])) for got in seen)
    assert [got[0] for got in seen] == list(range(len(seen)))
