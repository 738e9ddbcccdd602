"""Which member backup commands act on: a DC's current leader, read from Patroni's REST API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from federation.errors import OperationFailed, OperationRefused
from federation.operations.common import connect, look_at
from federation.patroni_api import PRIMARY_ROLES
from federation.topology import Datacenter, Member, Topology


@dataclass(frozen=True)
class Leader:
    dc: Datacenter
    member: Member
    role: str  # "primary" or "standby_leader"

    @property
    def is_primary(self) -> bool:
        return self.role in PRIMARY_ROLES


def find_leader(dc: Datacenter) -> Leader:
    """The DC's leader now, as every operation finds it (all members' Patroni asked at once, operations.common).
    Raises OperationFailed when there is none."""
    look = look_at(dc, timeout=2.0)
    leader, status = look.leader, look.leader_status
    if leader is None or status is None:
        seen = [f"{name}={s.role if s is not None else 'unreachable'}" for name, s in look.statuses.items()]
        raise OperationFailed(f"datacenter {dc.name} has no leader right now ({', '.join(seen)})",
                              hint="check the DC with `fedctl status` and `patronictl list`; retry when it has one")
    return Leader(dc, leader, "primary" if status.role in PRIMARY_ROLES else str(status.role))


def primary_leader(dc: Datacenter) -> Leader:
    """The DC's leader, which must be a primary: only the primary DC writes WAL and takes backups."""
    leader = find_leader(dc)
    if not leader.is_primary:
        raise OperationRefused(
            f"datacenter {dc.name} is a standby DC (its leader {leader.member.name} is a standby_leader): "
            "backups run only in the primary DC, whose WAL the shared stanza archives",
            hint="run it for the primary DC (every DC shares one stanza, so its backups serve all DCs)")
    return leader


def primary_dc(topo: Topology) -> Leader:
    """The leader of whichever DC is the primary DC now (not necessarily the topology's initial one)."""
    reasons = []
    for dc in topo.datacenters:
        try:
            leader = find_leader(dc)
        except OperationFailed as exc:
            reasons.append(exc.message)
            continue
        if leader.is_primary:
            return leader
        reasons.append(f"{dc.name} is a standby DC")
    raise OperationFailed("no datacenter has a primary right now: " + "; ".join(reasons),
                          hint="check the federation with `fedctl status`")


def sql(topo: Topology, member: Member, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on a member as the superuser (autocommit) and return its rows."""
    try:
        with connect(topo, member, timeout=5) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []
    except psycopg.Error as exc:
        raise OperationFailed(f"SQL on {member.name} ({member.host}:{member.port}) failed: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                              hint="check that PostgreSQL runs there and accepts the superuser") from exc
