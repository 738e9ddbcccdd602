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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from federation import state
from federation.errors import BadInput, OperationFailed, OperationRefused
from federation.lsn import parse_lsn
from federation.operations.common import apply_role, look_at, look_at_all, lsn_text, poll, sql_row, writable
from federation.operations.report import OperationReport
from federation.progress import Progress
from federation.samples import LsnSample, newest_sample
from federation.state import FederationState, HistoryEntry
from federation.topology import Datacenter, Member, Topology

PROMOTE_TIMEOUT = 60.0
FENCE_TIMEOUT = 60.0


@dataclass(frozen=True)
class LossEstimate:
    old_primary: str
    last_known_lsn: int | None
    sample_age_seconds: float | None
    received_lsn: int
    bytes: int | None
    seconds: float | None

    def to_json_dict(self) -> dict[str, Any]:
        return {"old_primary": self.old_primary, "last_known_lsn": lsn_text(self.last_known_lsn),
                "sample_age_seconds": _round(self.sample_age_seconds), "received_lsn": lsn_text(self.received_lsn),
                "data_loss_estimate_bytes": self.bytes, "data_loss_estimate_seconds": _round(self.seconds)}

    def sentence(self) -> str:
        if self.last_known_lsn is None:
            return (f"no LSN sample of {self.old_primary} exists (is the agent running?): the loss cannot be "
                    f"estimated; the target received up to {lsn_text(self.received_lsn)}")
        return (f"{self.old_primary} was last seen at {lsn_text(self.last_known_lsn)} "
                f"{self.sample_age_seconds:.1f} s ago; the target received {lsn_text(self.received_lsn)}: "
                f"up to {self.bytes} bytes (~{self.seconds:.1f} s of writes) may be lost")


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def estimate_loss(topo: Topology, old_primary: str, target: Datacenter, leader: Member) -> LossEstimate:
    row = sql_row(topo, leader, "SELECT greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text, "
                                "extract(epoch FROM pg_last_xact_replay_timestamp())")
    if not row or not row[0]:
        raise OperationFailed(f"{leader.name} did not report what it received")
    received = parse_lsn(row[0])
    replayed_at = float(row[1]) if row[1] is not None else None
    sample = newest_sample(topo, old_primary)
    if sample is None:
        return LossEstimate(old_primary, None, None, received, None, None)
    return loss_from_sample(old_primary, sample, received, replayed_at, datetime.now(UTC).timestamp())


def loss_from_sample(old_primary: str, sample: LsnSample, received: int, replayed_at: float | None,
                     now: float) -> LossEstimate:
    """What the target lacks of the last known LSN, plus what the old primary may have written between
    that sample and its death (at most one sampling interval at the measured WAL rate)."""
    sampled = sample.taken_at.timestamp()
    age = max(0.0, now - sampled)
    # The WAL the target received after the sample was written at no less than this rate; a sample taken
    # just before writes began would otherwise report a rate of zero.
    since_sample = max(0, received - sample.lsn) / age if age > 0 else 0.0
    rate = max(sample.bytes_per_second, since_sample)
    unseen = rate * min(age, sample.interval_seconds)
    lost = max(0, sample.lsn - received) + math.ceil(unseen)
    seconds: float | None
    if lost == 0:
        seconds = 0.0
    elif rate > 0:
        seconds = lost / rate
    else:
        seconds = max(0.0, sampled - replayed_at) if replayed_at else None
    return LossEstimate(old_primary, sample.lsn, age, received, lost, seconds)


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
        return "no fence command in the topology"
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
               dry_run: bool = False, confirm: Any = None) -> OperationReport:
    """`confirm(estimate) -> bool` is asked after the estimate is printed (the CLI asks the user)."""
    target = topo.dc(target_name)
    st, copies = state.current_state(topo)
    old = st.primary_dc
    report = OperationReport("promote-dc", target.name, old, epoch=st.epoch, dry_run=dry_run, plan=[
        f"check {old} is gone and {target.name} has a standby leader", "estimate the data loss",
        f"run {old}'s fence command", f"raise the federation epoch to {st.epoch + 1} (primary DC {target.name})",
        f"promote {target.name}", "point the other standby DCs at their new upstream"])
    if target.name == old:
        raise BadInput(f"{target.name} is already the primary DC (epoch {st.epoch})")
    if st.operation is not None:
        progress.say(f"note: a {st.operation.kind} of {st.operation.target} was left at step "
                     f"'{st.operation.step}'; the promotion supersedes it")
    with progress.step("pre-checks") as rec, _explain_race(topo, st):
        looks = look_at_all(topo)
        old_look = looks[old]
        if old_look.is_primary and not force:
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
    with progress.step("estimate the data loss") as rec:
        estimate = estimate_loss(topo, old, target, leader)
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
        rec.detail = run_fence(topo, topo.dc(old), progress)
    ups = new_upstreams(topo, st, old, target.name)
    with progress.step(f"raise the federation epoch to {st.epoch + 1}") as rec:
        new = st.model_copy(update={"epoch": st.epoch + 1, "primary_dc": target.name, "upstreams": ups,
                                    "operation": None, "updated": state.utc_now()})
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


@contextmanager
def _explain_race(topo: Topology, read: FederationState) -> Iterator[None]:
    """A refusal caused by another operator's promotion in the meantime says so."""
    try:
        yield
    except OperationRefused as exc:
        now, _ = state.current_state(topo)
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
