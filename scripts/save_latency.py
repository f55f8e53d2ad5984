"""Does a Modbus read ever wait on a state-file save? Read latency with saves every second vs none.

Starts the real program twice on a loopback port, a fleet of --count meters so a
save writes every meter's total: once with --state-file and --save-interval 1,
once without a state file. Each time one pyModbusTCP client reads registers 0-1
back to back for --seconds, and the script prints p50, p99 and max latency, how
many saves happened, and how long one save of that file takes when timed alone.

    python3 scripts/save_latency.py --seconds 20 --count 500
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from pyModbusTCP.client import ModbusClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from meter_simulator import state  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(extra: list[str], seconds: float, count: int) -> list[float]:
    """Read latencies in ms against one run of the program."""
    port = free_port()
    while port + count > 65535:
        port = free_port()
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


def summary(latencies_ms: list[float]) -> str:
    ordered = sorted(latencies_ms)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"{len(ordered)} reads: p50 {statistics.median(ordered):.3f} ms, "
            f"p99 {p99:.3f} ms, max {ordered[-1]:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="reading time per run")
    parser.add_argument("--count", type=int, default=500, help="meters in the fleet (saved each time)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("STATE_DIR")) as folder:
        path = os.path.join(folder, "totals.json")
        with_saves = measure(["--state-file", path, "--save-interval", "1"], args.seconds, args.count)
        size = os.path.getsize(path)
        totals = state.load(path, "electric")
        timings_ms = []
        for _ in range(20):
            start = time.perf_counter()
            state.save(path, "electric", totals)
            timings_ms.append((time.perf_counter() - start) * 1000)
    without = measure([], args.seconds, args.count)
    print(f"fleet of {args.count} meters, {args.seconds:g} s of back-to-back reads each run")
    print(f"saves every 1 s ({size} byte file, one save alone: median "
          f"{statistics.median(timings_ms):.2f} ms, max {max(timings_ms):.2f} ms)")
    print(f"  with saves:    {summary(with_saves)}")
    print(f"  without saves: {summary(without)}")


if __name__ == "__main__":
    main()
