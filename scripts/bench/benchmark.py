"""Benchmark: meter-simulator against bare pyModbusTCP and pymodbus's server, on loopback.

Usage:
  benchmark.py [--quick] [--only NAMES] [--seconds S] [--rounds N] [--fleet-seconds S]
               [--drift-seconds S] [--port PORT] [--baseline DIR] [--engine-sizes LIST]
               [--engine-interval S] [--engine-poll R] [--engine-seconds S]
               [--engine-profile NAME]
  benchmark.py --tick-phase SECONDS
  benchmark.py -h | --help

Options:
  --quick              A few seconds per scenario, to try it out.
  --only NAMES         Comma-separated scenario groups: closed, profiles, faults, rtu,
                       rtu-serial, storm, fleet, tick, site, engine [default: all].
  --seconds S          Seconds of load per throughput scenario and round [default: 5].
  --rounds N           Rounds per throughput scenario, servers taking turns; the median
                       round is shown [default: 3].
  --fleet-seconds S    Seconds of the 1,000-meter fleet scenarios [default: 60].
  --drift-seconds S    Seconds of the tick-schedule drift run [default: 600].
  --port PORT          First TCP port to use on 127.0.0.1 [default: 27000].
  --baseline DIR       A checkout of an earlier version (git worktree add DIR REV): the
                       faults, rtu and engine groups also run its scripts/run_meter.py (rtu:
                       its Modbus/TCP side) [default: none].
  --engine-sizes LIST  Meters of the engine group's fleets, comma-separated: 1000 (5 ports x
                       200 unit ids), 10000 (50 x 200), 100000 (405 x 247, 100,035 meters)
                       [default: 1000,10000,100000].
  --engine-interval S  Seconds between the engine group's ticks; auto: 1 below 100,000
                       meters, 10 from there [default: auto].
  --engine-poll R      Reads of each meter a minute in the engine group's polled window (0:
                       none); auto: about 1,000 reads/s over the fleet, at most 60
                       [default: auto].
  --engine-seconds S   Seconds of each of the engine group's two windows [default: 60].
  --engine-profile NAME  Also run every engine size with --profile NAME --pv-kwp 8, e.g.
                       sdm630 [default: none].
  --tick-phase SECONDS (internal) time ticks of 1,000 meters in this process.
  -h, --help           Show this text.

Every server runs in its own process pinned to CPU 0; the load generator, a small C
program compiled here with the machine's cc (a Python one tops out below the servers),
runs pinned to CPU 1. Server CPU time comes from /proc/PID/stat, peak RSS from VmHWM.
The profiles group reads 80 input registers (FC 0x04) from ours serving the SDM630 map and
the seed map; the tick group times 1,000 meters' ticks with each built-in map. The faults
group reads 4 registers from ours without a control port, with the control port on and a
delay fault active on another port of the run, and (--baseline) an earlier version.
The rtu group reads 4 and 100 registers over 1 and 10 connections from ours with
--framing tcp (MBAP) and --framing rtu (RTU over TCP; the load generator's closed-rtu),
the two taking turns in every round; rtu-serial times 4-register reads on the --serial pty
line, one at a time, as an RS485 master on a bus would. The site group runs 100 sites
(--count 100 --site --pv-kwp 8 --battery-kwh 10) ticking every second, unread, against 100
and 200 plain meters with panels (CPU, tick time, RSS), and 4-register reads over 10
connections of a site's grid meter (unit id 200) and inverter (unit id 1, SunSpec model 103)
against a plain meter's. The engine group starts fleets of 1,000 to 100,000 meters (gateways
of 200 or 247 unit ids) ticking, with the control port on for /metrics' tick counts, and
shows the start time (until every port accepts and the last meter answers a read), the CPU
share over a window unread and one polled (the load generator's fleet mode at --engine-poll
reads a meter a minute: 4 registers, FC 0x04 from 0 for sdm630), CPU per tick and per
request (polled CPU less the unread share, over the requests), peak and current RSS and the
answers, next to the targets: 10,000 seed meters every 1 s at most 15 % of a core and
100 MB, with sdm630 and panels 25 % and 150 MB; 100,000 every 10 s started within 30 s, at
most 30 % and 1 GB.
"""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from docopt import docopt

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent.parent
SERVER_CPU, LOAD_CPU = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVERS = ("ours", "pyModbusTCP", "pymodbus")
FLEET_METERS = 1000
GATEWAY_PORTS, GATEWAY_UNITS = 5, 200  # 1,000 meters as 5 gateways of 200 unit ids (max 247)
STORM_CLIENTS = 500
TICK_PROFILES = ("seed", "sdm630", "sunspec", "sunspec-float")
PROFILE_READ = (4, 80)  # FC 0x04, 80 registers from address 0: an SDM630 block read
PROFILE_MAPS = ("seed", "sdm630")
FAULT_READ_REGISTERS = 4  # the tightest case: the per-request cost shows most
HTTP_PORT_OFFSET = 500  # the control port of the faults group, above the Modbus ports
RTU_READS = (4, 100)  # registers per read: the contract's 4 and the 100 reported alongside
RTU_CONNS = (1, 10)
RTU_TARGET = 0.9  # RTU over TCP SHOULD serve >= 0.9x MBAP's requests/s (4 registers)
PTY_READS = 2000  # 4-register reads timed on the pty line
PTY_TARGET_MS = 5.0  # a pty SHOULD answer a 4-register read within 5 ms on an idle machine
PTY_TIMEOUT_S = 1.0  # an answer not in by then is counted as a timeout
PTY_MAX_TIMEOUTS = 5  # then the line is given up: 2,000 silent reads would take half an hour
SITE_COUNT = 100
SITE_OPTIONS = ("--site", "--pv-kwp", "8", "--battery-kwh", "10")
SITE_READS = {"plain meter": (1, 0), "site unit 200": (200, 0), "site unit 1": (1, 40070)}
SERIAL_LINE = re.compile(r"Modbus RTU on serial (\S+) ")  # the start line's path (contract 1)
# the engine group: meters as ports x unit ids; 100,000 needs 247 ids (--unit-ids' most), 100,035
ENGINE_LAYOUTS = {1000: (5, 200), 10_000: (50, 200), 100_000: (405, 247)}
ENGINE_TARGETS = (  # meters, tick interval s, map (+ panels), then start s, CPU % unread, RSS MB
    (10_000, 1.0, None, None, 15, 100),
    (10_000, 1.0, "sdm630", None, 25, 150),
    (100_000, 10.0, None, 30, 30, 1024),
)
ENGINE_PV_KWP = 8  # --engine-profile's meters have panels too: the target's second fleet
ENGINE_READS = {"sdm630": (4, 0), "sunspec": (3, 40070), "sunspec-float": (3, 40070)}  # FC, address
ENGINE_READ_REGISTERS = 4
ENGINE_READS_PER_S = 1000  # the default load: the fleet group's, served there by all three
ENGINE_START_TIMEOUT_S = 600  # seconds; 100,000 meters take today's engine about a minute


