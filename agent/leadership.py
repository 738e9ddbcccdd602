"""Keeping (or waiting for) the DC's agent lease in a thread of its own.

The lease is renewed every TTL/3 whatever the reconcile loop is doing (a rejoin can take a minute),
and this agent counts as active only until TTL - 1 s after the start of its last successful renewal:
if its DCS stops answering, it stops acting before another agent can take the key over. A standby
agent tries every 0.5 s, so it takes a dead holder's key within about half a second of its expiry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agent.events import NO_EVENTS, EventSink
from federation.dcs.lease import LeaderLease
from federation.errors import DCSError

log = logging.getLogger("agent.lease")
SAFETY_MARGIN = 1.0
CANDIDATE_INTERVAL = 0.5


class LeaseKeeper:
    def __init__(self, lease: LeaderLease, *, on_change: Callable[[bool], None] = lambda _active: None,
                 on_error: Callable[[Exception], None] = lambda _exc: None,
                 clock: Callable[[], float] = time.monotonic, events: EventSink = NO_EVENTS) -> None:
        self.lease = lease
        self._events = events
        self._on_change = on_change
        self._on_error = on_error
        self._clock = clock
        self._lock = threading.Lock()
        self._held = False
        self._valid_until = 0.0
        self._dcs_ok_at: float | None = None
        self._dcs_error: str | None = None
        self.holder: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        with self._lock:
            return self._held and self._clock() < self._valid_until

    def dcs_answered_within(self, seconds: float) -> bool:
        with self._lock:
            return self._dcs_ok_at is not None and self._clock() - self._dcs_ok_at <= seconds

    @property
    def dcs_error(self) -> str | None:
        with self._lock:
            return self._dcs_error

    def step(self) -> bool:
        """One renewal or takeover attempt; returns whether this agent is active afterwards."""
        was = self.active
        started = self._clock()
        try:
            held = self.lease.step()
            holder = self.lease.last_holder
        except DCSError as exc:
            with self._lock:
                self._dcs_error = exc.message
            if was:
                log.warning("cannot renew the agent lease: %s", exc.message)
        except Exception as exc:  # a bug in the lease code must not kill the thread
            log.exception("unexpected error while renewing the agent lease (please report it as a bug)")
            self._on_error(exc)
        else:
            with self._lock:
                self._held = held
                self._valid_until = started + self.lease.ttl - SAFETY_MARGIN
                self._dcs_ok_at = self._clock()
                self._dcs_error = None
            if holder != self.holder:
                log.info("agent lease %s is held by %s", self.lease.key, holder or "nobody")
            self.holder = holder
        now = self.active
        if now != was:
            log.info("this agent is now %s", "ACTIVE (holds the lease)" if now else "a standby agent (lease lost)")
            self._say_change(now)
            self._on_change(now)
        return now

    def _say_change(self, active: bool) -> None:
        if active:
            self._events.emit("agent_active", f"took the agent lease {self.lease.key}: this agent acts for its DC",
                              lease=self.lease.key)
            return
        why = f"its DCS does not answer ({self.dcs_error})" if self.dcs_error else \
            f"it is held by {self.holder or 'nobody'}"
        self._events.emit("agent_standby", f"lost the agent lease {self.lease.key}: {why}", lease=self.lease.key,
                          holder=self.holder)

    def _run(self) -> None:
        while True:
            interval = self.lease.ttl / 3 if self.step() else min(CANDIDATE_INTERVAL, self.lease.ttl / 3)
            if self._stop.wait(interval):
                break
        self._release()

    def _release(self) -> None:
        try:
            if self.active:
                self.lease.release()
                log.info("released the agent lease %s", self.lease.key)
                self._events.emit("agent_standby", f"released the agent lease {self.lease.key}: the agent stops",
                                  lease=self.lease.key, holder=None)
        except DCSError as exc:
            log.warning("could not release the agent lease (it expires within %s s): %s", self.lease.ttl,
                        exc.message)
        finally:
            with self._lock:
                self._held = False
            self.lease.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="agent-lease", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
