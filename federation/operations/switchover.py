"""Planned switchover of the primary DC, with zero data loss proven by LSN.

Demote the source first, so exactly one writer exists at every instant and the cut-off is known: the
source's final LSN after its clean shutdown (the demotion token). Promote the target only once it has
replayed exactly that point, then check the new timeline began there. The source already points at
the target and follows the new timeline by streaming, with no pg_rewind.

Every step looks at the real state before acting, and progress is kept in the federation record, so a
rerun after a failure resumes; `switchover-dc <source>` while the source is demoted but the target not
yet promoted rolls back to the source.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from federation import patroni_api, state
from federation.errors import BadInput, OperationFailed, OperationRefused
from federation.operations.common import (
    DCLook,
    SqlSession,
    apply_role,
    cascade_host,
    connect,
    current_timeline,
    look_at,
    look_at_all,
    lsn_text,
    poll,
    replay_lsn,
    require_leader,
    switch_point,
    writable,
)
from federation.operations.lease_fence import commit_handing_over
from federation.operations.report import OperationReport
from federation.patroni_dynamic import ARCHIVE_GET
from federation.progress import Progress
from federation.state import FederationState, HistoryEntry, PendingOperation
from federation.topology import Datacenter, Member, Topology

DEFAULT_MAX_LAG_BYTES = 16 * 1024 * 1024
DEMOTE_TIMEOUT = 60.0
CATCH_UP_TIMEOUT = 60.0
PROMOTE_TIMEOUT = 60.0
STREAMING_GRACE = 15.0
# A target that was streaming when the source shut down already holds the token's LSN; one that was not
# gets its restore_command back after this long and fetches the tail from the archive.
ARCHIVE_FALLBACK_AFTER = 3.0


@dataclass(frozen=True)
class DemotionToken:
    """Where the demoted source DC stopped writing: its final LSN, timeline and system identifier."""

    lsn: int
    timeline: int
    system_identifier: str
    member: str

    def to_json_dict(self) -> dict[str, Any]:
        return {"lsn": lsn_text(self.lsn), "timeline": self.timeline,
                "system_identifier": self.system_identifier, "member": self.member}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> DemotionToken:
        from federation.lsn import parse_lsn

        return cls(parse_lsn(data["lsn"]), int(data["timeline"]), str(data["system_identifier"]),
                   str(data["member"]))


def new_upstreams(topo: Topology, st: FederationState, source: str, target: str) -> dict[str, str | None]:
    """The target becomes the root, the source follows it, every other DC keeps its upstream."""
    ups = {dc.name: st.upstream_of(dc.name) for dc in topo.datacenters}
    ups[target] = None
    for name, upstream in ups.items():
        if name != target and (upstream is None or name == source):
            ups[name] = target
    return ups


def plan_steps(source: str, target: str, rollback: bool) -> list[str]:
    if rollback:
        return [f"make sure {source} is demoted and read its final LSN", f"promote {source} back",
                "point every standby DC at its upstream again"]
    return [
        f"check every DC answers, {target} is a healthy standby DC and nearly caught up",
        f"demote {source} (Patroni demote-cluster: clean shutdown) pointing it at {target}",
        f"read {source}'s final LSN, timeline and system identifier (the demotion token)",
        f"wait until {target}'s standby leader has replayed exactly that LSN",
        f"raise the federation epoch (primary DC {target}) in every DC's DCS",
        f"promote {target} and wait until it accepts writes",
        f"check {target}'s new timeline began at the token's LSN",
        f"point {source} and every other standby DC at its new upstream",
    ]


def switchover_dc(topo: Topology, target_name: str, progress: Progress, *, dry_run: bool = False,
                  max_lag_bytes: int = DEFAULT_MAX_LAG_BYTES) -> OperationReport:
    target = topo.dc(target_name)
    st, _copies = state.current_state(topo)
    pending = st.operation if st.operation and st.operation.kind == "switchover" else None
    if st.operation and not pending:
        raise OperationRefused(f"a {st.operation.kind} of {st.operation.target} is in progress "
                               f"(step {st.operation.step}, started {st.operation.started})",
                               hint=f"finish it first: rerun `fedctl {st.operation.kind}-dc {st.operation.target}`")
    source = topo.dc(pending.source) if pending and pending.source else topo.dc(st.primary_dc)
    rollback = pending is not None and target.name == source.name
    if target.name == source.name and not pending:
        raise BadInput(f"{target.name} is already the primary DC (epoch {st.epoch})",
                       hint="name the standby DC that should become primary")
    report = OperationReport("switchover-dc", target.name, source.name, epoch=st.epoch, dry_run=dry_run,
                             plan=plan_steps(source.name, target.name, rollback))
    if pending:
        progress.say(f"Resuming the switchover {pending.source} -> {pending.target} left at step "
                     f"'{pending.step}'" + (" as a rollback to " + source.name if rollback else ""))
    with progress.step("pre-checks"):
        looks = look_at_all(topo)
        if pending is None and looks[source.name].is_primary and not _streaming_leader(looks[target.name]):
            # Right after an operation a standby leader may still be re-connecting: give it a moment.
            looks[target.name] = _wait_for_streaming_leader(target, STREAMING_GRACE)
        _pre_checks(topo, looks, source, target, max_lag_bytes, resuming=pending is not None)
    if dry_run:
        report.outcome = "planned"
        return report
    try:
        _run(topo, st, looks, source, target, progress, report, pending)
    except Exception as exc:
        report.outcome = "failed"
        report.error = str(exc)
        raise
    return report


def _streaming_leader(look: DCLook) -> bool:
    status = look.leader_status
    return status is not None and status.role == "standby_leader" and status.replication_state == "streaming"


def _wait_for_streaming_leader(dc: Datacenter, timeout: float) -> DCLook:
    deadline = time.monotonic() + timeout
    look = look_at(dc)
    while not _streaming_leader(look) and time.monotonic() < deadline:
        time.sleep(0.2)
        look = look_at(dc)
    return look


def _pre_checks(topo: Topology, looks: dict[str, DCLook], source: Datacenter, target: Datacenter,
                max_lag_bytes: int, resuming: bool) -> None:
    down = [name for name, look in looks.items() if look.leader is None]
    if down:
        raise OperationRefused(f"{', '.join(down)} has no reachable leader: a planned switchover needs every DC",
                               hint="for a disaster use `fedctl promote-dc`; otherwise bring the DC back first")
    src, tgt = looks[source.name], looks[target.name]
    if resuming:
        return
    if not src.is_primary:
        role = src.leader_status.role if src.leader_status else "unknown"
        raise OperationRefused(f"{source.name}'s leader is not a primary (role {role})")
    status = tgt.leader_status
    if status is None or status.role != "standby_leader":
        raise OperationRefused(f"{target.name} has no standby leader")
    if status.replication_state != "streaming":
        raise OperationRefused(f"{target.name}'s standby leader is not streaming from its upstream "
                               f"(replication state {status.replication_state})")
    primary_lsn = src.leader_status.lsn if src.leader_status else None
    if primary_lsn is not None and status.lsn is not None and primary_lsn - status.lsn > max_lag_bytes:
        raise OperationRefused(f"{target.name} is {primary_lsn - status.lsn} bytes behind {source.name} "
                               f"(limit {max_lag_bytes}); wait for it to catch up")


def _record(topo: Topology, base: FederationState, new: FederationState, *,
            hand_over_lease: bool = False) -> FederationState:
    """Commit `new`. `hand_over_lease` (the epoch raise, with a federation store): revoke the source DC's
    lease in the same commit, so that the target's agent can take it."""
    new = new.model_copy(update={"updated": state.utc_now()})
    if hand_over_lease and topo.federation_store is not None:
        commit_handing_over(topo, base, new)
    else:
        state.commit(topo, base, new, state.read_copies(topo))
    return new


