"""What `observe_federation` returns: frozen value objects and their stable JSON shape.

JSON shape (`FederationStatus.to_json_dict()`), stable for scripts and the agent:

    federation, primary_dc, healthy, problems[], observed_at (ISO 8601 UTC), duration_s,
    entrypoints: {read_write, read_only, pgbouncer} (host:port of the HAProxy read-write and read-only
                 entrypoints and of PgBouncer, the default binds of docs/entrypoints.md),
    federation_record (null before any record): epoch, primary_dc, upstreams, operation (pending), copies,
                       last_operation, history[] (the last 10, oldest first): see federation/record_status.py,
    federation_store (topologies with a store only): see federation/store_status.py,
    lab_cuts[] (namespace labs only): the network cuts `fedctl lab partition` has in place, one sentence each,
    datacenters[]: name, scope, role (primary|standby|unknown), upstream, reachable (its DCS answered),
                   error (why the DCS did not answer), leader, timeline,
                   lag_bytes, lag_seconds (standby DCs only: behind the upstream DC's leader),
                   standby_cluster (host:port it replicates from, standby DCs only),
                   maintenance (Patroni paused: no automatic failover in the DC), problems[],
                   members[]: name, host, port, api_url, role (leader|standby_leader|replica|primary|
                              unknown), state, sync (sync|quorum|async; null on the leader), timeline,
                              lsn ('X/Y'), lsn_int, lag_bytes (behind its own DC's leader),
                              reachable (its REST API answered), error, source (api|dcs|none),
                              agent (running|missing: its fedctl agent answered GET /gate or not; null when
                                     not asked), agent_error,
                              gate (null when not asked): {state (installed|missing|wrong_dc|unknown), reason,
                                    config_path, pre_promote, line (the pre_promote setting to add)}

Lag definitions. A member's `lag_bytes` is its DC leader's WAL position minus its own (replayed
position on a standby, flushed position on a primary). A standby DC's `lag_bytes` is the upstream DC
leader's WAL position minus the standby leader's replayed position; its `lag_seconds` is 0 when
`lag_bytes` is 0 and otherwise the time since the last transaction the standby leader replayed
(`pg_last_xact_replay_timestamp()`, as Patroni reports it), measured on fedctl's clock. On an upstream
that writes nothing but checkpoints this over-states the delay: read it together with `lag_bytes`.
All positions are sampled in parallel, within a few milliseconds of each other; negative differences
are reported as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from federation.gate_install import GateCheck
from federation.lsn import format_lsn

HEALTHY_STATES = frozenset({"running", "streaming"})


@dataclass(frozen=True)
class MemberStatus:
    """One Patroni member as observed: from its REST API when it answered, else from its DCS key."""

    name: str
    host: str | None = None
    port: int | None = None
    api_url: str | None = None
    role: str = "unknown"
    state: str = "unknown"
    sync: str | None = None
    timeline: int | None = None
    lsn: int | None = None
    lag_bytes: int | None = None
    reachable: bool = False
    error: str | None = None
    source: str = "none"
    replayed_at: datetime | None = None
    in_topology: bool = True
    agent: str | None = None  # running | missing; None: not asked
    agent_error: str | None = None
    gate: GateCheck | None = None

    @property
    def lsn_text(self) -> str | None:
        return format_lsn(self.lsn) if self.lsn is not None else None

    @property
    def healthy(self) -> bool:
        return self.reachable and self.state in HEALTHY_STATES

    def to_json_dict(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "port": self.port, "api_url": self.api_url,
                "role": self.role, "state": self.state, "sync": self.sync, "timeline": self.timeline,
                "lsn": self.lsn_text, "lsn_int": self.lsn, "lag_bytes": self.lag_bytes,
                "reachable": self.reachable, "error": self.error, "source": self.source,
                "agent": self.agent, "agent_error": self.agent_error,
                "gate": self.gate.to_json_dict() if self.gate is not None else None}


@dataclass(frozen=True)
class DCStatus:
    """One datacenter: its DCS, its Patroni cluster's leader and role, and (standby DCs) the cross-DC lag."""

    name: str
    scope: str
    role: str = "unknown"
    upstream: str | None = None
    reachable: bool = False
    error: str | None = None
    leader: str | None = None
    timeline: int | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    standby_cluster: str | None = None
    maintenance: bool = False
    members: tuple[MemberStatus, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.reachable and not self.problems and all(m.healthy for m in self.members)

    def member(self, name: str) -> MemberStatus | None:
        return next((m for m in self.members if m.name == name), None)

    @property
    def leader_member(self) -> MemberStatus | None:
        return self.member(self.leader) if self.leader else None

    def to_json_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scope": self.scope, "role": self.role, "upstream": self.upstream,
                "reachable": self.reachable, "error": self.error, "leader": self.leader,
                "timeline": self.timeline, "lag_bytes": self.lag_bytes,
                "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
                "standby_cluster": self.standby_cluster, "maintenance": self.maintenance,
                "problems": list(self.problems),
                "members": [m.to_json_dict() for m in self.members]}


@dataclass(frozen=True)
class FederationStatus:
    """The whole federation at one instant. `healthy` is False when anything is unreachable or wrong."""

    federation: str
    primary_dc: str | None
    datacenters: tuple[DCStatus, ...]
    problems: tuple[str, ...] = ()
    observed_at: datetime | None = None
    duration_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return not self.problems and all(dc.healthy for dc in self.datacenters)

    def dc(self, name: str) -> DCStatus | None:
        return next((d for d in self.datacenters if d.name == name), None)

    def all_problems(self) -> list[str]:
        """Federation problems first, then each DC's and each unhealthy member's, one line each."""
        lines = list(self.problems)
        for dc in self.datacenters:
            lines.extend(f"{dc.name}: {p}" for p in dc.problems)
        return lines

    def to_json_dict(self) -> dict[str, Any]:
        return {"federation": self.federation, "primary_dc": self.primary_dc, "healthy": self.healthy,
                "problems": list(self.problems),
                "observed_at": self.observed_at.isoformat() if self.observed_at else None,
                "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
                "datacenters": [dc.to_json_dict() for dc in self.datacenters], **self.extra}
