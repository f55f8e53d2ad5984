"""Simulated utility meters (electric, water, gas) served over Modbus/TCP."""

__version__ = "1.0.0"
