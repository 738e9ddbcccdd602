"""How a standby DC follows its upstream: every member (one shared port), the upstream's leader host:port
(members on different ports) or a cascade; the same answer for validate, the operations and the agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.decide import Action, Observation, decide
from federation.follow_mode import FollowMode, describe_follow, follow_mode, shared_port
from federation.operations import common
from federation.operations.common import DCLook, upstream_leader
from federation.patroni_api import NodeStatus
from federation.patroni_dynamic import role_patch, role_section, standby_cluster_section
from federation.state import FederationState, initial_state
from federation.topology import Datacenter, Member, Topology, load_topology, parse_topology

AGENT_TOPOLOGY = Path(__file__).parents[1] / "integration" / "topologies" / "agent-two-dc.yaml"
THREE_DC = Path(__file__).parents[2] / "topologies" / "lab-three-dc.yaml"


def two_dc(*dc1_ports: int) -> Topology:
    """The agent lab's two DCs, dc1's members on `dc1_ports` (none: the file's one shared port)."""
    data = yaml.safe_load(AGENT_TOPOLOGY.read_text())
    for member, port in zip(data["datacenters"][0]["members"], dc1_ports, strict=False):
        member["port"] = port
    return parse_topology(data, str(AGENT_TOPOLOGY))


@pytest.fixture(scope="module")
def mixed() -> Topology:
    return two_dc(5432, 5433)


def upstreams(topo: Topology) -> dict[str, str | None]:
    return dict(initial_state(topo).upstreams)


def look(dc: Datacenter, leader: Member | None, leader_role: str = "primary") -> DCLook:
    return DCLook(dc, {m.name: NodeStatus(state="running", role=leader_role if m is leader else "replica",
                                          wal_lsn=0x3000000, replayed_lsn=0x3000000, replication_state="streaming")
                       for m in dc.members})


def test_an_upstream_whose_members_share_a_port_is_followed_through_every_member() -> None:
    topo = two_dc()
    dc1 = topo.dc("dc1")
    assert shared_port(dc1) == dc1.members[0].port
    assert follow_mode(dc1, upstreams(topo)) is FollowMode.EVERY_MEMBER
    section = role_section(topo, topo.dc("dc2"), upstreams(topo))
    assert section is not None
    assert section["host"] == ",".join(m.host for m in dc1.members) and section["port"] == shared_port(dc1)
    assert describe_follow(dc1, FollowMode.EVERY_MEMBER) == (
        f"follows dc1 through every member (multi-host, port {shared_port(dc1)})")


def test_an_upstream_on_mixed_ports_is_followed_at_its_leader_host_and_port(mixed: Topology) -> None:
    dc1 = mixed.dc("dc1")
    assert shared_port(dc1) is None
    assert follow_mode(dc1, upstreams(mixed)) is FollowMode.LEADER
    leader = dc1.members[1]
    section = role_section(mixed, mixed.dc("dc2"), upstreams(mixed), upstream_leader=leader)
    assert section is not None
    assert (section["host"], section["port"]) == (leader.host, leader.port)
    assert section["primary_slot_name"] == mixed.dc("dc2").slot_name
    with pytest.raises(ValueError, match="different PostgreSQL ports"):
        standby_cluster_section(mixed.dc("dc2"), dc1)  # a multi-host list cannot carry two ports


def test_without_a_seen_leader_the_configured_member_is_kept_else_the_first(mixed: Topology) -> None:
    dc1, dc2 = mixed.dc("dc1"), mixed.dc("dc2")
    second = dc1.members[1]
    configured = {"host": second.host, "port": str(second.port)}  # Patroni may hold the port as a string
    kept = role_section(mixed, dc2, upstreams(mixed), None, configured)
    assert kept is not None and (kept["host"], kept["port"]) == (second.host, second.port)
    first = role_section(mixed, dc2, upstreams(mixed), None, {"host": second.host, "port": 1})
    assert first is not None and (first["host"], first["port"]) == (dc1.members[0].host, dc1.members[0].port)


def test_a_standby_of_a_standby_dc_is_a_cascade_whatever_its_ports() -> None:
    topo = load_topology(THREE_DC)
    dc2 = topo.dc("dc2")
    assert follow_mode(dc2, upstreams(topo)) is FollowMode.CASCADE
    assert "dc2 is itself a standby DC" in describe_follow(dc2, FollowMode.CASCADE)


def standby_obs(topo: Topology, config: dict[str, Any], upstream: DCLook) -> Observation:
    record = initial_state(topo)
    dc2 = topo.dc("dc2")
    return Observation(dc="dc2", record=FederationState(**{**record.model_dump(), "epoch": 1}), own_epoch=1,
                       own=look(dc2, dc2.members[0], "standby_leader"), config=config, upstream=upstream)


def test_the_agent_re_points_host_and_port_when_the_upstream_leader_moves_to_another_port(mixed: Topology) -> None:
    dc1 = mixed.dc("dc1")
    old, new = dc1.members
    config = {"ttl": 20, "standby_cluster": role_section(mixed, mixed.dc("dc2"), upstreams(mixed), old)}
    assert decide(mixed, standby_obs(mixed, config, look(dc1, old))).action is Action.NOTHING

    moved = decide(mixed, standby_obs(mixed, config, look(dc1, new)))
    assert moved.action is Action.REPOINT, moved.sentence
    assert (moved.patch["standby_cluster"]["host"], moved.patch["standby_cluster"]["port"]) == (new.host, new.port)
    assert f"standby_cluster.port is {old.port!r}, want {new.port!r}" in moved.sentence

    # While dc1 shows no leader (mid-failover), the configured member stays: nothing to re-point.
    assert decide(mixed, standby_obs(mixed, config, look(dc1, None))).action is Action.NOTHING


def test_the_agent_re_points_a_cascade_at_the_new_standby_leader() -> None:
    topo = load_topology(THREE_DC)
    dc2, dc3 = topo.dc("dc2"), topo.dc("dc3")
    old, new = dc2.members[0], dc2.members[1]
    config = {"ttl": 20, "standby_cluster": role_section(topo, dc3, upstreams(topo), old)}
    record = initial_state(topo)
    obs = Observation(dc="dc3", record=record, record_written=False, own=look(dc3, dc3.members[0], "standby_leader"),
                      config=config, upstream=look(dc2, new, "standby_leader"))
    d = decide(topo, obs)
    assert d.action is Action.REPOINT, d.sentence
    assert (d.patch["standby_cluster"]["host"], d.patch["standby_cluster"]["port"]) == (new.host, new.port)


def test_the_operations_look_for_the_upstream_leader_only_when_they_follow_one_member(
        mixed: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    looked: list[str] = []

    def fake_look_at(dc: Datacenter, timeout: float = 1.5) -> DCLook:
        looked.append(dc.name)
        return look(dc, dc.members[1])

    monkeypatch.setattr(common, "look_at", fake_look_at)
    same = two_dc()
    assert upstream_leader(same, same.dc("dc2"), upstreams(same)) is None and looked == []
    leader = upstream_leader(mixed, mixed.dc("dc2"), upstreams(mixed))
    assert leader == mixed.dc("dc1").members[1] and looked == ["dc1"]
    patch = role_patch(mixed, mixed.dc("dc2"), upstreams(mixed), {}, upstream_leader=leader)
    assert (patch["standby_cluster"]["host"], patch["standby_cluster"]["port"]) == (leader.host, leader.port)
