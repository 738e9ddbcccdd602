"""Bring a returned DC back as a standby of the current primary DC, reporting the WAL it wrote past the fork.

The DC must already be fenced by the promotion gate (no member can promote while a peer holds a
higher epoch naming another primary). We write its standby_cluster into its own DCS (through any
member's REST API, or straight into the DCS when no member answers), then Patroni rewinds it
(use_pg_rewind) and it streams. When a member cannot follow (rewind impossible), replicas are rebuilt
with Patroni's reinitialize, which uses create_replica_methods (pgBackRest delta restore first).

A step plan like the other operations; every step is idempotent, and the record keeps it pending (with
the fork and the diverged WAL found) while no other operation is. The agent's fencing of a replaced DC
is this same plan: it must never wait for another operation to end, so when one is pending the rejoin
runs without taking the record's operation slot, which that operation needs to resume. The DC's agent
carries through any pending rejoin of its DC, so an operator's rejoin and the agent's can run at once:
the steps converge, and a compare-and-set lost to the other runner of the same rejoin is joined, not
reported as a race (`_SharedJournal`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from federation import state
from federation.errors import BadInput, FedError, OperationFailed, OperationRefused
from federation.operations.common import lsn_text, poll, require_leader
from federation.operations.journal import LiveRecord, RecordJournal, RecordPort, new_operation
from federation.operations.plan import Step, describe, run_plan
from federation.operations.rejoin_parts import divergence
from federation.operations.report import OperationReport
from federation.operations.world import LiveWorld, World
from federation.progress import Progress
from federation.state import FederationState, HistoryEntry, PendingOperation
from federation.topology import Datacenter, Topology

KIND = "rejoin"
STREAM_TIMEOUT = 120.0
REINIT_GRACE = 40.0


JOIN_ATTEMPTS = 5


class _SharedJournal:
    """The journal of a rejoin that another runner of the same rejoin (the DC's agent, or an operator) may
    carry out at the same time. When a commit loses to that runner, the record is read again: a rejoin of
    this DC still pending at the same epoch is joined (its id, our step); one that runner already finished
    leaves our remaining steps to run unjournaled (they find the DC pointed and streaming) and adds no second
    history entry. Anything else that moved the record is the race it always was."""

    def __init__(self, record: RecordPort, base: FederationState, op: PendingOperation, dc: str) -> None:
        self.inner = RecordJournal(record, base, op)
        self.dc = dc
        self.epoch = base.epoch
        self.since = op.started
        self.finished_by_other = False
        # The other runner's fork and diverged WAL: measured before it pointed the DC, so before any rewind
        # (ours may have been measured after it).
        self.measured_by_other: dict[str, Any] = {}

    def at(self, step: str, inputs: dict[str, Any]) -> None:
        self._retrying(lambda: self.inner.at(step, inputs), finishing=False)

    def finish(self, entry: HistoryEntry) -> None:
        self._retrying(lambda: self.inner.finish(entry, attempts=1), finishing=True)

    def _retrying(self, commit: Callable[[], object], *, finishing: bool) -> None:
        for _ in range(JOIN_ATTEMPTS):
            if self.finished_by_other:
                return
            try:
                commit()
                return
            except OperationRefused:
                fresh = self.inner.port.read()
                if self._join(fresh):
                    continue
                if not (finishing and fresh.epoch == self.epoch):
                    raise
                self.inner.record = fresh  # another writer's history entry: ours goes on top of it
        raise OperationRefused(f"the record kept moving under this rejoin of {self.dc} ({JOIN_ATTEMPTS} commits "
                               "lost in a row); nothing more was changed",
                               hint=f"check `fedctl status`, then rerun `fedctl rejoin-dc {self.dc}`")

    def _join(self, fresh: FederationState) -> bool:
        if fresh.epoch != self.epoch:
            return False
        op = fresh.operation
        if op is not None and op.kind == KIND and op.target == self.dc:
            self._measured(op.inputs)
            self.inner.record, self.inner.op = fresh, op
            return True
        done = [e for e in fresh.history if e.operation == "rejoin-dc" and e.target == self.dc
                and e.epoch == self.epoch and e.outcome == "succeeded" and e.time >= self.since]
        if op is None and done:
            self._measured(done[-1].details)
            self.inner.record = fresh
            self.finished_by_other = True
            return True
        return False

    def _measured(self, found: dict[str, Any]) -> None:
        if "fork" in found and "diverged_wal" in found:
            self.measured_by_other = {"fork": found["fork"], "diverged_wal": found["diverged_wal"]}


class _Unjournaled:
    """The journal of a rejoin that runs while another operation holds the record's operation slot."""

    def at(self, step: str, inputs: dict[str, Any]) -> None:
        return None


@dataclass
class Rejoin:
    world: World
    dc: Datacenter
    record: FederationState
    upstream: str
    progress: Progress
    inputs: dict[str, Any] = field(default_factory=dict)


def rejoin_steps(run: Rejoin) -> list[Step[Rejoin]]:
    dc, upstream = run.dc.name, run.upstream
    return [
        Step("fork", f"find where {dc}'s timeline forked from {upstream}'s", _find_fork,
             done=lambda r: "fork" in r.inputs, changes=False),
        Step("diverged", f"report the WAL {dc} wrote past the fork", _measure,
             done=lambda r: "diverged_wal" in r.inputs, changes=False),
        Step("point", f"write {dc}'s standby_cluster (upstream {upstream}) into its own DCS", _point),
        Step("stream", f"wait until every {dc} member streams (Patroni rewinds; replicas that cannot are "
                       "reinitialised)", _wait_streaming),
    ]


def rejoin_dc(topo: Topology, dc_name: str, progress: Progress, *, dry_run: bool = False,
              world: World | None = None, record: RecordPort | None = None) -> OperationReport:
    world = world or LiveWorld(topo)
    try:
        return _rejoin(topo, topo.dc(dc_name), progress, dry_run, world, record or LiveRecord(topo))
    finally:
        world.close()


def _rejoin(topo: Topology, dc: Datacenter, progress: Progress, dry_run: bool, world: World,
            record: RecordPort) -> OperationReport:
    st = record.read()
    if dc.name == st.primary_dc:
        raise BadInput(f"{dc.name} is the primary DC (epoch {st.epoch}); only a replaced DC can rejoin")
    other = st.operation
    if other is not None and other.kind != KIND and dc.name in (other.target, other.source) and \
            not (other.kind == "promote" and other.source == dc.name):
        raise OperationRefused(f"a {other.kind} {other.source} -> {other.target} is pending (step {other.step}) "
                               f"and involves {dc.name}", hint="finish or abort it first (`fedctl operation show`)")
    pending = other if other is not None and other.kind == KIND and other.target == dc.name else None
    upstream = st.upstream_of(dc.name) or st.primary_dc
    run = Rejoin(world, dc, st, upstream, progress, inputs=dict(pending.inputs) if pending else {})
    steps = rejoin_steps(run)
    journal: _SharedJournal | _Unjournaled
    if other is None or pending is not None:
        op = pending or new_operation(KIND, upstream, dc.name, [s.name for s in steps])
        journal = _SharedJournal(record, st, op, dc.name)
    else:
        journal = _Unjournaled()
        progress.say(f"   note: {other.kind} of {other.target} is pending: this rejoin leaves it the record")
    report = OperationReport("rejoin-dc", dc.name, upstream, epoch=st.epoch, dry_run=dry_run, plan=describe(steps))
    if pending is not None:
        progress.say(f"Resuming the rejoin of {dc.name} left at step '{pending.step}'")
    if dry_run:
        for step in steps[:2]:
            with progress.step(step.says) as rec:
                rec.detail = step.act(run)
        report.facts.update(run.inputs)
        report.outcome = "planned"
        return report
    run_plan(KIND, steps, run, journal, progress)
    if isinstance(journal, _SharedJournal) and journal.measured_by_other:
        run.inputs.update(journal.measured_by_other)
        progress.say("   joined the rejoin another runner (this DC's agent, or an operator) carried out at the "
                     "same time: the fork and diverged WAL are the ones it measured first")
    report.facts.update(run.inputs)
    report.outcome = "succeeded"
    entry = HistoryEntry(epoch=st.epoch, time=state.utc_now(), operation="rejoin-dc", source=upstream,
                         target=dc.name, outcome="succeeded",
                         seconds=round(sum(s.seconds for s in progress.steps), 3),
                         details={"fork": run.inputs["fork"], "diverged_wal": run.inputs["diverged_wal"]})
    if isinstance(journal, _SharedJournal):
        journal.finish(entry)
    else:
        state.append_history(topo, entry)
    return report


def _find_fork(run: Rejoin) -> str:
    primary = run.world.topo.dc(run.record.primary_dc)
    leader = require_leader(run.world.look(primary), "the current primary DC must answer")
    timeline = run.world.timeline(leader)
    fork = run.world.switch_point(leader, timeline)
    if fork is None:
        raise OperationFailed(f"{leader.name} has no history file for timeline {timeline}")
    run.inputs["fork"] = {"timeline": timeline - 1, "lsn": lsn_text(fork)}
    return f"{primary.name} timeline {timeline} began at {lsn_text(fork)}"


def _measure(run: Rejoin) -> str:
    from federation.lsn import parse_lsn

    fork = run.inputs["fork"]
    diverged = {m.name: divergence(parse_lsn(fork["lsn"]), int(fork["timeline"]), *run.world.position(m))
                for m in run.dc.members}
    run.inputs["diverged_wal"] = diverged
    worst = max((d["bytes"] or 0 for d in diverged.values()), default=0)
    detail = (f"{worst} bytes written past {fork['lsn']} will be discarded" if worst
              else "nothing written past the fork (or positions unknown)")
    run.progress.say(f"   {detail}")
    return detail


def _point(run: Rejoin) -> str:
    look = run.world.look(run.dc)
    member = look.leader or next((m for m in run.dc.members if look.statuses.get(m.name) is not None), None)
    if member is not None:
        try:
            if run.world.apply_role(run.dc, member, run.record.upstreams):
                return f"PATCH /config through {member.name}"
            return "already pointing there"
        except FedError:
            pass
    return run.world.write_config_in_dcs(run.dc, run.record.upstreams)


def _wait_streaming(run: Rejoin) -> str:
    """Members are 'stopped' while Patroni rewinds them; only one still not following after a grace
    period, with a standby leader in place to clone from, is reinitialised."""
    reinitialised: set[str] = set()
    grace_until = time.monotonic() + REINIT_GRACE

    def probe() -> bool | None:
        look = run.world.look(run.dc, timeout=1.0)
        pending = []
        for member in run.dc.members:
            status = look.statuses.get(member.name)
            if status is not None and status.replication_state == "streaming":
                continue
            pending.append(member.name)
            if (status is not None and status.role == "replica" and look.leader is not None
                    and time.monotonic() > grace_until and member.name not in reinitialised):
                run.progress.say(f"   {member.name} cannot follow ({status.state}): reinitialising it")
                try:
                    run.world.reinitialize(member)
                    reinitialised.add(member.name)
                except FedError as exc:
                    run.progress.say(f"   reinitialise of {member.name} failed: {exc}")
        return True if not pending else None

    poll(f"every member of {run.dc.name} to stream", probe, STREAM_TIMEOUT, 0.5)
    return "every member streams"
