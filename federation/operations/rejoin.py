"""Bring a returned DC back as a standby of the current primary DC, reporting the WAL it wrote past the fork.

The DC must already be fenced by the promotion gate (no member can promote while a peer holds a
higher epoch naming another primary). We write its standby_cluster into its own DCS (through any
member's REST API, or straight into the DCS when no member answers), then Patroni rewinds it
(use_pg_rewind) and it streams. When a member cannot follow (rewind impossible), replicas are rebuilt
with Patroni's reinitialize, which uses create_replica_methods (pgBackRest delta restore first).
"""

from __future__ import annotations

import json
import time
from typing import Any

from federation import patroni_api, state
from federation.dcs import connect
from federation.dcs.patroni_keys import config_key
from federation.errors import BadInput, FedError, OperationFailed, OperationRefused
from federation.lsn import parse_lsn
from federation.operations.common import (
    apply_role,
    current_timeline,
    look_at,
    lsn_text,
    poll,
    require_leader,
    sql_row,
    switch_point,
)
from federation.operations.report import OperationReport
from federation.patroni_dynamic import role_patch
from federation.progress import Progress
from federation.state import HistoryEntry
from federation.topology import Datacenter, Member, Topology

STREAM_TIMEOUT = 120.0
POSITION_QUERY = """
    SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text,
           CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
                ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END
"""
REINIT_GRACE = 40.0
CONFIG_WRITE_ATTEMPTS = 5


def divergence(fork_lsn: int, fork_timeline: int, member_timeline: int | None,
               member_lsn: int | None) -> dict[str, Any]:
    """The WAL a member wrote past the fork: only WAL on the old timeline beyond the switch point."""
    if member_lsn is None:
        return {"diverged": None, "from": lsn_text(fork_lsn), "to": None, "bytes": None}
    on_old_timeline = member_timeline is not None and member_timeline <= fork_timeline
    extra = member_lsn - fork_lsn if on_old_timeline else 0
    return {"diverged": extra > 0, "from": lsn_text(fork_lsn), "to": lsn_text(member_lsn) if extra > 0 else None,
            "bytes": max(0, extra)}


def _member_position(topo: Topology, member: Member) -> tuple[int | None, int | None]:
    """(timeline, end of WAL) of a running member in recovery, or (None, None)."""
    try:
        # What the member holds as its own history: replayed WAL in recovery (a walreceiver's receive
        # position starts at a segment boundary), the current position on a primary.
        row = sql_row(topo, member, POSITION_QUERY)
    except Exception:
        return None, None
    if not row or not row[0]:
        return None, None
    return int(row[1]), parse_lsn(row[0])


