"""`python -m meter_simulator`: the same program as the `meter-simulator` script."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
