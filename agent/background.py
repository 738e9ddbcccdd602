"""One long action at a time in a thread of its own, as Patroni's AsyncExecutor runs a restart or a rewind:
the reconcile cycle goes on (observing, sampling, serving /status) and says what is running."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("agent.background")


@dataclass(frozen=True)
class Finished:
    name: str
    outcome: str | None
    error: str | None
    seconds: float
    at: datetime


class Background:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._name: str | None = None
        self._started: float | None = None
        self.last: Finished | None = None
        self._last_ended: float | None = None

    def running(self) -> tuple[str, float] | None:
        """What runs now and for how long (None when idle)."""
        with self._lock:
            if self._thread is None or self._name is None or self._started is None:
                return None
            return self._name, self._clock() - self._started

    def ended_after(self, when: float) -> bool:
        """Whether an action ended at or after clock time `when`: a look taken before then may show what that
        action was still doing (a pending operation it has since finished)."""
        with self._lock:
            return self._last_ended is not None and self._last_ended >= when

    def try_run(self, name: str, action: Callable[[], str | None],
                on_done: Callable[[Finished], None] | None = None) -> bool:
        """Start `action` unless another one runs (False then). `on_done` gets its outcome or its error."""
        with self._lock:
            if self._thread is not None:
                return False
            self._name, self._started = name, self._clock()
            self._thread = threading.Thread(target=self._run, args=(name, action, on_done), name=f"agent-{name}",
                                            daemon=True)
            self._thread.start()
        return True

    def _run(self, name: str, action: Callable[[], str | None], on_done: Callable[[Finished], None] | None) -> None:
        started = self._clock()
        outcome, error = None, None
        try:
            outcome = action()
        except Exception as exc:  # reported through `last` and on_done: the thread must end cleanly
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("%s failed: %s", name, error)
        finished = Finished(name, outcome, error, self._clock() - started, datetime.now(UTC))
        with self._lock:
            self.last, self._last_ended = finished, self._clock()
            self._thread, self._name, self._started = None, None, None
        if on_done is not None:
            try:
                on_done(finished)
            except Exception:
                log.exception("the completion of %s failed (please report it as a BUG)", name)

    def wait(self, timeout: float) -> bool:
        """For tests and shutdown: wait until idle; False when still running after `timeout`."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def status(self) -> dict[str, Any]:
        now = self.running()
        last = self.last
        return {"running": {"action": now[0], "seconds": round(now[1], 1)} if now else None,
                "last": None if last is None else {"action": last.name, "outcome": last.outcome, "error": last.error,
                                                   "seconds": round(last.seconds, 1),
                                                   "finished_at": last.at.isoformat(timespec="milliseconds")}}