def _run(topo: Topology, st: FederationState, looks: dict[str, DCLook], source: Datacenter, target: Datacenter,
         progress: Progress, report: OperationReport, pending: PendingOperation | None) -> None:
    ups = new_upstreams(topo, st, source.name, target.name)
    started = pending.started if pending else state.utc_now()
    op = pending or PendingOperation(kind="switchover", source=source.name, target=target.name,
                                     step="demote", started=started)
    if op.target != target.name:
        op = op.model_copy(update={"target": target.name})
    if pending is None or op != pending:
        st = _record(topo, st, st.model_copy(update={"operation": op}))

    sessions = contextlib.ExitStack()
    with sessions:
        _switch(topo, st, op, ups, looks, source, target, progress, report, sessions)


def _switch(topo: Topology, st: FederationState, op: PendingOperation, ups: dict[str, str | None],
            looks: dict[str, DCLook], source: Datacenter, target: Datacenter, progress: Progress,
            report: OperationReport, sessions: contextlib.ExitStack) -> None:
    source_leader = require_leader(looks[source.name], "cannot demote it")
    if looks[source.name].is_primary and target.name != source.name:
        with progress.step(f"prepare {target.name} and {source.name} while {source.name} still takes writes") as rec:
            rec.detail = _prepare(topo, source_leader, target, require_leader(looks[target.name], "cannot promote it"))
    with progress.step(f"demote {source.name}") as rec:
        if looks[source.name].is_primary:
            patroni_api.patch_config(source_leader, {"standby_cluster": _streaming_only(_section(topo, source, ups))})
            rec.detail = f"PATCH standby_cluster on {source_leader.name}"
        else:
            rec.detail = "already a standby DC"
        # Safe to go on once it answers in recovery: its last record was the shutdown checkpoint, which the
        # walsenders shipped before it stopped, and a standby writes no WAL of its own.
        source_session = sessions.enter_context(SqlSession(topo, source_leader))
        poll(f"{source.name}'s leader {source_leader.name} to restart as standby leader accepting SQL",
             lambda: _in_recovery(source_session), DEMOTE_TIMEOUT, 0.02)

    with progress.step("read the demotion token") as rec:
        token = (DemotionToken.from_json_dict(op.token) if op.token
                 else _read_token(source_session))
        source_session.close()
        rec.detail = f"LSN {lsn_text(token.lsn)} timeline {token.timeline} system {token.system_identifier}"
        report.facts["demotion_token"] = token.to_json_dict()
        progress.say(f"   demotion token: {rec.detail}")
        # Kept in the record with the epoch raise below, not here: one DCS round trip less without a writer.
        # A rerun before that reads the same token again, as the demoted source replays nothing new until
        # the target is promoted.

    target_leader = require_leader(look_at(target), "cannot promote it")
    target_session = sessions.enter_context(SqlSession(topo, target_leader))
    already_promoted = writable_quiet(target_session)  # a rerun after the promotion step
    if target.name != source.name and not already_promoted:
        with progress.step(f"wait until {target.name} has replayed {lsn_text(token.lsn)}") as rec:
            replayed = _wait_for_token(target, target_session, token)
            if replayed != token.lsn:
                raise OperationFailed(f"{target.name} replayed {lsn_text(replayed)}, past the token "
                                      f"{lsn_text(token.lsn)}: it has WAL the source never wrote; stopping",
                                      hint="inspect both DCs before going on")
            rec.detail = f"{target_leader.name} at {lsn_text(replayed)}"

    if op.step == "promote" and st.primary_dc == target.name:
        progress.say(f"   epoch {st.epoch} already names {target.name}: not raising it again")
    else:
        with progress.step(f"raise the federation epoch to {st.epoch + 1} (primary DC {target.name})"):
            op = op.model_copy(update={"step": "promote", "token": token.to_json_dict()})
            st = _record(topo, st, st.model_copy(update={"epoch": st.epoch + 1, "primary_dc": target.name,
                                                         "upstreams": ups, "operation": op}),
                         hand_over_lease=True)
    report.epoch = st.epoch

    with progress.step(f"promote {target.name}") as rec:
        if not writable_quiet(target_session):
            apply_role(topo, target, target_leader, ups)
        # The epoch already names the target, so its promotion gate lets Patroni promote it.
        poll(f"{target.name} ({target_leader.name}) to accept writes",
             lambda: writable(topo, target_leader, target_session), PROMOTE_TIMEOUT, 0.02)
        rec.detail = f"{target_leader.name} accepts writes"

    if target.name != source.name:
        with progress.step("check the new timeline's switch point") as rec:
            timeline = current_timeline(topo, target_leader, target_session)
            point = switch_point(topo, target_leader, timeline, target_session)
            report.facts["new_timeline"] = timeline
            report.facts["switch_point"] = lsn_text(point)
            if point != token.lsn:
                raise OperationFailed(f"timeline {timeline} of {target.name} began at {lsn_text(point)}, not at "
                                      f"the token's {lsn_text(token.lsn)}: the switchover is not proven lossless",
                                      hint=f"{source.name} may need `fedctl rejoin-dc {source.name}`")
            rec.detail = f"timeline {timeline} began at {lsn_text(point)} = token"

    with progress.step("point the standby DCs at their new upstream") as rec:
        changed = _repoint(topo, [dc for dc in topo.datacenters if dc.name != target.name], ups)
        rec.detail = f"re-pointed: {', '.join(changed) or 'none needed'}"

    with progress.step(f"wait until {source.name} streams from {target.name}"):
        poll(f"{source.name} to stream on timeline {report.facts.get('new_timeline', '?')}",
             lambda: _streaming(source), DEMOTE_TIMEOUT, 0.05)

    report.outcome = "succeeded"
    total = sum(s.seconds for s in progress.steps)
    entry = HistoryEntry(epoch=st.epoch, time=state.utc_now(), operation="switchover-dc", source=source.name,
                         target=target.name, outcome="succeeded", seconds=round(total, 3),
                         details={"demotion_token": token.to_json_dict(), "switch_point": report.facts.get(
                             "switch_point"), "rollback": source.name == target.name})
    _record(topo, st, st.model_copy(update={"operation": None}).with_history(entry))


