"""The meters as RTU slaves on a serial line (--serial pty[:LINK]) from outside: minimalmodbus, pymodbus's
serial client, mbpoll -m rtu and hand-made frames on a real pseudo-terminal (rtu-contract sections
1, 2, 4 to 8).

Silence is shown without waiting for it: a frame that must get no answer is followed by one
that must, and the first bytes back are that answer.
"""
from __future__ import annotations

import json
import os
import re
import signal
from urllib.request import urlopen

import minimalmodbus
import pytest

from meter_simulator.modbus.rtu import crc16, framed
from meter_simulator.testing import MeterSimulator
from support import (
    MeterProcess,
    bindable,
    connect,
    free_port,
    mbpoll_values,
    opened,
    read_exactly,
    rtu_frames,
    run_mbpoll,
    run_program,
    scrape,
    unit_kw,
    wait_for,
)

READ_STATUS = bytes.fromhex("03 0064 0002")
SERIAL_LINE = re.compile(r"Modbus RTU on serial (\S+) ")


def ask(fd: int, unit_id: int, pdu: bytes, size: int) -> bytes:
    os.write(fd, framed(unit_id, pdu))
    answer = read_exactly(fd, size)
    assert crc16(answer) == 0, answer.hex()
    return answer


@pytest.fixture(scope="module")
def line_sim(tmp_path_factory):
    link = tmp_path_factory.mktemp("line") / "meter.tty"
    with MeterSimulator(serial=f"pty:{link}", interval=3600, seed=5, http=True) as sim:
        yield sim, str(link)


def test_minimalmodbus_reads_the_meter_on_the_link(line_sim):
    sim, link = line_sim
    instrument = minimalmodbus.Instrument(link, 1)
    instrument.serial.timeout = 2
    try:
        assert instrument.read_registers(100, 2) == [1, 0]
        assert instrument.read_bit(0, functioncode=1) == 1
    finally:
        instrument.serial.close()


def test_pymodbus_serial_client_reads_what_tcp_answers_at_the_same_moment(line_sim):
    from pymodbus.client import ModbusSerialClient, ModbusTcpClient

    sim, _ = line_sim
    serial = ModbusSerialClient(sim.serial_path, baudrate=9600, timeout=2, retries=0)
    tcp = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=2)
    try:
        assert serial.connect() and tcp.connect()
        over_serial = serial.read_holding_registers(0, count=18, **unit_kw(serial.read_holding_registers))
        over_tcp = tcp.read_holding_registers(0, count=18, **unit_kw(tcp.read_holding_registers))
        assert over_serial.registers == over_tcp.registers  # interval 3600: one image
    finally:
        serial.close()
        tcp.close()


def test_mbpoll_rtu_reads_the_link_as_the_readme_shows(line_sim):
    _, link = line_sim
    result = run_mbpoll("-m", "rtu", "-b", "9600", "-P", "none", "-a", "1", "-t", "4", "-r", "1",
                        "-c", "4", "-1", link)  # README.md, "Modbus RTU"; docs/rtu.md
    assert result.returncode == 0, result.stderr
    assert sorted(mbpoll_values(result.stdout)) == [1, 2, 3, 4]
    result = run_mbpoll("-m", "rtu", "-b", "9600", "-P", "none", "-a", "1", "-t", "4", "-r", "101",
                        "-c", "2", "-1", link)
    assert mbpoll_values(result.stdout) == {101: 1, 102: 0}


def test_clients_open_and_close_the_line_one_after_another(line_sim):
    sim, _ = line_sim
    for _ in range(5):
        with opened(sim.serial_path) as fd:
            assert ask(fd, 1, READ_STATUS, 9)[:5] == bytes.fromhex("01 03 04 0001")


def test_split_garbage_bad_crc_and_absent_units_on_the_line(line_sim):
    sim, _ = line_sim
    good = framed(1, READ_STATUS)
    with opened(sim.serial_path) as fd:
        os.write(fd, good[:3])
        os.write(fd, good[3:])
        assert read_exactly(fd, 9)[:3] == bytes.fromhex("01 03 04")
        os.write(fd, b"\x00\xff" + good)
        assert read_exactly(fd, 9)[:3] == bytes.fromhex("01 03 04")
        os.write(fd, good[:-1] + bytes((good[-1] ^ 1,)))  # a bad CRC: ignored
        os.write(fd, framed(2, READ_STATUS))  # an absent unit id: silence
        os.write(fd, framed(0, READ_STATUS))  # a broadcast read: ignored
        assert ask(fd, 1, READ_STATUS, 9)[:3] == bytes.fromhex("01 03 04")  # the first answer


