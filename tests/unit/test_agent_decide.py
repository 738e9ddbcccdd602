"""The agent's decisions, driven with value objects: (record, own DC, upstream DC) -> action + sentence."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.decide import (
    FENCE_SETTLE_SECONDS,
    SYNC_AFTER_CYCLES,
    Action,
    Observation,
    cross_dc_lag,
    decide,
    owned_drift,
    record_to_copy,
    upstream_sample,
)
from federation.operations.common import DCLook
from federation.patroni_api import NodeStatus
from federation.patroni_dynamic import standby_cluster_section
from federation.state import FederationState, PendingOperation
from federation.topology import Topology, load_topology

TOPOLOGY = Path(__file__).parents[1] / "integration" / "topologies" / "agent-two-dc.yaml"
NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load_topology(TOPOLOGY)


def record(epoch: int = 0, primary: str = "dc1", **extra: Any) -> FederationState:
    upstreams: dict[str, str | None] = {"dc1": None, "dc2": "dc1"} if primary == "dc1" else {"dc1": "dc2", "dc2": None}
    return FederationState(federation="test-agent", epoch=epoch, primary_dc=primary, upstreams=upstreams, **extra)


def look(topo: Topology, dc: str, leader_role: str | None, lsn: int = 0x3000000, state: str = "streaming",
         replayed_at: datetime | None = None, answering: bool = True) -> DCLook:
    d = topo.dc(dc)
    statuses: dict[str, NodeStatus | None] = {}
    for i, m in enumerate(d.members):
        if not answering:
            statuses[m.name] = None
        elif i == 0 and leader_role is not None:
            primary = leader_role == "primary"
            statuses[m.name] = NodeStatus(state="running", role=leader_role, wal_lsn=lsn if primary else None,
                                          replayed_lsn=None if primary else lsn, replayed_at=replayed_at,
                                          replication_state=None if primary else state)
        else:
            statuses[m.name] = NodeStatus(state="running", role="replica", replayed_lsn=lsn,
                                          replication_state="streaming")
    return DCLook(d, statuses)


def standby_config(topo: Topology, dc: str = "dc2", upstream: str = "dc1", **section: Any) -> dict[str, Any]:
    return {"ttl": 20, "standby_cluster": {**standby_cluster_section(topo.dc(dc), topo.dc(upstream)), **section}}


def primary_config(slots: tuple[str, ...] = ("fed_dc2",)) -> dict[str, Any]:
    return {"ttl": 20, "slots": {name: {"type": "physical"} for name in slots}}


def standby_obs(topo: Topology, **changes: Any) -> Observation:
    base: dict[str, Any] = dict(dc="dc2", record=record(), own_epoch=0, own=look(topo, "dc2", "standby_leader"),
                                config=standby_config(topo), upstream=look(topo, "dc1", "primary"))
    base.update(changes)
    return Observation(**base)


def primary_obs(topo: Topology, **changes: Any) -> Observation:
    base: dict[str, Any] = dict(dc="dc1", record=record(), own_epoch=0, own=look(topo, "dc1", "primary"),
                                config=primary_config())
    base.update(changes)
    return Observation(**base)


def test_a_healthy_standby_dc_needs_nothing(topo: Topology) -> None:
    d = decide(topo, standby_obs(topo))
    assert d.action is Action.NOTHING
    assert d.sentence.startswith("no action: dc2 is a standby of dc1 (epoch 0), leader n3 (standby_leader) streaming")


def test_a_healthy_primary_dc_needs_nothing(topo: Topology) -> None:
    d = decide(topo, primary_obs(topo))
    assert d.action is Action.NOTHING
    assert d.sentence == "no action: dc1 is the primary DC (epoch 0), leader n1 (primary)"


def test_a_standby_pointing_at_the_wrong_hosts_is_re_pointed(topo: Topology) -> None:
    d = decide(topo, standby_obs(topo, config=standby_config(topo, host="127.0.31.11")))
    assert d.action is Action.REPOINT
    assert "standby_cluster.host is '127.0.31.11', want '127.0.31.11,127.0.31.12'" in d.sentence
    assert d.patch["standby_cluster"]["host"] == "127.0.31.11,127.0.31.12"
    assert d.patch["standby_cluster"]["primary_slot_name"] == "fed_dc2"


def test_a_standby_with_a_wrong_slot_name_is_re_pointed(topo: Topology) -> None:
    d = decide(topo, standby_obs(topo, config=standby_config(topo, primary_slot_name="dc2_standby")))
    assert d.action is Action.REPOINT
    assert "primary_slot_name" in d.sentence


def test_keys_the_federation_does_not_own_are_no_drift(topo: Topology) -> None:
    config = standby_config(topo, recovery_min_apply_delay="5min")
    config["slots"] = {"user_slot": {"type": "physical"}}
    assert decide(topo, standby_obs(topo, config=config)).action is Action.NOTHING


def test_a_primary_missing_its_federation_slot_gets_it(topo: Topology) -> None:
    d = decide(topo, primary_obs(topo, config=primary_config(slots=())))
    assert d.action is Action.REPOINT
    assert d.patch["slots"] == {"fed_dc2": {"type": "physical"}}
    assert "slot fed_dc2 is missing" in d.sentence


def test_a_primary_with_a_stale_reverse_slot_drops_it(topo: Topology) -> None:
    d = decide(topo, primary_obs(topo, config=primary_config(slots=("fed_dc2", "fed_dc1"))))
    assert d.action is Action.REPOINT
    assert d.patch["slots"] == {"fed_dc1": None}


def test_own_dcs_unreachable_changes_nothing(topo: Topology) -> None:
    obs = standby_obs(topo, own_dcs_error="connection refused", config=standby_config(topo, host="elsewhere"))
    d = decide(topo, obs)
    assert d.action is Action.WAIT
    assert d.sentence == "own DCS unreachable (connection refused): changing nothing until it answers"


def test_an_unknown_record_changes_nothing(topo: Topology) -> None:
    assert decide(topo, standby_obs(topo, record=None)).action is Action.WAIT


def test_an_unreachable_upstream_keeps_the_last_upstream_and_says_so(topo: Topology) -> None:
    d = decide(topo, standby_obs(topo, upstream=look(topo, "dc1", None, answering=False)))
    assert d.action is Action.NOTHING
    assert "dc1 does not answer, keeping standby_cluster on its members" in d.sentence


def test_a_replaced_dc_whose_leader_is_primary_is_fenced(topo: Topology) -> None:
    obs = primary_obs(topo, record=record(epoch=3, primary="dc2"), own_epoch=2)
    d = decide(topo, obs)
    assert d.action is Action.FENCE
    assert d.sentence == ("dc1 was replaced: epoch 3 names dc2 the primary DC but its leader n1 is a primary; "
                          "demoting dc1 to a standby of dc2 (rejoin-dc)")


def test_a_replaced_dc_held_back_by_the_gate_is_fenced_too(topo: Topology) -> None:
    """The gate refused the promotion, so dc1 has no leader, but its config still makes it a primary DC."""
    obs = primary_obs(topo, record=record(epoch=1, primary="dc2"), own=look(topo, "dc1", None))
    d = decide(topo, obs)
    assert d.action is Action.FENCE
    assert "its config has no standby_cluster" in d.sentence


def test_no_fencing_on_the_topology_file_alone(topo: Topology) -> None:
    """No DC holds a record: the topology's roles are a hint, never a reason to demote."""
    obs = standby_obs(topo, record_written=False, own=look(topo, "dc2", "primary"), config={"ttl": 20})
    d = decide(topo, obs)
    assert d.action is Action.WAIT
    assert "not fencing on the topology file alone" in d.sentence