def _section(topo: Topology, dc: Datacenter, ups: dict[str, str | None]) -> dict[str, Any] | None:
    from federation.patroni_dynamic import standby_cluster_section

    upstream = ups.get(dc.name)
    return standby_cluster_section(dc, topo.dc(upstream), cascade_host(topo, dc, ups)) if upstream else None


def _prepare(topo: Topology, source_leader: Member, target: Datacenter, target_leader: Member) -> str:
    """Work done before the demotion, so that less of it falls into the time without a writer."""
    done = []
    # Promoting, PostgreSQL asks restore_command for the last segment and two history files (three
    # pgBackRest runs); the target already has that WAL by streaming. Where WAL comes from changes nothing
    # about which WAL it is: the catch-up check guards the tail. The promotion removes standby_cluster
    # anyway, and a rollback's re-point step gives the target its full section back.
    section = patroni_api.get_config(target_leader).get("standby_cluster") or {}
    if section.get("restore_command"):
        patroni_api.patch_config(target_leader, {"standby_cluster": {"restore_command": None}})
        done.append(f"{target.name} catches up by streaming only")
    # Checkpoint now, while writes still go on: the shutdown checkpoint then has little left to flush.
    with connect(topo, source_leader) as conn:
        conn.execute("CHECKPOINT")
    done.append(f"checkpoint on {source_leader.name}")
    return "; ".join(done)


