"""Take the dashboard's screenshot for the docs from a real run, so the picture stays true.

It starts the program (scripts/run_meter.py) with six electric meters and the control
port on free loopback ports, takes one meter offline, gives another a delay fault and
pins a third one's power over the JSON API, then has headless Chromium load the page
with the faulted meter selected (#meter=...) and save a PNG with its --screenshot. The
chart fills with Chromium's virtual time: five minutes of the page's once-a-second
polling pass in a few seconds of the run, while the meters tick every 50 ms at 30 times
real speed, so the line moves as five real minutes would. Needs Chromium (Debian:
apt-get install chromium); nothing is fetched from the network.

Usage:
  dashboard_screenshot.py [--output PNG] [--chromium PATH] [--size WxH]
  dashboard_screenshot.py -h | --help

Options:
  --output PNG     Where to write the picture [default: docs/images/dashboard.png].
  --chromium PATH  The browser [default: chromium].
  --size WxH       The window, in CSS pixels [default: 1400x1000].
  -h, --help       Show this text.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from docopt import docopt

ROOT = Path(__file__).resolve().parents[2]
CONTROL_LINE = re.compile(r"control port on (http://\S+/)")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run")
VIRTUAL_MS = 5 * 60 * 1000  # the chart's five minutes


def start_program() -> tuple[subprocess.Popen, str]:
    """The program with six meters on a free port range and the control port on port 0; its URL."""
    for first in range(25020, 32000, 37):  # below the ephemeral range; retried when taken
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run_meter.py"), "--port", str(first), "--count", "6",
             "--seed", "7", "--interval", "0.05", "--speed", "30", "--http", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines = []
        for line in proc.stderr:
            lines.append(line)
            match = CONTROL_LINE.search(line)
            if match:
                return proc, match.group(1)
        proc.wait()
        if "Address already in use" not in "".join(lines):
            raise SystemExit("dashboard_screenshot: the program did not start: " + "".join(lines).strip())
    raise SystemExit("dashboard_screenshot: no free ports")


def call(url: str, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url + path, method=method, data=data)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read().decode("utf-8"))


def main() -> int:
    args = docopt(__doc__)
    chromium = shutil.which(args["--chromium"])
    if chromium is None:
        print(f"dashboard_screenshot: {args['--chromium']} not found (Debian: apt-get install chromium)",
              file=sys.stderr)
        return 2
    width, _, height = args["--size"].partition("x")
    output = Path(args["--output"]).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    proc, url = start_program()
    try:
        ids = [meter["id"] for meter in call(url, "GET", "api/meters")["meters"]]
        time.sleep(0.5)  # a few ticks first, so the readings have moved from their start
        call(url, "PUT", f"api/meters/{ids[1]}/online", {"online": False})
        call(url, "POST", "api/faults", {"type": "delay", "delay_ms": 1000, "scope": {"meter": ids[3]}})
        call(url, "PUT", f"api/meters/{ids[4]}/overrides", {"power_total": 7500})
        with tempfile.TemporaryDirectory() as profile:
            result = subprocess.run(
                [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                 f"--virtual-time-budget={VIRTUAL_MS}", f"--screenshot={output}", f"{url}#meter={ids[3]}"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not output.exists():
            print(f"dashboard_screenshot: chromium failed: {result.stderr.strip()[-500:]}", file=sys.stderr)
            return 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    print(f"{output} ({output.stat().st_size} bytes): {url} with meter {ids[3]} selected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
