"""The program: argv in, exit status out; the only module that knows exit codes, logging, signals
and the rest of the process-wide state (the open file limit, the GIL's switch interval)."""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

try:
    import resource
except ImportError:  # no open file limit to raise on this platform
    resource = None

from .. import __version__
from ..device import fleet
from ..device.site import describe_sites
from ..net.listeners import BindError, is_loopback
from ..net.serialline import SerialLineError
from ..ops.state import StateError
from .options import USAGE, Config, UsageError, parse_args, short_usage
from .simulator import Simulator, battery_power_kw, host_port

log = logging.getLogger("meter_simulator")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
PROTOCOLS = {"tcp": "Modbus/TCP", "rtu": "Modbus RTU over TCP"}  # by --framing, in the start line
SIGNAL_POLL_S = 0.1  # longest a SIGTERM or SIGINT waits for the main thread to see it
# SIGHUP too: a closed terminal or a dropped ssh session stops the meters as SIGTERM does
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))

# A tick of 1,000 meters holds the GIL for ~40 ms, and a request thread gives the
# GIL back at each socket call, then waits a whole switch interval (5 ms) to get it
# again: a gateway fleet read at 1,000 polls/s answered with a p99 of 33 ms. Short
# GIL slices while a fleet ticks cost nothing when no one waits: p99 4 ms.
# (time.sleep(0) every few meters did as well but added 10 ms to the tick.)
FLEET_METERS = 32  # from this many meters a tick runs with short GIL slices
FLEET_TICK_SWITCH_INTERVAL_S = 0.0002
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD_BYTES = 256 * 1024
ARENAS = 2
# descriptors besides the listeners and connections: stdio, the accepting thread's selector,
# wake-up pair and reserve, the state file, its lock and temporary, systemd's socket, imports
OTHER_DESCRIPTORS = 32


def setup_logging(level: str) -> None:
    """One line an event on stderr; no timestamps of our own under systemd's journal."""
    fmt = "%(levelname)s %(message)s" if os.environ.get("JOURNAL_STREAM") else \
        "%(asctime)s %(levelname)s %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)


@contextlib.contextmanager
def short_gil_slices(interval_s: float = FLEET_TICK_SWITCH_INTERVAL_S) -> Iterator[None]:
    """Run a CPU-bound block (a fleet's tick) with GIL slices of at most interval_s, then put
    back exactly the switch interval that was there.

    Python stores the interval in whole microseconds and truncates what it is given, so
    handing back what getswitchinterval() said loses a microsecond for about a quarter of
    the values; half a microsecond more always lands on the same one.
    """
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(interval_s, before))
    try:
        yield
    finally:
        sys.setswitchinterval((round(before * 1e6) + 0.5) / 1e6)


def tune_allocator() -> bool:
    """Keep a fleet's memory to what it uses, with glibc (process-wide, so the program alone): a
    fixed mmap threshold hands each tick's large arrays back to the system when they are freed
    (the dynamic one rises to their size and keeps them in the heap), and two arenas keep the
    connection threads that build images from growing one each. Measured: 10,000 meters read
    1,000 times a second peaked at 151 MB without, 88 MB with. False: no such allocator."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_ARENA_MAX, ARENAS))


def machine_memory_bytes() -> int | None:
    """The memory this process could be given: the machine's, or its control group's limit
    when lower (a container); None where unknown."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as file:
            limit = file.read().strip()
    except OSError:
        return memory
    return min(memory, int(limit)) if limit.isdigit() else memory


def descriptors_needed(config: Config) -> int:
    """Open files a run may need at most: a listener and max_clients connections a port."""
    return config.count * (1 + config.max_clients) + OTHER_DESCRIPTORS


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the soft limit of open files to the hard limit, as daemons do; (soft limit before,
    soft limit now), or None where there is no such limit."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # an unlimited hard limit some systems refuse as a soft one
            pass
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def restore_open_file_limit(soft: int) -> None:
    if resource is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def check_open_file_limit(config: Config, limit: int) -> None:
    """Warn when a full fleet would need more open files than the limit allows."""
    needed = descriptors_needed(config)
    if resource is not None and limit != resource.RLIM_INFINITY and needed > limit:
        log.warning("%d port%s with --max-clients %d may need %d open files, but the limit is %d: "
                    "connections past it are closed at once; raise the hard limit (ulimit -Hn, "
                    "LimitNOFILE= in the unit) or lower --max-clients", config.count,
                    "" if config.count == 1 else "s", config.max_clients, needed, limit)


def profile_name(config: Config) -> str:
    return config.profile.name if config.profile is not None else "seed"