def _streaming_only(section: dict[str, Any] | None) -> dict[str, Any] | None:
    """The demoted source restarts from its own pg_wal and streams; with restore_command its startup would
    first ask the archive for the checkpoint's segment and history files. The re-point step puts it back."""
    return {k: v for k, v in section.items() if k != "restore_command"} if section else section


def _wait_for_token(target: Datacenter, session: SqlSession, token: DemotionToken) -> int:
    """Until the target has replayed at least the token; the caller refuses anything but exactly the token."""
    leader = session.member
    what = f"{target.name} ({leader.name}) to replay {lsn_text(token.lsn)}"
    try:
        return poll(what, lambda: _replayed_at_least(session, token.lsn), ARCHIVE_FALLBACK_AFTER, 0.02)
    except OperationFailed:
        pass
    # The target was not streaming when the source shut down. Patroni archived the segment holding the
    # shutdown checkpoint before restarting the source, so the archive has the tail.
    if not (patroni_api.get_config(leader).get("standby_cluster") or {}).get("restore_command"):
        patroni_api.patch_config(leader, {"standby_cluster": {"restore_command": ARCHIVE_GET}})
    return poll(what, lambda: _replayed_at_least(session, token.lsn), CATCH_UP_TIMEOUT, 0.02)


def _repoint(topo: Topology, dcs: list[Datacenter], ups: dict[str, str | None]) -> list[str]:
    """Every DC's PATCH at once: they are independent, each goes to its own DC's leader."""
    def one(dc: Datacenter) -> str | None:
        leader = require_leader(look_at(dc), "cannot re-point it")
        return dc.name if apply_role(topo, dc, leader, ups) else None

    with ThreadPoolExecutor(max_workers=max(1, len(dcs))) as pool:
        return [name for name in pool.map(one, dcs) if name]


def _in_recovery(session: SqlSession) -> bool | None:
    """The demoted leader serves SQL in recovery: asked directly, faster than Patroni reports it."""
    row = session.row("SELECT pg_is_in_recovery()")
    return True if row and row[0] else None


def _read_token(session: SqlSession) -> DemotionToken:
    row = session.row("SELECT pg_last_wal_replay_lsn()::text, "
                      "(SELECT timeline_id FROM pg_control_checkpoint()), "
                      "(SELECT system_identifier FROM pg_control_system())::text")
    if not row or not row[0]:
        raise OperationFailed(f"{session.member.name} did not report its last replayed LSN after demotion")
    from federation.lsn import parse_lsn

    return DemotionToken(parse_lsn(row[0]), int(row[1]), str(row[2]), session.member.name)


def _replayed_at_least(session: SqlSession, lsn: int) -> int | None:
    got = replay_lsn(session.topo, session.member, session)
    return got if got is not None and got >= lsn else None


def writable_quiet(session: SqlSession) -> bool:
    try:
        return bool(writable(session.topo, session.member, session))
    except Exception:
        return False


def _streaming(dc: Datacenter) -> bool | None:
    look = look_at(dc, timeout=1.0)
    statuses = [look.statuses.get(m.name) for m in dc.members]
    ok = all(s is not None and s.replication_state == "streaming" for s in statuses)
    return True if ok else None
