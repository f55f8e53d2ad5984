"""RateLimitedLog: a warning that may repeat often (a refused client, a late tick), at most once a period."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

LOG_PERIOD_S = 10.0  # at most one such warning in this time


class RateLimitedLog:
    """A warning that repeats at most once a period, counting the occurrences it did not log."""

    def __init__(self, logger: logging.Logger, period_s: float = LOG_PERIOD_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._period_s = period_s
        self._clock = clock
        self._lock = threading.Lock()
        self._quiet_until: float | None = None
        self._unlogged = 0

    def __call__(self, msg: str, *args) -> bool:
        """Log msg % args unless one was logged within the period; True when logged."""
        with self._lock:
            now = self._clock()
            if self._quiet_until is not None and now < self._quiet_until:
                self._unlogged += 1
                return False
            unlogged, self._unlogged = self._unlogged, 0
            self._quiet_until = now + self._period_s
        if unlogged:
            msg, args = msg + " (and %d more since the last such message)", (*args, unlogged)
        self._logger.warning(msg, *args)
        return True
