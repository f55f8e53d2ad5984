"""The state file: every meter's counters, kept across restarts, saved atomically.

The file is JSON, one line per meter, small enough to read by eye (version 2):

    {"format": "meter-simulator state", "version": 2, "meter_type": "water",
     "units": "m3", "saved_at": "2024-05-01T12:00:00Z",
     "meters": {"5021": {"volume_total": 12.3456789}, "5022-7": {"volume_total": 0.25}}}

A meter is keyed by the control API's id: the port it is served on, and in
gateway mode (--unit-ids) port and unit id ("5022-7"), so a restart with the
same options resumes each meter. Each meter holds every counter of its type
(counter_names(): an electric meter's energies in kWh, kvarh, kVAh and Ah,
total and per phase, and its maximum demands in W, VA and A; a water or gas
meter's volume_total in m3), whatever the profile, as floats written with
Python's shortest round-trip repr, so a saved value comes back bit for bit.
A counter missing from a meter loads as 0; a name that is not a counter of the
meter type is refused (a typo must not start a counter from 0 unnoticed), and
so is a value above quantities.COUNTER_MAX (1e15), which every map must be able
to encode.

A site's inverter (key PORT-1 of a --site run, in an electric file) holds its own
values instead: its counters (model.site.INVERTER_COUNTERS, kWh) and, with a
battery, battery_soc and battery_reserve (percent, 0 to 100). A meter is an
inverter's when it names any of these, and then it names nothing else; a
missing counter loads as 0, a missing percentage stays out (the battery starts
new). Restored into a plain meter (or a plain meter's into an inverter), the
names the device does not know are ignored: it starts new.

A version-1 file (one total per meter: "totals": {"5021": 12.5, "5022/7": 0.25})
still loads: each total becomes energy_import, split equally over
energy_import_l1..3 (electric), or volume_total, every other counter 0, and
its "5022/7" keys become "5022-7". Saves always write version 2.

A file that cannot be trusted is never taken for zero: load() raises StateError
with one line naming the file and the problem, also for a hostile one (nesting
deeper than the parser goes, integers of hundreds of digits). encode() refuses (ValueError)
values that load() would refuse, so no save writes a file it cannot read back.
save() writes a temporary file in the same folder, fsyncs it, renames it over
the old one and fsyncs the folder, so a crash or a power cut leaves either the
old file or the new one.
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
from typing import Union

from ..checks import JsonProblem, is_finite_number, is_long_integer, json_document, long_integer_text
from ..model.quantities import COUNTER_MAX, ELECTRIC_COUNTERS, FLOW_COUNTERS, MAX_DEMANDS, PHASES
from ..model.site import INVERTER_COUNTERS, RESERVE_KEY, SOC_KEY

try:
    import fcntl
except ImportError:  # no advisory locks on this platform: nothing to refuse a second process with
    fcntl = None

FORMAT = "meter-simulator state"
VERSION = 2  # the version saves write
READ_VERSIONS = (1, 2)  # the versions load() reads
# a note for readers of the file; load() ignores it
UNITS = {"electric": "energy_* kWh, reactive_energy_* kvarh, apparent_energy_* kVAh, ampere_hours Ah, "
                     "max_demand_power_* W, max_demand_apparent VA, max_demand_current_* A",
         "water": "m3", "gas": "m3"}
INVERTER_UNITS = "; a site's inverter: inverter_energy, pv_energy_*, battery_energy_* kWh, " \
                 "battery_soc, battery_reserve %"
BATTERY_PERCENTAGES = (SOC_KEY, RESERVE_KEY)  # a site's battery: 0 to 100
INVERTER_NAMES = frozenset(INVERTER_COUNTERS + BATTERY_PERCENTAGES)
# an inverter's values as its state_values() gives them: with a battery, without one
INVERTER_LAYOUTS = (INVERTER_COUNTERS + BATTERY_PERCENTAGES, INVERTER_COUNTERS)
# the counter a version-1 total is, and what the seed map's registers 0-1 show
TOTAL_COUNTERS = {"electric": "energy_import", "water": "volume_total", "gas": "volume_total"}
START_OVER = "move the file away to start from 0"
ENCODER = json.JSONEncoder(allow_nan=False)  # one line, shortest repr; json.dumps builds one a call
FLOAT_TYPE = frozenset((float,))
STATE_VALUE_CHARS = 60  # a value from the file is cut here in a message

# a meter's saved values by counter name, or (as a version-1 file holds it) its total alone
MeterValues = Union[Mapping[str, float], float]


class StateError(Exception):
    """A state file that cannot be used; the message is one line naming the file."""


class StateInUse(StateError):
    """Another process holds the state file's lock."""

    def __init__(self, path: str, holder: str) -> None:
        super().__init__(f"state file {path} is in use by {holder}: one process at a time may "
                         f"serve its meters (give this one another --state-file)")
        self.holder = holder