def pinned(cpu: int):
    """preexec_fn that pins the child to one CPU, where the machine has more than one."""
    def pin() -> None:
        if (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {cpu})
    return pin


def build_loadgen(workdir: str) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("benchmark: needs a C compiler (cc) for the load generator")
    out = os.path.join(workdir, "loadgen")
    subprocess.run([cc, "-O2", "-o", out, str(BENCH / "loadgen.c")], check=True)
    return out


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS: polynomial 0xA001 reflected, initial value 0xFFFF."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(body: bytes) -> bytes:
    """Unit id and PDU framed for RTU: the CRC follows, low byte first."""
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def offers(root: Path, option: str) -> bool:
    """Whether the simulator of root lists option in its usage text."""
    usage = subprocess.run([sys.executable, str(root / "scripts" / "run_meter.py"), "--help"],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(root)),
                           timeout=60).stdout
    return option in usage


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class StartError(RuntimeError):
    """A server under test that exited or did not listen in time."""

    def __init__(self, what: str, stderr: bytes, reason: str = "") -> None:
        super().__init__(f"{what} did not start: {stderr[-2000:]!r}")
        lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
        # the simulator's own line (a usage error names the option), else the last one
        ours = [line for line in lines if line.startswith("meter-simulator:")]
        self.reason = reason or (ours[0] if ours else lines[-1] if lines else "no output")


