"""Disaster promotion of a standby DC, decided by a human: consistency over availability.

Refuses while the current primary DC still answers (that is a switchover). Before acting it estimates
the data loss from the newest sample of the old primary's LSN against what the target received, runs
the old primary's fence command, raises the epoch (the commit point that makes two concurrent
promotions impossible), promotes the target and re-points the other standby DCs.
"""

from __future__ import annotations

import math
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from federation import state
from federation.errors import BadInput, OperationFailed, OperationRefused
from federation.lease_policy import PromoteGate
from federation.lsn import parse_lsn
from federation.operations.common import apply_role, look_at, look_at_all, lsn_text, poll, sql_row, writable
from federation.operations.lease_fence import LeaseFence, open_lease_reader
from federation.operations.report import OperationReport
from federation.progress import Progress, StepRecord
from federation.samples import LsnSample, newest_sample
from federation.state import FederationState, HistoryEntry, StateCopy
from federation.store import NoQuorum
from federation.topology import Datacenter, Member, Topology

PROMOTE_TIMEOUT = 60.0
FENCE_TIMEOUT = 60.0
NO_FENCE_COMMAND = "no fence command in the topology"
UNFENCED_CHECK_TIMEOUT = 0.5


@dataclass(frozen=True)
class LossEstimate:
    old_primary: str
    last_known_lsn: int | None
    sample_age_seconds: float | None
    received_lsn: int
    bytes: int | None
    seconds: float | None
    # With a federation store: the moment (Unix time) from which the old DC acknowledges no write, the
    # end of the window this estimate counts. None: one sampling interval after the sample.
    fence_point: float | None = None
    # What the estimate was computed from, to count it again to a later fence point (promote-dc --force
    # learns its fence point only once the lease is revoked).
    inputs: tuple[LsnSample, float | None, float] | None = field(default=None, compare=False, repr=False)

    def until(self, fence_point: float) -> LossEstimate:
        """The same estimate, counted to `fence_point` instead."""
        if self.inputs is None:
            return replace(self, fence_point=fence_point)
        sample, replayed_at, now = self.inputs
        return loss_from_sample(self.old_primary, sample, self.received_lsn, replayed_at, now,
                                fence_point=fence_point)

    def to_json_dict(self) -> dict[str, Any]:
        data = {"old_primary": self.old_primary, "last_known_lsn": lsn_text(self.last_known_lsn),
                "sample_age_seconds": _round(self.sample_age_seconds), "received_lsn": lsn_text(self.received_lsn),
                "data_loss_estimate_bytes": self.bytes, "data_loss_estimate_seconds": _round(self.seconds)}
        if self.fence_point is not None:
            data["data_loss_counted_until"] = _iso(self.fence_point)
        return data

    def sentence(self) -> str:
        if self.last_known_lsn is None:
            return (f"no LSN sample of {self.old_primary} exists (is the agent running?): the loss cannot be "
                    f"estimated; the target received up to {lsn_text(self.received_lsn)}")
        until = (f", counting what {self.old_primary} could acknowledge until it has certainly fenced "
                 f"({_iso(self.fence_point)})" if self.fence_point is not None else "")
        return (f"{self.old_primary} was last seen at {lsn_text(self.last_known_lsn)} "
                f"{self.sample_age_seconds:.1f} s ago; the target received {lsn_text(self.received_lsn)}: "
                f"up to {self.bytes} bytes (~{self.seconds:.1f} s of writes) may be lost{until}")


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def estimate_loss(topo: Topology, old_primary: str, target: Datacenter, leader: Member,
                  fence_point: float | None = None) -> LossEstimate:
    row = sql_row(topo, leader, "SELECT greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text, "
                                "extract(epoch FROM pg_last_xact_replay_timestamp())")
    if not row or not row[0]:
        raise OperationFailed(f"{leader.name} did not report what it received")
    received = parse_lsn(row[0])
    replayed_at = float(row[1]) if row[1] is not None else None
    sample = newest_sample(topo, old_primary)
    if sample is None:
        return LossEstimate(old_primary, None, None, received, None, None, fence_point)
    return loss_from_sample(old_primary, sample, received, replayed_at, datetime.now(UTC).timestamp(),
                            fence_point=fence_point)


