"""Soak test: one meter (the real program, in a subprocess) under steady load for a given time.

Several well-behaved clients poll the meter at a steady rate; with --hostile, one
more client reconnects for every request and another sends random bytes and
hangs up. At the end it prints requests served, errors, and the server's RSS,
threads and open file descriptors at the start and the end (and the highest
seen), read from /proc. Not a CI test: run it by hand, for example

    python3 scripts/bench/soak.py --minutes 10 --clients 4 --rate 50 --hostile

Usage:
  soak.py [--minutes M] [--clients N] [--rate R] [--type TYPE] [--interval S] [--hostile]
          [--port PORT]
  soak.py -h | --help

Options:
  --minutes M     How long to run [default: 10].
  --clients N     Well-behaved polling clients [default: 4].
  --rate R        Requests per second per client [default: 50].
  --type TYPE     Meter type: electric, water or gas [default: electric].
  --interval S    The meter's --interval [default: 0.1].
  --hostile       Add a client that reconnects for every request and one that
                  sends random bytes and hangs up.
  --port PORT     TCP port on 127.0.0.1 [default: 0], 0 for a free one.
  -h, --help      Show this text.
"""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from docopt import docopt
from pyModbusTCP.client import ModbusClient

ROOT = Path(__file__).resolve().parent.parent.parent
RUN_METER = ROOT / "scripts" / "run_meter.py"
METER_TYPE_CODE = {"electric": 0, "water": 1, "gas": 2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def usage_of(pid: int) -> dict:
    """The process's resident memory (kB), threads and open file descriptors, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Tally:
    """Requests and errors counted across client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.served = 0
        self.errors = 0
        self.first_errors: list[str] = []
        self.connections = 0
        self.garbage_frames = 0

    def add(self, ok: bool, what: str = "") -> None:
        with self.lock:
            if ok:
                self.served += 1
            else:
                self.errors += 1
                if len(self.first_errors) < 10:
                    self.first_errors.append(what)


def poller(port: int, meter_type: str, rate_hz: float, stop: threading.Event, tally: Tally,
           reconnect_each: bool = False) -> None:
    """A well-behaved client: FC 1, 2, 3 and 4 in turn at rate_hz, checking each answer."""
    client = ModbusClient(host="127.0.0.1", port=port, timeout=5, auto_open=True,
                          auto_close=reconnect_each)
    period_s = 1.0 / rate_hz
    next_s = time.monotonic()
    n = 0
    while not stop.is_set():
        kind = n % 4
        n += 1
        if kind == 0:
            regs = client.read_holding_registers(0, 102)
            ok = regs is not None and len(regs) == 102 and regs[101] == METER_TYPE_CODE[meter_type]
        elif kind == 1:
            regs = client.read_input_registers(100, 2)
            ok = regs is not None and regs[1] == METER_TYPE_CODE[meter_type]
        elif kind == 2:
            bits = client.read_coils(0, 11)
            ok = bits is not None and len(bits) == 11 and bits[2]
        else:
            bits = client.read_discrete_inputs(0, 3)
            ok = bits is not None and bits[2]
        tally.add(ok, f"request {kind}: {client.last_error_as_txt} / {client.last_except_as_txt}")
        if reconnect_each:
            with tally.lock:
                tally.connections += 1
        next_s += period_s
        stop.wait(max(0.0, next_s - time.monotonic()))
    client.close()


def vandal(port: int, rate_hz: float, stop: threading.Event, tally: Tally, seed: int) -> None:
    """A hostile client: connects, sends a few random bytes or a mangled frame, hangs up."""
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                frame = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
                if rng.random() < 0.5:  # a plausible header with a bad protocol id or length
                    frame = bytes([0, 1, rng.getrandbits(8), 0, rng.choice((0, 1, 255, 300 >> 8)), 1]) + frame
                sock.sendall(frame)
            with tally.lock:
                tally.garbage_frames += 1
        except OSError:
            pass
        stop.wait(1.0 / rate_hz)


def parse(options: dict) -> SimpleNamespace:
    """The command line's values, typed; SystemExit with one line when one is wrong."""
    try:
        args = SimpleNamespace(minutes=float(options["--minutes"]), clients=int(options["--clients"]),
                               rate=float(options["--rate"]), type=options["--type"],
                               interval=options["--interval"], hostile=options["--hostile"],
                               port=int(options["--port"]))
    except ValueError as exc:
        raise SystemExit(f"soak.py: {exc}") from None
    if args.type not in METER_TYPE_CODE:
        raise SystemExit(f"soak.py: --type {args.type}: not electric, water or gas")
    if args.minutes <= 0 or args.clients < 0 or args.rate <= 0 or not 0 <= args.port <= 65535:
        raise SystemExit("soak.py: --minutes and --rate must be positive, --clients 0 or more, "
                         "--port 0 to 65535")
    return args


def main() -> int:
    args = parse(docopt(__doc__))

    port = args.port or free_port()
    proc = subprocess.Popen([sys.executable, str(RUN_METER), "--type", args.type, "--port", str(port),
                             "--interval", args.interval, "--log-level", "warning"],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    print("the meter did not start:", proc.stderr.read(), file=sys.stderr)
                    return 1
                time.sleep(0.1)
        start = usage_of(proc.pid)
        settle_s = time.monotonic() + 5  # the readiness probe's connection may still be open
        while time.monotonic() < settle_s:
            time.sleep(0.2)
            now = usage_of(proc.pid)
            if now == start:
                break
            start = now
        stop = threading.Event()
        tally = Tally()
        threads = [threading.Thread(target=poller, args=(port, args.type, args.rate, stop, tally))
                   for _ in range(args.clients)]
        if args.hostile:
            threads.append(threading.Thread(target=poller, args=(port, args.type, 5.0, stop, tally, True)))
            threads.append(threading.Thread(target=vandal, args=(port, 5.0, stop, tally, 1)))
        began_s = time.monotonic()
        for thread in threads:
            thread.start()
        peak = dict(start)
        end_s = began_s + args.minutes * 60
        next_report_s = began_s + 60
        while time.monotonic() < end_s and proc.poll() is None:
            time.sleep(min(1.0, max(0.0, end_s - time.monotonic())))
            now = usage_of(proc.pid)
            peak = {key: max(peak[key], now[key]) for key in peak}
            if time.monotonic() >= next_report_s:
                next_report_s += 60
                print(f"  {(time.monotonic() - began_s) / 60:.0f} min: {tally.served} served, "
                      f"{tally.errors} errors, {now}", flush=True)
        stop.set()
        for thread in threads:
            thread.join(10)
        elapsed_s = time.monotonic() - began_s
        alive = proc.poll() is None
        settle_s = time.monotonic() + 10  # the clients have hung up: let their threads end
        while alive and usage_of(proc.pid)["threads"] > start["threads"] and time.monotonic() < settle_s:
            time.sleep(0.1)
        end = usage_of(proc.pid) if alive else {}
        print(f"soak: {args.type} meter, {args.clients} clients at {args.rate:g} req/s"
              f"{' + hostile clients' if args.hostile else ''}, {elapsed_s / 60:.1f} min")
        hostile = (f", reconnecting requests: {tally.connections}"
                   f", garbage connections: {tally.garbage_frames}" if args.hostile else "")
        print(f"requests served: {tally.served} ({tally.served / elapsed_s:.0f}/s), errors: {tally.errors}"
              f"{hostile}")
        for line in tally.first_errors:
            print("  error:", line)
        print(f"server at start: RSS {start['rss_kb']} kB, {start['threads']} threads, {start['fds']} fds")
        if alive:
            print(f"server at end:   RSS {end['rss_kb']} kB, {end['threads']} threads, {end['fds']} fds")
            print(f"server highest:  RSS {peak['rss_kb']} kB, {peak['threads']} threads, {peak['fds']} fds")
        else:
            print(f"server DIED with status {proc.returncode}")
        return 0 if alive and tally.errors == 0 else 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        err = proc.stderr.read()
        if err.strip():
            print("server stderr (last lines):", *err.strip().splitlines()[-5:], sep="\n  ")


if __name__ == "__main__":
    sys.exit(main())