class Server:
    """One server under test in its own pinned process."""

    def __init__(self, kind: str, port: int, count: int = 1, units: int = 0,
                 loadgen: str = "", profile: str = "seed", root: Path = ROOT,
                 fault_elsewhere: bool = False, framing: str = "tcp", serial: str = "",
                 extra: tuple[str, ...] = (), ready=None, start_timeout_s: float = 180.0) -> None:
        if fault_elsewhere:
            count = 2
        self.kind, self.port, self.count = kind, port, count
        if kind == "ours":
            # the serial start line is an info line; quieter otherwise, as logging costs CPU
            argv = [sys.executable, str(root / "scripts" / "run_meter.py"), "--port", str(port),
                    "--count", str(count), "--max-clients", "1000", "--seed", "1",
                    "--log-level", "info" if serial else "warning"]
            if units:
                argv += ["--unit-ids", f"1-{units}"]
            if profile != "seed":
                argv += ["--profile", profile]
            if fault_elsewhere:
                argv += ["--http", str(port + HTTP_PORT_OFFSET)]
            if framing != "tcp":  # no option for the default: a baseline may predate it
                argv += ["--framing", framing]
            if serial:
                argv += ["--serial", serial]
            argv += list(extra)
        elif kind == "ceiling":
            argv = [loadgen, "serve" if framing == "tcp" else f"serve-{framing}", str(port)]
        else:
            argv = [sys.executable, str(BENCH / "ref_server.py"), kind.lower(), str(port),
                    str(count), str(units)]
        # stderr to a file, never a pipe: a server that logs a lot would block on a full pipe
        self.log = tempfile.TemporaryFile()
        # the package of root (a baseline checkout's own, not the installed one)
        env = dict(os.environ, PYTHONPATH=str(root)) if kind == "ours" else None
        # another program on the port would be measured in this one's place
        taken = [p for p in {port, port + count - 1} if accepts(p)]
        if taken:
            self.log.close()
            raise StartError(kind, b"", f"port {taken[0]} is taken by another program; --port moves the run")
        started = time.monotonic()
        self.proc = subprocess.Popen(argv, preexec_fn=pinned(SERVER_CPU), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        if ready is None:
            def ready() -> bool:
                return accepts(port) and accepts(port + count - 1)
        # the default 180 s: 1,000 default DataBanks take a while to allocate
        deadline = started + start_timeout_s
        while not ready():
            exited = self.proc.poll() is not None
            if exited or time.monotonic() > deadline:
                err = self.stderr()
                self.stop()
                raise StartError(kind, err, "" if exited else f"not ready within {start_timeout_s:g} s")
            time.sleep(0.1)
        self.start_s = time.monotonic() - started  # process start until ready() held
        if fault_elsewhere:  # a delay fault on the second port: the first one is measured
            self.add_fault(port + HTTP_PORT_OFFSET, {"type": "delay", "delay_ms": 1000,
                                                     "scope": {"port": port + 1}})
        time.sleep(1.0)  # let start-up work (imports, first tick) finish before measuring

    def stderr(self) -> bytes:
        # pread leaves the file offset alone: the server writes its log at that offset too
        return os.pread(self.log.fileno(), 1 << 20, 0)

    def serial_path(self, timeout_s: float = 10.0) -> str:
        """The pty path of the serial start line, once it has appeared (the line is open)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = SERIAL_LINE.search(self.stderr().decode(errors="replace"))
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                raise StartError(f"{self.kind} serial line", self.stderr())
            if time.monotonic() > deadline:
                raise StartError(f"{self.kind} serial line", self.stderr(),
                                 f"no line matching /{SERIAL_LINE.pattern}/ within {timeout_s:g} s")
            time.sleep(0.05)

    def add_fault(self, http_port: int, fault: dict) -> None:
        deadline = time.monotonic() + 30
        while not accepts(http_port):
            if time.monotonic() > deadline:
                raise RuntimeError("the control port did not open")
            time.sleep(0.1)
        request = urllib.request.Request(f"http://127.0.0.1:{http_port}/api/faults", method="POST",
                                         data=json.dumps(fault).encode())
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 201

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def peak_rss_mb(self) -> float:
        return self.status_mb("VmHWM")

    def rss_mb(self) -> float:
        """The resident set now (the peak may be start-up's alone)."""
        return self.status_mb("VmRSS")

    def status_mb(self, field: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run_load(loadgen: str, *args) -> dict:
    out = subprocess.run([loadgen, *map(str, args)], preexec_fn=pinned(LOAD_CPU),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def measured(server: Server, loadgen: str, *args) -> dict:
    """Load results plus the server's CPU seconds, wall seconds and peak RSS over the run."""
    cpu0, wall0 = server.cpu_s(), time.monotonic()
    result = run_load(loadgen, *args)
    result["cpu_s"], result["wall_s"] = server.cpu_s() - cpu0, time.monotonic() - wall0
    result["rss_mb"] = server.peak_rss_mb()
    return result


def ms(us: float) -> str:
    return "-" if us is None or us < 0 else f"{us / 1000:.2f}"


def ratio(ours: float, other: float) -> str:
    return f"{ours / other:.2f}x" if other else "-"


# --- scenarios ---

def closed_loop(loadgen: str, port: int, seconds: float, rounds: int) -> list[dict]:
    """1, 10, 100 connections reading 4 and 102 registers, as fast as answered.

    Each server runs `rounds` times, the servers taking turns; the median round is shown
    with the range of all rounds, since a shared VM's speed drifts by 20 % from minute to minute.
    """
    rows = []
    for qty in (4, 102):
        for conns in (1, 10, 100):
            print(f"\n## {conns} connection(s), read {qty} registers, {seconds:g} s x {rounds} "
                  f"rounds", flush=True)
            print(f"{'server':<12} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} "
                  f"{'RSS MB':>7} {'ours/this':>9} {'req/s rounds':>13}")
            servers = {kind: {"kind": kind} for kind in (*SERVERS, "ceiling")}
            results = closed_rounds(loadgen, port, servers, rounds, conns, qty, seconds)
            for kind, r in results.items():
                shown = "(load generator's ceiling)" if kind == "ceiling" else \
                    ratio(results["ours"]["rps"], r["rps"])
                print_closed_row(kind, r, shown, rounds)
            rows.append({"conns": conns, "qty": qty, "results": results})
    return rows


def closed_rounds(loadgen: str, port: int, servers: dict[str, dict], rounds: int, conns: int,
                  qty: int, seconds: float, func: int = 3) -> dict[str, dict]:
    """Each server (label: Server keyword arguments) loaded `rounds` times, the servers taking
    turns, so a noisy minute hits all of them; the median round of each, by requests/s."""
    rounds_by_label: dict[str, list[dict]] = {label: [] for label in servers}
    for _ in range(rounds):
        for label, kwargs in servers.items():
            kwargs = dict(kwargs)
            target = (kwargs.pop("unit", 1), kwargs.pop("address", 0))  # whom the reads ask
            server = Server(port=port, loadgen=loadgen, **kwargs)
            mode = "closed-rtu" if kwargs.get("framing") == "rtu" else "closed"
            try:
                r = measured(server, loadgen, mode, "127.0.0.1", port, 1, conns, qty, seconds, func,
                             *target)
            finally:
                server.stop()
            # the CPU time covers the warm-up too: divide by every request answered
            r["cpu_us_per_req"] = r["cpu_s"] / max(r["requests"] + r["warm_up_requests"], 1) * 1e6
            rounds_by_label[label].append(r)
    results = {}
    for label, runs in rounds_by_label.items():
        r = sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]  # the median round
        r["rps_range"] = (min(run["rps"] for run in runs), max(run["rps"] for run in runs))
        results[label] = r
    return results


def print_closed_row(label: str, r: dict, shown: str, rounds: int) -> None:
    spread = f"{r['rps_range'][0]:.0f}-{r['rps_range'][1]:.0f}" if rounds > 1 else ""
    print(f"{label:<12} {r['rps']:>9.0f} {ms(r['p50_us']):>7} {ms(r['p99_us']):>7} "
          f"{r['cpu_us_per_req']:>10.0f} {r['rss_mb']:>7.1f} {shown:>9} {spread:>13}", flush=True)
    if r["errors"] or r["closed_early"] or r["timeouts"] or r["crc_errors"] or r["bad_answers"]:
        print(f"  !! {label}: {r['errors']} exception answers, {r['timeouts']} timeouts, "
              f"{r['crc_errors']} CRC errors, {r['bad_answers']} answers from another unit id or "
              f"function, closed early: {r['closed_early']}")


def profile_reads(loadgen: str, port: int, seconds: float, rounds: int) -> list[dict]:
    """10 and 100 connections reading 80 input registers (FC 0x04) from address 0: ours with
    the SDM630 map (its block of measured values) against ours with the seed map."""
    func, qty = PROFILE_READ
    rows = []
    for conns in (10, 100):
        print(f"\n## {conns} connections, FC 0x{func:02X} read of {qty} registers from address 0, "
              f"ours with each map, {seconds:g} s x {rounds} rounds", flush=True)
        print(f"{'map':<12} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} "
              f"{'RSS MB':>7} {'this/seed':>9} {'req/s rounds':>13}")
        servers = {name: {"kind": "ours", "profile": name} for name in PROFILE_MAPS}
        results = closed_rounds(loadgen, port, servers, rounds, conns, qty, seconds, func)
        for name, r in results.items():
            print_closed_row(name, r, ratio(r["rps"], results["seed"]["rps"]), rounds)
        rows.append({"conns": conns, "qty": qty, "results": results})
    return rows


def fault_reads(loadgen: str, port: int, seconds: float, rounds: int,
                baseline: Path | None) -> list[dict]:
    """10 and 100 connections reading 4 registers: bare pyModbusTCP, ours, ours with the
    control port and a delay fault on another port, and (baseline) an earlier version."""
    rows = []
    servers = {"pyModbusTCP": {"kind": "pyModbusTCP"}, "ours": {"kind": "ours"},
               "ours+fault": {"kind": "ours", "fault_elsewhere": True}}
    if baseline is not None:
        servers["baseline"] = {"kind": "ours", "root": baseline}
    for conns in (10, 100):
        print(f"\n## {conns} connections, read {FAULT_READ_REGISTERS} registers: the hot path with "
              f"no fault and with a fault on another port, {seconds:g} s x {rounds} rounds", flush=True)
        print(f"{'server':<12} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} "
              f"{'RSS MB':>7} {'this/bare':>9} {'req/s rounds':>13}")
        results = closed_rounds(loadgen, port, servers, rounds, conns, FAULT_READ_REGISTERS, seconds)
        for label, r in results.items():
            print_closed_row(label, r, ratio(r["rps"], results["pyModbusTCP"]["rps"]), rounds)
        rows.append({"conns": conns, "results": results})
    return rows


def rtu_reads(loadgen: str, port: int, seconds: float, rounds: int,
              baseline: Path | None) -> list[dict]:
    """1 and 10 connections reading 4 and 100 registers from ours on one port with the seed
    map: --framing rtu against --framing tcp (MBAP) in the same rounds, with the load
    generator's RTU ceiling and (baseline) an earlier version's MBAP."""
    servers = {"MBAP": {"kind": "ours"}, "RTU": {"kind": "ours", "framing": "rtu"}}
    if baseline is not None:
        servers["baseline"] = {"kind": "ours", "root": baseline}
    servers["RTU ceiling"] = {"kind": "ceiling", "framing": "rtu"}
    rows = []
    for qty in RTU_READS:
        for conns in RTU_CONNS:
            print(f"\n## {conns} connection(s), read {qty} registers: RTU over TCP against "
                  f"Modbus/TCP, {seconds:g} s x {rounds} rounds", flush=True)
            print(f"{'framing':<12} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} "
                  f"{'RSS MB':>7} {'this/MBAP':>9} {'req/s rounds':>13}")
            try:
                results = closed_rounds(loadgen, port, servers, rounds, conns, qty, seconds)
            except StartError as exc:  # one line, not the usage text or a traceback
                sys.exit(f"benchmark: rtu: the simulator did not start: {exc.reason}")
            for label, r in results.items():
                shown = "(load generator's ceiling)" if label == "RTU ceiling" else \
                    ratio(r["rps"], results["MBAP"]["rps"])
                print_closed_row(label, r, shown, rounds)
            rows.append({"conns": conns, "qty": qty, "results": results})
    return rows


def pty_answer(fd: int, timeout_s: float) -> bytes | None:
    """An RTU read's answer from the line: 5 bytes, and if they are no exception, the rest
    their byte count announces; None if it is not all in within timeout_s."""
    deadline = time.monotonic() + timeout_s
    answer = b""
    while True:
        want = 5 if len(answer) < 3 or answer[1] & 0x80 else 5 + answer[2]
        if len(answer) >= want:
            return answer
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        try:
            chunk = os.read(fd, want - len(answer))
        except OSError:  # EIO: the simulator closed its side of the pty
            return None
        if not chunk:
            return None
        answer += chunk


def pty_reads(path: str, reads: int) -> dict:
    """reads 4-register reads of unit id 1 on the pty, one at a time; latencies in s."""
    request = rtu_frame(bytes((1, 3, 0, 0, 0, 4)))  # unit id 1, FC 3, address 0, 4 registers
    latencies, timeouts, bad, answers = [], 0, 0, 0
    # not configured here: the simulator made the line raw (contract 4), as a hand-made client
    # relies on; O_NOCTTY: never this process's controlling terminal
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        for k in range(reads + reads // 10):  # the first tenth warms up, uncounted
            t0 = time.perf_counter()
            os.write(fd, request)
            answer = pty_answer(fd, PTY_TIMEOUT_S)
            latency = time.perf_counter() - t0
            if answer is None:
                timeouts += 1
                if timeouts >= PTY_MAX_TIMEOUTS:
                    break
                drain(fd)  # a late answer is not the next read's
                continue
            answers += 1
            if answer != rtu_frame(bytes((1, 3, 8)) + answer[3:11]):  # header and CRC
                bad += 1
            elif k >= reads // 10:
                latencies.append(latency)
    finally:
        os.close(fd)
    return {"reads": reads, "answered": len(latencies), "all_answers": answers,
            "timeouts": timeouts, "bad": bad, "latencies": sorted(latencies)}


def drain(fd: int) -> None:
    """Read and drop what the line sends until it is silent for 0.1 s."""
    try:
        while select.select([fd], [], [], 0.1)[0] and os.read(fd, 256):
            pass
    except OSError:
        pass


def pty_latency(port: int, reads: int) -> dict:
    """A 4-register read on the --serial pty line, answered how fast, on an otherwise idle machine."""
    print(f"\n## serial line on a pty: {reads} reads of 4 registers, one at a time", flush=True)
    try:
        server = Server("ours", port, serial="pty")
    except StartError as exc:
        sys.exit(f"benchmark: rtu-serial: the simulator did not start: {exc.reason}")
    load_cpus = os.sched_getaffinity(0)
    try:
        path = server.serial_path()
        if (os.cpu_count() or 1) > 1:  # the client side where the load generator runs
            os.sched_setaffinity(0, {LOAD_CPU})
        cpu0 = server.cpu_s()
        r = pty_reads(path, reads)
        r["cpu_us_per_req"] = (server.cpu_s() - cpu0) / max(r["all_answers"], 1) * 1e6
    except StartError as exc:
        sys.exit(f"benchmark: rtu-serial: {exc.reason}")
    finally:
        os.sched_setaffinity(0, load_cpus)
        server.stop()
    latencies = r.pop("latencies")
    r["path"] = path

    def pct(p: float) -> float:  # in ms; nan when nothing was answered
        return latencies[min(int(p * len(latencies)), len(latencies) - 1)] * 1000 if latencies \
            else float("nan")

    r.update(p50_ms=pct(0.5), p99_ms=pct(0.99), max_ms=pct(1.0),
             within_pct=100 * sum(t * 1000 <= PTY_TARGET_MS for t in latencies) / max(len(latencies), 1))
    print(f"{'line':<12} {'answered':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{f'<= {PTY_TARGET_MS:g} ms':>8} {'CPU us/req':>10}")
    print(f"{'pty':<12} {r['answered']:>8} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['max_ms']:>7.2f} "
          f"{r['within_pct']:>7.1f}% {r['cpu_us_per_req']:>10.0f}", flush=True)
    if r["timeouts"] or r["bad"]:
        print(f"  !! pty {path}: {r['timeouts']} reads unanswered within {PTY_TIMEOUT_S:g} s, "
              f"{r['bad']} bad answers (wrong header or CRC)")
    return r


def storm(loadgen: str, port: int, timeout_s: float) -> dict:
    """500 clients connect at once and read once; then a 501st reads once."""
    print(f"\n## {STORM_CLIENTS} clients connect at once, each reads 4 registers; then one more "
          f"(given up after {timeout_s:g} s)", flush=True)
    print(f"{'server':<12} {'connected':>9} {'all conn. s':>11} {'answered':>8} "
          f"{'all ans. s':>10} {'501st ms':>8}")
    results = {}
    for kind in (*SERVERS, "ceiling"):
        server = Server(kind, port, loadgen=loadgen)
        try:
            r = measured(server, loadgen, "storm", "127.0.0.1", port, STORM_CLIENTS, 4, timeout_s)
        finally:
            server.stop()
        results[kind] = r

        def secs(value):
            return f"{value:.3f}" if value >= 0 else f">{timeout_s:g}"

        print(f"{kind:<12} {r['connected']:>9} {secs(r['all_connected_s']):>11} {r['answered']:>8} "
              f"{secs(r['all_answered_s']):>10} "
              f"{(r['extra_client_s'] * 1000 if r['extra_client_s'] >= 0 else float('nan')):>8.2f}",
              flush=True)
    return results


def fleet(loadgen: str, port: int, seconds: float) -> list[dict]:
    """1,000 meters, each read (102 registers) once a second: as 1,000 ports, and as gateways."""
    rows = []
    for label, count, units in (("1,000 ports", FLEET_METERS, 0),
                                (f"{GATEWAY_PORTS} ports x {GATEWAY_UNITS} unit ids",
                                 GATEWAY_PORTS, GATEWAY_UNITS)):
        print(f"\n## fleet of 1,000 meters ({label}), each read once a second, {seconds:g} s",
              flush=True)
        print(f"{'server':<12} {'polls':>7} {'answered':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'max ms':>7} {'CPU %':>6} {'RSS MB':>7}")
        results = {}
        for kind in SERVERS:
            server = Server(kind, port, count=count, units=units, loadgen=loadgen)
            try:
                r = measured(server, loadgen, "fleet", "127.0.0.1", port, count, units, 102, seconds)
            finally:
                server.stop()
            r["cpu_pct"] = 100 * r["cpu_s"] / r["wall_s"]
            results[kind] = r
            print(f"{kind:<12} {r['polls']:>7} {r['answered']:>8} {ms(r['p50_us']):>7} "
                  f"{ms(r['p99_us']):>7} {ms(r['max_us']):>7} {r['cpu_pct']:>6.1f} "
                  f"{r['rss_mb']:>7.1f}", flush=True)
        rows.append({"label": label, "results": results})
    return rows


def idle_fleet(server: Server, seconds: float) -> dict:
    """The server's CPU share and peak RSS over seconds of ticking with no client."""
    cpu0, wall0 = server.cpu_s(), time.monotonic()
    time.sleep(seconds)  # the measuring window itself: the server ticks on its own
    return {"cpu_pct": 100 * (server.cpu_s() - cpu0) / (time.monotonic() - wall0),
            "rss_mb": server.peak_rss_mb()}


def sites(loadgen: str, port: int, seconds: float, rounds: int) -> dict:
    """100 sites ticking every second against plain meters, then 4-register reads of a site's
    two devices against a plain meter's, at 10 connections."""
    print(f"\n## {SITE_COUNT} sites ticking every second, no client, {seconds:g} s", flush=True)
    print(f"{'run':<34} {'CPU %':>6} {'ms a tick':>9} {'RSS MB':>7}")
    idle = {}
    for label, count, extra in ((f"{SITE_COUNT} sites (200 devices)", SITE_COUNT, SITE_OPTIONS),
                                (f"{SITE_COUNT} meters with panels", SITE_COUNT, ("--pv-kwp", "8")),
                                (f"{2 * SITE_COUNT} meters with panels", 2 * SITE_COUNT,
                                 ("--pv-kwp", "8"))):
        server = Server("ours", port, count=count, extra=extra)
        try:
            r = idle_fleet(server, seconds)
        finally:
            server.stop()
        idle[label] = r  # at one tick a second, CPU % x 10 is the milliseconds a tick takes
        print(f"{label:<34} {r['cpu_pct']:>6.1f} {r['cpu_pct'] * 10:>9.1f} {r['rss_mb']:>7.1f}",
              flush=True)
    print(f"\n## 10 connections, read 4 registers of a site's devices, 5 s x {rounds} rounds",
          flush=True)
    print(f"{'target':<14} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} "
          f"{'RSS MB':>7} {'this/plain':>10} {'req/s rounds':>13}")
    servers = {label: {"kind": "ours", "unit": unit, "address": address,
                       "extra": () if label == "plain meter" else SITE_OPTIONS}
               for label, (unit, address) in SITE_READS.items()}
    reads = closed_rounds(loadgen, port, servers, rounds, 10, 4, 5.0)
    for label, r in reads.items():
        print_closed_row(label, r, ratio(r["rps"], reads["plain meter"]["rps"]), rounds)
    return {"idle": idle, "reads": reads}


# --- engine: large fleets ticking, unread and polled ---

def engine_layout(size: int) -> tuple[int, int]:
    """Ports and unit ids a port for about size meters: the targets' layouts, else gateways of
    up to 200 unit ids (a size no layout gives exactly is rounded up)."""
    if size in ENGINE_LAYOUTS:
        return ENGINE_LAYOUTS[size]
    ports = -(-size // 200)
    return ports, -(-size // ports)


def engine_per_minute(meters: int, per_minute: float | None) -> float:
    """Reads a meter gets a minute: as asked, else about ENGINE_READS_PER_S over the whole fleet
    (at most one a second a meter), so every size's per-request cost stands out of the ticks'."""
    if per_minute is not None:
        return per_minute
    return float(f"{min(60.0, ENGINE_READS_PER_S * 60 / meters):.2g}")  # 0.6, not 0.59979


def answers(port: int, unit: int, func: int, address: int) -> bool:
    """Whether a Modbus/TCP read of unit at port is answered, not with an exception."""
    request = struct.pack(">HHHBBHH", 1, 0, 6, unit, func, address, ENGINE_READ_REGISTERS)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            answer = sock.recv(300)
    except OSError:
        return False
    return len(answer) >= 8 and answer[7] == func


def engine_ready(port: int, ports: int, units: int, func: int, address: int):
    """Server's ready(): every port accepts and the last meter answers a read, as the fleet's
    last client would find it (the first and last port alone may open before the rest)."""
    pending = list(range(port, port + ports))

    def ready() -> bool:
        while pending and accepts(pending[0]):
            pending.pop(0)
        return not pending and answers(port + ports - 1, units, func, address)
    return ready


def tick_counts(http_port: int) -> tuple[float, float]:
    """Ticks so far and the seconds they took, from the control port's /metrics; nan if three
    scrapes fail (on a loaded machine the control port may close one unanswered)."""
    for _ in range(3):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=120) as answer:
                lines = answer.read().decode().splitlines()
            break
        except OSError:
            time.sleep(1.0)
    else:
        return float("nan"), float("nan")
    values = dict(line.rsplit(" ", 1) for line in lines if line.startswith("meter_simulator_tick"))
    return (float(values["meter_simulator_ticks_total"]),
            float(values["meter_simulator_tick_duration_seconds_sum"]))


def engine_window(server: Server, http_port: int, loadgen: str, seconds: float, load: tuple) -> dict:
    """The server's CPU, ticks and tick time over seconds unread, or over the load generator's
    run. The scrapes stay outside the CPU window: one of 100,000 meters is not free."""
    ticks0, tick_s0 = tick_counts(http_port)
    cpu0, wall0 = server.cpu_s(), time.monotonic()
    if load:
        r = run_load(loadgen, *load)
    else:
        time.sleep(seconds)  # the server ticks on its own
        r = {}
    r["cpu_s"], r["wall_s"] = server.cpu_s() - cpu0, time.monotonic() - wall0
    ticks1, tick_s1 = tick_counts(http_port)
    r["ticks"] = ticks = ticks1 - ticks0
    counted = ticks > 0  # False for nan too: a scrape failed
    r["cpu_pct"] = 100 * r["cpu_s"] / r["wall_s"]
    r["cpu_ms_per_tick"] = r["cpu_s"] * 1000 / ticks if counted else None
    r["tick_ms"] = (tick_s1 - tick_s0) * 1000 / ticks if counted else None
    return r


def engine_run(loadgen: str, port: int, size: int, interval: float, per_minute: float,
               seconds: float, root: Path, profile: str | None) -> dict:
    """One server of size meters: its start time, a window unread, a window polled, its RSS."""
    ports, units = engine_layout(size)
    func, address = ENGINE_READS.get(profile or "seed", (3, 0))
    http_port = port + ports  # above the Modbus ports; /metrics counts the ticks
    extra = ("--interval", f"{interval:g}", "--http", str(http_port))
    if profile:
        extra += ("--profile", profile, "--pv-kwp", str(ENGINE_PV_KWP))
    try:
        server = Server("ours", port, count=ports, units=units, root=root, extra=extra,
                        ready=engine_ready(port, ports, units, func, address),
                        start_timeout_s=ENGINE_START_TIMEOUT_S)
    except StartError as exc:  # a row that says why, and the other runs go on
        return {"error": exc.reason}
    try:
        r = {"start_s": server.start_s,
             "unread": engine_window(server, http_port, loadgen, seconds, ())}
        if per_minute:
            r["polled"] = engine_window(server, http_port, loadgen, seconds, (
                "fleet", "127.0.0.1", port, ports, units, ENGINE_READ_REGISTERS, seconds,
                f"{per_minute:g}", func, address))
            polled, unread = r["polled"], r["unread"]
            # the load generator's warm-up read on every port is a request too
            requests = polled["answered"] + polled["errors"] + ports
            extra_cpu_s = polled["cpu_s"] - unread["cpu_pct"] / 100 * polled["wall_s"]
            r["cpu_us_per_req"] = extra_cpu_s / requests * 1e6
        r["peak_rss_mb"], r["rss_mb"] = server.peak_rss_mb(), server.rss_mb()
    finally:
        server.stop()
    return r


def engine(loadgen: str, port: int, sizes: list[int], interval: float | None,
           per_minute: float | None, seconds: float, profile: str | None,
           baseline: Path | None) -> list[dict]:
    """Fleets of each size ticking, unread and then polled, ours and (baseline) an earlier
    version in turns, with the seed map and (profile) a device map with panels."""
    roots = {"ours": ROOT, **({"baseline": baseline} if baseline is not None else {})}
    rows = []
    for size in sizes:
        ports, units = engine_layout(size)
        every = interval if interval is not None else (10.0 if size >= 100_000 else 1.0)
        rate = engine_per_minute(ports * units, per_minute)
        print(f"\n## engine: {ports * units:,} meters ({ports} ports x {units} unit ids), a tick "
              f"every {every:g} s, {seconds:g} s unread, then {seconds:g} s with each meter read "
              f"{rate:g} times a minute ({ports * units * rate / 60:,.0f} reads/s)", flush=True)
        # CPU % unread and polled; CPU ms/tick (unread) and the tick's wall time from /metrics
        print(f"{'server':<22} {'start s':>7} {'CPU %':>6} {'polled':>6} {'ms/tick':>7} "
              f"{'tick ms':>7} {'us/req':>7} {'answered':>15} {'timeouts':>8} {'peak MB':>7} "
              f"{'now MB':>7}  target")
        for variant in (None, profile) if profile else (None,):
            for label, root in roots.items():
                row = {"server": label + (f" {variant}+pv" if variant else ""), "size": size,
                       "meters": ports * units, "interval_s": every, "per_minute": rate,
                       "profile": variant}
                row.update(engine_run(loadgen, port, size, every, rate, seconds, root, variant))
                print_engine_row(row)
                rows.append(row)
    return rows


def engine_target(row: dict) -> tuple | None:
    """The target (start s, CPU % unread, peak RSS MB; None: none set) the row is held to."""
    for size, interval, profile, *limits in ENGINE_TARGETS:
        if (row["size"], row["interval_s"], row["profile"]) == (size, interval, profile):
            return tuple(limits)
    return None


def engine_misses(row: dict, target: tuple) -> list[str]:
    """What of the target the row misses, as words; empty when it meets it all."""
    if "error" in row:
        return [row["error"]]
    start_s, cpu_pct, rss_mb = target
    figures = ((start_s, row["start_s"], "start"), (cpu_pct, row["unread"]["cpu_pct"], "CPU"),
               (rss_mb, row["peak_rss_mb"], "RSS"))
    return [what for limit, value, what in figures if limit is not None and value > limit]


def target_text(target: tuple | None) -> str:
    if target is None:
        return "(none set)"
    start_s, cpu_pct, rss_mb = target
    return ", ".join(([f"start < {start_s:g} s"] if start_s else []) +
                     [f"<= {cpu_pct:g} % of a core", f"<= {rss_mb:g} MB"])


def print_engine_row(row: dict) -> None:
    if "error" in row:
        print(f"{row['server']:<22} did not start: {row['error']}", flush=True)
        return
    unread, polled = row["unread"], row.get("polled")

    def num(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    answered = f"{polled['answered']}/{polled['polls']}" if polled else "-"
    print(f"{row['server']:<22} {row['start_s']:>7.1f} {unread['cpu_pct']:>6.1f} "
          f"{num(polled and polled['cpu_pct'], '.1f'):>6} {num(unread['cpu_ms_per_tick'], '.1f'):>7} "
          f"{num(unread['tick_ms'], '.1f'):>7} {num(row.get('cpu_us_per_req'), '.0f'):>7} "
          f"{answered:>15} {num(polled and polled['timeouts'], 'd'):>8} "
          f"{row['peak_rss_mb']:>7.1f} {row['rss_mb']:>7.1f}  {target_text(engine_target(row))}",
          flush=True)
    if polled and (polled["errors"] or polled["failed"]):
        print(f"  !! {row['server']}: {polled['errors']} exception answers, the load generator's "
              f"queue overflowed: {bool(polled['failed'])}")


def engine_summary(rows: list[dict]) -> None:
    """Every engine row in one line, against its target where one is set."""
    for row in rows:
        what = (f"engine, {row['meters']:,} meters{' ' + row['profile'] + '+pv' if row['profile'] else ''}"
                f" every {row['interval_s']:g} s, {row['server'].split()[0]}")
        target = engine_target(row)
        if "error" in row:
            print(f"{what}: did not start ({row['error']})")
            continue
        misses = engine_misses(row, target) if target else []
        verdict = "" if target is None else (" - missed: " + ", ".join(misses) if misses else " - met")
        polled = row.get("polled")
        print(f"{what}{f' ({target_text(target)})' if target else ''}: start {row['start_s']:.1f} s, CPU "
              f"{row['unread']['cpu_pct']:.1f} % unread" +
              (f", {polled['cpu_pct']:.1f} % polled, {polled['answered']}/{polled['polls']} answered, "
               f"{polled['timeouts']} timeouts" if polled else "") +
              f", RSS {row['peak_rss_mb']:.0f} MB peak, {row['rss_mb']:.0f} MB now{verdict}")


def tick(seconds: float) -> dict:
    """Tick time and schedule drift of 1,000 electric meters, in a pinned process of their own."""
    print(f"\n## updater: 1,000 electric meters, interval 1 s, {seconds:g} s", flush=True)
    out = subprocess.run([sys.executable, __file__, "--tick-phase", str(seconds)],
                         preexec_fn=pinned(SERVER_CPU), capture_output=True, text=True,
                         check=True).stdout
    r = json.loads(out)
    print(f"tick (step + publish 1,000 meters): median {r['tick_median_ms']:.1f} ms, "
          f"max {r['tick_max_ms']:.1f} ms over {r['timed_ticks']} ticks")
    print(f"by map, {r['timed_ticks']} ticks of each in turn (encode: building the 1,000 images "
          f"after the tick, as a read of every meter does):")
    print(f"{'map':<14} {'tick ms':>8} {'max ms':>7} {'encode ms':>10} {'this/seed':>9}")
    seed = r["by_profile"]["seed"]
    for name, t in r["by_profile"].items():
        print(f"{name:<14} {t['tick_median_ms']:>8.1f} {t['tick_max_ms']:>7.1f} "
              f"{t['publish_median_ms']:>10.1f} {ratio(t['tick_median_ms'], seed['tick_median_ms']):>9}")
    print(f"schedule: {r['ticks']} ticks, start lateness {r['first_late_ms']:.2f} ms, "
          f"max lateness {r['max_late_ms']:.2f} ms, drift (last - first) {r['drift_ms']:.2f} ms")
    return r


def tick_phase(seconds: float) -> None:
    """Runs in the pinned child: time tick() directly, then let the Timer chain run."""
    import random
    import statistics

    sys.path.insert(0, str(ROOT))
    from meter_simulator.device import fleet as fleet_plan
    from meter_simulator.device.updater import Updater
    from meter_simulator.maps import profiles
    from meter_simulator.modbus.server import new_device

    def fleet_of(name: str) -> list:  # the same 1,000 meters (one seed) behind each map
        endpoints = fleet_plan.plan("electric", 1, FLEET_METERS, None, random.Random(1), 36000.0,
                                    new_device, profile=profiles.profile_named(name, "electric"))
        return [unit for endpoint in endpoints for unit in endpoint.devices]

    fleets = {name: fleet_of(name) for name in TICK_PROFILES}
    timed = {name: Updater(units, interval_s=1.0) for name, units in fleets.items()}
    ticks: dict[str, list[float]] = {name: [] for name in fleets}
    publishes: dict[str, list[float]] = {name: [] for name in fleets}
    for _ in range(30):  # the maps take turns, so a noisy moment hits all of them
        for name, updater in timed.items():
            t0 = time.perf_counter()
            updater.tick()
            t1 = time.perf_counter()
            for unit in fleets[name]:  # every image built, as a read of each meter would
                unit.bank.image.read_answer(3, 0, 1)
            ticks[name].append(t1 - t0)
            publishes[name].append(time.perf_counter() - t1)
    by_profile = {name: {"tick_median_ms": statistics.median(ticks[name]) * 1000,
                         "tick_max_ms": max(ticks[name]) * 1000,
                         "publish_median_ms": statistics.median(publishes[name]) * 1000}
                  for name in fleets}
    durations = ticks["seed"]
    units = fleets["seed"]
    del timed, fleets
    starts = []
    updater = Updater(units, interval_s=1.0, on_tick=lambda: starts.append(updater._last))
    updater.start()  # _last: the clock read at the start of the tick just run
    origin = updater._start
    time.sleep(seconds + 0.5)
    updater.stop()
    late_ms = [(start - (origin + (k + 1) * 1.0)) * 1000 for k, start in enumerate(starts)]
    print(json.dumps({"tick_median_ms": statistics.median(durations) * 1000,
                      "tick_max_ms": max(durations) * 1000, "timed_ticks": len(durations),
                      "by_profile": by_profile,
                      "ticks": len(starts), "first_late_ms": late_ms[0],
                      "max_late_ms": max(late_ms), "drift_ms": late_ms[-1] - late_ms[0]}))


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
                 "unknown CPU")
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (f"{os.cpu_count()} CPUs ({model}), Python {sys.version.split()[0]}, "
            f"load average {' '.join(load)}")


def print_worst(closed_rows, metric: str, worst, label: str) -> None:
    """The scenario whose ours/bare ratio of metric is the worst (min or max), as one line."""
    row = worst(closed_rows, key=lambda row: row["results"]["ours"][metric] /
                row["results"]["pyModbusTCP"][metric])
    results = row["results"]
    print(f"{label}: worst {ratio(results['ours'][metric], results['pyModbusTCP'][metric])} "
          f"({row['conns']} conn., {row['qty']} registers)")


def rtu_summary(rtu_rows, pty_result) -> None:
    """RTU over TCP against Modbus/TCP, and the pty line's latency, against the RTU contract."""
    for row in rtu_rows:
        rtu, mbap = row["results"]["RTU"], row["results"]["MBAP"]
        target = f" (>= {RTU_TARGET:.2f}x)" if row["qty"] == 4 else " (reported)"
        below = " BELOW" if row["qty"] == 4 and rtu["rps"] < RTU_TARGET * mbap["rps"] else ""
        print(f"RTU over TCP / Modbus/TCP, {row['qty']} registers, {row['conns']} conn.{target}: "
              f"{ratio(rtu['rps'], mbap['rps'])}{below} the requests/s ({rtu['rps']:.0f} / "
              f"{mbap['rps']:.0f}), p99 {ms(rtu['p99_us'])} / {ms(mbap['p99_us'])} ms, CPU "
              f"{rtu['cpu_us_per_req']:.0f} / {mbap['cpu_us_per_req']:.0f} us per request")
    if pty_result:
        r = pty_result
        print(f"pty line, 4-register read (within {PTY_TARGET_MS:g} ms on an idle machine): "
              f"p50 {r['p50_ms']:.2f}, p99 {r['p99_ms']:.2f}, max {r['max_ms']:.2f} ms, "
              f"{r['within_pct']:.1f} % within; {r['answered']}/{r['reads']} answered")


def summary(closed_rows, profile_rows, storm_results, fleet_rows, tick_result,
            fault_rows=(), rtu_rows=(), pty_result=None, engine_rows=()) -> None:
    print("\n## targets")
    if closed_rows:
        print_worst(closed_rows, "rps", min, "throughput vs bare pyModbusTCP (>= 0.90x in every scenario)")
        behind = [row for row in closed_rows if row["results"]["ours"]["rps"] <=
                  row["results"]["pymodbus"]["rps"]]
        print(f"ahead of pymodbus in every scenario: {'yes' if not behind else 'no'} "
              f"({len(closed_rows) - len(behind)} of {len(closed_rows)})")
        print_worst(closed_rows, "cpu_us_per_req", max, "server CPU per request vs bare pyModbusTCP")
        # one connection is a round trip at a time, bound by latency on both sides, not by
        # the load generator: its ceiling shows with several connections
        parallel = [row for row in closed_rows if row["conns"] > 1]
        if parallel:
            ceiling = min(row["results"]["ceiling"]["rps"] /
                          max(row["results"][k]["rps"] for k in SERVERS) for row in parallel)
            print(f"load generator ceiling: at least {ceiling:.1f}x the fastest Python server "
                  f"in every scenario with 10 or 100 connections")
    if profile_rows:
        for row in profile_rows:
            results = row["results"]
            print(f"SDM630 block read (FC 0x04, {row['qty']} registers) within 10 % of a seed read "
                  f"of the same size, {row['conns']} conn.: "
                  f"{ratio(results['sdm630']['rps'], results['seed']['rps'])} the requests/s, "
                  f"p99 {ms(results['sdm630']['p99_us'])} against {ms(results['seed']['p99_us'])} ms")
    for row in fault_rows:
        results = row["results"]
        bare = results["pyModbusTCP"]["rps"]
        shown = ", ".join(f"{label} {ratio(r['rps'], bare)}" for label, r in results.items()
                          if label != "pyModbusTCP")
        print(f"hot path, 4 registers, {row['conns']} conn. (>= 1.2x bare pyModbusTCP): {shown}")
    rtu_summary(rtu_rows, pty_result)
    if storm_results:
        r = storm_results["ours"]
        print(f"{STORM_CLIENTS} simultaneous connects (all answered within 1 s, 501st within "
              f"10 ms): all answered in {r['all_answered_s']:.3f} s, 501st in "
              f"{r['extra_client_s'] * 1000:.2f} ms")
    for row in fleet_rows:
        r = row["results"]["ours"]
        print(f"fleet, {row['label']} (every poll answered, p99 <= 20 ms, CPU <= 50 %, "
              f"RSS <= 150 MB): {r['answered']}/{r['polls']} answered, p99 {ms(r['p99_us'])} ms, "
              f"CPU {r['cpu_pct']:.1f} %, RSS {r['rss_mb']:.1f} MB")
    if tick_result:
        print(f"tick of 1,000 meters (<= 50 ms): median {tick_result['tick_median_ms']:.1f} ms, "
              f"max {tick_result['tick_max_ms']:.1f} ms; drift over "
              f"{tick_result['ticks']} s (< 10 ms): {tick_result['drift_ms']:.2f} ms")
        by_profile = tick_result["by_profile"]
        seed = by_profile["seed"]["tick_median_ms"]
        print("tick of 1,000 meters with a device map (<= 1.5x the seed map's): " + ", ".join(
            f"{name} {ratio(t['tick_median_ms'], seed)}" for name, t in by_profile.items()
            if name != "seed"))
    engine_summary(engine_rows)


def check_rtu(only: set[str]) -> None:
    """Before anything runs: the RTU groups need the simulator's RTU options, and a run that
    would end in a refused option half an hour in ends now, in one line."""
    for group, option in (("rtu", "--framing"), ("rtu-serial", "--serial")):
        if group in only and not offers(ROOT, option):
            sys.exit(f"benchmark: the {group} group needs {option}, which {ROOT / 'scripts'}"
                     f"/run_meter.py does not offer (leave the group out with --only)")


def engine_options(args: dict, quick: bool) -> tuple:
    """The engine group's sizes, interval (None: by size), reads a meter a minute (None: by
    size), window seconds and map (None: the seed map alone), checked before anything runs."""
    try:
        sizes = [int(size) for size in args["--engine-sizes"].split(",")]
        interval = None if args["--engine-interval"] == "auto" else float(args["--engine-interval"])
        poll = None if args["--engine-poll"] == "auto" else float(args["--engine-poll"])
        seconds = 5.0 if quick else float(args["--engine-seconds"])
    except ValueError as exc:
        sys.exit(f"benchmark: engine: {exc}")
    if min(sizes) < 1 or (interval is not None and interval <= 0) or (poll is not None and poll < 0):
        sys.exit("benchmark: engine: sizes of at least 1, an interval above 0 and reads of at "
                 "least 0 a minute")
    profile = None if args["--engine-profile"] == "none" else args["--engine-profile"]
    return sizes, interval, poll, seconds, profile


def main() -> int:
    args = docopt(__doc__)
    if args["--tick-phase"]:
        tick_phase(float(args["--tick-phase"]))
        return 0
    quick = args["--quick"]
    seconds = 2.0 if quick else float(args["--seconds"])
    rounds = 1 if quick else int(args["--rounds"])
    fleet_s = 5.0 if quick else float(args["--fleet-seconds"])
    drift_s = 10.0 if quick else float(args["--drift-seconds"])
    storm_timeout_s = 10.0 if quick else 70.0
    port = int(args["--port"])
    groups = {"closed", "profiles", "faults", "rtu", "rtu-serial", "storm", "fleet", "tick", "site",
              "engine"}
    baseline = None if args["--baseline"] == "none" else Path(args["--baseline"]).resolve()
    only = groups if args["--only"] == "all" else set(args["--only"].split(","))
    if not only <= groups:
        sys.exit(f"benchmark: --only takes {', '.join(sorted(groups))}, not "
                 f"{','.join(sorted(only - groups))}")
    check_rtu(only)
    print(f"# meter-simulator benchmark{' (quick)' if quick else ''}")
    print(f"machine: {machine()}")
    print(f"servers pinned to CPU {SERVER_CPU}, load generator to CPU {LOAD_CPU}; all on 127.0.0.1")
    with tempfile.TemporaryDirectory() as workdir:
        loadgen = build_loadgen(workdir)
        closed_rows = closed_loop(loadgen, port, seconds, rounds) if "closed" in only else []
        profile_rows = profile_reads(loadgen, port, seconds, rounds) if "profiles" in only else []
        fault_rows = fault_reads(loadgen, port, seconds, rounds, baseline) if "faults" in only else []
        rtu_rows = rtu_reads(loadgen, port, seconds, rounds, baseline) if "rtu" in only else []
        pty_result = pty_latency(port, PTY_READS // 10 if quick else PTY_READS) \
            if "rtu-serial" in only else None
        storm_results = storm(loadgen, port, storm_timeout_s) if "storm" in only else {}
        fleet_rows = fleet(loadgen, port, fleet_s) if "fleet" in only else []
        if "site" in only:
            sites(loadgen, port, fleet_s, rounds)
        engine_rows = engine(loadgen, port, *engine_options(args, quick), baseline) \
            if "engine" in only else []
    tick_result = tick(drift_s) if "tick" in only else {}
    summary(closed_rows, profile_rows, storm_results, fleet_rows, tick_result, fault_rows, rtu_rows,
            pty_result, engine_rows)
    print(f"\nload average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
