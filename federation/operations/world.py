"""What an operation's steps see of and do to the DCs, as one interface: the live one talks to Patroni's
REST API and PostgreSQL; unit tests drive the same plans against a fake federation."""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import Any, Protocol

from federation import patroni_api
from federation.agent_gates import AgentGate, agent_get, read_gates
from federation.entrypoints import DRAIN_SECONDS
from federation.errors import OperationFailed
from federation.lsn import parse_lsn
from federation.operations.common import (
    DCLook,
    SqlSession,
    apply_role,
    connect,
    current_timeline,
    look_at,
    look_at_all,
    replay_lsn,
    switch_point,
    upstream_leader,
    writable,
)
from federation.operations.demotion_token import DemotionToken, read_shutdown_token
from federation.operations.fence_command import run_fence
from federation.operations.loss_estimate import LossEstimate, estimate_loss
from federation.patroni_dynamic import role_section
from federation.topology import Datacenter, Member, Topology


class World(Protocol):
    topo: Topology
    # How long after a primary's agent stopped answering GET /primary with 200 every entrypoint has taken it
    # out of its read-write backend (federation.entrypoints.DRAIN_SECONDS).
    drain_seconds: float

    def look(self, dc: Datacenter, timeout: float = 1.5) -> DCLook: ...

    def look_all(self) -> dict[str, DCLook]: ...

    def config(self, member: Member) -> dict[str, Any]: ...

    def patch(self, member: Member, patch: dict[str, Any]) -> None: ...

    def apply_role(self, dc: Datacenter, leader: Member, upstreams: Mapping[str, str | None]) -> bool:
        """Give `dc` the role `upstreams` says (standby_cluster and slots); True when something changed."""

    def standby_section(self, dc: Datacenter, upstreams: Mapping[str, str | None]) -> dict[str, Any] | None: ...

    def checkpoint(self, member: Member) -> None: ...

    def in_recovery(self, member: Member) -> bool: ...

    def read_token(self, member: Member) -> DemotionToken: ...

    def shutdown_token(self, member: Member, timeout: float) -> DemotionToken | None:
        """The token as the member's agent reads it from pg_control (GET /controldata) once the member has shut
        down cleanly as a primary, before Patroni starts it again; None while it has not. AgentUnavailable when
        the agent cannot say (not running, no Patroni configuration): then read_token after the restart."""

    def answers_primary(self, member: Member, timeout: float) -> bool | None:
        """Whether the member's agent still answers GET /primary with 200, as the entrypoints' read-write checks
        see it; None when it does not answer."""

    def replayed(self, member: Member) -> int | None: ...

    def writable(self, member: Member) -> bool: ...

    def timeline(self, member: Member) -> int: ...

    def switch_point(self, member: Member, timeline: int) -> int | None: ...

    def position(self, member: Member) -> tuple[int | None, int | None]:
        """(timeline, end of WAL) of a running member, or (None, None) when it does not answer."""

    def reinitialize(self, member: Member) -> None: ...

    def write_config_in_dcs(self, dc: Datacenter, upstreams: Mapping[str, str | None]) -> str:
        """Give `dc` its role straight in its DCS (no member answers); says what it did."""

    def estimate_loss(self, old_primary: str, target: Datacenter, leader: Member,
                      fence_point: float | None = None) -> LossEstimate: ...

    def run_fence(self, dc: Datacenter) -> str:
        """Run the DC's fence_command: what happened (OperationFailed when it failed)."""

    def member_gates(self, dc: Datacenter, timeout: float) -> Mapping[str, AgentGate]:
        """Each member's agent's word on its promotion gate, by member name, all within about `timeout`."""

    def close(self) -> None: ...


