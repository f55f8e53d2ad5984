"""The state file: every meter's total, kept across restarts, saved atomically.

The file is JSON, small enough to read by eye:

    {"format": "meter-simulator state", "version": 1, "meter_type": "water",
     "unit": "m3", "saved_at": "2024-05-01T12:00:00Z",
     "totals": {"5021": 12.3456789, "5022/7": 0.25}}

A total is keyed by the port it is served on, and in gateway mode (--unit-ids)
by port and unit id ("5022/7"), so a restart with the same options resumes
each meter. Totals are floats in kWh (electric) or m3 (water, gas), written with
Python's shortest round-trip repr, so a saved total comes back bit for bit.

A file that cannot be trusted is never taken for zero: load() raises StateError
with one line naming the file and the problem. save() writes a temporary file
in the same folder, fsyncs it, renames it over the old one and fsyncs the
folder, so a crash or a power cut leaves either the old file or the new one.
The temporary file has a name of its own each time, created exclusively: a
link planted in its place is never followed.

One process at a time serves the meters of a state file: StateLock holds an
advisory lock on PATH.lock for the life of the process, and a second process
is refused with the process id of the first.
"""
from __future__ import annotations

import errno
import json
import math
import os
import time
from collections.abc import Mapping

try:
    import fcntl
except ImportError:  # no advisory locks on this platform: nothing to refuse a second process with
    fcntl = None

FORMAT = "meter-simulator state"
VERSION = 1
TOTAL_UNITS = {"electric": "kWh", "water": "m3", "gas": "m3"}
START_OVER = "move the file away to start from 0"


class StateError(Exception):
    """A state file that cannot be used; the message is one line naming the file."""


class StateInUse(StateError):
    """Another process holds the state file's lock."""

    def __init__(self, path: str, holder: str) -> None:
        super().__init__(f"state file {path} is in use by {holder}: one process at a time may "
                         f"serve its meters (give this one another --state-file)")
        self.holder = holder


def meter_key(port: int, unit_id: int | None = None) -> str:
    """The key of a meter's total: "5021", or "5021/7" for unit id 7 in gateway mode."""
    return str(port) if unit_id is None else f"{port}/{unit_id}"


def encode(meter_type: str, totals: Mapping[str, float], saved_at_s: float) -> bytes:
    """The file's bytes for these totals (kWh or m3), saved at a Unix time in seconds."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "meter_type": meter_type,
        "unit": TOTAL_UNITS.get(meter_type, ""),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(saved_at_s)),
        "totals": dict(totals),
    }
    return (json.dumps(document, indent=1) + "\n").encode("utf-8")


def decode(data: bytes, meter_type: str) -> dict[str, float]:
    """The totals in a file's bytes; ValueError with the problem (no file name) otherwise."""
    if not data.strip():
        raise ValueError("the file is empty")
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not a state file (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON, truncated or corrupt ({exc.msg}: line {exc.lineno} "
                         f"column {exc.colno})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"not a state file (no \"format\": \"{FORMAT}\")")
    if document.get("version") != VERSION:
        raise ValueError(f"version {document.get('version')!r} is not supported (expected {VERSION})")
    if document.get("meter_type") != meter_type:
        raise ValueError(f"it is for {document.get('meter_type')} meters, not {meter_type} meters")
    totals = document.get("totals")
    if not isinstance(totals, dict):
        raise ValueError("\"totals\" is missing or not an object")
    for key, total in totals.items():
        if isinstance(total, bool) or not isinstance(total, (int, float)) \
                or not math.isfinite(total) or total < 0:
            raise ValueError(f"the total of meter {key!r} is {total!r}, not a number >= 0")
    return {key: float(total) for key, total in totals.items()}


def load(path: str, meter_type: str) -> dict[str, float] | None:
    """The saved totals by meter key, or None when there is no file yet.

    StateError for a file that exists but cannot be read or used.
    """
    try:
        with open(path, "rb") as file:
            data = file.read()
    except (FileNotFoundError, NotADirectoryError):  # no file there: its folder's save will say why
        return None
    except OSError as exc:
        raise StateError(f"state file {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        return decode(data, meter_type)
    except ValueError as exc:
        raise StateError(f"state file {path}: {exc}; {START_OVER}") from None


def save(path: str, meter_type: str, totals: Mapping[str, float], saved_at_s: float | None = None) -> None:
    """Replace the file atomically with these totals; OSError when it cannot be done.

    On failure the old file is untouched and no temporary file is left behind.
    """
    data = encode(meter_type, totals, time.time() if saved_at_s is None else saved_at_s)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp_path = create_temporary(folder, os.path.basename(path))
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp_path, path)
    except BaseException:
        try:
            os.unlink(temp_path)
        except OSError:
            pass
        raise
    sync_folder(folder)


TEMPORARY_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                   | getattr(os, "O_CLOEXEC", 0))


def temporary_name(name: str) -> str:
    """A new name for a temporary file beside the file called name: .NAME.RANDOM.tmp"""
    return f".{name}.{os.urandom(8).hex()}.tmp"  # not secrets: hashlib would load OpenSSL (4 MB)


def is_temporary_of(entry: str, name: str) -> bool:
    """True when a folder entry is (or was) a temporary file of the file called name."""
    return entry.startswith(f".{name}.") and entry.endswith(".tmp")


def create_temporary(folder: str, name: str) -> tuple[int, str]:
    """(descriptor, path) of a new file in folder, created exclusively (O_EXCL: never through
    a link or over another file), with the permissions the umask allows of 0644."""
    for _ in range(100):
        temp_path = os.path.join(folder, temporary_name(name))
        try:
            return os.open(temp_path, TEMPORARY_FLAGS, 0o644), temp_path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", folder)


def remove_temporaries(path: str) -> None:
    """Remove temporary files a killed process left beside the state file (the lock holder only)."""
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if is_temporary_of(entry, name):
            try:
                os.unlink(os.path.join(folder, entry))  # a link itself, never what it points to
            except OSError:
                pass


class StateLock:
    """The advisory lock that lets one process at a time serve the meters of a state file.

    flock() on PATH.lock, beside the state file (a lock on the state file itself
    would go away with the file each save replaces). The holder writes its
    process id into it, so another process can name it. The lock file stays when
    the process ends (removing it would race with a process taking it); the
    kernel releases the lock whatever way the process ends.
    """

    def __init__(self, path: str) -> None:
        self.state_path = path
        self.path = path + ".lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None or fcntl is None

    def acquire(self) -> None:
        """Take the lock and remove what a killed holder left; StateInUse when another process
        holds it, OSError when the lock file cannot be opened (no folder, a read-only one)."""
        if self.held:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise StateInUse(self.state_path, f"process {holder}" if holder.isdigit()
                             else "another process") from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, only nobody can name its holder
        remove_temporaries(self.state_path)

    def release(self) -> None:
        """Give the lock up (closing the file releases it); safe to call twice."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def sync_folder(folder: str) -> None:
    """fsync a folder so a rename in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # some file systems cannot sync a folder: nothing to do there
            raise
    finally:
        os.close(fd)