def test_an_operation_in_flight_is_left_alone(topo: Topology) -> None:
    op = PendingOperation(kind="switchover", source="dc1", target="dc2", step="demote", started="t0")
    d = decide(topo, standby_obs(topo, record=record(operation=op), config=standby_config(topo, host="x")))
    assert d.action is Action.WAIT
    assert d.sentence.startswith("a switchover of dc2 is in flight (step demote")


def test_a_pending_rejoin_of_the_own_dc_is_carried_through_and_does_not_hold_up_the_others(topo: Topology) -> None:
    op = PendingOperation(kind="rejoin", source="dc1", target="dc2", step="stream", started="t0")
    own = decide(topo, standby_obs(topo, record=record(operation=op)))
    assert own.action is Action.FENCE and "a rejoin of dc2 is pending at step 'stream'" in own.sentence
    assert own.resumes, "carrying a rejoin through must never start a new one"
    other = PendingOperation(kind="rejoin", source="dc2", target="dc3", step="point", started="t0")
    d = decide(topo, standby_obs(topo, record=record(operation=other)))
    assert d.action is Action.NOTHING, d.sentence


def test_the_agent_never_promotes(topo: Topology) -> None:
    obs = standby_obs(topo, record=record(epoch=1, primary="dc2"))
    d = decide(topo, obs)
    assert d.action is Action.WAIT
    assert "the agent never promotes" in d.sentence


def test_no_leader_means_wait(topo: Topology) -> None:
    d = decide(topo, standby_obs(topo, own=look(topo, "dc2", None)))
    assert d.action is Action.WAIT
    assert "dc2 has no leader" in d.sentence


@pytest.mark.parametrize(("primary", "own_role", "config_standby", "written", "pending"), list(itertools.product(
    ["dc1", "dc2"], ["primary", "standby_leader", None], [True, False], [True, False], [True, False])))
