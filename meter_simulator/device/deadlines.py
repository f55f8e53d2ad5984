"""Deadlines: one thread that ends things at their time (the faults' durations).

A heap of (due_s, sequence, key) on an injected clock. The thread starts on the
first start(), never before, and close() stops and joins it. Whenever the earliest
entry is due it calls on_due(), which takes the due keys with pop_due() itself,
under its own lock: whoever else ends due things (a listing, before it answers)
takes them from the same heap, so nothing ends twice and nobody sees a key taken
off the heap but not yet ended. The thread waits in real time, at most MAX_WAIT_S
at a time, so it also notices a fake clock that a test moves by hand.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Hashable
from typing import Callable

log = logging.getLogger(__name__)

MAX_WAIT_S = 1.0
MIN_WAIT_S = 0.01  # a wait that ends a hair early, or a fake clock that stands still, is no spin
REMOVED = object()  # the key of a heap entry whose thing ended before its time
COMPACT_ABOVE = 64  # entries; below it removed ones simply wait for their time to be dropped


class Deadlines:
    """Keys due at times of clock; on_due() is called from one thread named name when one is due."""

    def __init__(self, clock: Callable[[], float], on_due: Callable[[], None], *, name: str) -> None:
        self._clock = clock
        self._on_due = on_due
        self._name = name
        self._heap: list[list] = []  # [due_s, sequence, key]: the sequence keeps keys uncompared
        self._entries: dict[Hashable, list] = {}  # key -> its heap entry
        self._sequence = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        """Start the thread if it is not running; RuntimeError (from threading) when it cannot
        start, and then nothing is left of the attempt."""
        with self._changed:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            thread.start()
            self._thread = thread

    def add(self, due_s: float, key: Hashable) -> None:
        """key is due at due_s (clock seconds); a key is added once."""
        entry = [due_s, next(self._sequence), key]
        with self._changed:
            self._entries[key] = entry
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:  # the thread waits for a later time
                self._changed.notify()

    def remove(self, key: Hashable) -> None:
        """key ended before its time: it is never due (nothing if it is not here)."""
        with self._changed:
            entry = self._entries.pop(key, None)
            if entry is None:
                return
            entry[2] = REMOVED
            # removed entries are dropped when their time comes; a run that adds and removes
            # long ones by the thousand must not keep them all until then
            if len(self._heap) > COMPACT_ABOVE and len(self._heap) > 2 * len(self._entries):
                self._heap = [kept for kept in self._heap if kept[2] is not REMOVED]
                heapq.heapify(self._heap)

    def pop_due(self) -> list:
        """The keys whose time has come, earliest first, taken off the heap."""
        now = self._clock()
        due = []
        with self._changed:
            heap = self._heap
            while heap and heap[0][0] <= now:
                _, _, key = heapq.heappop(heap)
                if key is not REMOVED:
                    del self._entries[key]
                    due.append(key)
        return due

    def close(self) -> None:
        """Stop the thread and join it; keys stay (pop_due still takes them)."""
        with self._changed:
            self._closed = True
            thread = self._thread
            self._changed.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _wait_s(self) -> float | None:
        """How long the thread may wait (None: until told), 0 when the earliest is due; the
        caller holds the condition."""
        heap = self._heap
        while heap and heap[0][2] is REMOVED:
            heapq.heappop(heap)
        if not heap:
            return None
        left_s = heap[0][0] - self._clock()
        return 0.0 if left_s <= 0 else min(max(left_s, MIN_WAIT_S), MAX_WAIT_S)

    def _run(self) -> None:
        while True:
            with self._changed:
                wait_s = self._wait_s()
                while not self._closed and wait_s != 0.0:
                    self._changed.wait(wait_s)
                    wait_s = self._wait_s()
                if self._closed:
                    return
            try:
                self._on_due()
            except Exception:  # the thread's only broad catch: the next deadlines still end
                log.exception("ending what was due failed")
