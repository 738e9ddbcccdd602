"""One thread that fires every armed deadline of the process, in order.

`threading.Timer` starts a thread per deadline: for `fedctl status` on 30 DCs (211 requests at once) those
threads cost as much CPU as the requests themselves. Here `arm` pushes the deadline on a heap that a single
daemon thread waits on; `cancel` marks it done. A callback runs on the watchdog thread, so it must be short
(shutting a socket down is).
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable


class Watchdog:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._reset()

    def _reset(self) -> None:
        self._wakeup = threading.Condition()
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, fire: Callable[[], None]) -> int:
        """Call `fire()` in `seconds` unless cancelled first; returns the token for `cancel`."""
        with self._wakeup:
            token = next(self._tokens)
            heapq.heappush(self._due, (self._clock() + max(0.0, seconds), token, fire))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)
                self._thread.start()
            elif self._due[0][1] == token:
                self._wakeup.notify()  # the new deadline is the nearest: wait for it instead
            return token

    def cancel(self, token: int) -> None:
        """Forget the deadline. A callback already running is not stopped (as with threading.Timer)."""
        with self._wakeup:
            if any(t == token for _due, t, _fire in self._due):
                self._cancelled.add(token)

    def _next_due(self) -> Callable[[], None]:
        with self._wakeup:
            while True:
                while self._due and self._due[0][1] in self._cancelled:
                    self._cancelled.discard(heapq.heappop(self._due)[1])
                if not self._due:
                    self._wakeup.wait()
                    continue
                wait = self._due[0][0] - self._clock()
                if wait <= 0:
                    return heapq.heappop(self._due)[2]
                self._wakeup.wait(wait)

    def _run(self) -> None:
        while True:
            fire = self._next_due()
            try:
                fire()
            except Exception:  # a callback's failure must not stop every later deadline
                pass


WATCHDOG = Watchdog()
# A forked child has no watchdog thread and maybe a lock held by it: start afresh there.
os.register_at_fork(after_in_child=WATCHDOG._reset)