def serving(config: Config, where: str, count: int, protocol: str) -> str:
    """What serves where through which protocol: meters (fleet.describe) or sites."""
    if config.site:
        return describe_sites(where, count, profile_name(config), config.pv_kwp, config.battery_kwh,
                              battery_power_kw(config), protocol)
    return fleet.describe(config.meter_type, where, count, config.unit_ids, profile_name(config),
                          protocol)


def start_line(config: Config, port: int) -> str:
    """What serves where, for the log and systemd's STATUS=: '3 electric meters serving ...'."""
    return serving(config, host_port(config.host, port), config.count, PROTOCOLS[config.framing])


def serial_start_line(config: Config, line) -> str:
    """What the serial line serves: '... serving Modbus RTU on serial /dev/pts/4 (9600 8N1, link
    /tmp/meter.tty)'; tools find the path with the expression 'Modbus RTU on serial (\\S+) '."""
    where = f"serial {line.path} ({line.settings.describe()}" + (f", link {line.link})" if line.link else ")")
    return serving(config, where, 1, "Modbus RTU")


def warn_if_exposed(config: Config) -> None:
    """Warn when anyone on the network could change the meters: writes open off loopback, or a
    control port off loopback without a token."""
    if not (config.read_only or config.allow) and not is_loopback(config.host):
        log.warning("serving %s with neither --read-only nor --allow: anyone on the network "
                    "can reset the meter or take it offline", config.host)
    if config.http is not None and config.http_token is None and not is_loopback(config.http[0]):
        log.warning("control port on %s without --http-token-file: anyone who reaches it can "
                    "change the meters and inject faults", config.http[0])


def run(config: Config, stop: threading.Event, signalled: list[int], in_process: bool) -> int:
    """Serve until a stop signal comes (signalled) or the updater fails (stop); the exit status.
    in_process: called with argv (tests), so the GIL's switch interval is left alone."""
    meters = config.count * (len(config.unit_ids) if config.unit_ids is not None else 1)
    fleet_ticks = not in_process and meters >= FLEET_METERS
    simulator = Simulator(config, on_failure=stop.set,
                          tick_context=short_gil_slices if fleet_ticks else None)
    try:
        simulator.open()  # a bad state file or a port in use starts nothing
    except (StateError, BindError, SerialLineError) as exc:
        print(f"meter-simulator: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    server, service = simulator.server, simulator.service
    simulator.serve()
    serving = start_line(config, server.port)
    log.info("%s", serving)
    if server.line is not None:
        log.info("%s", serial_start_line(config, server.line.line))
    if simulator.http is not None:
        log.info("control port on %s", simulator.http_url)
    warn_if_exposed(config)
    service.started(serving)  # READY=1, with the start line as STATUS=
    try:
        # Wake now and then: a signal the kernel hands to another thread only flags it for
        # the main thread, whose handler runs when it next executes Python code; an
        # untimed wait would never return (measured: SIGTERM ignored in about 1 run of 5).
        while not (signalled or stop.wait(SIGNAL_POLL_S)):
            pass
    finally:
        service.stopping()
        simulator.stop()
        simulator.stopped()  # after the updater: the last tick's totals are saved
    log.info("%s stopped", serving.replace(f" serving {PROTOCOLS[config.framing]}", "", 1))
    return EXIT_FAILURE if server.updater.failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGTERM, SIGINT or SIGHUP; the exit status.

    Run as the program (argv None), the stop signals are ignored once the meters have
    stopped: a second signal during the exit (a double Ctrl-C, a supervisor repeating
    SIGTERM) must not turn a clean stop into a kill by the default action (status -15) or a
    KeyboardInterrupt traceback, and Python puts the default actions back while it exits.
    Called with argv (in-process, as tests do), the caller's handlers and open file limit
    come back, and the GIL's switch interval is left alone.
    """
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv, memory_bytes=machine_memory_bytes())
    except UsageError as exc:
        print(f"meter-simulator: {exc}\n{short_usage()}", file=sys.stderr)
        return EXIT_USAGE
    if config.show_help:
        print(USAGE, end="")
        return EXIT_OK
    if config.show_version:
        print(f"meter-simulator {__version__}")
        return EXIT_OK
    setup_logging(config.log_level)
    if argv is None:
        tune_allocator()
    stop = threading.Event()  # set by the updater when it fails
    # The handlers only append to a list: a handler runs in the main thread between two
    # bytecodes, possibly inside stop.wait() while it holds the Event's lock, so stop.set()
    # there would deadlock (measured: 2 stops of about 280 hung when two signals came at once).
    signalled: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: signalled.append(signum))
                for signum in STOP_SIGNALS}
    limits = raise_open_file_limit()
    try:
        if limits is not None:
            check_open_file_limit(config, limits[1])
        return run(config, stop, signalled, in_process=argv is not None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if argv is not None else signal.SIG_IGN)
        if argv is not None and limits is not None:
            restore_open_file_limit(limits[0])
