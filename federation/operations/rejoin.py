"""Bring a returned DC back as a standby of the current primary DC, reporting the WAL it wrote past the fork.

The DC must already be fenced by the promotion gate (no member can promote while a peer holds a
higher epoch naming another primary). We write its standby_cluster into its own DCS (through any
member's REST API, or straight into the DCS when no member answers), then Patroni rewinds it
(use_pg_rewind) and it streams. When a member cannot follow (rewind impossible), replicas are rebuilt
with Patroni's reinitialize, which uses create_replica_methods (pgBackRest delta restore first).

The DC first follows the primary DC itself, whatever its declared upstream: pg_rewind rewinds only from a
source that is not in recovery. Once it streams, the `reshape` step brings the declared cascade back
(federation.cascade): the record's upstreams become the declared tree re-rooted at the primary DC, with
only the DCs still not back counted as gone, and every live DC is given that role, so the rejoined DC and
any DC that followed over a temporary link move to their declared upstream, and the federation slots move
with them.

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
from federation.cascade import Upstreams, describe, reroot, temporary_links, tree_parents
from federation.errors import BadInput, FedError, OperationFailed, OperationRefused
from federation.operations.common import DCLook, lsn_text, poll, require_leader
from federation.operations.journal import LiveRecord, RecordJournal, RecordPort, new_operation
from federation.operations.plan import Step, run_plan
from federation.operations.plan import describe as plan_lines
from federation.operations.rejoin_parts import divergence
from federation.operations.report import OperationReport
from federation.operations.world import LiveWorld, World, every_member_streams
from federation.progress import Progress
from federation.state import FederationState, HistoryEntry, PendingOperation
from federation.topology import Datacenter, Topology

KIND = "rejoin"
STREAM_TIMEOUT = 120.0
REINIT_GRACE = 40.0
NOT_PENDING = "not pending"  # the outcome of an only_pending rejoin that found none pending


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

    def upstreams(self, upstreams: Upstreams) -> bool:
        """Commit the record's new upstreams, and nothing else: the operation field stays as the record has
        it, so that a rejoin the other runner (this DC's agent) finished meanwhile is never made pending
        again (the agent would carry it through once more, and again). A commit lost to that runner is
        retried on top of what it wrote; one it finished leaves the reshape to it."""
        def commit() -> None:
            if self.inner.record.upstreams == upstreams:
                return
            self.inner.commit(self.inner.record.model_copy(update={"upstreams": upstreams}))

        self._retrying(commit, finishing=False)
        return True

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

    def upstreams(self, upstreams: Upstreams) -> bool:
        """Another operation holds the record: changing the upstreams under it would break its next commit."""
        return False


@dataclass
class Rejoin:
    world: World
    dc: Datacenter
    record: FederationState
    upstream: str  # the primary DC: the rewind source
    progress: Progress
    inputs: dict[str, Any] = field(default_factory=dict)
    journal: _SharedJournal | _Unjournaled = field(default_factory=_Unjournaled)


def rejoin_steps(run: Rejoin) -> list[Step[Rejoin]]:
    dc, upstream = run.dc.name, run.upstream
    return [
        Step("fork", f"find where {dc}'s timeline forked from {upstream}'s", _find_fork,
             done=lambda r: "fork" in r.inputs, changes=False),
        Step("diverged", f"report the WAL {dc} wrote past the fork", _measure,
             done=lambda r: "diverged_wal" in r.inputs, changes=False),
        Step("point", f"write {dc}'s standby_cluster (upstream {upstream}, the primary DC: pg_rewind needs a source "
                      "not in recovery) into its own DCS", _point, done=_reshaped),
        Step("stream", f"wait until every {dc} member streams (Patroni rewinds; replicas that cannot are "
                       "reinitialised)", _wait_streaming, done=_reshaped),
        Step("reshape", f"restore the declared cascade: point {dc} and any DC on a temporary link at its declared "
                        "upstream, moving the federation slots with them", _reshape),
        Step("settle", "wait until every DC the reshape moved streams again", _settle, changes=False),
    ]


def rejoin_dc(topo: Topology, dc_name: str, progress: Progress, *, dry_run: bool = False,
              world: World | None = None, record: RecordPort | None = None,
              only_pending: bool = False) -> OperationReport:
    """`only_pending`: carry through a rejoin of the DC that the record holds as pending, and do nothing when it
    holds none (any more): the agent's way to finish a rejoin that someone else started, which must never
    start a new one of its own."""
    world = world or LiveWorld(topo)
    try:
        return _rejoin(topo, topo.dc(dc_name), progress, dry_run, world, record or LiveRecord(topo), only_pending)
    finally:
        world.close()


def _rejoin(topo: Topology, dc: Datacenter, progress: Progress, dry_run: bool, world: World,
            record: RecordPort, only_pending: bool = False) -> OperationReport:
    st = record.read()
    if dc.name == st.primary_dc:
        raise BadInput(f"{dc.name} is the primary DC (epoch {st.epoch}); only a replaced DC can rejoin")
    other = st.operation
    if other is not None and other.kind != KIND and dc.name in (other.target, other.source) and \
            not (other.kind == "promote" and other.source == dc.name):
        raise OperationRefused(f"a {other.kind} {other.source} -> {other.target} is pending (step {other.step}) "
                               f"and involves {dc.name}", hint="finish or abort it first (`fedctl operation show`)")
    pending = other if other is not None and other.kind == KIND and other.target == dc.name else None
    if only_pending and pending is None:
        progress.say(f"   no rejoin of {dc.name} is pending any more (it was finished meanwhile): nothing to do")
        return OperationReport("rejoin-dc", dc.name, st.primary_dc, outcome=NOT_PENDING, epoch=st.epoch)
    upstream = st.primary_dc
    run = Rejoin(world, dc, st, upstream, progress, inputs=dict(pending.inputs) if pending else {})
    steps = rejoin_steps(run)
    journal: _SharedJournal | _Unjournaled
    if other is None or pending is not None:
        op = pending or new_operation(KIND, upstream, dc.name, [s.name for s in steps])
        journal = _SharedJournal(record, st, op, dc.name)
    else:
        journal = _Unjournaled()
        progress.say(f"   note: {other.kind} of {other.target} is pending: this rejoin leaves it the record")
    run.journal = journal
    report = OperationReport("rejoin-dc", dc.name, upstream, epoch=st.epoch, dry_run=dry_run,
                             plan=plan_lines(steps))
    report.with_upstreams(topo, run.inputs.get("reshaped") or reshaped_upstreams(run))
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
    if "reshaped" in run.inputs:
        report.with_upstreams(topo, run.inputs["reshaped"])
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
    upstreams = {**run.record.upstreams, run.dc.name: run.upstream}
    # The record says so first: the agents keep every DC's role as the record has it, and the primary DC's
    # agent would otherwise take the DC's slot away again (the record still names a gone upstream).
    run.journal.upstreams(upstreams)
    # The primary DC must hold the DC's permanent slot before the DC streams from it (the record may name
    # another upstream, one still gone); reshape moves the slot on.
    primary = run.world.topo.dc(run.upstream)
    leader = require_leader(run.world.look(primary), "the current primary DC must answer")
    declared = run.world.apply_role(primary, leader, upstreams)
    return _point_dc(run, upstreams) + (f"; {run.dc.slot_name} declared on {primary.name}" if declared else "")


def _point_dc(run: Rejoin, upstreams: Upstreams) -> str:
    look = run.world.look(run.dc)
    member = look.leader or next((m for m in run.dc.members if look.statuses.get(m.name) is not None), None)
    if member is not None:
        try:
            if run.world.apply_role(run.dc, member, upstreams):
                return f"PATCH /config through {member.name}"
            return "already pointing there"
        except FedError:
            pass
    return run.world.write_config_in_dcs(run.dc, upstreams)


def _reshaped(run: Rejoin) -> bool:
    """The reshape step has chosen the upstreams: pointing the DC at the primary DC again would undo it."""
    return "reshaped" in run.inputs


def _back(look: DCLook) -> bool:
    """A DC that takes part: its leader is the primary, or a standby leader that streams (a DC still down, or
    back but fenced and not rejoined yet, does not)."""
    status = look.leader_status
    return look.is_primary or (status is not None and status.replication_state == "streaming")


def reshaped_upstreams(run: Rejoin) -> Upstreams:
    """The declared cascade re-rooted at the primary DC; DCs not back yet are gone (their live downstreams keep
    a temporary link until they are rejoined in turn). The rejoined DC counts as back: it streams by now."""
    topo = run.world.topo
    looks = run.world.look_all()
    gone = frozenset(name for name, look in looks.items()
                     if name not in (run.dc.name, run.record.primary_dc) and not _back(look))
    return reroot(topo, run.record.primary_dc, gone)


def _reshape(run: Rejoin) -> str:
    """Re-entrant: the upstreams are chosen once and kept in the operation's inputs; every DC is then given its
    role by a compare-first apply_role, so a rerun re-applies only what a crash left undone."""
    topo = run.world.topo
    wanted: Upstreams = run.inputs.get("reshaped") or reshaped_upstreams(run)
    run.inputs["reshaped"] = wanted
    if not run.journal.upstreams(wanted):
        return "left as it is: another operation holds the record; rerun rejoin-dc once it has ended"
    # Root first, so each DC's new upstream already holds its permanent slot when the DC is pointed at it. The
    # upstream that lost a downstream gets a `slots` PATCH without that slot: Patroni drops a permanent slot
    # that left its config on its own (it drops every slot it does not know, fed_* included), but only once no
    # walsender uses it, so the slot goes as soon as the moved DC streams from its new upstream.
    parents = tree_parents(topo, run.record.primary_dc)
    order = sorted(topo.datacenters, key=lambda dc: _depth(parents, dc.name))
    moved, unreachable = [], []
    for dc in order:
        leader = run.world.look(dc).leader
        if leader is None:
            unreachable.append(dc.name)
        elif run.world.apply_role(dc, leader, wanted):
            moved.append(dc.name)
    run.inputs.setdefault("reshape_moved", [])
    run.inputs["reshape_moved"] = sorted({*run.inputs["reshape_moved"], *moved})
    temporary = temporary_links(topo, wanted)
    shape = "; ".join(describe(wanted))
    if not moved:
        why = (f"{run.dc.name}'s declared upstream is the primary DC {run.record.primary_dc}"
               if wanted.get(run.dc.name) == run.record.primary_dc else "every DC already has its role")
        text = f"nothing to move: {why} ({shape})"
    else:
        text = f"re-pointed or slots moved: {', '.join(moved)} ({shape})"
    if temporary:
        text += "; still temporary until their DC is rejoined: " + ", ".join(f"{a} ← {b}" for a, b in temporary)
    if unreachable:
        text += f"; not reachable (their agents apply the record): {', '.join(unreachable)}"
    return text


def _depth(parents: Upstreams, dc: str) -> int:
    depth, here = 0, parents[dc]
    while here is not None:
        depth, here = depth + 1, parents[here]
    return depth


def _settle(run: Rejoin) -> str:
    moved = [run.world.topo.dc(name) for name in run.inputs.get("reshape_moved", [])
             if run.inputs["reshaped"].get(name) is not None]
    for dc in moved:
        def streams(d: Datacenter = dc) -> bool | None:
            return True if every_member_streams(run.world, d) else None

        poll(f"{dc.name} to stream from {run.inputs['reshaped'][dc.name]}", streams, STREAM_TIMEOUT, 0.5)
    return f"streaming: {', '.join(dc.name for dc in moved) or 'nothing was moved'}"


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
