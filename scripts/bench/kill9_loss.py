"""How much total a kill -9 loses: the restarted meter's total against what it showed before.

Runs the real program with a state file and the default save interval (60 s),
reads the total every 0.2 s, kills it with SIGKILL just before the third save
(the worst moment: about one interval after the last one), restarts it with the
same options and reads the total it resumed from. It prints the loss in kWh and
how many seconds before the kill the meter last showed that total.
A --speed above 1 makes the loss big enough to see in 0.01 kWh steps; it does not
change the save interval, which is real time.

    python3 scripts/bench/kill9_loss.py --speed 60

Usage:
  kill9_loss.py [--speed FACTOR] [--kill-after SECONDS]
  kill9_loss.py -h | --help

Options:
  --speed FACTOR        The meter's --speed [default: 60].
  --kill-after SECONDS  When to kill it, after the start; saves come at 0, 60 and 120 s
                        [default: 119].
  -h, --help            Show this text.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from docopt import docopt
from pyModbusTCP.client import ModbusClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(port: int, options: list[str]) -> tuple[subprocess.Popen, ModbusClient, float]:
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "run_meter.py"),
                             "--port", str(port), *options], stdin=subprocess.DEVNULL)
    client = ModbusClient("127.0.0.1", port, timeout=5, auto_open=True)
    deadline = time.monotonic() + 60
    while client.read_holding_registers(0, 2) is None:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("the program did not start")
        time.sleep(0.02)
    return proc, client, time.monotonic()


def total_counts(client: ModbusClient) -> int:
    words = client.read_holding_registers(0, 2)
    return (words[1] << 16) | words[0]


def main() -> None:
    options = docopt(__doc__)
    try:
        speed, kill_after = options["--speed"], float(options["--kill-after"])
        float(speed)
    except ValueError as exc:
        raise SystemExit(f"kill9_loss.py: {exc}") from None
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        options = ["--state-file", os.path.join(folder, "totals.json"), "--speed", speed,
                   "--seed", "1", "--log-level", "warning"]
        proc, client, started = start(port, options)
        history = []  # (seconds since start, total x100)
        while time.monotonic() - started < kill_after:
            history.append((time.monotonic() - started, total_counts(client)))
            time.sleep(0.2)
        before = total_counts(client)
        killed_at = time.monotonic() - started
        proc.kill()
        proc.wait()
        client.close()
        proc, client, _ = start(port, options)
        after = total_counts(client)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    shown_at = min((t for t, counts in history if counts >= after), default=killed_at)
    print(f"--speed {speed}, save interval 60 s, killed {killed_at:.1f} s after start")
    print(f"total before kill -9: {before / 100:.2f} kWh; resumed at {after / 100:.2f} kWh; "
          f"lost {(before - after) / 100:.2f} kWh")
    print(f"the resumed total was first shown {killed_at - shown_at:.1f} s before the kill "
          f"(at most one save interval, 60 s, plus one tick)")


if __name__ == "__main__":
    main()