def loss_from_sample(old_primary: str, sample: LsnSample, received: int, replayed_at: float | None,
                     now: float, *, fence_point: float | None = None) -> LossEstimate:
    """What the target lacks of the last known LSN, plus what the old primary may have written after that
    sample at the measured WAL rate: until `fence_point` (Unix time) when given, the moment from which it
    has certainly fenced itself; otherwise until its death, at most one sampling interval."""
    sampled = sample.taken_at.timestamp()
    age = max(0.0, now - sampled)
    # The WAL the target received after the sample was written at no less than this rate; a sample taken
    # just before writes began would otherwise report a rate of zero.
    since_sample = max(0, received - sample.lsn) / age if age > 0 else 0.0
    rate = max(sample.bytes_per_second, since_sample)
    window = max(0.0, fence_point - sampled) if fence_point is not None else min(age, sample.interval_seconds)
    unseen = rate * window
    lost = max(0, sample.lsn - received) + math.ceil(unseen)
    seconds: float | None
    if lost == 0:
        seconds = 0.0
    elif rate > 0:
        seconds = lost / rate
    else:
        seconds = max(0.0, sampled - replayed_at) if replayed_at else None
    return LossEstimate(old_primary, sample.lsn, age, received, lost, seconds, fence_point,
                        (sample, replayed_at, now))


def new_upstreams(topo: Topology, st: FederationState, old_primary: str, target: str) -> dict[str, str | None]:
    ups = {dc.name: st.upstream_of(dc.name) for dc in topo.datacenters}
    ups[target] = None
    for name, upstream in ups.items():
        if name != target and (upstream in (None, old_primary) or name == old_primary):
            ups[name] = target
    ups[old_primary] = target
    return ups


