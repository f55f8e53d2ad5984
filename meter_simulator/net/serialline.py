"""SerialLine: the serial line RTU is served on, a real device (opened through pyserial) or a
pseudo-terminal pair of our own (pty, pty:LINK), read and written through its fd alike. Bytes only."""
from __future__ import annotations

import errno
import logging
import os
import select
import stat
import termios
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

SERIAL_READ_SIZE = 4096  # more than any burst of frames a client sends before waiting for answers
# A pty's client side buffers about 14 KB nobody reads; past that the kernel takes nothing more
PTY_STALL_S = 0.5
# A real line drains at its speed whoever listens (256 bytes of kernel buffer free in under 3 s
# at 1200 baud), so this long without taking a byte means the device is stuck
DEVICE_STALL_S = 5.0
PTY_CLIENT_MAJORS = range(136, 144)  # Linux's Unix98 pty client sides (admin-guide/devices.txt)
WHY = {  # errno -> the reason a device cannot be opened, in the words of the start-up errors
    errno.ENOENT: "does not exist",
    errno.ENOTDIR: "does not exist",
    errno.ENXIO: "does not exist (no such device)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EBUSY: "busy (in use by another program)",
    errno.EAGAIN: "busy (locked by another process)",  # pyserial's flock, exclusive=True
}


class SerialLineError(Exception):
    """A line that cannot be served; str() is one line naming the path and the reason."""


@dataclass(frozen=True)
class LineSettings:
    """Speed, parity and stop bits of a serial line; 8 data bits always (RTU has no 7-bit form)."""

    baud: int = 9600  # 1200..921600: the command line checks the range
    parity: str = "N"  # "N", "E" or "O"
    stopbits: int = 1  # 1 or 2

    def __post_init__(self) -> None:
        if self.parity not in ("N", "E", "O") or self.stopbits not in (1, 2):
            raise ValueError(f"no such line: parity {self.parity!r}, stop bits {self.stopbits!r}")

    def describe(self) -> str:
        """As the start line shows them: "9600 8N1"."""
        return f"{self.baud} 8{self.parity}{self.stopbits}"


