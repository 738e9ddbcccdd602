"""The agent's decisions: pure functions of one observation, one sentence per cycle (as Patroni's ha.py).

`decide(topo, obs)` looks at the federation record, the DC's own members and config and its upstream
DC, and returns one action with the sentence the loop logs. Guard clauses run from the most to the
least urgent; the first that applies wins. The agent never promotes: the only role change it makes is
demoting a DC that a newer epoch replaced (fencing), through rejoin-dc.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from agent.self_fence import is_fence_section
from federation.follow_mode import FollowMode, follow_mode
from federation.lsn import format_lsn, lag_behind
from federation.operations.common import DCLook
from federation.patroni_dynamic import role_patch
from federation.samples import LsnSample
from federation.state import FederationState
from federation.topology import Member, Topology

# The agent copies a newer record into its own DC only after seeing its copy behind this many cycles
# in a row, so it never races an operator who is committing the copies one DC at a time.
SYNC_AFTER_CYCLES = 2
# A replaced DC that is not taking writes (its gate refused the promotion) is fenced only once its
# members' PostgreSQL report a WAL position, so rejoin-dc can measure the diverged WAL; at most this long.
FENCE_SETTLE_SECONDS = 15.0


class Action(StrEnum):
    NOTHING = "nothing"  # all is as the record says
    WAIT = "wait"  # something is off, but it is not the agent's to fix (or it cannot see enough)
    REPOINT = "repoint"  # PATCH standby_cluster / slots to what the record says
    FENCE = "fence"  # this DC was replaced: rejoin-dc makes it a standby of the new primary


@dataclass(frozen=True)
class Observation:
    """What one cycle saw. `record` is the newest federation record known (None: never read)."""

    dc: str
    record: FederationState | None
    record_written: bool = True  # False: no DC holds a record yet, `record` is the topology's roles
    own_epoch: int | None = None  # epoch of the own DC's copy (None: it holds none)
    own_dcs_error: str | None = None
    unreachable_peers: tuple[str, ...] = ()
    own: DCLook | None = None
    config: Mapping[str, Any] | None = None  # own DC's Patroni dynamic config (None: not readable)
    upstream: DCLook | None = None
    fence_waited: float = 0.0  # seconds since this agent first found its DC replaced (0: just now)
    self_fenced: str | None = None  # why the DC fenced itself (lost primary-DC lease); None: it did not
    hold: str | None = None  # a reason to change nothing at all (the federation store holds no record yet)


@dataclass(frozen=True)
class Decision:
    action: Action
    sentence: str
    patch: dict[str, Any] = field(default_factory=dict)
    replaced: bool = False  # the DC was found replaced (fenced now, or soon)
    resumes: bool = False  # FENCE: carry through the pending rejoin only, never start a new one


def _leader_text(look: DCLook) -> str:
    status = look.leader_status
    return f"{look.leader.name} ({status.role})" if look.leader and status else "none"


def owned_drift(wanted: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """What in `config` differs from the federation's part `wanted` (a role_patch). Keys we do not own
    (recovery_min_apply_delay, user slots, ...) are not compared: PATCH merges, so they are kept anyway."""
    drift = []
    section, current = wanted.get("standby_cluster"), config.get("standby_cluster")
    if section is None and current:
        drift.append("standby_cluster is set")
    elif section is not None:
        if not isinstance(current, Mapping):
            drift.append("standby_cluster is missing")
        else:
            drift.extend(f"standby_cluster.{k} is {current.get(k)!r}, want {v!r}"
                         for k, v in section.items() if current.get(k) != v)
    for name, value in (wanted.get("slots") or {}).items():
        drift.append(f"slot {name} " + ("is missing" if value is not None else "is not used by any DC"))
    return drift


def _replaced(obs: Observation, record: FederationState) -> str | None:
    """Why this DC counts as replaced (a newer epoch names another primary DC), or None."""
    if not obs.record_written or record.primary_dc == obs.dc:
        return None
    if obs.self_fenced is not None and is_fence_section((obs.config or {}).get("standby_cluster")):
        return f"it fenced itself ({obs.self_fenced})"
    own = obs.own
    if own is not None and own.is_primary:
        assert own.leader is not None
        return f"its leader {own.leader.name} is a primary"
    if obs.config and obs.config.get("standby_cluster") is None:
        return "its config has no standby_cluster (it is still set up as the primary DC)"
    return None


def _members_without_position(obs: Observation) -> list[str]:
    """Members whose PostgreSQL does not run or report a WAL position yet (REST not answering counts)."""
    if obs.own is None:
        return []
    return [name for name, status in obs.own.statuses.items()
            if status is None or status.state != "running" or status.lsn is None]


def decide(topo: Topology, obs: Observation) -> Decision:
    dc = obs.dc
    record = obs.record
    if obs.own_dcs_error is not None:
        return Decision(Action.WAIT, f"own DCS unreachable ({obs.own_dcs_error}): changing nothing until it answers")
    if obs.hold is not None:
        return Decision(Action.WAIT, f"{obs.hold}: changing nothing")
    if record is None:
        return Decision(Action.WAIT, "the federation record could not be read: changing nothing")
    why = _replaced(obs, record)
    if why is not None:
        new_upstream = record.upstream_of(dc) or record.primary_dc
        sentence = f"{dc} was replaced: epoch {record.epoch} names {record.primary_dc} the primary DC but {why}"
        silent = _members_without_position(obs)
        taking_writes = obs.own is not None and obs.own.is_primary
        if silent and not taking_writes and obs.fence_waited < FENCE_SETTLE_SECONDS:
            return Decision(Action.WAIT, f"{sentence}; it takes no writes, so waiting for {', '.join(silent)} to "
                                         f"report a WAL position before rejoin-dc ({obs.fence_waited:.0f} of "
                                         f"{FENCE_SETTLE_SECONDS:.0f} s)", replaced=True)
        return Decision(Action.FENCE, f"{sentence}; demoting {dc} to a standby of {new_upstream} (rejoin-dc)",
                        replaced=True)
    if obs.self_fenced is not None:
        return Decision(Action.WAIT, f"{dc} is self-fenced ({obs.self_fenced}): not re-pointing or promoting it; "
                                     "the lease guard promotes it back once it holds the primary-DC lease again")
    op = record.operation
    if op is not None and op.kind == "rejoin" and op.target == dc:
        # Whoever started it (this agent before a restart, or an operator) may be gone: a rejoin only points
        # this DC at its upstream, which is this agent's own job, so the agent carries it through.
        return Decision(Action.FENCE, f"a rejoin of {dc} is pending at step '{op.step}' (started {op.started}): "
                                      "carrying it through (rejoin-dc)", replaced=True, resumes=True)
    if op is not None and op.kind != "rejoin":
        return Decision(Action.WAIT, f"a {op.kind} of {op.target} is in flight (step {op.step}, started "
                                     f"{op.started}): leaving the roles to it")
    own = obs.own
    if own is None or not own.answering:
        return Decision(Action.WAIT, f"no member of {dc} answers its REST API: nothing to do")
    if own.leader is None:
        return Decision(Action.WAIT, f"{dc} has no leader: Patroni elects one, nothing for the agent to do")
    if not obs.config:
        return Decision(Action.WAIT, f"{dc} has no Patroni config in its DCS yet: nothing to do")
    upstream = record.upstream_of(dc)
    wanted = role_patch(topo, topo.dc(dc), record.upstreams, obs.config,
                        upstream_leader=upstream_leader_to_follow(topo, obs, record))
    if upstream is None:
        return _as_primary(obs, record, wanted)
    return _as_standby(obs, record, upstream, wanted)


def upstream_leader_to_follow(topo: Topology, obs: Observation, record: FederationState) -> Member | None:
    """The upstream DC's leader as this cycle saw it, when the DC streams from that one member (a cascade,
    or an upstream whose members use different ports: follow_mode); a changed leader is then drift, and
    the DC is re-pointed at it. None: it follows every member, or no upstream leader was seen (role_patch
    then keeps the member already configured)."""
    upstream = record.upstream_of(obs.dc)
    if upstream is None or follow_mode(topo.dc(upstream), record.upstreams) is FollowMode.EVERY_MEMBER:
        return None
    return obs.upstream.leader if obs.upstream is not None else None


def _as_primary(obs: Observation, record: FederationState, wanted: dict[str, Any]) -> Decision:
    own = obs.own
    assert own is not None
    if not own.is_primary or (obs.config and obs.config.get("standby_cluster")):
        return Decision(Action.WAIT, f"epoch {record.epoch} names {obs.dc} the primary DC but its leader is "
                                     f"{_leader_text(own)}: the agent never promotes (use fedctl "
                                     f"switchover-dc or promote-dc)")
    drift = owned_drift(wanted, obs.config or {})
    if drift:
        return Decision(Action.REPOINT, f"{obs.dc} is the primary DC but {'; '.join(drift)}: patching its "
                                        "federation slots", wanted)
    return Decision(Action.NOTHING, f"no action: {obs.dc} is the primary DC (epoch {record.epoch}), leader "
                                    f"{_leader_text(own)}")


def _as_standby(obs: Observation, record: FederationState, upstream: str, wanted: dict[str, Any]) -> Decision:
    own = obs.own
    assert own is not None
    if own.is_primary:
        return Decision(Action.WAIT, f"{obs.dc} should be a standby of {upstream} but its leader "
                                     f"{_leader_text(own)} is a primary and no DC holds a federation record: "
                                     "not fencing on the topology file alone")
    drift = owned_drift(wanted, obs.config or {})
    if drift and obs.config and obs.config.get("standby_cluster") is None:
        return Decision(Action.WAIT, f"{obs.dc} should be a standby of {upstream} but has no standby_cluster and "
                                     "no DC holds a federation record: not demoting on the topology file alone")
    if drift:
        return Decision(Action.REPOINT, f"{obs.dc} should stream from {upstream} but {'; '.join(drift)}: "
                                        f"re-pointing it at {upstream}", wanted)
    up = obs.upstream
    if up is None or not up.answering:
        return Decision(Action.NOTHING, f"no action: {obs.dc} is a standby of {upstream}; {upstream} does not "
                                        "answer, keeping standby_cluster on its members")
    state = own.leader_status.replication_state if own.leader_status else None
    return Decision(Action.NOTHING, f"no action: {obs.dc} is a standby of {upstream} (epoch {record.epoch}), "
                                    f"leader {_leader_text(own)} {state or 'not streaming'}, upstream leader "
                                    f"{_leader_text(up)}")


def record_to_copy(obs: Observation, behind_cycles: int) -> FederationState | None:
    """The newer record to write into the own DC's copy, so its promotion gate knows it even when the
    WAN is cut later; None when the copy is current or only just fell behind."""
    record = obs.record
    if record is None or not obs.record_written or obs.own_dcs_error is not None:
        return None
    if obs.own_epoch is not None and obs.own_epoch >= record.epoch:
        return None
    return record if behind_cycles >= SYNC_AFTER_CYCLES else None


def upstream_sample(obs: Observation, sampled_by: str, now: datetime) -> LsnSample | None:
    """The upstream DC leader's WAL position, to store in the own DC (promote-dc's loss estimate)."""
    up = obs.upstream
    if up is None or up.leader is None:
        return None
    status = up.leader_status
    if status is None or status.lsn is None:
        return None
    return LsnSample(dc=up.dc.name, member=up.leader.name, lsn=status.lsn, time=now.isoformat(timespec="milliseconds"),
                     sampled_by=sampled_by)


def cross_dc_lag(obs: Observation, now: datetime) -> tuple[int | None, float | None]:
    """(bytes, seconds) the own DC's leader is behind its upstream DC's leader; None when unknown."""
    own, up = obs.own, obs.upstream
    mine = own.leader_status if own else None
    theirs = up.leader_status if up else None
    if mine is None or theirs is None:
        return None, None
    return lag_behind(mine.lsn, mine.replayed_at, theirs.lsn, now)


def describe_lsn(value: int | None) -> str:
    return format_lsn(value) if value is not None else "unknown"
