"""The parts of Patroni's dynamic (DCS) configuration that the federation owns, computed from roles.

A standby DC's `standby_cluster` lists every member of its upstream DC (libpq multi-host; Patroni adds
target_session_attrs=read-write) with the upstream's one PostgreSQL port and the DC's slot name
(fed_<dc>, or the one the topology names). The
slot lives as a permanent physical slot in the upstream DC's `slots`, so it survives leader changes
there. Slots for directions not in use are removed: a permanent slot nobody streams from pins WAL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.topology import Datacenter, Topology

ARCHIVE_GET = 'pgbackrest archive-get %f "%p"'
ARCHIVE_PUSH = "pgbackrest archive-push %p"
# The members' first create_replica_method (keep_data, no_params): a rebuild restores only what changed.
REPLICA_RESTORE = "pgbackrest --delta --type=standby restore"
FEDERATION_SLOT_PREFIX = "fed_"


def standby_cluster_section(dc: Datacenter, upstream: Datacenter, via_host: str | None = None) -> dict[str, Any]:
    """`via_host` names one upstream member when the upstream DC is itself a standby: Patroni forces
    target_session_attrs=read-write on a multi-host list with a slot, which a standby never satisfies."""
    return {
        "host": via_host or ",".join(m.host for m in upstream.members),
        "port": upstream.pg_port,
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


def role_patch(topo: Topology, dc: Datacenter, upstreams: Mapping[str, str | None],
               current_config: Mapping[str, Any], via_host: str | None = None) -> dict[str, Any]:
    """The whole PATCH that gives `dc` its federation role: standby_cluster (or null) and slots."""
    upstream = upstreams.get(dc.name)
    patch: dict[str, Any] = {
        "standby_cluster": standby_cluster_section(dc, topo.dc(upstream), via_host) if upstream else None,
    }
    slots = slots_patch(current_config.get("slots"), desired_slots(topo, dc, upstreams), federation_slots(topo))
    if slots:
        patch["slots"] = slots
    return patch
