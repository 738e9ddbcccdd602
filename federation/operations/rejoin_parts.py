"""rejoin-dc's pieces that talk to one thing each: a member's WAL position, the diverged WAL, the DCS write."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from federation.dcs import connect
from federation.dcs.patroni_keys import config_key
from federation.errors import OperationFailed, OperationRefused
from federation.lsn import parse_lsn
from federation.operations.common import lsn_text, sql_row, upstream_leader
from federation.patroni_dynamic import role_patch
from federation.topology import Datacenter, Member, Topology

POSITION_QUERY = """
    SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text,
           CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
                ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END
"""
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


def member_position(topo: Topology, member: Member) -> tuple[int | None, int | None]:
    """(timeline, end of WAL) of a running member, or (None, None)."""
    try:
        # What the member holds as its own history: replayed WAL in recovery (a walreceiver's receive
        # position starts at a segment boundary), the current position on a primary.
        row = sql_row(topo, member, POSITION_QUERY)
    except Exception:
        return None, None
    if not row or not row[0]:
        return None, None
    return int(row[1]), parse_lsn(row[0])


def write_role_in_dcs(topo: Topology, dc: Datacenter, upstreams: Mapping[str, str | None]) -> str:
    """Write the DC's standby_cluster straight into its DCS, for when no member's REST API answers."""
    leader = upstream_leader(topo, dc, upstreams)
    with connect(dc) as dcs:
        key = config_key(dc)
        # The DC's agent fences it the same way at the same time; when its write wins ours, read again.
        for _attempt in range(CONFIG_WRITE_ATTEMPTS):
            found = dcs.get(key)
            if found is None:
                raise OperationRefused(f"{dc.name}'s DCS holds no Patroni configuration",
                                       hint="is this DC initialised?")
            config = json.loads(found.value)
            merged = merge(config, role_patch(topo, dc, upstreams, config, upstream_leader=leader))
            if merged == config:
                return "already pointing there"
            if dcs.replace(key, json.dumps(merged), found.version):
                return "written straight into the DCS (no member answered)"
    raise OperationFailed(f"{dc.name}'s configuration kept changing while we wrote it ({CONFIG_WRITE_ATTEMPTS} "
                          "tries); run rejoin-dc again")


def merge(config: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Patroni's PATCH semantics: nested dicts merge, None removes the key."""
    out = dict(config)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
