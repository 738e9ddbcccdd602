"""The agent's hands: carry out one decision, keep the own DC's record copy current, store LSN samples.

Every change goes through the library functions the operations use (apply_role, rejoin_dc,
store_sample), so the agent and an operator at the CLI do exactly the same thing.
"""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from datetime import UTC, datetime

from pydantic import ValidationError

from agent.decide import Action, Decision, Observation
from federation.dcs import connect
from federation.errors import OperationFailed
from federation.lsn import parse_lsn
from federation.operations.common import apply_role, sql_row
from federation.operations.rejoin import NOT_PENDING, rejoin_dc
from federation.progress import Progress
from federation.samples import LsnSample, store_sample
from federation.state import FederationState, state_key
from federation.topology import Datacenter, Topology

log = logging.getLogger("agent.act")
ALREADY_AS_WANTED = "already as wanted"  # carry_out's outcome when a re-point found nothing to change
NOTHING_PENDING = "no rejoin pending any more: it was finished meanwhile"


class _LogLines(io.StringIO):
    """A text stream that logs each complete line: rejoin-dc's step-by-step progress lands in the agent log."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip():
                log.info("%s: %s", self._prefix, line.strip())
        return len(text)


def carry_out(topo: Topology, dc: Datacenter, obs: Observation, decision: Decision) -> str | None:
    """Do what `decision` says. Returns a short outcome for the log (None for no action)."""
    if decision.action is Action.REPOINT:
        own = obs.own
        if own is None or own.leader is None or obs.record is None:
            raise OperationFailed("re-point decided without a leader or a record (please report this as a bug)")
        result = apply_role(topo, dc, own.leader, obs.record.upstreams)
        return f"PATCH /config on {own.leader.name}" if result else ALREADY_AS_WANTED
    if decision.action is Action.FENCE:
        progress = Progress(out=_LogLines(f"rejoin-dc {dc.name}"))
        report = rejoin_dc(topo, dc.name, progress, only_pending=decision.resumes)
        if report.outcome == NOT_PENDING:
            return NOTHING_PENDING
        diverged = report.facts.get("diverged_wal", {})
        lost = {name: d.get("bytes") for name, d in diverged.items() if d.get("bytes")}
        return (f"rejoin-dc {report.outcome} in {sum(s.seconds for s in progress.steps):.1f} s; fork "
                f"{report.facts.get('fork')}; diverged WAL discarded: {lost or 'none'}")
    return None


def write_own_copy(topo: Topology, dc: Datacenter, record: FederationState) -> bool:
    """Compare-and-set a newer record into the own DC's copy. False when that copy is already as new."""
    key = state_key(topo, dc)
    with connect(dc) as dcs:
        found = dcs.get(key)
        if found is None:
            return dcs.create(key, record.model_dump_json())
        try:
            held: FederationState | None = FederationState.model_validate_json(found.value)
        except ValidationError:
            held = None  # an unreadable copy is replaced by the newer record
        if held is not None and held.epoch >= record.epoch:
            return False
        return dcs.replace(key, record.model_dump_json(), found.version)


def store(topo: Topology, dc: Datacenter, sample: LsnSample) -> None:
    fresh = fresh_position(topo, sample)
    if fresh is not None:
        store_sample(topo, dc, fresh)


def fresh_position(topo: Topology, sample: LsnSample) -> LsnSample | None:
    """The sampled member's WAL position asked of PostgreSQL itself, or None when it does not answer.

    Patroni's REST API reports the position of its last HA cycle: stored as is, two samples a cycle apart
    could show no progress, a WAL rate of zero, and a loss estimate of zero for a primary that just died.
    """
    try:
        member = topo.dc(sample.dc).member(sample.member)
        row = sql_row(topo, member, "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                                    "ELSE pg_current_wal_lsn() END::text")
    except Exception:  # no fresh figure: keep the last good sample (and its WAL rate) as it is
        return None
    if not row or not row[0]:
        return None
    return replace(sample, lsn=parse_lsn(row[0]), time=datetime.now(UTC).isoformat(timespec="milliseconds"))
