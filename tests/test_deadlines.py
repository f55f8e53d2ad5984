"""Deadlines (the faults' one timer thread) on a fake clock: what is due comes off the heap
earliest first, what ended before its time never comes, and the heap keeps no more than twice
what is pending however many come and go."""
from __future__ import annotations

import threading

from meter_simulator.device.deadlines import COMPACT_ABOVE, Deadlines
from support import FakeClock, wait_for


def test_due_keys_come_earliest_first_and_removed_ones_never():
    clock = FakeClock(0.0)
    deadlines = Deadlines(clock, lambda: None, name="fault-timer")
    for key, due_s in (("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0), ("d", 4.0)):
        deadlines.add(due_s, key)
    deadlines.remove("b")
    deadlines.remove("nothing")
    assert deadlines.pop_due() == []
    clock.now = 3.0
    assert deadlines.pop_due() == ["a", "a2", "c"]
    assert deadlines.pop_due() == []
    clock.now = 10.0
    assert deadlines.pop_due() == ["d"]


def test_the_heap_keeps_at_most_twice_what_is_pending():
    deadlines = Deadlines(FakeClock(0.0), lambda: None, name="fault-timer")
    deadlines.add(5.0, "kept")
    for n in range(10_000):
        deadlines.add(1e9 + n, n)
        deadlines.remove(n)
    assert len(deadlines._heap) <= 2 * COMPACT_ABOVE + 1


def test_the_thread_calls_on_due_when_the_clock_moves_and_close_joins_it():
    clock = FakeClock(0.0)
    ended = []
    deadlines = Deadlines(clock, lambda: ended.extend(deadlines.pop_due()), name="fault-timer")
    deadlines.add(60.0, "later")
    assert not [thread for thread in threading.enumerate() if thread.name == "fault-timer"]
    deadlines.start()
    deadlines.start()
    try:
        threads = [thread for thread in threading.enumerate() if thread.name == "fault-timer"]
        assert len(threads) == 1
        deadlines.add(1.0, "sooner")
        clock.now = 1.0
        wait_for(lambda: ended == ["sooner"], timeout=5)
        clock.now = 60.0
        wait_for(lambda: ended == ["sooner", "later"], timeout=5)
    finally:
        deadlines.close()
    assert not threads[0].is_alive()