def rejoin_dc(topo: Topology, dc_name: str, progress: Progress, *, dry_run: bool = False) -> OperationReport:
    dc = topo.dc(dc_name)
    st, _copies = state.current_state(topo)
    if dc.name == st.primary_dc:
        raise BadInput(f"{dc.name} is the primary DC (epoch {st.epoch}); only a replaced DC can rejoin")
    upstream_name = st.upstream_of(dc.name) or st.primary_dc
    report = OperationReport("rejoin-dc", dc.name, upstream_name, epoch=st.epoch, dry_run=dry_run, plan=[
        f"find where {dc.name}'s timeline forked from {upstream_name}'s",
        f"report the WAL {dc.name} wrote past the fork",
        f"write {dc.name}'s standby_cluster (upstream {upstream_name}) into its own DCS",
        f"wait until every {dc.name} member streams (Patroni rewinds; replicas that cannot are reinitialised)"])
    primary = topo.dc(st.primary_dc)
    with progress.step("find the fork") as rec:
        primary_leader = require_leader(look_at(primary), "the current primary DC must answer")
        timeline = current_timeline(topo, primary_leader)
        fork = switch_point(topo, primary_leader, timeline)
        if fork is None:
            raise OperationFailed(f"{primary_leader.name} has no history file for timeline {timeline}")
        rec.detail = f"{st.primary_dc} timeline {timeline} began at {lsn_text(fork)}"
        report.facts["fork"] = {"timeline": timeline - 1, "lsn": lsn_text(fork)}
    with progress.step("measure the diverged WAL") as rec:
        diverged = {m.name: divergence(fork, timeline - 1, *_member_position(topo, m)) for m in dc.members}
        report.facts["diverged_wal"] = diverged
        worst = max((d["bytes"] or 0 for d in diverged.values()), default=0)
        rec.detail = (f"{worst} bytes written past {lsn_text(fork)} will be discarded" if worst
                      else "nothing written past the fork (or positions unknown)")
        progress.say(f"   {rec.detail}")
    if dry_run:
        report.outcome = "planned"
        return report
    with progress.step(f"point {dc.name} at {upstream_name}") as rec:
        rec.detail = _write_standby_config(topo, dc, st.upstreams)
    with progress.step(f"wait until {dc.name} streams from {upstream_name}") as rec:
        _wait_streaming(topo, dc, progress)
        rec.detail = "every member streams"
    report.outcome = "succeeded"
    entry = HistoryEntry(epoch=st.epoch, time=state.utc_now(), operation="rejoin-dc", source=upstream_name,
                         target=dc.name, outcome="succeeded",
                         seconds=round(sum(s.seconds for s in progress.steps), 3),
                         details={"fork": report.facts["fork"], "diverged_wal": diverged})
    state.append_history(topo, entry)
    return report


def _write_standby_config(topo: Topology, dc: Datacenter, upstreams: dict[str, str | None]) -> str:
    look = look_at(dc)
    member = look.leader or next((m for m in dc.members if look.statuses.get(m.name) is not None), None)
    if member is not None:
        try:
            if apply_role(topo, dc, member, upstreams):
                return f"PATCH /config through {member.name}"
            return "already pointing there"
        except FedError:
            pass
    with connect(dc) as dcs:
        key = config_key(dc)
        # The DC's agent fences it the same way at the same time; when its write wins ours, read again.
        for _attempt in range(CONFIG_WRITE_ATTEMPTS):
            found = dcs.get(key)
            if found is None:
                raise OperationRefused(f"{dc.name}'s DCS holds no Patroni configuration",
                                       hint="is this DC initialised?")
            config = json.loads(found.value)
            merged = _merge(config, role_patch(topo, dc, upstreams, config))
            if merged == config:
                return "already pointing there"
            if dcs.replace(key, json.dumps(merged), found.version):
                return "written straight into the DCS (no member answered)"
    raise OperationFailed(f"{dc.name}'s configuration kept changing while we wrote it ({CONFIG_WRITE_ATTEMPTS} "
                          "tries); run rejoin-dc again")


def _merge(config: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _wait_streaming(topo: Topology, dc: Datacenter, progress: Progress) -> None:
    """Members are 'stopped' while Patroni rewinds them; only one still not following after a grace
    period, with a standby leader in place to clone from, is reinitialised."""
    reinitialised: set[str] = set()
    grace_until = time.monotonic() + REINIT_GRACE

    def probe() -> bool | None:
        look = look_at(dc, timeout=1.0)
        pending = []
        for member in dc.members:
            status = look.statuses.get(member.name)
            if status is not None and status.replication_state == "streaming":
                continue
            pending.append(member.name)
            if (status is not None and status.role == "replica" and look.leader is not None
                    and time.monotonic() > grace_until and member.name not in reinitialised):
                progress.say(f"   {member.name} cannot follow ({status.state}): reinitialising it")
                try:
                    patroni_api.request_json("POST", member, "/reinitialize", {"force": True})
                    reinitialised.add(member.name)
                except FedError as exc:
                    progress.say(f"   reinitialise of {member.name} failed: {exc}")
        return True if not pending else None

    poll(f"every member of {dc.name} to stream", probe, STREAM_TIMEOUT, 0.5)
