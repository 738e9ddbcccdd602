"""`fedctl adopt`: bring Patroni clusters that already run (one primary cluster, standby clusters set up
by hand) under the federation, online, without restarting any of them.

Reads each DC as it runs, refuses with the whole list of contradictions with the topology (or with the
federation record, once there is one), else applies the plan (adopt_plan): the permanent slots each
standby DC streams through, waited for on its upstream's leader before the standby names them; the
standby_cluster keys fedctl relies on, waited for until the standby DC streams again; the first
federation record. Every step compares first, so a rerun after a crash picks up where it stopped and
a run on an adopted federation changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from federation import patroni_api
from federation.errors import FedError, OperationFailed, OperationRefused
from federation.operations.adopt_plan import (
    AdoptStep,
    RunningDC,
    adoption_steps,
    disagreements,
    member_lines,
    streams_from,
)
from federation.operations.common import look_at, poll, sql_row
from federation.progress import Progress
from federation.state import FederationState, HistoryEntry, commit, initial_state, read_copies, utc_now
from federation.topology import Datacenter, Topology

SLOT_WAIT = 60.0  # Patroni creates a permanent slot in its next HA cycle (loop_wait, 10 s by default)
STREAM_WAIT = 60.0  # a standby DC re-reads standby_cluster in its next cycle, then its walreceiver restarts


@dataclass(frozen=True)
class RecordView:
    """The roles to adopt and where they come from; `state` is None while no federation record exists."""

    upstreams: dict[str, str | None]
    source: str
    state: FederationState | None


@dataclass(frozen=True)
class AdoptReport:
    federation: str
    source: str
    running: dict[str, RunningDC]
    steps: list[AdoptStep]
    writes_record: bool  # the first federation record is (to be) written
    member_lines: list[str]
    applied: bool

    @property
    def plan(self) -> list[str]:
        record = [f"write the first federation record (epoch 0) with the roles of {self.source}"] \
            if self.writes_record else []
        return [*(step.says for step in self.steps), *record]


def read_record_view(topo: Topology) -> RecordView:
    """The federation record when one exists (its roles are the truth then), else the topology's roles."""
    state = _existing_record(topo)
    if state is None:
        initial = initial_state(topo)
        return RecordView(dict(initial.upstreams), "the topology", None)
    if state.operation is not None:
        op = state.operation
        raise OperationRefused(f"a {op.kind} of {op.target} is pending at step '{op.step}': adopt changes nothing "
                               "while an operation is in flight", hint="`fedctl operation show` says how to finish it")
    return RecordView(dict(state.upstreams), f"the federation record (epoch {state.epoch})", state)


def _existing_record(topo: Topology) -> FederationState | None:
    if topo.federation_store is not None:
        from federation.record_store import current_state as stored_state
        from federation.store import StoreNotInitialised

        try:
            return stored_state(topo)[0]
        except StoreNotInitialised:
            return None
    copies = read_copies(topo)
    unreadable = [f"{c.dc} ({c.error})" for c in copies if not c.reachable]
    if unreadable:
        raise OperationRefused(f"cannot read the federation record's copy in the DCS of {', '.join(unreadable)}",
                               hint="adopt reads every DC's DCS: bring it back (or fix its address in the topology)")
    states = [c.state for c in copies if c.state is not None]
    return max(states, key=lambda s: s.epoch) if states else None


def read_running(topo: Topology) -> dict[str, RunningDC]:
    """Every DC as its members' REST APIs show it, read in parallel."""
    with ThreadPoolExecutor(max_workers=len(topo.datacenters)) as pool:
        found = list(pool.map(_read_dc, topo.datacenters))
    return {seen.dc.name: seen for seen in found}


def _read_dc(dc: Datacenter) -> RunningDC:
    look = look_at(dc)
    if not look.answering:
        listed = ", ".join(f"{m.name} at {m.api_url}" for m in dc.members)
        return RunningDC(dc, error=f"no member's Patroni REST API answers ({listed})")
    leader = look.leader
    if leader is None:
        return RunningDC(dc)
    try:
        config = patroni_api.get_config(leader)
    except FedError as exc:
        return RunningDC(dc, error=f"the dynamic configuration cannot be read from its leader {leader.name}: "
                                   f"{exc.message}")
    return RunningDC(dc, leader=leader, writable=look.is_primary, config=config)