class SerialLine:
    """An open serial line. path is what clients open (a pty's client side, never the link, or
    the DEVICE path); link is the symbolic link asked for with pty:LINK, else None.

    One thread reads and writes; close() comes after that thread has stopped (an fd closed
    under a read may be reused by the next open). fileno() changes with reopen().
    """

    def __init__(self, path: str, settings: LineSettings, fd: int, *, link: str | None = None,
                 client_fd: int | None = None, port=None) -> None:
        self.path = path
        self.link = link
        self.settings = settings
        self.is_pty = client_fd is not None
        self._fd: int | None = fd  # the pty's controller side, or the device's
        self._client_fd = client_fd  # held so the controller never reads EIO between clients
        self._port = port  # the pyserial Serial that owns a device's fd
        self._closed = False

    def __enter__(self) -> SerialLine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def fileno(self) -> int:
        """The fd to wait on; OSError (EBADF) while closed, or after a reopen() that failed."""
        if self._fd is None:
            raise OSError(errno.EBADF, f"serial line {self.path} is closed")
        return self._fd

    def read(self, timeout_s: float) -> bytes:
        """What has arrived (up to SERIAL_READ_SIZE bytes), b"" when nothing did within timeout_s;
        OSError on a device error (an unplugged adapter hangs up: an empty read)."""
        fd = self.fileno()
        deadline = time.monotonic() + timeout_s
        if not _wait(fd, select.POLLIN, timeout_s):
            return b""
        try:
            data = os.read(fd, SERIAL_READ_SIZE)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if not (self.is_pty and exc.errno == errno.EIO):
                raise
            # no client side open: cannot happen while we hold ours; wait out the timeout
            # rather than have the caller spin on a controller that stays readable
            time.sleep(max(0.0, deadline - time.monotonic()))
            return b""
        if not data and not self.is_pty:
            raise OSError(errno.EIO, f"serial line {self.path} hung up")
        return data

    def write(self, data: bytes) -> None:
        """Send all of data: one os.write when the kernel takes it, more for the rest. OSError on
        a device error, TimeoutError when a device takes nothing for DEVICE_STALL_S."""
        fd = self.fileno()
        rest = memoryview(data)
        discarded = False
        while rest:
            try:
                rest = rest[os.write(fd, rest):]
                continue
            except BlockingIOError:
                pass
            stall_s = PTY_STALL_S if self.is_pty else DEVICE_STALL_S
            if _wait(fd, select.POLLOUT, stall_s):
                continue
            if self.is_pty and not discarded:
                self._discard_unread()
                discarded = True
                continue
            raise TimeoutError(errno.ETIMEDOUT, f"serial line {self.path} took nothing for {stall_s} s")

    def _discard_unread(self) -> None:
        """Drop what no client read from the pty: a real line's bytes are gone once sent, and a
        full buffer would otherwise stop every answer to the next client."""
        log.debug("serial line %s: discarding what no client read", self.path)
        termios.tcflush(self._client_fd, termios.TCIFLUSH)

    def reopen(self) -> None:
        """A real device only: close it and open it again with the same settings (after an
        unplugged adapter came back). SerialLineError when it cannot; the line then has no fd
        until a later reopen() succeeds."""
        if self.is_pty or self._closed:
            what = "a pseudo-terminal is never reopened" if self.is_pty else "it was closed"
            raise SerialLineError(f"cannot reopen serial line {self.path}: {what}")
        self._close_fds()
        self._port = _open_device(self.path, self.settings)
        self._fd = self._port.fileno()

    def close(self) -> None:
        """Close every fd and remove the link if it still points to this line's path (another
        run may have taken it since). Safe to repeat."""
        self._closed = True
        self._close_fds()
        if self.link is not None:
            _remove_link(self.link, self.path)

    def _close_fds(self) -> None:
        if self._port is not None:
            port, self._port = self._port, None
            port.close()  # its fd and its two wake-up pipes
        elif self._fd is not None:
            os.close(self._fd)
        self._fd = None
        if self._client_fd is not None:
            client_fd, self._client_fd = self._client_fd, None
            os.close(client_fd)


def open_line(spec: str, settings: LineSettings) -> SerialLine:
    """Open the line of --serial: spec is "pty", "pty:LINK" or a DEVICE path. SerialLineError,
    with nothing left open and no link left behind, when it cannot be served."""
    if spec == "pty" or spec.startswith("pty:"):
        link = spec[4:] if spec != "pty" else None
        if link == "":
            raise SerialLineError("cannot link the pseudo-terminal: pty: names no link")
        return _open_pty(settings, link)
    if not spec:
        raise SerialLineError("cannot open serial line: no device path given")
    port = _open_device(spec, settings)
    return SerialLine(spec, settings, port.fileno(), port=port)


def _open_pty(settings: LineSettings, link: str | None) -> SerialLine:
    try:
        controller, client = os.openpty()  # both non-inheritable (close-on-exec) since 3.4
    except OSError as exc:
        raise SerialLineError(f"cannot create a pseudo-terminal: {exc.strerror or exc}") from None
    try:
        _set_raw(client, settings.baud)
        os.set_blocking(controller, False)
        path = os.ttyname(client)
        if link is not None:
            _make_link(link, path)
    except (OSError, termios.error) as exc:
        os.close(controller)
        os.close(client)
        raise SerialLineError(f"cannot set up a pseudo-terminal: {exc}") from None
    except BaseException:  # SerialLineError from the link, or an interrupt: nothing left open
        os.close(controller)
        os.close(client)
        raise
    return SerialLine(path, settings, controller, link=link, client_fd=client)


