"""`fedctl adopt`'s decisions: what contradicts the topology, and the online changes (empty once applied)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.errors import TopologyError
from federation.operations.adopt_plan import AdoptStep, RunningDC, adoption_steps, disagreements, member_lines
from federation.operations.rejoin_parts import merge  # Patroni's PATCH /config semantics
from federation.patroni_dynamic import slots_patch
from federation.state import initial_state
from federation.topology import Topology, parse_topology

LAB = Path(__file__).parents[2] / "topologies" / "lab-two-dc.yaml"


def _topology(**dc2: Any) -> Topology:
    data = yaml.safe_load(LAB.read_text())
    data["datacenters"][1].update(dc2)
    return parse_topology(data, "lab.yaml")


def _hand_built(topo: Topology, **standby: Any) -> dict[str, RunningDC]:
    """A DBA's two clusters: dc1 writable with the slot dr_standby declared, dc2 a standby cluster of dc1's
    first member only, with its own restore_command and no replica methods."""
    dc1, dc2 = topo.datacenters
    section = {"host": dc1.members[0].host, "port": 5432, "primary_slot_name": "dr_standby",
               "restore_command": "pgbackrest --stanza=fed archive-get %f %p", **standby}
    return {"dc1": RunningDC(dc1, dc1.members[0], True, {"slots": {"dr_standby": {"type": "physical"}},
                                                         "loop_wait": 10}),
            "dc2": RunningDC(dc2, dc2.members[0], False, {"standby_cluster": section, "loop_wait": 10})}


def _applied(running: dict[str, RunningDC], steps: list[AdoptStep]) -> dict[str, RunningDC]:
    for step in steps:
        seen = running[step.dc]
        running[step.dc] = RunningDC(seen.dc, seen.leader, seen.writable, merge(dict(seen.config), step.patch))
    return running


def _upstreams(topo: Topology) -> dict[str, str | None]:
    return dict(initial_state(topo).upstreams)


def test_a_hand_built_standby_cluster_keeping_its_slot_is_adopted_and_a_second_plan_is_empty() -> None:
    topo = _topology(slot="dr_standby")
    running = _hand_built(topo)
    assert disagreements(topo, _upstreams(topo), running, "the topology") == []
    steps = adoption_steps(topo, _upstreams(topo), running)
    assert [s.dc for s in steps] == ["dc2"], "dc1 declares dr_standby already: only dc2's settings change"
    changed = steps[0].patch["standby_cluster"]
    assert changed["host"] == ",".join(m.host for m in topo.dc("dc1").members)
    assert changed["restore_command"] == 'pgbackrest archive-get %f "%p"'
    assert "primary_slot_name" not in changed and "port" not in changed, "what is right already stays as it is"
    assert "host '127.0.1.11' -> '127.0.1.11,127.0.1.12'" in steps[0].says
    after = _applied(running, steps)
    assert after["dc2"].config["loop_wait"] == 10, "the user's other settings are kept"
    assert adoption_steps(topo, _upstreams(topo), after) == []


def test_a_standby_cluster_without_a_slot_gets_the_permanent_slot_declared_first() -> None:
    topo = _topology()
    running = _hand_built(topo, primary_slot_name=None)
    assert disagreements(topo, _upstreams(topo), running, "the topology") == []
    steps = adoption_steps(topo, _upstreams(topo), running)
    assert [s.dc for s in steps] == ["dc1", "dc2"], "the slot exists before the standby names it"
    assert steps[0].new_slots == ("fed_dc2",) and steps[0].patch == {"slots": {"fed_dc2": {"type": "physical"}}}
    assert steps[1].patch["standby_cluster"]["primary_slot_name"] == "fed_dc2"
    after = _applied(running, steps)
    assert "dr_standby" in after["dc1"].permanent_slots, "the user's slot is left alone"
    assert adoption_steps(topo, _upstreams(topo), after) == []


def test_a_port_written_as_a_string_is_the_same_port() -> None:
    topo = _topology(slot="dr_standby")
    running = _applied(_hand_built(topo, port="5432"), adoption_steps(topo, _upstreams(topo), _hand_built(topo)))
    assert running["dc2"].config["standby_cluster"]["port"] == "5432"
    assert adoption_steps(topo, _upstreams(topo), running) == []


def test_every_contradiction_is_listed() -> None:
    topo = _topology()
    dc1, dc2 = topo.datacenters
    writable = {**_hand_built(topo), "dc2": RunningDC(dc2, dc2.members[1], True)}
    problems = disagreements(topo, _upstreams(topo), writable, "the topology")
    assert any("the topology says dc2 follows dc1, but dc2 is not a standby cluster: its leader n4 takes writes"
               in p for p in problems), problems
    assert any("dc1 and dc2 all take writes" in p for p in problems), problems

    elsewhere = _hand_built(topo, host="10.9.9.9,10.9.9.8")
    problems = disagreements(topo, _upstreams(topo), elsewhere, "the topology")
    assert any("dc2 streams from 10.9.9.9,10.9.9.8:5432, which is not a member of dc1 (127.0.1.11:5432, "
               "127.0.1.12:5432)" in p for p in problems), problems
    assert any("add `slot: dr_standby` to dc2" in p for p in problems), problems

    wrong_port = _hand_built(topo, port=6432, primary_slot_name="fed_dc2")
    assert any("127.0.1.11:6432, which is not a member" in p
               for p in disagreements(topo, _upstreams(topo), wrong_port, "the topology"))

    reversed_roles = {"dc1": RunningDC(dc1, dc1.members[0], False, {"standby_cluster": {"host": "127.0.2.11"}}),
                      "dc2": RunningDC(dc2, dc2.members[0], True)}
    problems = disagreements(topo, _upstreams(topo), reversed_roles, "the federation record (epoch 3)")
    assert any("the federation record (epoch 3) says dc1 is the primary DC, but dc1 is a standby cluster (its "
               "leader n1 follows 127.0.2.11:5432)" in p for p in problems), problems

    unknown = {"dc1": RunningDC(dc1, error="no member's Patroni REST API answers"), "dc2": RunningDC(dc2)}
    problems = disagreements(topo, _upstreams(topo), unknown, "the topology")
    assert problems == ["dc1: cannot be read: no member's Patroni REST API answers",
                        "dc2: no member holds the leader lock; adopt a federation whose every DC has a leader"]


def test_a_standby_of_a_dc_on_mixed_ports_is_pointed_at_its_running_leader_host_and_port() -> None:
    data = yaml.safe_load(LAB.read_text())
    data["datacenters"][0]["members"][1]["port"] = 5433
    data["datacenters"][1]["slot"] = "dr_standby"
    topo = parse_topology(data, "lab.yaml")
    dc1 = topo.dc("dc1")
    running = _hand_built(topo)
    running["dc1"] = replace(running["dc1"], leader=dc1.members[1])
    steps = adoption_steps(topo, _upstreams(topo), running)
    changed = steps[0].patch["standby_cluster"]
    assert (changed["host"], changed["port"]) == (dc1.members[1].host, dc1.members[1].port)
    assert adoption_steps(topo, _upstreams(topo), _applied(running, steps)) == []


def test_the_slot_field_names_the_dc_slot_and_must_be_unique_and_valid() -> None:
    assert _topology().dc("dc2").slot_name == "fed_dc2"
    assert _topology(slot="dr_standby").dc("dc2").slot_name == "dr_standby"
    with pytest.raises(TopologyError, match="slot name fed_dc1 is used twice"):
        _topology(slot="fed_dc1")
    with pytest.raises(TopologyError, match="slot"):
        _topology(slot="Not-A-Slot")


def test_a_federation_slot_with_a_user_name_is_removed_when_unused_and_other_user_slots_stay() -> None:
    patch = slots_patch({"dr_standby": {}, "fed_dc9": {}, "logical_feed": {}}, set(), {"dr_standby"})
    assert patch == {"dr_standby": None, "fed_dc9": None}


def test_member_lines_name_each_dc_its_members_and_the_topology() -> None:
    topo = _topology()
    lines = member_lines(topo, "/etc/fedctl/fed.yaml")
    assert len(lines) == 2 * len(topo.datacenters)
    assert lines[2].startswith("dc2 (n3, n4): in each patroni.yml, postgresql.pre_promote: fedctl gate pre-promote "
                               "-t /etc/fedctl/fed.yaml --dc dc2")
    assert lines[3].endswith("fedctl agent run -t /etc/fedctl/fed.yaml --dc dc2 --member <member> "
                             "--patroni-config <its patroni.yml>")
