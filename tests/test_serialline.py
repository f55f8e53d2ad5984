"""The serial line (net/serialline.py) on real pseudo-terminals and real files: every byte value
both ways through a client that sets nothing, clients one after another, the link's rules, one-line
errors for devices that cannot be served, a device opened through pyserial, and no fd left open."""
from __future__ import annotations

import os
import select
import stat
import termios
import time

import pytest

from meter_simulator.net.serialline import LineSettings, SerialLine, SerialLineError, open_line

EVERY_BYTE = bytes(range(256))
DEADLINE_S = 5.0

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc")


def open_fds() -> set[int]:
    """The fds open now, less the one the listing itself used."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        fds.add(int(name))
    return fds


@pytest.fixture
def no_fd_leak():
    """Every fd the test opens through the line is closed by its end (the test closes its own)."""
    before = open_fds()
    yield
    assert open_fds() <= before


def read_from_line(line: SerialLine, size: int) -> bytes:
    """size bytes from the line, in as many reads as they come in, within DEADLINE_S."""
    data = b""
    deadline = time.monotonic() + DEADLINE_S
    while len(data) < size and time.monotonic() < deadline:
        data += line.read(0.1)
    return data


def read_from_fd(fd: int, size: int, ending: bytes | None = None) -> bytes:
    """size bytes from an fd (a client, a pty's controller), or fewer ending with ending, within
    DEADLINE_S."""
    data = b""
    deadline = time.monotonic() + DEADLINE_S
    while len(data) < size and not (ending and data.endswith(ending)):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        data += os.read(fd, size - len(data))
    return data


def open_client(path: str) -> int:
    """A client that sets nothing on the line: what a shell redirection or cat does."""
    return os.open(path, os.O_RDWR | os.O_NOCTTY)


def exchange(line: SerialLine, client: int) -> None:
    """Every byte value, client to line, then line to client, unchanged."""
    os.write(client, EVERY_BYTE)
    assert read_from_line(line, 256) == EVERY_BYTE
    line.write(EVERY_BYTE[::-1])
    assert read_from_fd(client, 256) == EVERY_BYTE[::-1]


@pytest.fixture
def pty_line(no_fd_leak):
    line = open_line("pty", LineSettings())
    yield line
    line.close()


@pytest.fixture
def device():
    """A second pseudo-terminal pair: its client side is the DEVICE, its controller the far end."""
    controller, client = os.openpty()
    path = os.ttyname(client)
    os.close(client)  # the line holds the device; the far end reads and writes the controller
    yield controller, path
    os.close(controller)


@pytest.mark.parametrize(("settings", "text"), [
    (LineSettings(), "9600 8N1"), (LineSettings(19200, "E", 2), "19200 8E2"),
    (LineSettings(1200, "O", 1), "1200 8O1")])
def test_settings_describe_as_the_start_line_shows_them(settings, text):
    assert settings.describe() == text


@pytest.mark.parametrize("wrong", [{"parity": "X"}, {"parity": "n"}, {"stopbits": 3}])
def test_settings_refuse_a_line_that_does_not_exist(wrong):
    with pytest.raises(ValueError):
        LineSettings(**wrong)


def test_a_pty_line_names_its_client_side(pty_line):
    assert pty_line.path.startswith("/dev/") and os.path.realpath(pty_line.path) == pty_line.path
    assert os.isatty(pty_line.fileno())
    assert pty_line.is_pty and pty_line.link is None and pty_line.settings == LineSettings()


def test_a_pty_client_side_is_raw_as_cfmakeraw_makes_it(no_fd_leak):
    with open_line("pty", LineSettings(19200, "E", 2)) as line:
        client = open_client(line.path)
        iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(client)
        os.close(client)
    assert not iflag & (termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                        | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON
                        | termios.IXOFF | termios.IXANY)
    assert not oflag & termios.OPOST
    assert not lflag & (termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    assert cflag & termios.CSIZE == termios.CS8 and not cflag & termios.PARENB
    assert cc[termios.VMIN] in (1, b"\x01") and cc[termios.VTIME] in (0, b"\x00")
    assert ispeed == ospeed == termios.B19200


def test_every_byte_value_passes_unchanged_both_ways(pty_line):
    client = open_client(pty_line.path)
    try:
        for _ in range(3):
            exchange(pty_line, client)
    finally:
        os.close(client)


def test_clients_one_after_another_are_each_served(pty_line):
    for _ in range(3):
        client = open_client(pty_line.path)
        exchange(pty_line, client)
        os.close(client)
        # no client now: nothing arrives, and no EIO either
        assert pty_line.read(0.05) == b""


def test_a_line_with_no_client_yet_reads_nothing_within_the_timeout(pty_line):
    started = time.monotonic()
    assert pty_line.read(0.1) == b""
    assert 0.05 <= time.monotonic() - started < 2


def test_frames_written_one_after_another_arrive_whole_and_in_order(pty_line):
    client = open_client(pty_line.path)
    frames = [bytes((n + i) % 256 for i in range(256)) for n in range(20)]
    try:
        for frame in frames:
            pty_line.write(frame)
        assert read_from_fd(client, 256 * 20) == b"".join(frames)
    finally:
        os.close(client)


def test_answers_no_client_reads_never_stop_the_line(pty_line):
    """Past the ~14 KB a pty buffers, the unread bytes are dropped, as on a real line."""
    started = time.monotonic()
    for n in range(100):  # 25 KB, no reader
        pty_line.write(bytes([n]) * 256)
    assert time.monotonic() - started < DEADLINE_S
    client = open_client(pty_line.path)
    try:
        os.write(client, EVERY_BYTE)
        assert read_from_line(pty_line, 256) == EVERY_BYTE
        waiting = read_from_fd(client, 256 * 100, ending=bytes([99]) * 256)
        assert waiting.endswith(bytes([99]) * 256) and len(waiting) < 256 * 100
        assert waiting[:256] != bytes(256)  # the first answers were dropped
    finally:
        os.close(client)


def test_every_fd_is_close_on_exec_and_close_closes_them_all_twice_over():
    before = open_fds()
    line = open_line("pty", LineSettings())
    opened = open_fds() - before
    assert len(opened) == 2 and line.fileno() in opened
    assert not any(os.get_inheritable(fd) for fd in opened)
    line.close()
    line.close()
    assert open_fds() <= before
    for use in (line.fileno, lambda: line.read(0), lambda: line.write(b"x")):
        with pytest.raises(OSError):
            use()


def test_a_pty_is_never_reopened(pty_line):
    with pytest.raises(SerialLineError, match="pseudo-terminal"):
        pty_line.reopen()


# ---- pty:LINK -------------------------------------------------------------------------------


def test_the_link_points_to_the_client_side_and_goes_at_close(tmp_path, no_fd_leak):
    link = tmp_path / "meter.tty"
    line = open_line(f"pty:{link}", LineSettings())
    assert line.link == str(link) and line.path != str(link)
    assert os.readlink(link) == line.path
    client = open_client(str(link))  # clients may open the link, too
    exchange(line, client)
    os.close(client)
    line.close()
    assert os.listdir(tmp_path) == []


def test_a_relative_link_is_made_in_the_working_directory(tmp_path, monkeypatch, no_fd_leak):
    monkeypatch.chdir(tmp_path)
    with open_line("pty:meter.tty", LineSettings()) as line:
        assert os.readlink(tmp_path / "meter.tty") == line.path
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("old_target", ["/dev/pts/nonexistent", "elsewhere.txt"])
def test_a_link_left_by_a_killed_run_is_replaced(tmp_path, old_target, no_fd_leak):
    (tmp_path / "elsewhere.txt").write_text("kept")
    link = tmp_path / "meter.tty"
    os.symlink(old_target, link)
    with open_line(f"pty:{link}", LineSettings()) as line:
        assert os.readlink(link) == line.path
        assert sorted(os.listdir(tmp_path)) == ["elsewhere.txt", "meter.tty"]  # no temporary left
    assert (tmp_path / "elsewhere.txt").read_text() == "kept"
    assert not os.path.lexists(link)


def test_a_file_at_the_link_is_never_replaced(tmp_path, no_fd_leak):
    link = tmp_path / "meter.tty"
    link.write_text("precious")
    with pytest.raises(SerialLineError) as caught:
        open_line(f"pty:{link}", LineSettings())
    assert str(link) in str(caught.value) and "not a symbolic link" in str(caught.value)
    assert link.read_text() == "precious" and os.listdir(tmp_path) == ["meter.tty"]


def test_a_directory_at_the_link_is_never_replaced(tmp_path, no_fd_leak):
    link = tmp_path / "meter.tty"
    link.mkdir()
    (link / "inside").write_text("precious")
    with pytest.raises(SerialLineError, match="not a symbolic link") as caught:
        open_line(f"pty:{link}", LineSettings())
    assert str(link) in str(caught.value)
    assert stat.S_ISDIR(os.lstat(link).st_mode) and (link / "inside").read_text() == "precious"


def test_a_link_in_a_missing_directory_is_refused(tmp_path, no_fd_leak):
    link = tmp_path / "missing" / "meter.tty"
    with pytest.raises(SerialLineError, match="does not exist") as caught:
        open_line(f"pty:{link}", LineSettings())
    assert str(link) in str(caught.value) and "\n" not in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_an_empty_link_is_refused(no_fd_leak):
    with pytest.raises(SerialLineError, match="no link"):
        open_line("pty:", LineSettings())


def test_a_link_another_run_took_is_left_alone_at_close(tmp_path, no_fd_leak):
    link = tmp_path / "meter.tty"
    line = open_line(f"pty:{link}", LineSettings())
    os.unlink(link)
    os.symlink("/dev/pts/other-run", link)
    line.close()
    assert os.readlink(link) == "/dev/pts/other-run"


def test_a_link_someone_removed_does_not_trouble_close(tmp_path, no_fd_leak):
    link = tmp_path / "meter.tty"
    line = open_line(f"pty:{link}", LineSettings())
    os.unlink(link)
    line.close()
    line.close()
    assert os.listdir(tmp_path) == []


# ---- DEVICE ---------------------------------------------------------------------------------


def refusal(spec: str) -> str:
    """The one line open_line refuses spec with."""
    with pytest.raises(SerialLineError) as caught:
        open_line(spec, LineSettings())
    message = str(caught.value)
    assert "\n" not in message and spec in message
    return message


def test_a_device_that_does_not_exist_is_refused_in_one_line(tmp_path, no_fd_leak):
    assert "does not exist" in refusal(str(tmp_path / "ttyUSB9"))
    assert "does not exist" in refusal(str(tmp_path / "gone" / "ttyUSB9"))


def test_what_is_not_a_terminal_is_refused_in_one_line(tmp_path, no_fd_leak):
    regular = tmp_path / "ttyS0"
    regular.write_bytes(b"data")
    for spec in ("/dev/null", str(regular), str(tmp_path)):
        assert "is not a terminal" in refusal(spec)
    assert regular.read_bytes() == b"data"


def test_an_empty_device_path_is_refused(no_fd_leak):
    with pytest.raises(SerialLineError):
        open_line("", LineSettings())


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens any device")
def test_a_device_without_permission_is_refused_in_one_line(device, no_fd_leak):
    _, path = device
    os.chmod(path, 0)
    assert "permission denied" in refusal(path)


def test_a_device_opens_through_pyserial_with_its_settings(device, no_fd_leak):
    controller, path = device
    with open_line(path, LineSettings(19200, "E", 2)) as line:
        assert (line.path, line.link, line.is_pty) == (path, None, False)
        iflag, _, cflag, lflag, ispeed, ospeed, _ = termios.tcgetattr(line.fileno())
        assert cflag & termios.CSIZE == termios.CS8
        # parity E stays the line's setting, but a Linux pty keeps no parity bit: see the module
        assert line.settings.describe() == "19200 8E2" and cflag & termios.CSTOPB
        assert not cflag & termios.CRTSCTS and not iflag & (termios.IXON | termios.IXOFF)
        assert not lflag & (termios.ICANON | termios.ECHO) and ispeed == ospeed == termios.B19200
        assert not os.get_inheritable(line.fileno())
        exchange(line, controller)


def test_a_device_another_line_holds_is_busy(device, no_fd_leak):
    _, path = device
    with open_line(path, LineSettings()):
        assert "busy" in refusal(path)


def test_a_device_reopens_with_the_same_settings(device, no_fd_leak):
    controller, path = device
    with open_line(path, LineSettings(9600, "O", 1)) as line:
        exchange(line, controller)
        fds = open_fds()
        line.reopen()
        assert open_fds() == fds
        assert line.settings == LineSettings(9600, "O", 1)
        exchange(line, controller)
    with pytest.raises(SerialLineError, match="closed"):
        line.reopen()


def test_an_unplugged_device_reads_an_error_and_cannot_reopen(no_fd_leak):
    controller, client = os.openpty()
    path = os.ttyname(client)
    os.close(client)
    line = open_line(path, LineSettings())
    os.close(controller)  # the far end goes: the line hangs up, and the device node goes with it
    try:
        with pytest.raises(OSError):
            read_from_line(line, 1)
        with pytest.raises(SerialLineError, match="does not exist") as caught:
            line.reopen()
        assert path in str(caught.value)
        with pytest.raises(OSError):
            line.fileno()
    finally:
        line.close()
        line.close()