def test_no_decision_ever_removes_standby_cluster_from_a_standby_dc(
        topo: Topology, primary: str, own_role: str | None, config_standby: bool, written: bool, pending: bool) -> None:
    op = PendingOperation(kind="switchover", source="dc1", target="dc2", step="x", started="t") if pending else None
    config = standby_config(topo, "dc2", "dc1") if config_standby else primary_config(())
    obs = standby_obs(topo, record=record(epoch=1, primary=primary, operation=op), record_written=written,
                      own=look(topo, "dc2", own_role), config=config)
    d = decide(topo, obs)
    if config_standby:
        assert d.patch.get("standby_cluster", "absent") is not None, d.sentence
    assert d.action is not Action.FENCE or (written and primary == "dc1")


def test_owned_drift_names_each_difference(topo: Topology) -> None:
    wanted = {"standby_cluster": {"host": "a,b", "port": 5432}, "slots": {"fed_dc3": None}}
    assert owned_drift(wanted, {"standby_cluster": {"host": "a", "port": 5432}}) == [
        "standby_cluster.host is 'a', want 'a,b'", "slot fed_dc3 is not used by any DC"]
    assert owned_drift({"standby_cluster": None}, {"standby_cluster": {"host": "a"}}) == ["standby_cluster is set"]


def test_the_own_copy_is_brought_up_to_date_only_after_it_stayed_behind() -> None:
    obs = Observation(dc="dc1", record=record(epoch=4, primary="dc2"), own_epoch=3)
    assert record_to_copy(obs, 1) is None
    assert record_to_copy(obs, SYNC_AFTER_CYCLES) == obs.record
    assert record_to_copy(Observation(dc="dc1", record=record(epoch=4), own_epoch=4), 5) is None
    assert record_to_copy(Observation(dc="dc1", record=record(epoch=4), own_epoch=None), 5) == record(epoch=4)
    assert record_to_copy(Observation(dc="dc1", record=record(), record_written=False), 5) is None


def test_the_sample_is_the_upstream_leaders_position(topo: Topology) -> None:
    obs = standby_obs(topo, upstream=look(topo, "dc1", "primary", lsn=0x5000060))
    sample = upstream_sample(obs, "dc2/n3", NOW)
    assert sample is not None
    assert (sample.dc, sample.member, sample.lsn, sample.sampled_by) == ("dc1", "n1", 0x5000060, "dc2/n3")
    assert sample.time == "2025-01-01T12:00:00.000+00:00"
    assert upstream_sample(standby_obs(topo, upstream=look(topo, "dc1", None, answering=False)), "x", NOW) is None
    assert upstream_sample(primary_obs(topo), "dc1/n1", NOW) is None


def test_cross_dc_lag(topo: Topology) -> None:
    caught_up = standby_obs(topo)
    assert cross_dc_lag(caught_up, NOW) == (0, 0.0)
    behind = standby_obs(topo, own=look(topo, "dc2", "standby_leader", lsn=0x3000000,
                                        replayed_at=NOW - timedelta(seconds=4)),
                         upstream=look(topo, "dc1", "primary", lsn=0x3000400))
    assert cross_dc_lag(behind, NOW) == (1024, 4.0)
    assert cross_dc_lag(standby_obs(topo, upstream=None), NOW) == (None, None)


def _starting(topo: Topology, dc: str) -> DCLook:
    return DCLook(topo.dc(dc), {m.name: NodeStatus(state="starting", role="replica") for m in topo.dc(dc).members})


def test_a_replaced_dc_taking_no_writes_is_fenced_once_its_wal_position_can_be_measured(topo: Topology) -> None:
    obs = primary_obs(topo, record=record(epoch=1, primary="dc2"), own=_starting(topo, "dc1"), fence_waited=3.0)
    d = decide(topo, obs)
    assert d.action is Action.WAIT and d.replaced
    assert d.sentence.endswith("it takes no writes, so waiting for n1, n2 to report a WAL position before "
                               "rejoin-dc (3 of 15 s)")
    assert decide(topo, replace(obs, own=look(topo, "dc1", None))).action is Action.FENCE
    assert decide(topo, replace(obs, fence_waited=FENCE_SETTLE_SECONDS)).action is Action.FENCE


def test_a_replaced_dc_taking_writes_is_fenced_at_once(topo: Topology) -> None:
    own = look(topo, "dc1", "primary")
    own = DCLook(own.dc, {**own.statuses, "n2": NodeStatus(state="starting", role="replica")})
    d = decide(topo, primary_obs(topo, record=record(epoch=1, primary="dc2"), own=own))
    assert d.action is Action.FENCE and d.replaced
