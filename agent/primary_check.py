"""`GET /primary`: 200 only on the one member that may take writes, for HAProxy's read-write backend.

A member passes when Patroni says it is the primary of its own cluster AND the newest federation
record this agent has seen names its DC as the primary DC. The second half is the fence: a DC that a
newer epoch replaced may still hold a Patroni leader that believes it is primary (its DC was cut off
during promote-dc); it must never receive writes, whatever its Patroni says.

A primary that Patroni is stopping (a demotion, a restart) takes no new connections any more, yet Patroni
still reports its role as primary until the postmaster has exited: that member answers "draining" (404,
which HAProxy's `http-check disable-on-404` turns into NOLB at its very next check, where a 503 needs
`fall` checks), so HAProxy has stopped sending it connections before the new primary can pass.

The record is refreshed by a background thread (every DC's copy, highest epoch wins, never going
backwards), so a check costs one local REST call and never waits on a remote DCS. With a federation
store, the lease guard's fence comes first: a DC whose primary-DC lease lapsed says no at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.observe import KnownRecord, refresh_record
from agent.settings import AgentSettings
from federation import patroni_api
from federation.errors import FedError
from federation.state import FederationState

log = logging.getLogger("agent.primary")
REFRESH_SECONDS = 0.5
DCS_TIMEOUT = 1.0
PATRONI_TIMEOUT = 0.4
# Patroni's PostgreSQL states in which a primary is going away: it refuses new connections or soon will.
# "unknown" (a query failed while running) is not one: a slow primary is not drained on one blip.
GOING_AWAY_STATES = frozenset({"stopping", "stopped", "stop failed", "restarting", "restart failed", "crashed"})


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    epoch: int | None = None
    draining: bool = False  # a primary that Patroni is stopping: no new connections, at once


def primary_verdict(dc: str, member: str, role: str | None, record: FederationState | None,
                    state: str | None = None) -> Verdict:
    """Pure: may `member` of `dc`, whose Patroni reports `role` and PostgreSQL `state`, take writes under
    `record`?"""
    if record is None:
        return Verdict(False, "no federation record read yet")
    if role not in patroni_api.PRIMARY_ROLES:
        return Verdict(False, f"{member} is not Patroni's primary (role {role or 'unknown'})", record.epoch)
    if record.primary_dc != dc:
        return Verdict(False, f"{member} is Patroni's primary but epoch {record.epoch} names {record.primary_dc} "
                       f"as primary DC, not {dc}: fenced", record.epoch)
    if state in GOING_AWAY_STATES:
        return Verdict(False, f"{member} is Patroni's primary but its PostgreSQL is {state}: draining",
                       record.epoch, draining=True)
    return Verdict(True, f"{member} is the primary of {dc}, the primary DC of epoch {record.epoch}", record.epoch)


class PrimaryCheck:
    """The /primary answer of one agent; the record watcher starts on the first check."""

    def __init__(self, settings: AgentSettings, *, refresh: float = REFRESH_SECONDS,
                 fenced: Callable[[], str | None] | None = None) -> None:
        self.settings = settings
        self.fenced = fenced  # the lease guard's fence: why the DC takes no writes, None when it may
        self.refresh = refresh
        self._known: KnownRecord | None = None
        self._lock = threading.Lock()
        self._started = False
        self._stop = threading.Event()

    def record(self) -> FederationState | None:
        with self._lock:
            return self._known.state if self._known else None

    def read_record(self) -> None:
        with self._lock:
            known = self._known
        known = refresh_record(self.settings.topo, known, DCS_TIMEOUT)
        with self._lock:
            self._known = known

    def _watch(self) -> None:
        while not self._stop.wait(self.refresh):
            try:
                self.read_record()
            except Exception:
                log.exception("reading the federation record for /primary failed (please report it as a BUG)")

    def _ensure_started(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        self.read_record()
        threading.Thread(target=self._watch, name="primary-record", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def answer(self) -> Verdict:
        self._ensure_started()
        fenced = self.fenced() if self.fenced is not None else None
        if fenced is not None:
            record = self.record()
            return Verdict(False, fenced, record.epoch if record else None)
        member = self.settings.member
        try:
            patroni = patroni_api.get_patroni(member, timeout=PATRONI_TIMEOUT)
        except FedError as exc:
            return Verdict(False, f"Patroni of {member.name} does not answer: {exc.message}")
        role, state = patroni.get("role"), patroni.get("state")
        return primary_verdict(self.settings.dc.name, member.name, role if isinstance(role, str) else None,
                               self.record(), state if isinstance(state, str) else None)