def test_a_write_on_the_line_shows_on_tcp_at_once_and_a_broadcast_too():
    with MeterSimulator(serial="pty", interval=3600) as sim, opened(sim.serial_path) as fd, \
            connect(sim.port) as sock:
        from support import modbus_exchange

        assert ask(fd, 1, bytes.fromhex("06 0064 0000"), 8)[1:6] == bytes.fromhex("06 0064 0000")
        assert modbus_exchange(sock, READ_STATUS)[3] == bytes.fromhex("03 04 0000 0000")
        os.write(fd, framed(0, bytes.fromhex("06 0064 0001")))  # broadcast: online again, unanswered
        assert ask(fd, 1, READ_STATUS, 9)[3:5] == bytes.fromhex("0001")
        assert modbus_exchange(sock, READ_STATUS)[3] == bytes.fromhex("03 04 0001 0000")


def test_an_offline_device_profile_is_silent_on_the_line_while_tcp_answers_0x0b():
    with MeterSimulator(serial="pty", profile="sdm630", interval=3600) as sim, \
            opened(sim.serial_path) as fd:
        sim.set_online(False)
        os.write(fd, framed(1, bytes.fromhex("04 0000 0002")))  # silence
        sim.set_online(True)
        assert ask(fd, 1, bytes.fromhex("04 0000 0002"), 9)[:3] == bytes.fromhex("01 04 04")


def test_the_api_and_metrics_show_the_line(line_sim):
    sim, link = line_sim
    with urlopen(f"{sim.http_url}api/meters/{sim.meter_ids[0]}", timeout=10) as answer:
        details = json.load(answer)
    assert details["framing"] == "tcp"
    assert details["serial"] == {"path": sim.serial_path, "link": link, "unit_id": 1, "baud": 9600,
                                 "parity": "N", "stopbits": 1}
    before = scrape(sim.http_url)
    with opened(sim.serial_path) as fd:
        for _ in range(3):
            ask(fd, 1, READ_STATUS, 9)
    after = scrape(sim.http_url)
    assert rtu_frames(after, "serial", "request") - rtu_frames(before, "serial", "request") == 3
    assert rtu_frames(after, "tcp", "request") is None  # MBAP on TCP: no RTU series for it


def test_the_program_prints_the_line_and_removes_its_link_at_exit(tmp_path):
    link = tmp_path / "meter.tty"
    with MeterProcess("--serial", f"pty:{link}", "--parity", "E") as program:
        found = wait_for(lambda: SERIAL_LINE.search(program.proc.stderr.readline() or ""), 10)
        path = found.group(1)
        assert os.path.realpath(link) == path
        with opened(str(link)) as fd:
            assert ask(fd, 1, READ_STATUS, 9)[0] == 1
        code, _, err = program.stop(signal.SIGTERM)
    assert code == 0, err
    assert not os.path.lexists(link)


@pytest.mark.parametrize("args, words", [
    (["--serial", "pty", "--count", "2"], ["--serial", "--count"]),
    (["--baud", "9600"], ["--baud"]),
    (["--parity", "X", "--serial", "pty"], ["--parity"]),
    (["--serial", "pty:"], ["--serial"]),
    (["--framing", "ascii"], ["--framing"]),
])
def test_usage_errors_exit_2_with_one_line(args, words):
    result = run_program(*args)
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert all(word in first for word in words) and "Traceback" not in result.stderr


@pytest.mark.parametrize("spec, reason", [("/dev/no-such-tty", "/dev/no-such-tty"),
                                          ("/dev/null", "/dev/null")])
def test_a_line_that_cannot_be_served_exits_1_with_one_line_and_nothing_bound(spec, reason):
    port = free_port()
    result = run_program("--serial", spec, "--port", str(port))
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.splitlines()) == 1 and reason in result.stderr
    assert bindable(port)