class LiveWorld:
    """The real federation: one kept-open SQL session per member asked (polls reuse it)."""

    drain_seconds = DRAIN_SECONDS

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self._sessions: dict[str, SqlSession] = {}

    def _session(self, member: Member) -> SqlSession:
        if member.name not in self._sessions:
            self._sessions[member.name] = SqlSession(self.topo, member)
        return self._sessions[member.name]

    def look(self, dc: Datacenter, timeout: float = 1.5) -> DCLook:
        return look_at(dc, timeout)

    def look_all(self) -> dict[str, DCLook]:
        return look_at_all(self.topo)

    def config(self, member: Member) -> dict[str, Any]:
        return patroni_api.get_config(member)

    def patch(self, member: Member, patch: dict[str, Any]) -> None:
        patroni_api.patch_config(member, patch)

    def apply_role(self, dc: Datacenter, leader: Member, upstreams: Mapping[str, str | None]) -> bool:
        return bool(apply_role(self.topo, dc, leader, upstreams))

    def standby_section(self, dc: Datacenter, upstreams: Mapping[str, str | None]) -> dict[str, Any] | None:
        return role_section(self.topo, dc, upstreams, upstream_leader(self.topo, dc, upstreams))

    def checkpoint(self, member: Member) -> None:
        with connect(self.topo, member) as conn:
            conn.execute("CHECKPOINT")

    def in_recovery(self, member: Member) -> bool:
        row = self._session(member).row("SELECT pg_is_in_recovery()")
        return bool(row and row[0])

    def read_token(self, member: Member) -> DemotionToken:
        row = self._session(member).row(
            "SELECT pg_last_wal_replay_lsn()::text, (SELECT timeline_id FROM pg_control_checkpoint()), "
            "(SELECT system_identifier FROM pg_control_system())::text")
        if not row or not row[0]:
            raise OperationFailed(f"{member.name} did not report its last replayed LSN after demotion")
        return DemotionToken(parse_lsn(row[0]), int(row[1]), str(row[2]), member.name)

    def shutdown_token(self, member: Member, timeout: float) -> DemotionToken | None:
        return read_shutdown_token(member, timeout)

    def answers_primary(self, member: Member, timeout: float) -> bool | None:
        try:
            code, _ = agent_get(member, "/primary", timeout)
        except (OSError, http.client.HTTPException):
            return None
        return code == 200

    def replayed(self, member: Member) -> int | None:
        return replay_lsn(self.topo, member, self._session(member))

    def writable(self, member: Member) -> bool:
        return bool(writable(self.topo, member, self._session(member)))

    def timeline(self, member: Member) -> int:
        return current_timeline(self.topo, member, self._session(member))

    def switch_point(self, member: Member, timeline: int) -> int | None:
        return switch_point(self.topo, member, timeline, self._session(member))

    def position(self, member: Member) -> tuple[int | None, int | None]:
        from federation.operations.rejoin_parts import member_position

        return member_position(self.topo, member)

    def reinitialize(self, member: Member) -> None:
        patroni_api.post_action(member, "/reinitialize", {"force": True})

    def write_config_in_dcs(self, dc: Datacenter, upstreams: Mapping[str, str | None]) -> str:
        from federation.operations.rejoin_parts import write_role_in_dcs

        return write_role_in_dcs(self.topo, dc, upstreams)

    def estimate_loss(self, old_primary: str, target: Datacenter, leader: Member,
                      fence_point: float | None = None) -> LossEstimate:
        return estimate_loss(self.topo, old_primary, target, leader, fence_point)

    def run_fence(self, dc: Datacenter) -> str:
        return run_fence(self.topo, dc)

    def member_gates(self, dc: Datacenter, timeout: float) -> Mapping[str, AgentGate]:
        return {member: gate for (_dc, member), gate in read_gates([(dc, m) for m in dc.members], timeout).items()}

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()


def every_member_streams(world: World, dc: Datacenter) -> bool:
    """Every member of `dc` answers and streams from its upstream (a short look: callers poll it)."""
    look = world.look(dc, timeout=1.0)
    return all((s := look.statuses.get(m.name)) is not None and s.replication_state == "streaming"
               for m in dc.members)
