"""Disaster promotion of a standby DC, decided by a human: consistency over availability.

Refuses while the current primary DC still answers (that is a switchover) or, with a federation store,
while it holds its lease. Before acting it estimates the data loss from the newest sample of the old
primary's LSN against what the target received, runs the old primary's fence command, waits until the
old DC has certainly fenced itself, raises the epoch (the commit point that makes two concurrent
promotions impossible), promotes the target and re-points the other standby DCs.

A step plan (federation.operations.plan): the record keeps the operation until the end, so a crash
after the epoch raise leaves a record that names the target and a pending promotion that
`promote-dc <target>` resumes (before this, such a crash left a standby DC named primary and no
command that would promote it). Before the epoch raise `fedctl operation abort` forgets it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from federation import state
from federation.cascade import reroot
from federation.errors import BadInput, OperationFailed, OperationRefused
from federation.lease_policy import PromoteGate, PromoteVerdict
from federation.operations.common import DCLook, poll
from federation.operations.fence_command import FENCE_TIMEOUT, NO_FENCE_COMMAND, run_fence
from federation.operations.gate_precheck import check_target_gates
from federation.operations.journal import LiveRecord, RecordJournal, RecordPort, new_operation
from federation.operations.lease_fence import LeaseFence, open_lease_reader
from federation.operations.loss_estimate import LossEstimate, estimate_loss, loss_from_sample
from federation.operations.pending import refuse_other_operation
from federation.operations.plan import Step, describe, run_plan
from federation.operations.report import OperationReport
from federation.operations.world import LiveWorld, World
from federation.progress import Progress
from federation.state import FederationState, HistoryEntry
from federation.store import NoQuorum
from federation.topology import Datacenter, Member, Topology

__all__ = ["FENCE_TIMEOUT", "LossEstimate", "estimate_loss", "loss_from_sample", "promote_dc",
           "promote_steps", "run_fence"]

KIND = "promote"
PROMOTE_TIMEOUT = 60.0
UNFENCED_CHECK_TIMEOUT = 0.5


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


@dataclass
class Promotion:
    """One run of a promote-dc plan: what its steps share. `inputs` is what the record keeps."""

    world: World
    journal: RecordJournal
    old: str
    target: Datacenter
    leader: Member
    upstreams: dict[str, str | None]
    progress: Progress
    lease: LeaseFence | None = None
    gate: PromoteGate | None = None
    estimate: LossEstimate | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def committed(self) -> bool:
        return self.journal.record.primary_dc == self.target.name

    @property
    def revokes(self) -> bool:
        """--force with a live lease: the epoch commit revokes it, and the wait for the fence comes after."""
        return bool(self.inputs.get("revoke"))

    def target_writable(self) -> bool:
        try:
            return self.world.writable(self.leader)
        except Exception:
            return False


def promote_steps(run: Promotion) -> list[Step[Promotion]]:
    old, target = run.old, run.target.name
    fence = Step("fence", f"run {old}'s fence command", _fence, done=lambda r: "fenced_by_command" in r.inputs)
    epoch = Step("epoch", f"raise the federation epoch (primary DC {target})", _raise_epoch,
                 done=lambda r: r.committed, commits_itself=True)
    promote = Step("promote", f"promote {target} and wait until it accepts writes", _promote,
                   done=lambda r: r.target_writable())
    repoint = Step("repoint", "point the other standby DCs at their new upstream", _repoint)
    if run.lease is None:
        return [fence, epoch, promote, repoint]
    wait = Step("fenced", f"wait until {old} has certainly fenced itself", _wait_fenced, done=_fence_point_passed,
                changes=False)
    return [fence, epoch, wait, promote, repoint] if run.revokes else [fence, wait, epoch, promote, repoint]


def promote_dc(topo: Topology, target_name: str, progress: Progress, *, force: bool = False,
               dry_run: bool = False, confirm: Any = None, lease: LeaseFence | None = None,
               world: World | None = None, record: RecordPort | None = None) -> OperationReport:
    """`confirm(estimate) -> bool` is asked after the estimate is printed (the CLI asks the user).

    With a federation store the old primary DC's lease decides instead of whether it answers from here
    (`lease` is built from the topology unless a test passes one)."""
    target = topo.dc(target_name)
    world = world or LiveWorld(topo)
    try:
        return _promote_dc(topo, target, progress, force, dry_run, confirm, lease, world,
                           record or LiveRecord(topo))
    finally:
        world.close()


def _promote_dc(topo: Topology, target: Datacenter, progress: Progress, force: bool, dry_run: bool, confirm: Any,
                lease: LeaseFence | None, world: World, record: RecordPort) -> OperationReport:
    try:
        st = record.read()
    except NoQuorum as exc:
        raise OperationRefused(exc.message, hint=exc.hint) from None
    pending = st.operation if st.operation is not None and st.operation.kind == KIND else None
    if not force:
        refuse_other_operation(st, KIND, superseded_by_force=True)
    if pending is not None and pending.target != target.name:
        raise OperationRefused(f"a promotion of {pending.target} is pending (step {pending.step})",
                               hint=f"finish it with `fedctl promote-dc {pending.target}`, or `fedctl operation "
                                    "abort` it first")
    old = pending.source if pending is not None and pending.source else st.primary_dc
    resuming_committed = pending is not None and st.primary_dc == target.name
    if target.name == st.primary_dc and not resuming_committed:
        raise BadInput(f"{target.name} is already the primary DC (epoch {st.epoch})")
    store = topo.federation_store
    if store is not None and lease is None:
        lease = LeaseFence(open_lease_reader(topo), old, ttl=store.lease_ttl, force=force)
    op = pending or new_operation(KIND, old, target.name, [])
    if st.operation is not None and pending is None:
        progress.warn(f"a {st.operation.kind} of {st.operation.target} was left at step '{st.operation.step}'; "
                      "--force: this promotion supersedes it")
    if pending is not None:
        progress.say(f"Resuming the promotion of {target.name} left at step '{pending.step}'")
    with progress.step("pre-checks") as rec, _explain_race(record, st):
        gate = lease.check() if lease is not None and not resuming_committed else None
        looks = world.look_all()
        leader = _pre_checks(looks, st, old, target, force=force, lease=lease, resuming=resuming_committed)
        rec.detail = f"target leader {leader.name}" + (f"; lease: {gate.sentence}" if gate is not None else "")
        # A resumed promotion was checked when it began, and must finish.
        gates = check_target_gates(world, target, progress, force=force) if pending is None else None
    # DCs without a leader now (the old primary among them when it does not answer) are gone: live DCs behind
    # them follow the nearest live DC over a temporary link, until rejoin-dc brings them back.
    gone = frozenset(name for name, look in looks.items() if look.leader is None and name != target.name)
    ups = st.upstreams if resuming_committed else reroot(topo, target.name, gone)
    run = Promotion(world, RecordJournal(record, st, op), old, target, leader, ups, progress, lease, gate,
                    inputs=dict(op.inputs))
    if lease is not None and gate is not None and gate.revoke and lease.lease is not None and lease.lease.held:
        run.inputs["revoke"] = True
    steps = promote_steps(run)
    run.journal.op = op.model_copy(update={"plan": [s.name for s in steps]})
    report = OperationReport("promote-dc", target.name, old, epoch=st.epoch, dry_run=dry_run,
                             plan=["pre-checks: the old primary DC is gone and the target has a standby leader"
                                   + (f"; {gates.sentence()}" if gates is not None else ""),
                                   "estimate the data loss", *describe(steps)]).with_upstreams(topo, ups)
    if gates is not None:
        report.facts["promotion_gate"] = gates.to_json_dict()
    if not resuming_committed:
        with progress.step("estimate the data loss") as rec:
            fence_point = lease.fence_point(gate) if lease is not None and gate is not None else None
            run.estimate = world.estimate_loss(old, target, leader, fence_point=fence_point)
            run.inputs["estimate"] = run.estimate.to_json_dict()
            rec.detail = run.estimate.sentence()
            progress.say(f"   {run.estimate.sentence()}")
    report.facts.update(run.inputs.get("estimate") or {})
    if dry_run:
        report.outcome = "planned"
        return report
    if not resuming_committed and confirm is not None and not confirm(run.estimate):
        report.outcome = "aborted"
        raise OperationRefused("promotion not confirmed; nothing was changed")
    run_plan(KIND, steps, run, run.journal, progress)
    report.facts.update(run.inputs.get("estimate") or {})
    report.facts.update(run.facts)
    report.epoch = run.journal.record.epoch
    report.outcome = "succeeded"
    entry = HistoryEntry(epoch=run.journal.record.epoch, time=state.utc_now(), operation="promote-dc", source=old,
                         target=target.name, outcome="succeeded",
                         seconds=round(sum(s.seconds for s in progress.steps), 3),
                         details={**(run.inputs.get("estimate") or {}), "operation": op.id})
    run.journal.finish(entry)
    return report


def _pre_checks(looks: Mapping[str, DCLook], st: FederationState, old: str, target: Datacenter, *, force: bool,
                lease: LeaseFence | None, resuming: bool) -> Member:
    old_look, look = looks[old], looks[target.name]
    leader = look.leader
    if resuming:  # past the commit point: the target only has to be there
        if leader is None:
            raise OperationRefused(f"{target.name} has no reachable leader to promote; the epoch already names it",
                                   hint=f"bring {target.name} back, then rerun `fedctl promote-dc {target.name}`")
        return leader
    if old_look.is_primary and not force and lease is None:
        who = old_look.leader.name if old_look.leader else "?"
        raise OperationRefused(f"the primary DC {old} still answers (leader {who} is a primary): "
                               "this is not a disaster",
                               hint=f"use `fedctl switchover-dc {target.name}` for a planned, lossless change; "
                                    "--force promotes anyway and fences it")
    status = look.leader_status
    if look.is_primary:
        raise OperationRefused(f"{target.name} is already a primary: another operator promoted it meanwhile "
                               f"(the newest record, epoch {st.epoch}, names {st.primary_dc}); nothing was "
                               "changed — check `fedctl status`")
    if leader is None or status is None or status.role != "standby_leader":
        raise OperationRefused(f"{target.name} has no reachable standby leader to promote")
    return leader


def _fence(run: Promotion) -> str:
    """Run the fence command. With a store a failed command is a warning: the lease fences the DC, and the
    plan waits for it."""
    old = run.world.topo.dc(run.old)
    try:
        detail = run.world.run_fence(old)
    except OperationFailed as exc:
        if run.lease is None:
            raise
        detail = f"{exc.message.removesuffix('; nothing was promoted')}; relying on the lease instead"
        run.progress.warn(detail)
        run.inputs["fenced_by_command"] = False
        return detail
    run.inputs["fenced_by_command"] = detail != NO_FENCE_COMMAND
    return detail


def _raise_epoch(run: Promotion) -> str:
    conditions: dict[str, Any] = {"require": [run.target.name]}
    if run.lease is not None:
        revoke = run.lease.lease if run.revokes else None
        conditions.update(lease_absent=revoke is None, revoke=revoke)
        if revoke is not None:
            # The wait counts from this commit; the fence point goes into the commit itself, so a rerun after a
            # crash right after it still waits until then.
            gate = run.lease.after_revoke(run.lease.clock())
            run.inputs["fence_point"] = run.lease.fence_point(gate)
            run.gate = gate
    new = run.journal.raise_epoch(run.target.name, run.upstreams, _after_epoch(run), run.inputs, **conditions)
    revoked = f"; the lease of {run.old} is revoked" if run.revokes else ""
    return f"epoch {new.epoch} names {run.target.name}{revoked}"


def _after_epoch(run: Promotion) -> str:
    return "fenced" if run.lease is not None and run.revokes else "promote"


def _fence_point_passed(run: Promotion) -> bool:
    """Done once the old DC has certainly fenced: past the fence point a committed promotion kept, or (no
    revocation) the epoch commit, which came only after the wait."""
    if run.revokes:
        point = run.inputs.get("fence_point")
        return point is not None and run.lease is not None and run.lease.wall() >= float(point)
    return run.committed


def _wait_fenced(run: Promotion) -> str:
    lease, gate = run.lease, run.gate
    assert lease is not None
    if run.revokes and "fence_point" in run.inputs:
        gate = _gate_until(lease, float(run.inputs["fence_point"]))
    assert gate is not None
    fenced = lease.wait(gate, run.progress, fenced_by_command=bool(run.inputs.get("fenced_by_command")),
                        watch_lease=not run.revokes)
    if not run.revokes and not lease.force and not run.inputs.get("fenced_by_command"):
        _refuse_unfenced(run.world, run.old)
    run.inputs["fence_point"] = fenced.fence_point
    estimate = run.estimate.until(fenced.fence_point) if run.estimate is not None else None
    if estimate is not None:
        run.estimate = estimate
        run.inputs["estimate"] = estimate.to_json_dict()
        run.progress.say(f"   {estimate.sentence()}")
    run.facts.update({"fenced_by": fenced.fenced_by, "fence_point": _iso(fenced.fence_point),
                      "fence_wait_seconds": round(fenced.waited_seconds, 3),
                      "lease": {"holder": lease.lease.holder if lease.lease else None, "revoked": run.revokes}})
    return fenced.detail


def _gate_until(lease: LeaseFence, fence_point: float) -> PromoteGate:
    """The gate that waits until the wall-clock `fence_point` a (possibly earlier, crashed) run committed."""
    return PromoteGate(PromoteVerdict.GO, f"{lease.old_dc} has certainly fenced itself at {_iso(fence_point)}",
                       not_before=lease.clock() + max(0.0, fence_point - lease.wall()), revoke=True)


def _promote(run: Promotion) -> str:
    if not run.target_writable():
        run.world.apply_role(run.target, run.leader, run.upstreams)
    poll(f"{run.target.name} ({run.leader.name}) to accept writes",
         lambda: True if run.world.writable(run.leader) else None, PROMOTE_TIMEOUT, 0.02)
    return f"{run.leader.name} accepts writes"


def _repoint(run: Promotion) -> str:
    done, unreachable = [], []
    for dc in run.world.topo.datacenters:
        if dc.name in (run.target.name, run.old):
            continue
        look = run.world.look(dc)
        if look.leader is None:
            unreachable.append(dc.name)
            continue
        if run.world.apply_role(dc, look.leader, run.upstreams):
            done.append(dc.name)
    text = f"re-pointed: {', '.join(done) or 'none needed'}"
    return text + (f"; not reachable (the agent will re-point them): {', '.join(unreachable)}" if unreachable else "")


def _refuse_unfenced(world: World, old: str) -> None:
    """After the fence bound a DC still answering as a primary from here did not fence (its agents are down?).
    A short timeout: cut off, as in a real disaster, it does not answer and costs only this."""
    look = world.look(world.topo.dc(old), timeout=UNFENCED_CHECK_TIMEOUT)
    if look.is_primary:
        who = look.leader.name if look.leader else "?"
        raise OperationRefused(f"{old}'s lease is gone, yet its leader {who} still answers as a primary after the "
                               "fence bound: its agents did not fence it (are they running?); nothing was changed",
                               hint=f"fence {old} by hand (or fix its fence_command), then rerun with --force")


@contextmanager
def _explain_race(record: RecordPort, read: FederationState) -> Iterator[None]:
    """A refusal caused by another operator's promotion in the meantime says so."""
    try:
        yield
    except OperationRefused as exc:
        try:
            now = record.read()
        except NoQuorum:
            raise exc from None
        if now.epoch > read.epoch:
            raise OperationRefused(f"another operator promoted {now.primary_dc} meanwhile (epoch {now.epoch}); "
                                   f"nothing was changed — check `fedctl status` ({exc.message})") from exc
        raise