def counter_names(meter_type: str) -> tuple[str, ...]:
    """The values a state file holds for a meter of this type, in the order it writes them."""
    return ELECTRIC_COUNTERS + MAX_DEMANDS if meter_type == "electric" else FLOW_COUNTERS


def from_total(meter_type: str, total: float) -> dict[str, float]:
    """A meter's values from its total alone (a version-1 file): energy_import split equally
    over the phases (electric) or volume_total, every other counter 0."""
    values = dict.fromkeys(counter_names(meter_type), 0.0)
    values[TOTAL_COUNTERS[meter_type]] = total
    if meter_type == "electric":
        for phase in PHASES:
            values[f"energy_import_{phase}"] = total / 3
    return values


def quoted(value) -> str:
    """A value from the file as a message shows it, on one line and short."""
    if is_long_integer(value):
        return long_integer_text(value)
    try:
        text = repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply"
    return text if len(text) <= STATE_VALUE_CHARS else text[:STATE_VALUE_CHARS - 3] + "..."


def counter_value(key: str, name: str, value) -> float:
    """The value as a float; ValueError naming the meter and the counter unless a number from 0 to
    COUNTER_MAX (an int of any size is compared exactly, before float() could overflow)."""
    if not is_finite_number(value) or value < 0:
        raise ValueError(f"the {name} of meter {key!r} is {quoted(value)}, not a number >= 0")
    if value > COUNTER_MAX:
        raise ValueError(f"the {name} of meter {key!r} is {quoted(value)}, above the largest a counter "
                         f"holds ({COUNTER_MAX:g})")
    return float(value)


def meter_values(meter_type: str, key: str, values) -> dict[str, float]:
    """A meter's values, every counter of its type in order (missing ones 0), or a site
    inverter's (inverter_values()); ValueError for a value that is not a number >= 0, a name
    that is not a counter, or not an object at all."""
    names = counter_names(meter_type)
    if complete(names, values):
        return dict(values)
    if not isinstance(values, Mapping):
        raise ValueError(f"meter {key!r} is {quoted(values)}, not an object of counters")
    if is_inverter(meter_type, values):
        return inverter_values(key, values)
    for name in values:
        if name not in names:
            raise ValueError(f"meter {key!r} has {name!r}, not a counter of {meter_type} meters")
    return {name: counter_value(key, name, values.get(name, 0.0)) for name in names}


def is_inverter(meter_type: str, values: Mapping) -> bool:
    """True for a site's inverter's values: a meter of an electric file naming any of them."""
    return meter_type == "electric" and not INVERTER_NAMES.isdisjoint(values)


def inverter_values(key: str, values: Mapping) -> dict[str, float]:
    """A site's inverter's values: every counter in order (missing ones 0), then the battery's
    percentages it holds; ValueError for a name that is not one of them, a counter that is not
    a number from 0 to COUNTER_MAX or a percentage that is not one from 0 to 100."""
    if (any(complete(layout, values) for layout in INVERTER_LAYOUTS)
            and all(values.get(name, 0.0) <= 100.0 for name in BATTERY_PERCENTAGES)):
        return dict(values)
    for name in values:
        if name not in INVERTER_NAMES:
            raise ValueError(f"meter {key!r} has {name!r} beside a site inverter's values, "
                             f"not one of them")
    checked = {name: counter_value(key, name, values.get(name, 0.0)) for name in INVERTER_COUNTERS}
    for name in BATTERY_PERCENTAGES:
        if name in values:
            value = values[name]
            if not (is_finite_number(value) and 0 <= value <= 100):
                raise ValueError(f"the {name} of meter {key!r} is {quoted(value)}, not a percentage "
                                 f"from 0 to 100")
            checked[name] = float(value)
    return checked


