"""The lease guard: every agent of a federation with a store keeps, watches and enforces the primary-DC lease.

Two threads, so that neither a long rejoin-dc in the reconcile loop nor a store call that hangs until
its deadline can delay a fence:
- `poll_store` (every LEASE_CHECK_SECONDS): reads the record and the DC's fence marker, then the active
  agent of the primary DC takes or renews the lease and every other agent of that DC reads it; the
  answers go into LeaseWatch.
- `enforce` (every LEASE_CHECK_SECONDS, and exactly at the fence deadline): decide_lease on those facts,
  then fence (marker first, then the PATCH; every agent does it, idempotently), unfence (the active agent
  only, with our marker, the store's record naming this DC and the lease held), or clear the marker once
  rejoin-dc made the DC a standby of the new primary DC.
`fence_reason()` turns GET /primary to "no" from the fence deadline on, before the PATCH has acted.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from agent.events import NO_EVENTS, EventSink
from agent.fence_marker import FenceMarker, MarkerStore
from agent.lease_watch import LeaseWatch
from agent.self_fence import DCPatroni, demote, promote_back, rejoined
from federation.dcs.base import Versioned
from federation.errors import FedError
from federation.lease_policy import LeaseAction, LeaseDecision, decide_lease
from federation.state import FederationState, _parse
from federation.store import LeaseView
from federation.store_config import LEASE_CHECK_SECONDS

RETRY_AFTER_FAILURE = 0.25
NEAR_DEADLINE_INTERVALS = 2.5

log = logging.getLogger("agent.lease_guard")
NOT_INITIALISED = "federation store not initialised: run fedctl store init"


class GuardStore(Protocol):
    def read_record(self) -> Versioned | None: ...

    def read_lease(self) -> LeaseView: ...


class LeaseHandle(Protocol):
    def take(self, record_version: int) -> LeaseView | None: ...

    def renew(self) -> LeaseView | None: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class LeaseGuard:
    def __init__(self, *, dc: str, identity: str, store: GuardStore, lease: LeaseHandle, patroni: DCPatroni,
                 markers: MarkerStore, ttl: float, margin: float, active: Callable[[], bool],
                 cached_record: Callable[[], FederationState | None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC),
                 interval: float = LEASE_CHECK_SECONDS, on_fence: Callable[[], None] = lambda: None,
                 events: EventSink = NO_EVENTS) -> None:
        self.dc, self.identity = dc, identity
        self._events = events
        self._on_fence = on_fence  # counts self-fences (a metric): each one is a write outage of the DC
        self.store, self.lease, self.patroni, self.markers = store, lease, patroni, markers
        self.ttl, self.margin, self.interval = ttl, margin, interval
        self._active, self._cached_record, self._clock, self._wall = active, cached_record, clock, wall
        self._lock = threading.RLock()
        self._watch = LeaseWatch(dc, ttl=ttl, started_at=clock())
        self._record: FederationState | None = None  # the store's record, last read
        self._record_version: int | None = None
        self._from_store = False  # the last read of the record succeeded
        self._cached: FederationState | None = None
        self._not_initialised = False
        self._store_error: str | None = None
        self._holding = False
        self._holder: str | None = None
        self._marker: FenceMarker | None = None
        self._marker_known = False  # the last read of the marker succeeded
        self._marker_seen = False  # a marker was seen since this agent fenced
        self._fenced_at: float | None = None
        self._last_primary: str | None = None  # the primary DC of the record at the last decision
        self._fenced_wall: datetime | None = None
        self._fence_reason: str | None = None
        self._fence_done = False
        self._close_lease = False
        self._fence_at: float | None = None  # the last decision's deadline
        self._said: tuple[str, ...] = ()
        self.last_sentence = "starting"
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- what the rest of the agent asks
    def store_record(self) -> FederationState | None:
        """The store's record when its last read succeeded (it then decides), else None."""
        with self._lock:
            return self._record if self._from_store else None

    def not_initialised(self) -> bool:
        with self._lock:
            return self._not_initialised

    def known_record(self) -> FederationState | None:
        with self._lock:
            if self._from_store:
                return self._record
            found = [r for r in (self._record, self._cached) if r is not None]
            return max(found, key=lambda r: r.epoch) if found else None

    def fence_reason(self) -> str | None:
        """Why this DC takes no writes (GET /primary says no), None when the lease allows them."""
        with self._lock:
            if self._not_initialised:
                return None
            if self._fenced_at is not None:
                return self._fence_reason
            # Decided afresh (it is cheap), so /primary says no from the deadline on even while the
            # enforcing thread is still busy or asleep.
            if self._decide(self._clock()).action is LeaseAction.FENCE:
                return f"primary-DC lease not renewed since {self._sighting_text()}: fenced"
            if self._marker is not None:
                return f"fence marker of {self._marker.by or 'someone'} since {self._marker.since}: fenced"
            return None

    def self_fenced(self) -> str | None:
        """For decide(): a sentence while the DC is self-fenced (marker present or fence decided)."""
        with self._lock:
            if self._fenced_at is not None:
                return self._fence_reason or "fenced by the lease guard"
            if self._marker is not None:
                return f"fence marker of {self._marker.by or 'someone'} since {self._marker.since}"
            return None

    def held(self) -> bool:
        with self._lock:
            sighting = self._watch.sighting
            return self._holding and sighting is not None and self._clock() < sighting.valid_until

    def fenced(self) -> bool:
        return self.fence_reason() is not None

    def sighting_age(self) -> float:
        with self._lock:
            sighting = self._watch.sighting
            return math.nan if sighting is None else self._clock() - sighting.at

    def status(self) -> dict[str, Any]:
        age = self.sighting_age()
        with self._lock:
            return {"lease_holder": self.identity if self._holding else self._holder, "held": self.held(),
                    "sighting_age_seconds": None if math.isnan(age) else round(age, 1),
                    "fenced_since": self._fenced_wall.isoformat(timespec="milliseconds") if self._fenced_wall
                    else None, "fence_marker": asdict(self._marker) if self._marker else None,
                    "store_error": self._store_error, "last_sentence": self.last_sentence}

    # ---- the store side (its own thread)
    def poll_store(self) -> None:
        with self._lock:
            recovering = self._store_error is not None
        # Back from a cut, the lease sighting is what stands between the DC and a needless fence: renew (or
        # read) the lease first, on the record known so far, and again once the store answers the record.
        leased = self._lease_step(record_ok=False) if recovering else False
        record_ok = self._read_record()
        self._read_marker()
        if not leased and (record_ok or not recovering):
            self._lease_step(record_ok)
        self._changed.set()

    def store_wait(self) -> float:
        """The store thread's pause: the check interval; but at once again while the store fails (each call is
        bounded by its deadline), so that the first answer after a cut is not a whole interval late, and while
        the fence deadline is near, so that the renewal which would save the DC is seen in time (after a
        cut the lease has only what was left of its TTL, and the active agent renews it a moment later)."""
        with self._lock:
            if self._store_error is not None:
                return RETRY_AFTER_FAILURE
            fence_at = self._fence_at if self._fenced_at is None else None
        if fence_at is not None and fence_at - self._clock() < NEAR_DEADLINE_INTERVALS * self.interval:
            return RETRY_AFTER_FAILURE
        return self.interval

    def _lease_step(self, record_ok: bool) -> bool:
        """Take, renew, release or read the lease as the decision says; False when the store failed."""
        if self._not_initialised:
            return False
        decision = self._decide(self._clock())
        active = self._active()
        if self._close_lease:
            self._close_lease = False
            self._stop_holding("lease_lost", f"gave up the primary-DC lease of {self.dc}: it was not confirmed in "
                                             "time and the DC is fenced")
            self.lease.close()  # ZooKeeper: ends the session, whose pings would otherwise keep the node
        # A renewal needs no record; taking the lease needs the record's version (checked in one transaction).
        if active and (record_ok or self._holding) and decision.action in (LeaseAction.TAKE, LeaseAction.RENEW):
            return self._take_or_renew()
        if active and self._holding and decision.action is LeaseAction.RELEASE:
            self._release()
            return True
        if decision.action is not LeaseAction.NOTHING:
            if not active:
                # another agent of the DC takes the key over; stop renewing it
                self._stop_holding("lease_lost", f"stopped renewing the primary-DC lease of {self.dc}: this agent "
                                                 "is no longer its DC's active agent")
            return self._read_lease()
        return True

    def _read_record(self) -> bool:
        try:
            found = self.store.read_record()
        except FedError as exc:
            self._store_failed(exc.message)
            with self._lock:
                self._from_store = False
            try:
                cached = self._cached_record()
            except Exception:
                log.exception("reading the cached federation record failed (please report it as a BUG)")
                cached = None
            with self._lock:
                self._cached = cached or self._cached
            return False
        with self._lock:
            self._not_initialised = found is None
            if found is None:
                self._from_store, self._store_error = False, None
                return False
            record = _parse(found.value)
            if record is None:
                self._from_store, self._store_error = False, "the store's record does not parse"
                return False
            self._record, self._record_version = record, found.version
            self._from_store = True
            if self._store_error is not None:
                log.info("the federation store answers again")
            self._store_error = None
            return True

    def _store_failed(self, message: str) -> None:
        """Counts as no sighting; logged once per distinct failure, not every check."""
        with self._lock:
            if message != self._store_error:
                log.warning("the federation store does not answer: %s", message)
            self._store_error = message

    def _read_marker(self) -> None:
        try:
            marker = self.markers.read()
        except FedError:
            with self._lock:
                self._marker_known = False
            return
        with self._lock:
            self._marker, self._marker_known = marker, True
            self._marker_seen = self._marker_seen or (marker is not None and self._fenced_at is not None)

    def _take_or_renew(self) -> bool:
        at = self._clock()
        try:
            if self._holding:
                view = self.lease.renew()
            elif self._record_version is not None:
                view = self.lease.take(self._record_version)
            else:
                return False
        except FedError as exc:
            self._store_failed(exc.message)
            return False  # confirms nothing: the fence deadline comes closer
        with self._lock:
            was = self._holding
            self._holding = view is not None
            self._watch.renewed(at, view)
        if view is not None and not was:
            self._events.emit("lease_taken", f"took the primary-DC lease of {self.dc} in the federation store",
                              epoch=self._record.epoch if self._record else None, remaining=view.remaining)
        elif view is None and was:
            self._events.emit("lease_lost", f"the federation store refused to renew the primary-DC lease of {self.dc} "
                                            "(revoked or expired)")
        return True

    def _release(self) -> None:
        primary = self._record.primary_dc if self._record else None
        try:
            self.lease.release()
            log.info("released the primary-DC lease of %s: the record names another primary DC", self.dc)
            sentence = f"released the primary-DC lease of {self.dc}: the record names {primary} the primary DC"
        except FedError as exc:
            log.warning("could not release the primary-DC lease (it expires by itself): %s", exc.message)
            sentence = (f"let go of the primary-DC lease of {self.dc} (the record names {primary}); the store did not "
                        f"answer the release, so it expires by itself: {exc.message}")
        self._holding = False
        self._events.emit("lease_released", sentence, primary_dc=primary,
                          epoch=self._record.epoch if self._record else None)

    def _stop_holding(self, kind: str, sentence: str) -> None:
        """No longer hold the lease; an event only when it was held (this runs at every check)."""
        with self._lock:
            was, self._holding = self._holding, False
        if was:
            self._events.emit(kind, sentence)

    def _read_lease(self) -> bool:
        at = self._clock()
        try:
            view = self.store.read_lease()
        except FedError as exc:
            self._store_failed(exc.message)
            return False
        with self._lock:
            self._watch.observed(at, view)
            self._holder = view.agent or view.holder
        return True

    # ---- the decision and the fence (its own thread)
    def _decide(self, now: float) -> LeaseDecision:
        with self._lock:
            known = self.known_record()
            primary = known.primary_dc if known else None
            if primary == self.dc and self._last_primary not in (None, self.dc):
                # This DC has just been made the primary DC (switchover-dc, promote-dc): it had no lease to
                # hold until now, so its grace before fencing starts now, not when the agent started.
                self._watch = LeaseWatch(self.dc, ttl=self.ttl, started_at=now)
            self._last_primary = primary or self._last_primary
            facts = self._watch.facts(record_primary=primary, active=self._active(), fenced_at=self._fenced_at)
            decision = decide_lease(facts, ttl=self.ttl, margin=self.margin, now=now)
            self._fence_at = decision.fence_at
            return decision

    def enforce(self) -> str:
        """One decision, carried out; returns the sentence (logged when it changes)."""
        now = self._clock()
        with self._lock:
            if self._not_initialised:
                return self._say(("not-initialised",), NOT_INITIALISED)
            marker = self._marker
            if marker is not None and marker.ours(self.dc) and self._fenced_at is None:
                self._begin_fence(now, f"fence marker of {marker.by} since {marker.since}: fenced")
                self._marker_seen = True
            decision = self._decide(now)
        action = decision.action
        if action is LeaseAction.FENCE:
            with self._lock:
                self._begin_fence(now, f"primary-DC lease not renewed since {self._sighting_text()}: fenced",
                                  decision.sentence)
            log.warning("%s", decision.sentence)
            outcome = self._fence_step(decision.sentence)
        elif action is LeaseAction.UNFENCE:
            outcome = self._unfence()
        elif action is LeaseAction.WAIT_REJOIN:
            outcome = self._after_rejoin()
        elif self._fenced_at is not None and not self._fence_done and not self._unfenced_by_another():
            outcome = self._fence_step(decision.sentence)
        elif self._marker is not None and not self._marker.ours(self.dc):
            outcome = (f"fenced by a marker that is not ours (by {self._marker.by or 'unknown'}): never undone by "
                       "the agent")
        else:
            outcome = ""
        return self._say((action.value, outcome), f"{decision.sentence}{'; ' + outcome if outcome else ''}")

    def _sighting_text(self) -> str:
        sighting = self._watch.sighting
        at = sighting.at if sighting is not None else self._watch.started_at
        when = self._wall() - timedelta(seconds=self._clock() - at)
        return when.isoformat(timespec="milliseconds") + ("" if sighting is not None else " (agent start)")

    def _begin_fence(self, now: float, reason: str, decision: str | None = None) -> None:
        self._fenced_at, self._fenced_wall, self._fence_reason = now, self._wall(), reason
        self._fence_done, self._marker_seen, self._close_lease = False, self._marker is not None, True
        self._on_fence()
        self._events.emit("fence", f"fenced {self.dc}: {reason.removesuffix(': fenced')}", reason=reason,
                          decision=decision, epoch=self._record.epoch if self._record else None)

    def _clear_fence(self, reason: str) -> None:
        with self._lock:
            was = self._fenced_at is not None
            self._fenced_at = self._fenced_wall = self._fence_reason = None
            self._fence_done = self._marker_seen = False
            self._marker = None
        if was:
            self._events.emit("unfence", f"unfenced {self.dc}: {reason}", reason=reason)

    def _unfenced_by_another(self) -> bool:
        """The marker this agent saw is gone: another agent of the DC unfenced it, so do not fence again."""
        with self._lock:
            return self._marker_seen and self._marker_known and self._marker is None

    def _fence_step(self, reason: str) -> str:
        """Marker first, then the PATCH; idempotent, repeated every check until the leader is a standby leader."""
        with self._lock:
            marker = self._marker
            epoch = self._record.epoch if self._record else None
            since = (self._fenced_wall or self._wall()).isoformat(timespec="milliseconds")
        if marker is None:
            try:
                mine = FenceMarker(since=since, epoch=epoch, by=self.identity, reason=reason)
                self.markers.write(mine)
                with self._lock:
                    self._marker = self.markers.read() or mine
                    self._marker_seen = True
            except FedError as exc:
                # Consistency first: demote anyway (without the own DCS the PATCH fails too and is retried).
                log.warning("could not write the fence marker: %s", exc.message)
        try:
            done, outcome = demote(self.patroni)
        except FedError as exc:
            return f"could not demote yet ({exc.message}); retrying"
        with self._lock:
            self._fence_done = done
        return outcome

    def _unfence(self) -> str:
        if not self._active():
            with self._lock:
                gone = self._marker_known and self._marker is None
            if gone:
                self._clear_fence("the active agent of the DC unfenced it (its fence marker is gone)")
                return "the active agent unfenced the DC"
            return "waiting for the active agent to unfence the DC"
        with self._lock:
            record, marker = self.store_record(), self._marker
        if record is None or record.primary_dc != self.dc:
            return "not unfencing: the store's record does not confirm this DC as the primary DC"
        if not self.held():
            return "not unfencing: this agent does not hold the primary-DC lease"
        if marker is not None and not marker.ours(self.dc):
            return f"not unfencing: the fence marker is not ours (by {marker.by or 'unknown'})"
        try:
            ok, outcome = promote_back(self.patroni, marker is not None)
            if not ok:
                return outcome
            self.markers.remove()
        except FedError as exc:
            return f"could not unfence yet ({exc.message}); retrying"
        self._clear_fence("it holds the primary-DC lease again and the record names it the primary DC")
        log.warning("unfenced %s: it holds the primary-DC lease again and the record names it", self.dc)
        return f"{outcome}; fence marker removed"

    def _after_rejoin(self) -> str:
        try:
            if not rejoined(self.patroni):
                return "still fenced, waiting for rejoin-dc"
            self.markers.remove()
        except FedError as exc:
            return f"cannot check the rejoin yet ({exc.message})"
        known = self.known_record()
        self._clear_fence(f"rejoin-dc made it a standby of {known.primary_dc if known else 'the new primary DC'}; "
                          "fence marker removed")
        return "rejoined as a standby of the new primary DC: fence marker removed"

    def _say(self, key: tuple[str, ...], sentence: str) -> str:
        if key != self._said:
            log.info("primary-DC lease: %s", sentence)
            self._said = key
        self.last_sentence = sentence
        return sentence

    # ---- threads
    def _loop(self, name: str, step: Callable[[], object], wait: Callable[[], float]) -> None:
        while not self._stop.is_set():
            started = self._clock()
            try:
                step()
            except Exception:
                log.exception("unexpected error in the lease guard's %s (please report it as a BUG)", name)
            if name == "enforce":
                self._changed.wait(max(0.0, wait()))
                self._changed.clear()
            else:
                self._stop.wait(max(0.0, self.store_wait() - (self._clock() - started)))

    def _enforce_wait(self) -> float:
        with self._lock:
            fence_at = self._fence_at if self._fenced_at is None else None
        left = self.interval if fence_at is None else min(self.interval, fence_at - self._clock() + 0.001)
        return max(0.0, left)

    def start(self) -> None:
        # "Since start" counts from here, not from construction: the agent may take a while to get from
        # building the guard to running it, and a lease it never had the chance to see is no reason to fence.
        with self._lock:
            self._watch = LeaseWatch(self.dc, ttl=self.ttl, started_at=self._clock())
        for name, step in (("store", self.poll_store), ("enforce", self.enforce)):
            thread = threading.Thread(target=self._loop, args=(name, step, self._enforce_wait),
                                      name=f"lease-guard-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads. The lease is neither released nor closed: another agent of the DC takes it
        over (closing a ZooKeeper session would delete it, and the DC would fence)."""
        self._stop.set()
        self._changed.set()
        for thread in self._threads:
            thread.join(timeout)
