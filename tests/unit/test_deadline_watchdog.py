"""The one watchdog thread behind HTTP deadlines: fires in order, never a cancelled one, outlives a bad callback."""

from __future__ import annotations

import threading
import time

from federation.deadline_watchdog import Watchdog


def test_deadlines_fire_in_order_and_cancelled_ones_never() -> None:
    watchdog = Watchdog()
    fired: list[str] = []
    done = threading.Event()

    def late() -> None:
        fired.append("late")
        done.set()

    watchdog.arm(0.15, late)
    watchdog.arm(0.05, lambda: fired.append("early"))
    watchdog.cancel(watchdog.arm(0.1, lambda: fired.append("cancelled")))
    assert done.wait(2)
    assert fired == ["early", "late"]


def test_a_nearer_deadline_armed_later_wakes_the_watchdog() -> None:
    watchdog = Watchdog()
    fired = threading.Event()
    watchdog.arm(30, lambda: None)
    started = time.monotonic()
    watchdog.arm(0.05, fired.set)
    assert fired.wait(2) and time.monotonic() - started < 1


def test_a_failing_callback_does_not_stop_later_deadlines() -> None:
    watchdog = Watchdog()
    fired = threading.Event()

    def broken() -> None:
        raise RuntimeError("boom")

    watchdog.arm(0.01, broken)
    watchdog.arm(0.05, fired.set)
    assert fired.wait(2)


def test_one_thread_for_many_deadlines() -> None:
    watchdog = Watchdog()
    before = threading.active_count()
    tokens = [watchdog.arm(5, lambda: None) for _ in range(200)]
    assert threading.active_count() <= before + 1
    for token in tokens:
        watchdog.cancel(token)