def run_fence(topo: Topology, dc: Datacenter, progress: Progress) -> str:
    if not dc.fence_command:
        return NO_FENCE_COMMAND
    argv = shlex.split(dc.fence_command)
    env = {"FEDCTL_FENCED_DC": dc.name, "FEDCTL_FEDERATION": topo.federation, "PATH": "/usr/bin:/bin"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=FENCE_TIMEOUT, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperationFailed(f"fence command for {dc.name} failed to run: {exc}; nothing was promoted",
                              hint="fix the fence command or fence the DC by hand, then rerun with --yes") from exc
    if done.returncode != 0:
        raise OperationFailed(f"fence command for {dc.name} exited {done.returncode}: "
                              f"{(done.stderr or done.stdout).strip()[-300:]}; nothing was promoted")
    return f"{argv[0]} exited 0"


def promote_dc(topo: Topology, target_name: str, progress: Progress, *, force: bool = False,
               dry_run: bool = False, confirm: Any = None, lease: LeaseFence | None = None) -> OperationReport:
    """`confirm(estimate) -> bool` is asked after the estimate is printed (the CLI asks the user).

    With a federation store the old primary DC's lease decides instead of whether it answers from here
    (`lease` is built from the topology unless a test passes one)."""
    target = topo.dc(target_name)
    try:
        st, copies = state.current_state(topo)
    except NoQuorum as exc:
        raise OperationRefused(exc.message, hint=exc.hint) from None
    old = st.primary_dc
    store = topo.federation_store
    if store is not None and lease is None:
        lease = LeaseFence(open_lease_reader(topo), old, ttl=store.lease_ttl, force=force)
    report = OperationReport("promote-dc", target.name, old, epoch=st.epoch, dry_run=dry_run, plan=[
        f"check {old} is gone and {target.name} has a standby leader", "estimate the data loss",
        f"run {old}'s fence command", *([f"wait until {old} has certainly fenced itself"] if lease else []),
        f"raise the federation epoch to {st.epoch + 1} (primary DC {target.name})",
        f"promote {target.name}", "point the other standby DCs at their new upstream"])
    if target.name == old:
        raise BadInput(f"{target.name} is already the primary DC (epoch {st.epoch})")
    if st.operation is not None:
        progress.say(f"note: a {st.operation.kind} of {st.operation.target} was left at step "
                     f"'{st.operation.step}'; the promotion supersedes it")
    gate: PromoteGate | None = None
    with progress.step("pre-checks") as rec, _explain_race(topo, st):
        if lease is not None:
            gate = lease.check()
        looks = look_at_all(topo)
        old_look = looks[old]
        if old_look.is_primary and not force and lease is None:
            who = old_look.leader.name if old_look.leader else "?"
            raise OperationRefused(f"the primary DC {old} still answers (leader {who} is a primary): "
                                   "this is not a disaster",
                                   hint=f"use `fedctl switchover-dc {target.name}` for a planned, lossless change; "
                                        "--force promotes anyway and fences it")
        leader = looks[target.name].leader
        status = looks[target.name].leader_status
        if looks[target.name].is_primary:
            now, _ = state.current_state(topo)
            raise OperationRefused(f"{target.name} is already a primary: another operator promoted it meanwhile "
                                   f"(the newest record, epoch {now.epoch}, names {now.primary_dc}); nothing was "
                                   "changed — check `fedctl status`")
        if leader is None or status is None or status.role != "standby_leader":
            raise OperationRefused(f"{target.name} has no reachable standby leader to promote")
        rec.detail = f"{old} {'answers' if old_look.answering else 'does not answer'}; target leader {leader.name}"
        if lease is not None and gate is not None:
            rec.detail += f"; lease: {gate.sentence}"
    with progress.step("estimate the data loss") as rec:
        fence_point = lease.fence_point(gate) if lease is not None and gate is not None else None
        estimate = estimate_loss(topo, old, target, leader, fence_point=fence_point)
        report.facts.update(estimate.to_json_dict())
        rec.detail = estimate.sentence()
        progress.say(f"   {estimate.sentence()}")
    if dry_run:
        report.outcome = "planned"
        return report
    if confirm is not None and not confirm(estimate):
        report.outcome = "aborted"
        raise OperationRefused("promotion not confirmed; nothing was changed")
    with progress.step(f"fence {old}") as rec:
        fenced_by_command = _fence(topo, topo.dc(old), progress, rec, lenient=lease is not None)
    ups = new_upstreams(topo, st, old, target.name)
    new = st.model_copy(update={"epoch": st.epoch + 1, "primary_dc": target.name, "upstreams": ups,
                                "operation": None, "updated": state.utc_now()})
    if lease is not None and gate is not None:
        estimate = _commit_after_fence(topo, st, new, copies, lease, gate, estimate, fenced_by_command,
                                       progress, report)
    else:
        with progress.step(f"raise the federation epoch to {st.epoch + 1}") as rec:
            written = state.commit(topo, st, new, copies, require=[target.name])
            report.epoch = new.epoch
            rec.detail = f"written to {', '.join(written)}"
    with progress.step(f"promote {target.name}") as rec:
        apply_role(topo, target, leader, ups)
        poll(f"{target.name} ({leader.name}) to accept writes", lambda: writable(topo, leader), PROMOTE_TIMEOUT, 0.02)
        rec.detail = f"{leader.name} accepts writes"
    with progress.step("point the other standby DCs at their new upstream") as rec:
        rec.detail = _repoint(topo, ups, skip={target.name, old})
    report.outcome = "succeeded"
    entry = HistoryEntry(epoch=new.epoch, time=state.utc_now(), operation="promote-dc", source=old,
                         target=target.name, outcome="succeeded",
                         seconds=round(sum(s.seconds for s in progress.steps), 3), details=estimate.to_json_dict())
    state.update(topo, lambda s: s.with_history(entry) if s.epoch == new.epoch else s)
    return report


def _fence(topo: Topology, dc: Datacenter, progress: Progress, rec: StepRecord, *, lenient: bool) -> bool:
    """Run the fence command; True when it succeeded. With a store (`lenient`) a failed command is a warning:
    the lease fences the DC, promote-dc then waits for it."""
    try:
        rec.detail = run_fence(topo, dc, progress)
    except OperationFailed as exc:
        if not lenient:
            raise
        rec.detail = f"{exc.message.removesuffix('; nothing was promoted')}; relying on the lease instead"
        progress.warn(rec.detail)
        return False
    return rec.detail != NO_FENCE_COMMAND


def _commit_after_fence(topo: Topology, st: FederationState, new: FederationState, copies: list[StateCopy],
                        lease: LeaseFence, gate: PromoteGate, estimate: LossEstimate, fenced_by_command: bool,
                        progress: Progress, report: OperationReport) -> LossEstimate:
    """With a store: wait out the old DC's fence, then commit the epoch on the condition that nobody holds
    the lease; under --force with a live lease, revoke it in that commit first and wait afterwards."""
    old, epoch_step = st.primary_dc, f"raise the federation epoch to {new.epoch}"
    revoke = lease.lease if gate.revoke and lease.lease is not None and lease.lease.held else None

    def commit() -> None:
        with progress.step(epoch_step + (f" (revoking {old}'s lease)" if revoke else "")) as rec:
            written = state.commit(topo, st, new, copies, require=[new.primary_dc], lease_absent=revoke is None,
                                   revoke=revoke)
            report.epoch = new.epoch
            rec.detail = f"written to {', '.join(written)}" + (f"; the lease of {old} is revoked" if revoke else "")

    if revoke is not None:
        commit()
        gate = lease.after_revoke(lease.clock())
    with progress.step(f"wait until {old} has certainly fenced itself") as rec:
        fenced = lease.wait(gate, progress, fenced_by_command=fenced_by_command, watch_lease=revoke is None)
        rec.detail = fenced.detail
        if revoke is None and not lease.force and not fenced_by_command:
            _refuse_unfenced(topo, old)
    if revoke is None:
        commit()
    estimate = estimate.until(fenced.fence_point)
    report.facts.update(estimate.to_json_dict())
    report.facts.update({"fenced_by": fenced.fenced_by, "fence_point": _iso(fenced.fence_point),
                         "fence_wait_seconds": round(fenced.waited_seconds, 3),
                         "lease": {"holder": lease.lease.holder if lease.lease else None,
                                   "revoked": revoke is not None}})
    progress.say(f"   {estimate.sentence()}")
    return estimate


def _refuse_unfenced(topo: Topology, old: str) -> None:
    """After the fence bound a DC still answering as a primary from here did not fence (its agents are down?).
    A short timeout: cut off, as in a real disaster, it does not answer and costs only this."""
    look = look_at(topo.dc(old), timeout=UNFENCED_CHECK_TIMEOUT)
    if look.is_primary:
        who = look.leader.name if look.leader else "?"
        raise OperationRefused(f"{old}'s lease is gone, yet its leader {who} still answers as a primary after the "
                               "fence bound: its agents did not fence it (are they running?); nothing was changed",
                               hint=f"fence {old} by hand (or fix its fence_command), then rerun with --force")


@contextmanager
def _explain_race(topo: Topology, read: FederationState) -> Iterator[None]:
    """A refusal caused by another operator's promotion in the meantime says so."""
    try:
        yield
    except OperationRefused as exc:
        try:
            now, _ = state.current_state(topo)
        except NoQuorum:
            raise exc from None
        if now.epoch > read.epoch:
            raise OperationRefused(f"another operator promoted {now.primary_dc} meanwhile (epoch {now.epoch}); "
                                   f"nothing was changed — check `fedctl status` ({exc.message})") from exc
        raise


def _repoint(topo: Topology, ups: dict[str, str | None], skip: set[str]) -> str:
    done, unreachable = [], []
    for dc in topo.datacenters:
        if dc.name in skip:
            continue
        look = look_at(dc)
        if look.leader is None:
            unreachable.append(dc.name)
            continue
        if apply_role(topo, dc, look.leader, ups):
            done.append(dc.name)
    text = f"re-pointed: {', '.join(done) or 'none needed'}"
    return text + (f"; not reachable (the agent will re-point them): {', '.join(unreachable)}" if unreachable else "")
