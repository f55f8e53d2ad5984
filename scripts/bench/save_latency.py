"""Does a Modbus read ever wait on a state-file save? Read latency with saves every second vs none.

Starts the real program twice on a loopback port, a fleet of --count meters so a
save writes every meter's total: once with --state-file and --save-interval 1,
once without a state file. Each time one pyModbusTCP client reads registers 0-1
back to back for --seconds, and the script prints p50, p99 and max latency, how
many saves happened, and how long one save of that file takes when timed alone.

    python3 scripts/bench/save_latency.py --seconds 20 --count 500

Usage:
  save_latency.py [--seconds S] [--count N]
  save_latency.py -h | --help

Options:
  --seconds S  Reading time per run [default: 20].
  --count N    Meters in the fleet, all saved each time [default: 500].
  -h, --help   Show this text.
"""
from __future__ import annotations

import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from docopt import docopt
from pyModbusTCP.client import ModbusClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from meter_simulator.device import fleet  # noqa: E402
from meter_simulator.device.updater import Updater  # noqa: E402
from meter_simulator.modbus.server import new_device  # noqa: E402
from meter_simulator.ops import state  # noqa: E402
from meter_simulator.ops.saver import Saver  # noqa: E402


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(count: int) -> int:
    """The first of count consecutive free ports, below the usual ephemeral range."""
    for first in range(20000, 32000 - count, 37):
        if all(bindable(port) for port in range(first, first + count)):
            return first
    raise SystemExit(f"no {count} consecutive free ports")


def measure(extra: list[str], seconds: float, count: int) -> list[float]:
    """Read latencies in ms against one run of the program."""
    port = free_ports(count)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "run_meter.py"),
                             "--port", str(port), "--count", str(count), "--interval", "0.1",
                             "--speed", "100", "--log-level", "warning", *extra],
                            stdin=subprocess.DEVNULL)
    client = ModbusClient("127.0.0.1", port, timeout=5, auto_open=True, auto_close=False)
    try:
        deadline = time.monotonic() + 60
        while client.read_holding_registers(0, 2) is None:  # wait until it serves
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the program did not start")
            time.sleep(0.05)
        latencies_ms = []
        end = time.monotonic() + seconds
        while time.monotonic() < end and len(latencies_ms) < 10_000_000:
            start = time.perf_counter()
            if client.read_holding_registers(0, 2) is None:
                raise SystemExit(f"read failed: {client.last_error_as_txt}")
            latencies_ms.append((time.perf_counter() - start) * 1000)
        return latencies_ms
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def snapshot_ms(count: int) -> list[float]:
    """How long a save holds the updater's lock (the in-memory copy), for count meters, in ms."""
    rng = random.Random(1)
    plan = fleet.plan("electric", 20000, count, None, rng, 0.0, new_device)
    devices = [device for endpoint in plan for device in endpoint.devices]
    saver = Saver(os.devnull, "electric", plan, Updater(devices))
    timings_ms = []
    for _ in range(200):
        start = time.perf_counter()
        saver.snapshot()
        timings_ms.append((time.perf_counter() - start) * 1000)
    return timings_ms


def summary(latencies_ms: list[float]) -> str:
    ordered = sorted(latencies_ms)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"{len(ordered)} reads: p50 {statistics.median(ordered):.3f} ms, "
            f"p99 {p99:.3f} ms, max {ordered[-1]:.3f} ms")


def main() -> None:
    options = docopt(__doc__)
    try:
        seconds, count = float(options["--seconds"]), int(options["--count"])
    except ValueError as exc:
        raise SystemExit(f"save_latency.py: {exc}") from None
    with tempfile.TemporaryDirectory(dir=os.environ.get("STATE_DIR")) as folder:
        path = os.path.join(folder, "totals.json")
        with_saves = measure(["--state-file", path, "--save-interval", "1"], seconds, count)
        size = os.path.getsize(path)
        totals = state.load(path, "electric")
        timings_ms = []
        for _ in range(20):
            start = time.perf_counter()
            state.save(path, "electric", totals)
            timings_ms.append((time.perf_counter() - start) * 1000)
    without = measure([], seconds, count)
    hold_ms = snapshot_ms(count)
    print(f"fleet of {count} meters, {seconds:g} s of back-to-back reads each run")
    print(f"saves every 1 s ({size} byte file, one save alone: median "
          f"{statistics.median(timings_ms):.2f} ms, max {max(timings_ms):.2f} ms)")
    print(f"  the updater lock is held for the copy of the totals only: median "
          f"{statistics.median(hold_ms):.3f} ms, max {max(hold_ms):.3f} ms")
    print(f"  with saves:    {summary(with_saves)}")
    print(f"  without saves: {summary(without)}")


if __name__ == "__main__":
    main()
