"""Planned switchover of the primary DC, with zero data loss proven by LSN.

Demote the source first, so exactly one writer exists at every instant and the cut-off is known: the
source's final LSN after its clean shutdown (the demotion token). Promote the target only once it has
replayed exactly that point, then check the new timeline began there. The source already points at
the target and follows the new timeline by streaming, with no pg_rewind.

The switchover is a step plan (federation.operations.plan): each step checks the real state first, the
record holds the operation, its current step and the token, so a rerun after a crash at any point
resumes. Until the epoch raise (the commit point) it can be rolled back: `fedctl operation abort`, or
`switchover-dc <source>`, promotes the source again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from federation import state
from federation.cascade import reroot
from federation.entrypoint_registry import PauseRequest
from federation.errors import BadInput, FedError, OperationFailed, OperationRefused
from federation.operations.client_pause import ClientPause, NoClientPause, client_pause_for, quietly_release
from federation.operations.common import DCLook, lsn_text, poll, require_leader
from federation.operations.demotion_token import AgentUnavailable, DemotionToken
from federation.operations.gate_precheck import check_target_gates
from federation.operations.journal import LiveRecord, RecordJournal, RecordPort, new_operation
from federation.operations.pending import refuse_other_operation
from federation.operations.plan import Step, describe, run_plan
from federation.operations.report import OperationReport
from federation.operations.world import LiveWorld, World, every_member_streams
from federation.patroni_dynamic import ARCHIVE_GET
from federation.progress import Progress
from federation.state import FederationState, HistoryEntry, PendingOperation
from federation.topology import Datacenter, Member, Topology

__all__ = ["DemotionToken", "switchover_dc", "switchover_steps"]

KIND = "switchover"
DEFAULT_MAX_LAG_BYTES = 16 * 1024 * 1024
DEMOTE_TIMEOUT = 60.0
CATCH_UP_TIMEOUT = 60.0
PROMOTE_TIMEOUT = 60.0
STREAMING_GRACE = 15.0
# A target that was streaming when the source shut down already holds the token's LSN; one that was not
# gets its restore_command back after this long and fetches the tail from the archive.
ARCHIVE_FALLBACK_AFTER = 3.0
# The demoted leader's agent reads pg_control for the token; after this many failed asks in a row the demote
# step stops asking and waits for the restart instead (the agent is down, or was not given patroni.yml).
AGENT_TRIES = 3
AGENT_TIMEOUT = 0.5


@dataclass
class Switchover:
    """One run of a switchover plan: what its steps share. `inputs` is what the record keeps."""

    world: World
    journal: RecordJournal
    source: Datacenter
    target: Datacenter
    upstreams: dict[str, str | None]  # the roles once done (a rollback: the roles before it began)
    inputs: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    progress: Progress = field(default_factory=lambda: Progress(quiet=True))
    clients: ClientPause = field(default_factory=NoClientPause)
    # When the source's agent first stopped answering GET /primary with 200 (time.monotonic()).
    drained_since: float | None = None
    # Return only once the source streams from the target (else at once after the re-point, as Patroni's
    # own switchover returns once the new leader runs, before the old one is a replica again).
    wait_streaming: bool = False

    @property
    def rollback(self) -> bool:
        return self.target.name == self.source.name

    leaders: dict[str, Member] = field(default_factory=dict)

    def leader(self, dc: Datacenter, what: str) -> Member:
        """The DC's leader, as first found: a demoted source (or a promoted target) is led by the same member,
        while its REST API may still be catching up with the restart."""
        if dc.name not in self.leaders:
            self.leaders[dc.name] = require_leader(self.world.look(dc), what)
        return self.leaders[dc.name]

    def token(self) -> DemotionToken:
        return DemotionToken.from_json_dict(self.inputs["token"])

    def quietly(self, probe: Callable[[], bool]) -> bool:
        """A done-check that cannot answer (the member is down) says "not done": the act then reports why."""
        try:
            return probe()
        except Exception:
            return False

    def target_writable(self) -> bool:
        return self.quietly(lambda: self.world.writable(self.leader(self.target, "cannot promote it")))


def switchover_steps(run: Switchover) -> list[Step[Switchover]]:
    source, target = run.source.name, run.target.name
    if run.rollback:
        # Nothing to demote: the source is demoted already, or was never demoted (then it is still the primary).
        return [
            Step("token", f"read {source}'s final LSN (the demotion token)", _read_token,
                 done=lambda r: "token" in r.inputs or r.target_writable(), changes=False),
            Step("promote", f"promote {source} back", _promote, done=lambda r: r.target_writable()),
            Step("repoint", "point every standby DC at its upstream again", _repoint),
            Step("followers-stream", "wait until every standby DC streams again", _standbys_stream, changes=False),
            Step("release-clients", "withdraw the pause request: PgBouncers resume", _release_clients),
        ]
    return [
        Step("prepare", f"prepare {target} and {source} while {source} still takes writes", _prepare,
             done=_source_demoted),
        Step("pause-clients", "ask every entrypoint follower to PAUSE its PgBouncer (transactions wait instead of "
                              "failing)", _pause_clients,
             done=lambda r: _source_demoted(r) or r.quietly(lambda: r.clients.requested(r.journal.op.id))),
        Step("demote", f"demote {source} (Patroni demote-cluster: clean shutdown) pointing it at {target}",
             _demote, done=_source_demoted),
        Step("token", f"read {source}'s final LSN, timeline and system identifier (the demotion token)",
             _read_token, done=lambda r: "token" in r.inputs, changes=False),
        # Not journaled (changes=False): it falls inside the clients' outage, and a rerun reads the same token
        # again and waits again; its only change, the archive fallback's restore_command, is harmless twice.
        Step("catch-up", f"wait until {target}'s standby leader has replayed exactly that LSN", _catch_up,
             done=lambda r: r.target_writable(), changes=False),
        Step("epoch", f"raise the federation epoch (primary DC {target})" + (
            f", revoking {source}'s lease" if run.world.topo.federation_store is not None else ""), _raise_epoch,
             done=lambda r: r.journal.record.primary_dc == target, commits_itself=True),
        Step("promote", f"promote {target} and wait until it accepts writes", _promote,
             done=lambda r: r.target_writable()),
        Step("switch-point", f"check {target}'s new timeline began at the token's LSN", _check_switch_point,
             changes=False),
        Step("repoint", f"point {source} and every other standby DC at its new upstream", _repoint),
        Step("release-clients", "withdraw the pause request (PgBouncers resumed once they saw the new leader)",
             _release_clients),
        *([Step("source-streams", f"wait until {source} streams from {target}", _source_streams, changes=False)]
          if run.wait_streaming else []),
    ]


def switchover_dc(topo: Topology, target_name: str, progress: Progress, *, dry_run: bool = False,
                  max_lag_bytes: int = DEFAULT_MAX_LAG_BYTES, force: bool = False, world: World | None = None,
                  record: RecordPort | None = None, clients: ClientPause | None = None,
                  wait_streaming: bool = False) -> OperationReport:
    """`force` goes ahead although a member of the target cannot be shown to run the promotion gate
    (operations.gate_precheck), with a warning. `clients` pauses the entrypoint followers (by default,
    through the federation store when the world is the live one). `wait_streaming` returns only once the
    source streams from the target; by default it returns once the source is re-pointed (the lossless proof
    is done by then: the target's timeline began at the token)."""
    target = topo.dc(target_name)
    if clients is None:
        clients = client_pause_for(topo) if world is None else NoClientPause()
    world = world or LiveWorld(topo)
    record = record or LiveRecord(topo)
    try:
        return _switchover(topo, target, progress, dry_run, max_lag_bytes, force, world, record, clients,
                           wait_streaming)
    finally:
        world.close()


def _switchover(topo: Topology, target: Datacenter, progress: Progress, dry_run: bool, max_lag_bytes: int,
                force: bool, world: World, record: RecordPort, clients: ClientPause,
                wait_streaming: bool) -> OperationReport:
    st = record.read()
    refuse_other_operation(st, KIND)
    pending = st.operation
    source = topo.dc(pending.source) if pending and pending.source else topo.dc(st.primary_dc)
    if pending is not None and pending.rollback and target.name != source.name:
        raise OperationRefused(f"the switchover {pending.source} -> {pending.target} is being rolled back (step "
                               f"{pending.step})", hint=f"finish the rollback: `fedctl switchover-dc {source.name}` "
                                                        "or `fedctl operation abort`")
    rollback = pending is not None and target.name == source.name
    if target.name == source.name and pending is None:
        raise BadInput(f"{target.name} is already the primary DC (epoch {st.epoch})",
                       hint="name the standby DC that should become primary")
    if pending is not None and not rollback and target.name != pending.target:
        raise OperationRefused(f"a switchover {pending.source} -> {pending.target} is pending (step {pending.step})",
                               hint=f"finish it (`fedctl switchover-dc {pending.target}`) or abort it "
                                    "(`fedctl operation abort`) first")
    if pending is not None and rollback and st.primary_dc != source.name:
        raise OperationRefused(f"the switchover {pending.source} -> {pending.target} is past its commit point: "
                               f"epoch {st.epoch} names {st.primary_dc}; it cannot be rolled back",
                               hint=f"finish it: `fedctl switchover-dc {st.primary_dc}`")
    ups = st.upstreams if rollback else reroot(topo, target.name)
    op = pending or new_operation(KIND, source.name, target.name, [], rollback=False)
    if rollback and not op.rollback:
        op = op.model_copy(update={"rollback": True})
    run = Switchover(world, RecordJournal(record, st, op), source, target, ups, inputs=dict(op.inputs),
                     progress=progress, clients=clients, wait_streaming=wait_streaming)
    steps = switchover_steps(run)
    run.journal.op = op.model_copy(update={"plan": [s.name for s in steps]})
    report = OperationReport("switchover-dc", target.name, source.name, epoch=st.epoch, dry_run=dry_run,
                             plan=describe(steps)).with_upstreams(topo, ups)
    if pending:
        progress.say(f"Resuming the switchover {pending.source} -> {pending.target} left at step "
                     f"'{pending.step}'" + (" as a rollback to " + source.name if rollback else ""))
    with progress.step("pre-checks"):
        looks = world.look_all()
        if pending is None and looks[source.name].is_primary and not _streaming_leader(looks[target.name]):
            # Right after an operation a standby leader may still be re-connecting: give it a moment.
            looks[target.name] = _wait_for_streaming_leader(world, target, STREAMING_GRACE)
        if pending is not None:  # a crash may have come in the middle of a restart: let Patroni finish it
            looks = _wait_for_leaders(world, looks, STREAMING_GRACE)
        _pre_checks(looks, source, target, max_lag_bytes, resuming=pending is not None)
        if pending is None:  # a resumed switchover (or its rollback) was checked when it began, and must finish
            gates = check_target_gates(world, target, progress, force=force)
            report.facts["promotion_gate"] = gates.to_json_dict()
            report.plan.insert(0, f"pre-checks: {gates.sentence()}")
        run.leaders.update({name: look.leader for name, look in looks.items() if look.leader is not None})
    if dry_run:
        report.outcome = "planned"
        return report
    try:
        run_plan(KIND, steps, run, run.journal, progress)
    except Exception as exc:
        report.outcome = "failed"
        report.error = str(exc)
        raise
    report.facts.update(run.facts)
    report.facts.setdefault("demotion_token", run.inputs.get("token"))
    if not rollback and not wait_streaming:
        report.facts["source_streaming"] = "not waited for"
        progress.say(f"   {source.name} follows {target.name} by streaming within seconds: `fedctl status` shows it "
                     "(--wait-streaming waits for it)")
    report.epoch = run.journal.record.epoch
    report.outcome = "rolled back" if rollback else "succeeded"
    entry = HistoryEntry(epoch=run.journal.record.epoch, time=state.utc_now(), operation="switchover-dc",
                         source=source.name, target=target.name, outcome=report.outcome,
                         seconds=round(sum(s.seconds for s in progress.steps), 3),
                         details={"demotion_token": run.inputs.get("token"), "switch_point": run.facts.get(
                             "switch_point"), "rollback": rollback, "operation": op.id})
    run.journal.finish(entry)
    return report


def _streaming_leader(look: DCLook) -> bool:
    status = look.leader_status
    return status is not None and status.role == "standby_leader" and status.replication_state == "streaming"


def _wait_for_streaming_leader(world: World, dc: Datacenter, timeout: float) -> DCLook:
    deadline = time.monotonic() + timeout
    look = world.look(dc)
    while not _streaming_leader(look) and time.monotonic() < deadline:
        time.sleep(0.2)
        look = world.look(dc)
    return look


def _wait_for_leaders(world: World, looks: dict[str, DCLook], timeout: float) -> dict[str, DCLook]:
    deadline = time.monotonic() + timeout
    while any(look.leader is None for look in looks.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
        looks = world.look_all()
    return looks


def _pre_checks(looks: dict[str, DCLook], source: Datacenter, target: Datacenter, max_lag_bytes: int,
                resuming: bool) -> None:
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


def _prepare(run: Switchover) -> str:
    """Work done before the demotion, so that less of it falls into the time without a writer."""
    done = []
    target_leader = run.leader(run.target, "cannot promote it")
    # Promoting, PostgreSQL asks restore_command for the last segment and two history files (three
    # pgBackRest runs); the target already has that WAL by streaming. Where WAL comes from changes nothing
    # about which WAL it is: the catch-up check guards the tail. The promotion removes standby_cluster
    # anyway, and a rollback's re-point step gives the target its full section back.
    section = run.world.config(target_leader).get("standby_cluster") or {}
    if section.get("restore_command"):
        run.world.patch(target_leader, {"standby_cluster": {"restore_command": None}})
        done.append(f"{run.target.name} catches up by streaming only")
    # Checkpoint now, while writes still go on: the shutdown checkpoint then has little left to flush.
    source_leader = run.leader(run.source, "cannot demote it")
    run.world.checkpoint(source_leader)
    done.append(f"checkpoint on {source_leader.name}")
    return "; ".join(done)


def _pause_clients(run: Switchover) -> str:
    request = PauseRequest(operation=run.journal.op.id, source=run.source.name, target=run.target.name,
                           epoch=run.journal.record.epoch, requested_at=time.time())
    try:
        said = run.clients.pause(request)
    except FedError as exc:
        said = f"could not ask the entrypoint followers ({exc.message}): going on without a pause"
    run.facts["client_pause"] = said
    return said


def _release_clients(run: Switchover) -> str:
    said = quietly_release(run.clients, run.journal.op.id)
    run.facts["client_release"] = said
    return said


def _source_demoted(run: Switchover) -> bool:
    """The source already runs in recovery: demoted (the token step reads where it stopped)."""
    return run.quietly(lambda: run.world.in_recovery(run.leader(run.source, "cannot demote it")))


def _demote(run: Switchover) -> str:
    leader = run.leader(run.source, "cannot demote it")
    if run.world.look(run.source).is_primary:
        section = _streaming_only(run.world.standby_section(run.source, run.upstreams))
        run.world.patch(leader, {"standby_cluster": section})
        detail = f"PATCH standby_cluster on {leader.name}"
    else:
        detail = "already a standby DC"
    token, agent_failure = _await_shutdown(run, leader)
    if token is None:
        why = f" ({agent_failure})" if agent_failure else ""
        return f"{detail}; {leader.name} runs again as standby leader{why}"
    run.facts["shutdown_token"] = token.to_json_dict()
    return f"{detail}; {leader.name} shut down cleanly (its agent read pg_control)"


def _await_shutdown(run: Switchover, leader: Member) -> tuple[DemotionToken | None, str | None]:
    """Until the demoted leader has shut down cleanly, as its agent reads pg_control (the token, at once), or
    answers SQL in recovery again after Patroni's restart (no token: the token step reads it over SQL; then
    also why the agent could not tell, if it could not).

    Either is safe to go on from: a primary's clean shutdown ends its WAL with the shutdown checkpoint, which
    its walsenders ship before it stops, and a standby writes no WAL of its own. The agent's answer comes
    1.5-3 s before the restart; without an agent that can read pg_control, the restart is waited for."""
    agent_failures: list[str] = []

    def probe() -> DemotionToken | bool | None:
        if len(agent_failures) < AGENT_TRIES:  # an agent given up on is not asked for its /primary either
            _note_drain(run, leader)
            try:
                token = run.world.shutdown_token(leader, AGENT_TIMEOUT)
            except AgentUnavailable as exc:
                agent_failures.append(str(exc))
                if len(agent_failures) == AGENT_TRIES:
                    run.progress.say(f"   {exc}: waiting for {leader.name} to run again to read the token")
            else:
                agent_failures.clear()
                if token is not None:
                    return token
        return True if run.world.in_recovery(leader) else None

    got = poll(f"{run.source.name}'s leader {leader.name} to shut down cleanly or restart as standby leader "
               "accepting SQL", probe, DEMOTE_TIMEOUT, 0.02)
    if run.drained_since is None:
        run.drained_since = time.monotonic()
    if isinstance(got, DemotionToken):
        return got, None
    return None, agent_failures[-1] if agent_failures else None


def _note_drain(run: Switchover, leader: Member) -> None:
    """When the source's agent first answered GET /primary with anything but 200 (draining, then not primary):
    from then on every HAProxy takes the source out of its read-write backend at its next check."""
    if run.drained_since is None and run.world.answers_primary(leader, AGENT_TIMEOUT) is False:
        run.drained_since = time.monotonic()


def _let_entrypoints_drain(run: Switchover) -> None:
    """Promote no sooner than every HAProxy has had its check of the source since it stopped answering 200:
    one promoted sooner could pass its check first, and HAProxy would then have two read-write servers, one
    of them a stopping PostgreSQL that refuses new connections. Costs nothing when the shutdown, catch-up and
    epoch took longer; a resumed run (it did not see the drain begin) has long waited that out."""
    if run.drained_since is None:
        return
    left = run.drained_since + run.world.drain_seconds - time.monotonic()
    run.facts["entrypoint_drain_wait"] = round(max(0.0, left), 3)
    if left > 0:
        run.progress.say(f"   {left:.2f} s more for the entrypoints' checks to drain {run.source.name}")
        time.sleep(left)


def _streaming_only(section: dict[str, Any] | None) -> dict[str, Any] | None:
    """The demoted source restarts from its own pg_wal and streams; with restore_command its startup would
    first ask the archive for the checkpoint's segment and history files. The re-point step puts it back."""
    return {k: v for k, v in section.items() if k != "restore_command"} if section else section


def _read_token(run: Switchover) -> str:
    if (early := run.facts.pop("shutdown_token", None)) is not None:
        token, how = DemotionToken.from_json_dict(early), "from its pg_control after the clean shutdown"
        run.facts["token_source"] = "pg_control"
    else:
        token, how = run.world.read_token(run.leader(run.source, "cannot read its final LSN")), "over SQL"
        run.facts["token_source"] = "sql"
    run.inputs["token"] = token.to_json_dict()
    run.progress.say(f"   demotion token: {token.sentence()} ({how})")
    return f"{token.sentence()} ({how})"


def _catch_up(run: Switchover) -> str:
    token = run.token()
    leader = run.leader(run.target, "cannot promote it")
    replayed = _wait_for_token(run.world, run.target, leader, token)
    if replayed != token.lsn:
        raise OperationFailed(f"{run.target.name} replayed {lsn_text(replayed)}, past the token "
                              f"{lsn_text(token.lsn)}: it has WAL the source never wrote; stopping",
                              hint="inspect both DCs, then `fedctl operation abort` rolls back to the source")
    return f"{leader.name} at {lsn_text(replayed)}"


def _wait_for_token(world: World, target: Datacenter, leader: Member, token: DemotionToken) -> int:
    """Until the target has replayed at least the token; the caller refuses anything but exactly the token."""
    what = f"{target.name} ({leader.name}) to replay {lsn_text(token.lsn)}"

    def replayed() -> int | None:
        got = world.replayed(leader)
        return got if got is not None and got >= token.lsn else None

    try:
        return poll(what, replayed, ARCHIVE_FALLBACK_AFTER, 0.02)
    except OperationFailed:
        pass
    # The target was not streaming when the source shut down. Patroni archived the segment holding the
    # shutdown checkpoint before restarting the source, so the archive has the tail.
    if not (world.config(leader).get("standby_cluster") or {}).get("restore_command"):
        world.patch(leader, {"standby_cluster": {"restore_command": ARCHIVE_GET}})
    return poll(what, replayed, CATCH_UP_TIMEOUT, 0.02)


def _raise_epoch(run: Switchover) -> str:
    new = run.journal.raise_epoch(run.target.name, run.upstreams, "promote", run.inputs, hand_over_lease=True)
    return f"epoch {new.epoch} names {run.target.name}"


def _promote(run: Switchover) -> str:
    leader = run.leader(run.target, "cannot promote it")
    if not run.world.writable(leader):
        _let_entrypoints_drain(run)
        run.world.apply_role(run.target, leader, run.upstreams)
    # The epoch already names the target (a rollback: still names it), so its promotion gate lets it promote.
    poll(f"{run.target.name} ({leader.name}) to accept writes",
         lambda: True if run.world.writable(leader) else None, PROMOTE_TIMEOUT, 0.02)
    return f"{leader.name} accepts writes"


def _check_switch_point(run: Switchover) -> str:
    token, leader = run.token(), run.leader(run.target, "cannot check its timeline")
    timeline = run.world.timeline(leader)
    point = run.world.switch_point(leader, timeline)
    run.facts["new_timeline"], run.facts["switch_point"] = timeline, lsn_text(point)
    if point != token.lsn:
        raise OperationFailed(f"timeline {timeline} of {run.target.name} began at {lsn_text(point)}, not at "
                              f"the token's {lsn_text(token.lsn)}: the switchover is not proven lossless",
                              hint=f"{run.source.name} may need `fedctl rejoin-dc {run.source.name}`")
    return f"timeline {timeline} began at {lsn_text(point)} = token"


def _repoint(run: Switchover) -> str:
    """Every DC's PATCH at once: they are independent, each goes to its own DC's leader."""
    dcs = [dc for dc in run.world.topo.datacenters if dc.name != run.target.name]

    def one(dc: Datacenter) -> str | None:
        leader = run.leader(dc, "cannot re-point it")
        return dc.name if run.world.apply_role(dc, leader, run.upstreams) else None

    with ThreadPoolExecutor(max_workers=max(1, len(dcs))) as pool:
        changed = [name for name in pool.map(one, dcs) if name]
    return f"re-pointed: {', '.join(changed) or 'none needed'}"


def _source_streams(run: Switchover) -> str:
    poll(f"{run.source.name} to stream on timeline {run.facts.get('new_timeline', '?')}",
         lambda: True if every_member_streams(run.world, run.source) else None, DEMOTE_TIMEOUT, 0.05)
    return f"every member of {run.source.name} streams"


def _standbys_stream(run: Switchover) -> str:
    standbys = [dc for dc in run.world.topo.datacenters if run.upstreams.get(dc.name) is not None]
    for dc in standbys:
        def streams(d: Datacenter = dc) -> bool | None:
            return True if every_member_streams(run.world, d) else None

        poll(f"{dc.name} to stream from its upstream", streams, DEMOTE_TIMEOUT, 0.05)
    return f"streaming: {', '.join(dc.name for dc in standbys) or 'no standby DC'}"


def pending_switchover(st: FederationState) -> PendingOperation | None:
    return st.operation if st.operation is not None and st.operation.kind == KIND else None
