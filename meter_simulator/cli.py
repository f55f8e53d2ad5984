"""The program: argv in, exit status out; the only module that knows exit codes, logging and signals."""
from __future__ import annotations

import logging
import os
import random
import signal
import sys
import threading
import time
from typing import Sequence

from . import __version__, fleet
from .options import USAGE, Config, UsageError, parse_args, short_usage
from .server import MeterServer, new_unit
from .service import Service
from .state import StateError
from .transport import BindError, is_loopback

log = logging.getLogger("meter_simulator")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
SIGNAL_POLL_S = 0.1  # longest a SIGTERM or SIGINT waits for the main thread to see it


def setup_logging(level: str) -> None:
    """One line an event on stderr; no timestamps of our own under systemd's journal."""
    fmt = "%(levelname)s %(message)s" if os.environ.get("JOURNAL_STREAM") else \
        "%(asctime)s %(levelname)s %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)


def host_port(host: str, port: int) -> str:
    """host:port, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def start_time_of_day_s(rng: random.Random, seeded: bool) -> float:
    """Where the simulated day starts: the local time now, or a seeded time for reproducible runs."""
    if seeded:
        return rng.uniform(0.0, 86400.0)
    now = time.localtime()
    return now.tm_hour * 3600.0 + now.tm_min * 60.0 + now.tm_sec


def build_server(config: Config, on_failure) -> MeterServer:
    """The meters and their Modbus server for a configuration (not started)."""
    rng = random.Random(config.seed)
    endpoints = fleet.plan(config.meter_type, config.port, config.count, config.unit_ids, rng,
                           start_time_of_day_s(rng, config.seed is not None), new_unit)
    return MeterServer(config.host, endpoints, interval_s=config.interval_s, speed=config.speed,
                       read_only=config.read_only, max_clients=config.max_clients,
                       idle_timeout_s=config.idle_timeout_s, allow=config.allow,
                       on_failure=on_failure)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGTERM or SIGINT; the exit status.

    Run as the program (argv None), SIGTERM and SIGINT are ignored once the meters have
    stopped: a second signal during the exit (a double Ctrl-C, a supervisor repeating
    SIGTERM) must not turn a clean stop into a kill by the default action (status -15) or a
    KeyboardInterrupt traceback, and Python puts the default actions back while it exits.
    Called with argv (in-process, as tests do), the caller's handlers come back.
    """
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv)
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
    stop = threading.Event()  # set by the updater when it fails
    # The handlers only append to a list: a handler runs in the main thread between two
    # bytecodes, possibly inside stop.wait() while it holds the Event's lock, so stop.set()
    # there would deadlock (measured: 2 stops of about 280 hung when two signals came at once).
    signalled: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: signalled.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        server = build_server(config, on_failure=stop.set)
        service = Service(config, server)
        try:
            service.restore()  # before binding: a bad state file starts nothing
        except StateError as exc:
            print(f"meter-simulator: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        try:
            server.start()
        except BindError as exc:
            print(f"meter-simulator: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        serving = fleet.describe(config.meter_type, host_port(config.host, server.port),
                                 config.count, config.unit_ids)
        log.info("%s", serving)
        if not (config.read_only or config.allow) and not is_loopback(config.host):
            log.warning("serving %s with neither --read-only nor --allow: anyone on the network "
                        "can reset the meter or take it offline", config.host)
        service.started(serving)  # READY=1, with the start line as STATUS=
        try:
            # Wake now and then: a signal the kernel hands to another thread only flags it for
            # the main thread, whose handler runs when it next executes Python code; an
            # untimed wait would never return (measured: SIGTERM ignored in about 1 run of 5).
            while not (signalled or stop.wait(SIGNAL_POLL_S)):
                pass
        finally:
            service.stopping()
            server.stop()
            service.stopped()  # after the updater: the last tick's totals are saved
        log.info("%s stopped", serving.replace(" serving Modbus/TCP", "", 1))
        return EXIT_FAILURE if server.updater.failed else EXIT_OK
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if argv is not None else signal.SIG_IGN)
