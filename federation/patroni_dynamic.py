"""The parts of Patroni's dynamic (DCS) configuration that the federation owns, computed from roles.

A standby DC's `standby_cluster` lists every member of its upstream DC (libpq multi-host; Patroni adds
target_session_attrs=read-write) with the upstream's one PostgreSQL port, or names one member's host and
port where that cannot work (federation/follow_mode.py), and the DC's slot name (fed_<dc>, or the one
the topology names). The slot lives as a permanent physical slot in the upstream DC's `slots`, so it
survives leader changes there. Slots for directions not in use are removed: a permanent slot nobody
streams from pins WAL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.follow_mode import followed_member, shared_port
from federation.topology import Datacenter, Member, Topology

ARCHIVE_GET = 'pgbackrest archive-get %f "%p"'
ARCHIVE_PUSH = "pgbackrest archive-push %p"
# The members' first create_replica_method (keep_data, no_params): a rebuild restores only what changed.
REPLICA_RESTORE = "pgbackrest --delta --type=standby restore"
FEDERATION_SLOT_PREFIX = "fed_"


def standby_cluster_section(dc: Datacenter, upstream: Datacenter, via: Member | None = None) -> dict[str, Any]:
    """`via` is the one upstream member to stream from, for the follow modes that need one (follow_mode);
    without it, every member of the upstream DC, which must then share one port."""
    if via is not None:
        host, port = via.host, via.port
    else:
        common = shared_port(upstream)
        if common is None:
            raise ValueError(f"{upstream.name}'s members use different PostgreSQL ports: a standby DC follows "
                             "one of them (pass `via`)")
        host, port = ",".join(m.host for m in upstream.members), common
    return {
        "host": host,
        "port": port,
        "primary_slot_name": dc.slot_name,
        "create_replica_methods": ["pgbackrest", "basebackup"],
        "restore_command": ARCHIVE_GET,
    }


def desired_slots(topo: Topology, dc: Datacenter, upstreams: Mapping[str, str | None]) -> set[str]:
    """Names of the federation slots `dc` must keep: one per DC whose upstream it is."""
    return {other.slot_name for other in topo.datacenters if upstreams.get(other.name) == dc.name}


def federation_slots(topo: Topology) -> set[str]:
    """The slot names the federation owns: every DC's (fed_<dc>, or the one the topology names)."""
    return {dc.slot_name for dc in topo.datacenters}


def slots_patch(current: Mapping[str, Any] | None, wanted: set[str],
                ours: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """A PATCH /config `slots` value adding the wanted federation slots and removing the others.

    Slots neither named fed_* nor in `ours` belong to the user and are left alone.
    """
    current = current or {}
    patch: dict[str, Any] = {name: {"type": "physical"} for name in sorted(wanted) if name not in current}
    for name in current:
        if (name.startswith(FEDERATION_SLOT_PREFIX) or name in ours) and name not in wanted:
            patch[name] = None
    return patch


def role_section(topo: Topology, dc: Datacenter, upstreams: Mapping[str, str | None],
                 upstream_leader: Member | None = None,
                 configured: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """`dc`'s standby_cluster section in the layout `upstreams` (None: it is the primary DC).

    `upstream_leader` is the upstream DC's leader as last seen (None: unknown), for the follow modes that
    stream from one member; while it is unknown the member the `configured` section names is kept."""
    upstream = upstreams.get(dc.name)
    if upstream is None:
        return None
    via = followed_member(topo.dc(upstream), upstreams, upstream_leader, configured)
    return standby_cluster_section(dc, topo.dc(upstream), via)


def role_patch(topo: Topology, dc: Datacenter, upstreams: Mapping[str, str | None],
               current_config: Mapping[str, Any], upstream_leader: Member | None = None) -> dict[str, Any]:
    """The whole PATCH that gives `dc` its federation role: standby_cluster (or null) and slots."""
    patch: dict[str, Any] = {
        "standby_cluster": role_section(topo, dc, upstreams, upstream_leader, current_config.get("standby_cluster")),
    }
    slots = slots_patch(current_config.get("slots"), desired_slots(topo, dc, upstreams), federation_slots(topo))
    if slots:
        patch["slots"] = slots
    return patch