def complete(names: tuple[str, ...], values) -> bool:
    """True for a dict of exactly these names, in this order, each a finite float from 0 to
    COUNTER_MAX (what a save writes and a meter's state_values() gives): checked in loops that
    run in C, since a fleet has thousands of meters of 53 values. A NaN or an infinity makes the
    sum NaN or infinite, and then meter_values() looks at each value."""
    if not isinstance(values, dict) or tuple(values) != names:
        return False
    numbers = values.values()
    return (set(map(type, numbers)) <= FLOAT_TYPE and math.isfinite(sum(numbers))
            and min(numbers, default=0.0) >= 0.0 and max(numbers, default=0.0) <= COUNTER_MAX)


def encode(meter_type: str, meters: Mapping[str, MeterValues], saved_at_s: float) -> bytes:
    """The file's bytes (version 2) for these meters, saved at a Unix time in seconds.

    A meter given as a number is its total (from_total()). ValueError for what decode()
    would refuse: a value that is not a number >= 0, a name that is not a counter. Each
    meter is one line, written by json's C encoder (indent would take the pure-Python one),
    and found with grep.
    """
    names = counter_names(meter_type)
    lines = []
    inverters = False
    for key, values in meters.items():
        if not isinstance(values, Mapping):
            values = from_total(meter_type, counter_value(key, "total", values))
        elif not complete(names, values):
            values = meter_values(meter_type, key, values)
            inverters = inverters or is_inverter(meter_type, values)
        lines.append(f"  {ENCODER.encode(str(key))}: {ENCODER.encode(values)}")
    head = {
        "format": FORMAT,
        "version": VERSION,
        "meter_type": meter_type,
        "units": UNITS.get(meter_type, "") + (INVERTER_UNITS if inverters else ""),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(saved_at_s)),
    }
    text = "".join(f" {json.dumps(name)}: {json.dumps(value)},\n" for name, value in head.items())
    body = ' "meters": {\n' + ",\n".join(lines) + "\n }" if lines else ' "meters": {}'
    return ("{\n" + text + body + "\n}\n").encode("utf-8")


FILE_PROBLEMS = {"utf8": "not a state file (not UTF-8 text)",
                 "depth": "not a state file (nested too deeply)",
                 "digits": "not a state file (an integer of more digits than can be read)"}


def file_problem(problem: JsonProblem) -> str:
    """A state file that is no JSON, in one line (no file name)."""
    if problem.error is not None:
        error = problem.error
        return f"not valid JSON, truncated or corrupt ({error.msg}: line {error.lineno} column {error.colno})"
    return FILE_PROBLEMS[problem.kind]


def decode(data: bytes, meter_type: str) -> dict[str, dict[str, float]]:
    """Every meter's values (each with every counter of its type) by key, from a version-1 or
    version-2 file's bytes; ValueError with the problem (no file name) otherwise."""
    if not data.strip():
        raise ValueError("the file is empty")
    try:
        document = json_document(data)
    except JsonProblem as problem:
        raise ValueError(file_problem(problem)) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"not a state file (no \"format\": \"{FORMAT}\")")
    version = document.get("version")
    if type(version) is not int or version not in READ_VERSIONS:
        raise ValueError(f"version {quoted(version)} is not supported (expected 1 or 2)")
    if document.get("meter_type") != meter_type:
        named = document.get("meter_type")
        raise ValueError(f"it is for {named if isinstance(named, str) else quoted(named)} meters, "
                         f"not {meter_type} meters")
    if version == 1:
        saved = document.get("totals")
        if not isinstance(saved, dict):
            raise ValueError("\"totals\" is missing or not an object")
        return {key.replace("/", "-"): from_total(meter_type, counter_value(key, "total", total))
                for key, total in saved.items()}
    meters = document.get("meters")
    if not isinstance(meters, dict):
        raise ValueError("\"meters\" is missing or not an object")
    return {key: meter_values(meter_type, key, values) for key, values in meters.items()}


def load(path: str, meter_type: str) -> dict[str, dict[str, float]] | None:
    """Every saved meter's values by key (see decode()), or None when there is no file yet.

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
    except RecursionError:  # a value nested almost as deep as the parser allows, compared or shown
        raise StateError(f"state file {path}: not a state file (nested too deeply); {START_OVER}") from None


def save(path: str, meter_type: str, meters: Mapping[str, MeterValues],
         saved_at_s: float | None = None) -> None:
    """Replace the file atomically with these meters (see encode()); OSError when it cannot
    be done, ValueError (nothing written) for values encode() refuses.

    On failure the old file is untouched and no temporary file is left behind.
    """
    data = encode(meter_type, meters, time.time() if saved_at_s is None else saved_at_s)
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
