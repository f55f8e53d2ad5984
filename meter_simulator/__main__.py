"""`python -m meter_simulator`: the same program as the `meter-simulator` script."""
from .app.main import main

if __name__ == "__main__":
    raise SystemExit(main())