def _set_raw(fd: int, baud: int) -> None:
    """cfmakeraw (tty.cfmakeraw is 3.12+), so a client that sets nothing exchanges every byte value
    unchanged; and the speed bits of baud, which a pty ignores but a client may read."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
    iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
               | termios.IGNCR | termios.ICRNL | termios.IXON | termios.IXOFF | termios.IXANY)
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag = (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    cc = list(cc)
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    speed = getattr(termios, f"B{baud}", None)
    if speed is not None:
        ispeed = ospeed = speed
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


def _make_link(link: str, target: str) -> None:
    """A symbolic link link -> target. One already there (left by a kill -9) is replaced in one
    rename; anything else there (a file, a directory) is never touched: SerialLineError."""
    directory = os.path.dirname(link) or "."
    if not os.path.isdir(directory):
        raise SerialLineError(f"cannot create link {link}: directory {directory} does not exist")
    try:
        os.symlink(target, link)
        return
    except FileExistsError:
        pass
    except OSError as exc:
        raise SerialLineError(f"cannot create link {link}: {exc.strerror or exc}") from None
    if not os.path.islink(link):
        raise SerialLineError(f"cannot create link {link}: it exists and is not a symbolic link")
    # beside the link, so the rename stays in one file system and is atomic
    temporary = os.path.join(directory, f".{os.path.basename(link)}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        os.symlink(target, temporary)
        os.replace(temporary, link)
    except OSError as exc:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise SerialLineError(f"cannot replace link {link}: {exc.strerror or exc}") from None


def _remove_link(link: str, target: str) -> None:
    try:
        if os.readlink(link) != target:
            log.debug("link %s points elsewhere now: left alone", link)
            return
        os.unlink(link)
    except OSError:  # gone already, or no longer a link: not ours to remove
        pass


def _open_device(path: str, settings: LineSettings):
    """A pyserial Serial on path with the settings and no flow control, locked against other
    processes; SerialLineError naming the path and the reason when it cannot be opened."""
    try:
        import serial  # pyserial: loaded only when a device is served
    except ImportError:
        raise SerialLineError(f"cannot open serial line {path}: pyserial is not installed") from None
    probe = _probe_terminal(path)
    try:
        # A Linux pty carries no parity bits: the kernel clears PARENB and glibc's tcsetattr
        # then fails with EINVAL. Clients still frame and time as settings say (the start line).
        parity = "N" if os.major(os.fstat(probe).st_rdev) in PTY_CLIENT_MAJORS else settings.parity
        return serial.Serial(path, settings.baud, bytesize=8, parity=parity,
                             stopbits=settings.stopbits, timeout=0, xonxoff=False, rtscts=False,
                             dsrdtr=False, exclusive=True)
    except (OSError, ValueError, termios.error) as exc:  # SerialException is an OSError
        code = exc.args[0] if isinstance(exc, termios.error) else getattr(exc, "errno", None)
        if code == errno.EINVAL:
            why = f"the device refuses {settings.describe()}"
        else:
            why = WHY.get(code) or (os.strerror(code) if code else str(exc))
        raise SerialLineError(f"cannot open serial line {path}: {why}") from None
    finally:
        # held until pyserial has its own fd: a last close would drop DTR on a real device
        os.close(probe)


def _probe_terminal(path: str) -> int:
    """An fd on path once it is known to be a terminal; SerialLineError otherwise (a regular
    file, a directory, /dev/null), so pyserial never has to explain why it cannot configure it."""
    try:
        if not stat.S_ISCHR(os.stat(path).st_mode):
            raise SerialLineError(f"cannot open serial line {path}: is not a terminal")
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        why = WHY.get(exc.errno) or exc.strerror or str(exc)
        raise SerialLineError(f"cannot open serial line {path}: {why}") from None
    if not os.isatty(fd):
        os.close(fd)
        raise SerialLineError(f"cannot open serial line {path}: is not a terminal")
    return fd


def _wait(fd: int, event: int, timeout_s: float) -> bool:
    """True when fd is ready for event (or has an error to report) within timeout_s. poll, not
    select: a line reopened late in a busy run may get an fd past select's 1024."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(max(0, int(timeout_s * 1000 + 0.999))))
