"""decide() while the DC is self-fenced, and the reconcile loop's record coming from the store."""

from __future__ import annotations

from typing import Any

import pytest

from agent.daemon import Agent
from agent.decide import Action, decide
from agent.lease_guard import NOT_INITIALISED
from agent.self_fence import FENCE_PATCH
from agent.settings import agent_settings
from federation.state import FederationState
from federation.topology import Topology
from tests.unit.fixtures import without_store
from tests.unit.test_agent_decide import TOPOLOGY, look, primary_config, primary_obs, record, standby_config

FENCED = "primary-DC lease not renewed since 2026-01-01T00:00:00.000+00:00: fenced"


@pytest.fixture(scope="module")
def topo() -> Topology:
    return without_store(TOPOLOGY)


def fenced_config() -> dict[str, Any]:
    return {**primary_config(), **FENCE_PATCH}


def test_a_self_fenced_primary_dc_is_neither_re_pointed_nor_promoted(topo: Topology) -> None:
    obs = primary_obs(topo, own=look(topo, "dc1", "standby_leader"), config=fenced_config(), self_fenced=FENCED)
    d = decide(topo, obs)
    assert d.action is Action.WAIT
    assert d.sentence.startswith(f"dc1 is self-fenced ({FENCED}): not re-pointing or promoting it")
    # Even while its Patroni still says primary (the PATCH has not acted yet) and slots drift.
    obs = primary_obs(topo, config={"ttl": 20}, self_fenced=FENCED)
    assert decide(topo, obs).action is Action.WAIT


def test_a_self_fenced_dc_that_was_replaced_is_rebuilt_by_rejoin_dc(topo: Topology) -> None:
    obs = primary_obs(topo, record=record(epoch=5, primary="dc2"), own=look(topo, "dc1", "standby_leader"),
                      config=fenced_config(), self_fenced=FENCED)
    d = decide(topo, obs)
    assert d.action is Action.FENCE and d.replaced
    assert f"but it fenced itself ({FENCED}); demoting dc1 to a standby of dc2 (rejoin-dc)" in d.sentence


def test_once_rejoined_the_marker_no_longer_makes_it_replaced(topo: Topology) -> None:
    obs = primary_obs(topo, record=record(epoch=5, primary="dc2"), own=look(topo, "dc1", "standby_leader"),
                      config=standby_config(topo, "dc1", "dc2"), self_fenced="fence marker of dc1/n1")
    d = decide(topo, obs)
    assert d.action is Action.WAIT and "self-fenced" in d.sentence


class _Guard:
    def __init__(self, stored: FederationState | None, fenced: str | None) -> None:
        self.stored, self.fenced = stored, fenced

    def store_record(self) -> FederationState | None:
        return self.stored

    def self_fenced(self) -> str | None:
        return self.fenced

    def not_initialised(self) -> bool:
        return False


class _EmptyStore(_Guard):
    def not_initialised(self) -> bool:
        return True


def test_the_loop_uses_the_stores_record_and_falls_back_to_the_copies(topo: Topology) -> None:
    agent = Agent(agent_settings(topo, "dc1", "n1"))
    assert agent.guard is None  # no federation_store: nothing changes
    cached = primary_obs(topo, record=record(epoch=2))
    assert agent._with_guard(cached) is cached
    agent.guard = _Guard(record(epoch=3, primary="dc2"), FENCED)  # type: ignore[assignment]
    obs = agent._with_guard(cached)
    assert obs.record is not None and obs.record.epoch == 3 and obs.record_written and obs.self_fenced == FENCED
    agent.guard = _Guard(None, None)  # type: ignore[assignment]
    obs = agent._with_guard(cached)
    assert obs.record == cached.record and obs.self_fenced is None


def test_the_loop_changes_nothing_while_the_store_holds_no_record(topo: Topology) -> None:
    agent = Agent(agent_settings(topo, "dc2", "n3"))
    agent.guard = _EmptyStore(None, None)  # type: ignore[assignment]
    obs = agent._with_guard(primary_obs(topo, dc="dc2", record=record(epoch=3, primary="dc1")))
    d = decide(topo, obs)
    assert (d.action, d.sentence) == (Action.WAIT, f"{NOT_INITIALISED}: changing nothing")
