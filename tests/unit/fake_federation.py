"""A fake federation for driving operation plans without a lab: DCs as Patroni would act, and the record.

It plays both sides an operation talks to: the World (members' REST API and SQL) and the RecordPort (the
federation record with compare-and-set and the primary-DC lease). Patroni's behaviour is modelled where
the plans depend on it: a primary given a standby_cluster demotes (its shutdown checkpoint adds WAL), a
standby leader whose standby_cluster is removed promotes only when the record names its DC (the
promotion gate) and starts a new timeline, standbys replay instantly what their upstream wrote.
Every change checks that at most one DC is writable; `violations` lists the instants it was not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from federation.agent_gates import AgentGate
from federation.errors import OperationRefused
from federation.gate_install import GateCheck, GateState
from federation.operations.common import DCLook
from federation.operations.demotion_token import AgentUnavailable, DemotionToken
from federation.operations.fence_command import NO_FENCE_COMMAND
from federation.operations.loss_estimate import LossEstimate
from federation.operations.rejoin_parts import merge
from federation.patroni_api import NodeStatus, PatroniAPIError
from federation.patroni_dynamic import role_patch
from federation.state import FederationState, initial_state
from federation.store import LeaseView
from federation.topology import Datacenter, Member, Topology

SHUTDOWN_CHECKPOINT_BYTES = 40
SYSTEM_ID = "7000000000000000001"


@dataclass
class FakeDC:
    name: str
    leader: str
    primary: bool
    lsn: int
    config: dict[str, Any]
    timeline: int = 1
    switch_points: dict[int, int] = field(default_factory=dict)
    down: bool = False
    # Where its WAL ended when it last shut down cleanly as a primary, until it replays anything past it
    # (what its agent reads from pg_control between Patroni's shutdown and restart of a demoted leader).
    shut_down_at: int | None = None


class Down(PatroniAPIError):
    def __init__(self, dc: str) -> None:
        super().__init__(f"{dc} does not answer", status=0)


class FakeFederation:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.record: FederationState = initial_state(topo)
        self.lease_holder: str | None = self.record.primary_dc
        self.dcs: dict[str, FakeDC] = {}
        for dc in topo.datacenters:
            config = role_patch(topo, dc, self.record.upstreams, {})
            self.dcs[dc.name] = FakeDC(dc.name, dc.members[0].name, self.record.upstream_of(dc.name) is None,
                                       1000, {k: v for k, v in config.items() if v is not None})
        self.commits = 0
        self.violations: list[str] = []
        self.estimate: Callable[..., LossEstimate] | None = None
        self.fence_result: Callable[[Datacenter], str] = lambda dc: NO_FENCE_COMMAND
        # The promotion gate's question: does the record name this DC the primary? (A test whose record lives
        # elsewhere points it there.)
        self.record_names: Callable[[str], bool] = lambda name: self.record.primary_dc == name
        # What each member's agent says of its promotion gate (member name -> verdict); the rest have it.
        self.gates: dict[str, AgentGate] = {}
        self.gate_asks = 0
        # Whether the members' agents can read pg_control (GET /controldata); who asked for the token how.
        self.agents_read_control = True
        self.token_reads: list[str] = []
        # The entrypoints' drain (none: most tests need no real time); when each DC last stopped or began
        # being the primary (time.monotonic()).
        self.drain_seconds = 0.0
        self.demoted_at: dict[str, float] = {}
        self.promoted_at: dict[str, float] = {}

    # --- what tests do to it -------------------------------------------------------------------------
    def write(self, nbytes: int = 100) -> None:
        """A client commits on whichever DC is writable."""
        for dc in self.dcs.values():
            if dc.primary and not dc.down:
                dc.lsn += nbytes
        self._replicate()

    def kill(self, name: str) -> None:
        self.dcs[name].down = True

    def roles(self) -> dict[str, str]:
        return {n: ("down" if d.down else "primary" if d.primary else "standby") for n, d in self.dcs.items()}

    def outcome(self) -> dict[str, Any]:
        """What must be the same after an interrupted-and-resumed run as after an uninterrupted one."""
        rec = self.record
        return {"epoch": rec.epoch, "primary_dc": rec.primary_dc, "upstreams": rec.upstreams,
                "operation": rec.operation, "roles": self.roles(),
                "timelines": {n: d.timeline for n, d in self.dcs.items()},
                "standby_of": {n: (d.config.get("standby_cluster") or {}).get("host") for n, d in self.dcs.items()},
                "last_history": (rec.history[-1].operation, rec.history[-1].outcome) if rec.history else None}

    # --- RecordPort ----------------------------------------------------------------------------------
    def read(self) -> FederationState:
        return self.record

    def commit(self, base: FederationState, new: FederationState, *, refresh_copies: bool = True,
               require: Sequence[str] = (), lease_absent: bool = False, revoke: LeaseView | None = None,
               hand_over_lease: bool = False) -> None:
        if base != self.record:
            raise OperationRefused("another operator committed first (fake record)")
        if lease_absent and self.lease_holder is not None:
            raise OperationRefused(f"the primary-DC lease is held by {self.lease_holder} (fake record)")
        if revoke is not None or (hand_over_lease and self.lease_holder != new.primary_dc):
            self.lease_holder = None
        self.record = new
        self.commits += 1

    def read_lease(self) -> LeaseView:
        return LeaseView(self.lease_holder, f"{self.lease_holder}/n" if self.lease_holder else None,
                         10.0 if self.lease_holder else None, 1 if self.lease_holder else None, None)

    # --- World ---------------------------------------------------------------------------------------
    def _dc_of(self, member: Member) -> FakeDC:
        dc = next(d for d, m in self.topo.members() if m.name == member.name)
        fake = self.dcs[dc.name]
        if fake.down:
            raise Down(dc.name)
        return fake

    def look(self, dc: Datacenter, timeout: float = 1.5) -> DCLook:
        self._replicate()
        fake = self.dcs[dc.name]
        if fake.down:
            return DCLook(dc, {m.name: None for m in dc.members})
        statuses: dict[str, NodeStatus | None] = {}
        for member in dc.members:
            if member.name == fake.leader:
                role = "primary" if fake.primary else "standby_leader"
                statuses[member.name] = NodeStatus(state="running" if fake.primary else "streaming", role=role,
                                                   timeline=fake.timeline, wal_lsn=fake.lsn if fake.primary else None,
                                                   replayed_lsn=None if fake.primary else fake.lsn,
                                                   replication_state=None if fake.primary else "streaming")
            else:
                statuses[member.name] = NodeStatus(state="streaming", role="replica", timeline=fake.timeline,
                                                   replayed_lsn=fake.lsn, replication_state="streaming")
        return DCLook(dc, statuses)

    def look_all(self) -> dict[str, DCLook]:
        return {dc.name: self.look(dc) for dc in self.topo.datacenters}

    def config(self, member: Member) -> dict[str, Any]:
        return dict(self._dc_of(member).config)

    def patch(self, member: Member, patch: dict[str, Any]) -> None:
        fake = self._dc_of(member)
        fake.config = merge(fake.config, patch)
        self._settle(fake)

    def apply_role(self, dc: Datacenter, leader: Member, upstreams: Mapping[str, str | None]) -> bool:
        fake = self._dc_of(leader)
        wanted = merge(fake.config, role_patch(self.topo, dc, upstreams, fake.config))
        if wanted == fake.config:
            return False
        fake.config = wanted
        self._settle(fake)
        return True

    def standby_section(self, dc: Datacenter, upstreams: Mapping[str, str | None]) -> dict[str, Any] | None:
        return role_patch(self.topo, dc, upstreams, {})["standby_cluster"]

    def checkpoint(self, member: Member) -> None:
        self._dc_of(member)

    def in_recovery(self, member: Member) -> bool:
        return not self._dc_of(member).primary

    def read_token(self, member: Member) -> DemotionToken:
        fake = self._dc_of(member)
        self.token_reads.append(f"sql {member.name}")
        return DemotionToken(fake.lsn, fake.timeline, SYSTEM_ID, member.name)

    def shutdown_token(self, member: Member, timeout: float) -> DemotionToken | None:
        fake = self._dc_of(member)
        if not self.agents_read_control:
            raise AgentUnavailable(f"{member.name}'s agent answered /controldata with 503: no patroni.yml")
        if fake.primary or fake.shut_down_at is None:
            return None
        self.token_reads.append(f"agent {member.name}")
        return DemotionToken(fake.shut_down_at, fake.timeline, SYSTEM_ID, member.name)

    def answers_primary(self, member: Member, timeout: float) -> bool | None:
        return self._dc_of(member).primary

    def replayed(self, member: Member) -> int | None:
        self._replicate()
        fake = self._dc_of(member)
        return None if fake.primary else fake.lsn

    def writable(self, member: Member) -> bool:
        return self._dc_of(member).primary

    def timeline(self, member: Member) -> int:
        return self._dc_of(member).timeline

    def switch_point(self, member: Member, timeline: int) -> int | None:
        return self._dc_of(member).switch_points.get(timeline)

    def position(self, member: Member) -> tuple[int | None, int | None]:
        try:
            fake = self._dc_of(member)
        except Down:
            return None, None
        return fake.timeline, fake.lsn

    def reinitialize(self, member: Member) -> None:
        self._dc_of(member)

    def write_config_in_dcs(self, dc: Datacenter, upstreams: Mapping[str, str | None]) -> str:
        fake = self.dcs[dc.name]
        fake.config = merge(fake.config, role_patch(self.topo, dc, upstreams, fake.config))
        self._settle(fake)
        return "written straight into the DCS"

    def estimate_loss(self, old_primary: str, target: Datacenter, leader: Member,
                      fence_point: float | None = None) -> LossEstimate:
        if self.estimate is not None:
            return self.estimate(old_primary, target, leader, fence_point)
        old, received = self.dcs[old_primary], self.dcs[target.name].lsn
        return LossEstimate(old_primary, old.lsn, 1.0, received, max(0, old.lsn - received), 0.0, fence_point)

    def run_fence(self, dc: Datacenter) -> str:
        return self.fence_result(dc)

    def member_gates(self, dc: Datacenter, timeout: float) -> Mapping[str, AgentGate]:
        self.gate_asks += 1
        installed = GateCheck(GateState.INSTALLED, f"runs the gate for {dc.name}", "/etc/patroni/patroni.yml")
        return {m.name: self.gates.get(m.name, AgentGate(dc.name, m.name, f"http://{m.host}:8108", True, installed))
                for m in dc.members}

    def close(self) -> None:
        return None

    # --- Patroni's side ------------------------------------------------------------------------------
    def _settle(self, fake: FakeDC) -> None:
        standby = bool(fake.config.get("standby_cluster"))
        if fake.primary and standby:
            fake.primary = False
            self.demoted_at[fake.name] = time.monotonic()
            fake.lsn += SHUTDOWN_CHECKPOINT_BYTES
            fake.shut_down_at = fake.lsn
        elif not fake.primary and not standby and self.record_names(fake.name):
            self._replicate()
            fake.primary = True
            self.promoted_at[fake.name] = time.monotonic()
            fake.timeline = max(d.timeline for d in self.dcs.values()) + 1
            fake.switch_points[fake.timeline] = fake.lsn
        writable = [d.name for d in self.dcs.values() if d.primary and not d.down]
        if len(writable) > 1:
            self.violations.append(f"writable at once: {', '.join(writable)}")
        self._replicate()

    def _replicate(self) -> None:
        live = [d for d in self.dcs.values() if not d.down]
        primary = next((d for d in live if d.primary), None)
        for dc in live:
            if dc.primary:
                continue
            if primary is not None:
                if primary.lsn != dc.lsn:
                    dc.shut_down_at = None
                dc.lsn, dc.timeline = primary.lsn, primary.timeline
                dc.switch_points.update(primary.switch_points)
            else:
                newest = max(live, key=lambda d: d.lsn)
                dc.lsn = max(dc.lsn, newest.lsn)
