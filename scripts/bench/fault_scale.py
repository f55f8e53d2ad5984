"""How the faults scale: create and clear many active faults on a fleet, in process.

Serves --count meters on free loopback ports (the Python API, no control port),
creates --faults faults through the control core (delay, no answer, exception,
freeze and offline in turn; three in four scoped to one port, the rest to every
port; one in three with a duration), then ends them all at once, and prints how
long each took and how many threads ran. Run it in a checkout and in a worktree of
an earlier version to compare.

    python3 scripts/bench/fault_scale.py --count 100 --faults 1000

Usage:
  fault_scale.py [--count N] [--faults N]
  fault_scale.py -h | --help

Options:
  --count N    Meters, one a port [default: 100].
  --faults N   Faults to create; at most the simulator's cap [default: 1000].
  -h, --help   Show this text.
"""
from __future__ import annotations

import os
import sys
import threading
import time

from docopt import docopt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)  # this checkout's package, not an installed one
from meter_simulator.testing import MeterSimulator  # noqa: E402

KINDS = ({"type": "delay", "delay_ms": 100}, {"type": "no_answer"}, {"type": "exception", "code": 6},
         {"type": "freeze"}, {"type": "offline"})


def main() -> None:
    args = docopt(__doc__)
    count, faults = int(args["--count"]), int(args["--faults"])
    with MeterSimulator(count=count, interval=3600) as sim:
        ports = sim.ports
        started = time.perf_counter()
        for n in range(faults):
            spec = dict(KINDS[n % len(KINDS)], scope={"port": ports[n % count]} if n % 4 else {})
            if n % 3 == 0:
                spec["duration_s"] = 3600
            sim.control.start_fault(spec)
        created = time.perf_counter()
        threads = threading.active_count()
        cleared = sim.clear_faults()
        done = time.perf_counter()
    print(f"{cleared} faults on {count} ports: created in {created - started:.3f} s, cleared in "
          f"{done - created:.3f} s, {threads} threads while they were active")


if __name__ == "__main__":
    main()
