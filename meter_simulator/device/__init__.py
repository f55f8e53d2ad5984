"""A served device: its model, map and published image, the updater and its one lock, the fleet
plan, pins, faults and the control core. Imports model and maps; no socket, no pyModbusTCP."""