def adopt(topo: Topology, topology_path: str, progress: Progress, *, dry_run: bool = False) -> AdoptReport:
    with progress.step("read the federation record and every DC's running cluster") as rec:
        view = read_record_view(topo)
        running = read_running(topo)
        rec.detail = f"roles from {view.source}"
    problems = disagreements(topo, view.upstreams, running, view.source)
    if problems:
        raise OperationRefused(f"the running clusters contradict {view.source}; nothing was changed:\n  - "
                               + "\n  - ".join(problems),
                               hint="fix the topology (or the clusters), then run `fedctl adopt` again")
    steps = adoption_steps(topo, view.upstreams, running)
    report = AdoptReport(topo.federation, view.source, running, steps, view.state is None,
                         member_lines(topo, topology_path), applied=not dry_run)
    if dry_run:
        return report
    for step in steps:
        with progress.step(step.says) as rec:
            rec.detail = _apply(topo, running, step)
    if view.state is None:
        with progress.step("write the first federation record (epoch 0)") as rec:
            rec.detail = _write_first_record(topo, view)
    return report


def _apply(topo: Topology, running: Mapping[str, RunningDC], step: AdoptStep) -> str:
    seen = running[step.dc]
    assert seen.leader is not None
    patroni_api.patch_config(seen.leader, step.patch)
    if step.new_slots:
        return _wait_for_slots(topo, seen, step.new_slots)
    return _wait_for_streaming(topo, seen, step.patch["standby_cluster"])


def _wait_for_slots(topo: Topology, seen: RunningDC, names: tuple[str, ...]) -> str:
    leader = seen.leader
    assert leader is not None

    def present() -> bool | None:
        row = sql_row(topo, leader, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = ANY(%s)",
                      (list(names),))
        return True if row and row[0] == len(names) else None

    try:
        poll(f"Patroni to create {', '.join(names)} on {leader.name}", present, SLOT_WAIT, interval=0.5)
    except OperationFailed as exc:
        raise OperationFailed(f"{seen.dc.name}'s leader {leader.name} did not create the slot(s) {', '.join(names)} "
                              f"within {SLOT_WAIT:g} s: {exc.message}",
                              hint="check its Patroni log (max_replication_slots?), then run `fedctl adopt` "
                                   "again: it goes on from here") from None
    return f"present on {leader.name}"


def _wait_for_streaming(topo: Topology, seen: RunningDC, changed: Mapping[str, Any]) -> str:
    """Until the standby leader runs with the new settings (Patroni applies them in its next cycle) and its
    walreceiver streams: a plain "streaming" right after the PATCH would still be the old connection."""
    dc = seen.dc
    query = ("SELECT current_setting('primary_conninfo'), current_setting('primary_slot_name'), "
             "current_setting('restore_command'), (SELECT status FROM pg_stat_wal_receiver)")

    def streaming() -> str | None:
        leader = look_at(dc).leader
        row = sql_row(topo, leader, query) if leader is not None else None
        if row is None:
            return None
        conninfo, slot, restore, status = (str(v or "") for v in row)
        hosts = streams_from(changed)[0] if "host" in changed else []
        applied = (all(host in conninfo for host in hosts)
                   and changed.get("primary_slot_name", slot) == slot
                   and changed.get("restore_command", restore) == restore)
        return "streaming with the new settings" if applied and status == "streaming" else None

    try:
        return poll(f"{dc.name}'s standby leader to stream with its new settings", streaming, STREAM_WAIT,
                    interval=0.2)
    except OperationFailed as exc:
        raise OperationFailed(f"{dc.name}'s standby leader does not stream with its new standby_cluster settings "
                              f"after {STREAM_WAIT:g} s: {exc.message}",
                              hint=f"check the Patroni and PostgreSQL logs of {dc.name}'s leader (a slot, a "
                                   "password, pg_hba?); `fedctl adopt` again resumes") from None


def _write_first_record(topo: Topology, view: RecordView) -> str:
    entry = HistoryEntry(epoch=0, time=utc_now(), operation="adopt", target=_primary(view), outcome="adopted")
    base = initial_state(topo)
    record = base.model_copy(update={"updated": entry.time, "history": [entry]})
    if topo.federation_store is not None:
        from federation.record_store import open_store, write_copies

        if not open_store(topo).commit_record(record.model_dump_json(), None):
            raise OperationRefused("another operator wrote the federation record meanwhile; run `fedctl adopt` "
                                   "again: it adopts against that record")
        held = write_copies(topo, record, read_copies(topo))
        return f"in the federation store and the copies of {', '.join(held) or 'no DC'}"
    held = commit(topo, base, record, read_copies(topo))
    return f"in {', '.join(held)}"


def _primary(view: RecordView) -> str:
    return next(dc for dc, upstream in view.upstreams.items() if upstream is None)
