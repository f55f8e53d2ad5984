#!/usr/bin/env python3
"""Start a simulated meter: see `run_meter.py --help`."""
import sys

from meter_simulator.app.main import main

if __name__ == "__main__":
    sys.exit(main())
