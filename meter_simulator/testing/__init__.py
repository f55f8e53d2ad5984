"""Simulated meters inside a test suite: MeterSimulator, and the pytest plugin's fixtures; imports
app only (the Simulator one run is), and only when first used.

Importing this package loads nothing of the server (the pytest plugin lives in
meter_simulator.testing.plugin and is loaded in every pytest run once the package
is installed); MeterSimulator comes from meter_simulator.testing.simulator when
first used.
"""
from __future__ import annotations

__all__ = ["MeterSimulator", "Fault"]


def __getattr__(name: str):
    if name in __all__:
        from . import simulator

        return getattr(simulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
