"""The program: usage text and Config, the Simulator that composes one run, and main (argv, exit
status, signals, logging: the process-wide state). Imports every layer but testing."""
