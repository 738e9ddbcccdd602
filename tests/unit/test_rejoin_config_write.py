"""rejoin-dc writes a silent DC's standby_cluster straight into its DCS, and survives the agent's racing write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federation.dcs.patroni_keys import config_key
from federation.operations import rejoin_parts
from federation.topology import load_topology
from tests.unit.test_backup_jobs import MemoryDCS

TOPOLOGY = Path(__file__).resolve().parents[2] / "topologies" / "lab-two-dc.yaml"


@pytest.fixture
def dc1_silent(monkeypatch: pytest.MonkeyPatch) -> tuple[object, MemoryDCS]:
    topo = load_topology(TOPOLOGY)
    memory = MemoryDCS()
    memory.put(config_key(topo.dc("dc1")), json.dumps({"loop_wait": 1}))
    monkeypatch.setattr(rejoin_parts, "connect", lambda dc: memory)
    return topo, memory


def test_a_write_that_loses_to_a_concurrent_one_is_read_and_made_again(dc1_silent: tuple) -> None:
    topo, memory = dc1_silent
    key = config_key(topo.dc("dc1"))
    memory.before_replace.append(key)  # the agent rewrites the key just before our first compare-and-set
    detail = rejoin_parts.write_role_in_dcs(topo, topo.dc("dc1"), {"dc1": "dc2", "dc2": None})
    assert detail.startswith("written straight into the DCS")
    written = json.loads(memory.get(key).value)
    assert written["loop_wait"] == 1
    assert {m.host for m in topo.dc("dc2").members} <= set(written["standby_cluster"]["host"].split(","))


def test_a_config_already_pointing_at_the_upstream_is_left_alone(dc1_silent: tuple) -> None:
    topo, memory = dc1_silent
    upstreams = {"dc1": "dc2", "dc2": None}
    rejoin_parts.write_role_in_dcs(topo, topo.dc("dc1"), upstreams)
    version = memory.get(config_key(topo.dc("dc1"))).version
    assert rejoin_parts.write_role_in_dcs(topo, topo.dc("dc1"), upstreams) == "already pointing there"
    assert memory.get(config_key(topo.dc("dc1"))).version == version
