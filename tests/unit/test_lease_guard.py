"""The lease guard with a fake store, a fake Patroni, a fake marker home and a fake clock (no lab)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agent.daemon import Agent
from agent.fence_marker import FenceMarker
from agent.lease_guard import NOT_INITIALISED, LeaseGuard
from agent.primary_check import PrimaryCheck
from agent.self_fence import FENCE_PATCH, UNFENCE_PATCH
from agent.settings import agent_settings
from federation.dcs.base import Versioned
from federation.errors import DCSError
from federation.state import FederationState
from federation.store import NO_LEASE, LeaseView, StoreError
from federation.topology import load_topology, parse_topology
from tests.unit.test_agent_decide import TOPOLOGY

TTL, MARGIN = 10.0, 3.0


def record(primary: str = "dc1", epoch: int = 4) -> FederationState:
    upstreams: dict[str, str | None] = {"dc1": None, "dc2": "dc1"} if primary == "dc1" else {"dc1": "dc2", "dc2": None}
    return FederationState(federation="test-agent", epoch=epoch, primary_dc=primary, upstreams=upstreams)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class World:
    """The store, the lease, the DC's Patroni and its DCS, sharing one event log to check the order."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.events: list[str] = []
        self.record: FederationState | None = record()
        self.store_up = True
        self.own_dcs_up = True
        self.lease: LeaseView = NO_LEASE  # what read_lease answers
        self.takeable = True
        self.held = False
        self.config: dict[str, Any] = {"ttl": 20}
        self.role: str | None = "primary"
        self.marker: FenceMarker | None = None
        self.closed = 0

    # the store
    def _up(self) -> None:
        if not self.store_up:
            raise StoreError("the federation store has no quorum from here: 1 of 3 members answer")

    def read_record(self) -> Versioned | None:
        self._up()
        return None if self.record is None else Versioned("/fedctl/r", self.record.model_dump_json(), 7)

    def read_lease(self) -> LeaseView:
        self._up()
        self.events.append("read_lease")
        return self.lease

    # the lease handle
    def take(self, record_version: int) -> LeaseView | None:
        self._up()
        self.events.append("take")
        self.held = self.takeable and self.record is not None and self.record.primary_dc == "dc1"
        return LeaseView("dc1", "dc1/n1", TTL, 1) if self.held else None

    def renew(self) -> LeaseView | None:
        self._up()
        self.events.append("renew")
        return LeaseView("dc1", "dc1/n1", TTL, 2) if self.held else None

    def release(self) -> None:
        self.events.append("release")
        self.held = False

    def close(self) -> None:
        self.closed += 1

    # the DC's Patroni
    def leader_role(self) -> str | None:
        return self.role

    def get_config(self) -> dict[str, Any]:
        return dict(self.config)

    def patch(self, body: dict[str, Any]) -> None:
        self.events.append(f"patch {body}")
        self.config.update(body)
        section = self.config.get("standby_cluster")
        if section is None:
            self.config.pop("standby_cluster", None)
        self.role = "standby_leader" if section else "primary"

    # the marker in the own DCS
    def _own(self) -> None:
        if not self.own_dcs_up:
            raise DCSError("dc1's DCS does not answer")

    def read(self) -> FenceMarker | None:
        self._own()
        return self.marker

    def write(self, marker: FenceMarker) -> None:
        self._own()
        self.events.append("marker")
        self.marker = self.marker or marker

    def remove(self) -> None:
        self._own()
        self.events.append("unmark")
        self.marker = None

    def patches(self) -> list[str]:
        return [e for e in self.events if e.startswith("patch")]


class _PatroniView:
    def __init__(self, world: World) -> None:
        self.world = world

    def leader_role(self) -> str | None:
        return self.world.leader_role()

    def config(self) -> dict[str, Any]:
        return self.world.get_config()

    def patch(self, body: dict[str, Any]) -> None:
        self.world.patch(body)


def make(world: World, *, active: bool = True, member: str = "n1", cached: FederationState | None = None,
         interval: float = 1.0) -> LeaseGuard:
    return LeaseGuard(dc="dc1", identity=f"dc1/{member}", store=world, lease=world, patroni=_PatroniView(world),
                      markers=world, ttl=TTL, margin=MARGIN, active=lambda: active, cached_record=lambda: cached,
                      clock=world.clock, wall=lambda: datetime(2026, 1, 1, tzinfo=UTC), interval=interval)


def tick(guard: LeaseGuard, world: World, seconds: float = 0.0) -> str:
    world.clock.now += seconds
    guard.poll_store()
    return guard.enforce()


@pytest.fixture
def world() -> World:
    return World(Clock())


def test_the_active_agent_fences_at_sighting_plus_remaining_minus_margin_and_not_before(world: World) -> None:
    guard = make(world)
    tick(guard, world)  # t=100: takes the lease, valid until 110, fence deadline 107
    assert world.held and guard.held() and guard.fence_reason() is None
    world.store_up = False
    for _ in range(6):
        sentence = tick(guard, world, 1.0)
        assert world.patches() == [], sentence
    world.clock.now = 106.99
    assert guard.enforce().startswith("renewing") and guard.fence_reason() is None
    world.clock.now = 107.0
    sentence = guard.enforce()
    assert sentence.startswith("fencing before the lease can expire"), sentence
    assert world.patches() == [f"patch {FENCE_PATCH}"]
    assert world.events.index("marker") < world.events.index(f"patch {FENCE_PATCH}")  # the marker first
    assert world.marker is not None and world.marker.by == "dc1/n1" and world.marker.epoch == 4
    assert guard.fence_reason() == "primary-DC lease not renewed since 2025-12-31T23:59:53.000+00:00: fenced"


def test_primary_says_no_from_the_fence_decision_on_before_the_patch(world: World) -> None:
    guard = make(world)
    tick(guard, world)
    world.store_up = False
    check = PrimaryCheck(agent_settings(load_topology(TOPOLOGY), "dc1", "n1"), fenced=guard.fence_reason)
    check._started = True  # no record watcher thread: the fence answers before Patroni is asked
    world.clock.now = 107.0  # the enforcing thread has not run yet
    verdict = check.answer()
    assert not verdict.ok and verdict.reason.endswith(": fenced")
    assert verdict.reason.startswith("primary-DC lease not renewed since")
    assert world.patches() == []


def test_a_non_active_agent_watches_and_fences_too(world: World) -> None:
    guard = make(world, active=False, member="n2")
    world.lease = LeaseView("dc1", "dc1/n1", 8.0, 3)  # etcd says 8 s are left: deadline 100 + 8 - 3
    tick(guard, world)
    assert "take" not in world.events and "renew" not in world.events and "read_lease" in world.events
    assert guard.status()["lease_holder"] == "dc1/n1"
    world.store_up = False  # the cut: the active agent may be dead too (SIGKILL), this one still fences
    world.clock.now = 104.9
    assert guard.enforce().startswith("the lease of dc1 lives")
    world.clock.now = 105.0
    guard.enforce()
    assert world.patches() == [f"patch {FENCE_PATCH}"] and world.marker is not None
    assert world.marker.by == "dc1/n2"
    tick(guard, world, 1.0)  # the leader is a standby leader now: nothing more to send
    assert world.patches() == [f"patch {FENCE_PATCH}"]


def test_the_fence_patch_is_retried_until_it_is_in_place(world: World) -> None:
    guard = make(world)
    tick(guard, world)
    world.store_up = False
    calls = 0
    real_patch = world.patch

    def failing(body: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DCSError("PATCH timed out")
        real_patch(body)

    world.patch = failing  # type: ignore[method-assign]
    world.clock.now = 107.0
    assert "retrying" in guard.enforce()
    assert "sent PATCH" in tick(guard, world, 1.0)
    assert world.role == "standby_leader"
    assert "standby leader with no upstream" in tick(guard, world, 1.0)


def _fenced(world: World, guard: LeaseGuard) -> None:
    tick(guard, world)
    world.store_up = False
    world.clock.now = 107.0
    guard.enforce()
    assert guard.fenced()


def test_unfence_needs_our_marker_the_record_naming_us_and_the_lease(world: World) -> None:
    guard = make(world)
    _fenced(world, guard)
    tick(guard, world, 1.0)
    assert world.closed == 1  # the lease handle is closed at the fence (a ZooKeeper session would live on)
    world.store_up = True
    world.takeable = False  # the store answers but the lease cannot be taken: stay fenced
    tick(guard, world, 1.0)
    tick(guard, world, 1.0)
    assert f"patch {UNFENCE_PATCH}" not in world.patches() and guard.fenced()
    world.takeable = True
    tick(guard, world, 1.0)  # takes the lease
    sentence = tick(guard, world, 0.0)
    assert world.patches()[-1] == f"patch {UNFENCE_PATCH}", sentence
    assert world.marker is None and not guard.fenced() and world.role == "primary"
    assert tick(guard, world, 1.0).startswith("renewing")


def test_no_unfence_with_a_marker_that_is_not_ours(world: World) -> None:
    guard = make(world)
    world.marker = FenceMarker(since="2026-01-01T00:00:00", epoch=4, by="operator", reason="by hand")
    world.config["standby_cluster"] = FENCE_PATCH["standby_cluster"]
    world.role = "standby_leader"
    for _ in range(3):
        sentence = tick(guard, world, 1.0)
    assert guard.fenced() and guard.held()
    assert world.patches() == [] and world.marker is not None and "not ours" in guard.last_sentence, sentence


def test_no_unfence_when_the_record_names_another_dc_and_the_marker_goes_after_rejoin(world: World) -> None:
    guard = make(world)
    _fenced(world, guard)
    world.store_up = True
    world.record = record("dc2", epoch=5)  # promote-dc ran on the other side
    sentence = tick(guard, world, 1.0)
    assert sentence.startswith("fenced: the record names dc2"), sentence
    assert "take" not in world.events[world.events.index(f"patch {FENCE_PATCH}"):]
    assert f"patch {UNFENCE_PATCH}" not in world.patches() and world.marker is not None
    world.config["standby_cluster"] = {"host": "127.0.32.11,127.0.32.12", "port": 5432}  # rejoin-dc did it
    assert "fence marker removed" in tick(guard, world, 1.0)
    assert world.marker is None and not guard.fenced()
    assert tick(guard, world, 1.0) == "no lease to keep: dc2 is the primary DC"


def test_a_non_active_agent_never_unfences_and_does_not_fence_again_after_the_active_one_did(world: World) -> None:
    guard = make(world, active=False, member="n2")
    world.lease = LeaseView("dc1", "dc1/n1", 8.0, 3)
    tick(guard, world)
    world.store_up = False
    world.clock.now = 105.0
    guard.enforce()
    tick(guard, world, 0.0)
    assert world.marker is not None and world.role == "standby_leader"
    world.store_up = True
    tick(guard, world, 1.0)
    assert f"patch {UNFENCE_PATCH}" not in world.patches()
    world.patch(UNFENCE_PATCH)  # the active agent unfences and removes the marker
    world.marker = None
    for _ in range(3):
        tick(guard, world, 1.0)
    assert world.patches()[-1] == f"patch {UNFENCE_PATCH}" and not guard.fenced()


def test_no_fencing_while_the_store_holds_no_record(world: World) -> None:
    world.record = None
    guard = make(world, cached=record())
    for _ in range(30):
        assert tick(guard, world, 1.0) == NOT_INITIALISED
    assert world.patches() == [] and "take" not in world.events and guard.fence_reason() is None


def test_an_unreachable_store_is_no_sighting_and_the_cached_record_decides(world: World) -> None:
    world.store_up = False
    guard = make(world, cached=record("dc1"))
    for _ in range(6):
        tick(guard, world, 1.0)
    assert world.patches() == []
    sentence = tick(guard, world, 1.0)  # 107: one TTL minus the margin since start, no lease ever confirmed
    assert "no renewal or sighting of the lease in 7.0 s since start" in sentence
    assert world.patches() == [f"patch {FENCE_PATCH}"]
    other = World(Clock())
    other.store_up = False
    standby = make(other, cached=record("dc2"))
    for _ in range(20):
        assert tick(standby, other, 1.0) == "no lease to keep: dc2 is the primary DC"
    assert other.patches() == []


def test_a_dc_that_is_already_a_standby_cluster_is_not_patched(world: World) -> None:
    world.config["standby_cluster"] = {"host": "127.0.32.11", "port": 5432}
    world.role = "standby_leader"
    world.store_up = False
    guard = make(world, cached=record("dc1"))
    for _ in range(8):
        tick(guard, world, 1.0)
    assert guard.fenced() and world.patches() == [] and world.marker is not None


def test_the_guard_runs_in_threads_of_its_own_and_stops(world: World) -> None:
    guard = make(world, interval=0.01)
    guard.start()
    try:
        deadline = time.monotonic() + 5
        while "renew" not in world.events and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        guard.stop()
    assert "take" in world.events and "renew" in world.events
    assert all(not t.is_alive() for t in guard._threads)


def test_with_a_store_every_agent_gets_a_guard_with_metrics_and_status() -> None:
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["federation_store"] = {"etcd3": {"hosts": [{"address": "127.0.39.1:2379", "site": "dc1"},
                                                    {"address": "127.0.39.2:2379", "site": "dc2"},
                                                    {"address": "127.0.39.3:2379", "site": "witness"}]}}
    agent = Agent(agent_settings(parse_topology(data), "dc1", "n2"))  # connects to nothing yet
    assert agent.guard is not None
    families = {f.name: f for f in text_string_to_metric_families(agent.metrics.text().decode())}
    assert families["fedctl_agent_primary_lease_held"].samples[0].value == 0
    assert families["fedctl_agent_fenced"].samples[0].value == 0
    assert math.isnan(families["fedctl_agent_lease_sighting_age_seconds"].samples[0].value)
    status = agent.guard.status()
    assert {"lease_holder", "held", "sighting_age_seconds", "fenced_since", "last_sentence"} <= status.keys()


def test_the_holder_renews_even_when_the_record_cannot_be_read(world: World) -> None:
    guard = make(world)
    tick(guard, world)
    read_record = world.read_record

    def no_record() -> Versioned | None:
        raise StoreError("could not read the federation record within 2.3 s")

    world.read_record = no_record  # type: ignore[method-assign]
    for _ in range(12):
        tick(guard, world, 1.0)
    assert world.events.count("renew") == 12 and world.patches() == [] and not guard.fenced()
    world.read_record = read_record  # type: ignore[method-assign]


def test_a_dc_just_made_primary_gets_its_grace_from_then_not_from_the_agents_start(world: World) -> None:
    """A switchover or promote-dc names a standby DC the primary DC long after its agents started: the
    agents must not fence it at once for a lease it could not have held before."""
    world.record = record(primary="dc2", epoch=4)
    world.lease = LeaseView("dc2", "dc2/n3", 8.0, 3)
    world.role = "standby_leader"
    world.config = {"ttl": 20, "standby_cluster": {"host": "10.0.2.11", "port": 5432}}
    guard = make(world, active=False, member="n2")
    tick(guard, world)
    tick(guard, world, 60.0)  # long after start, dc1 is still a standby DC: nothing to keep
    assert world.patches() == []
    world.record = record(primary="dc1", epoch=5)  # the switchover's commit: dc1 is the primary DC now
    world.lease = NO_LEASE
    world.role = "primary"
    world.config = {"ttl": 20}
    sentence = tick(guard, world, 1.0)
    assert world.patches() == [], sentence
    assert "fencing in" in sentence
    world.lease = LeaseView("dc1", "dc1/n1", 10.0, 1)  # the active agent took it
    tick(guard, world, 1.0)
    tick(guard, world, 1.0)
    assert world.patches() == [], "the lease lives: no fence"


def test_near_the_fence_deadline_and_after_a_store_failure_the_store_is_asked_at_once_again(world: World) -> None:
    """Back from a short cut, a watching agent sees the lease with little left; the renewal that saves the DC
    comes a moment later, and must be seen before the deadline: a whole interval is too long then."""
    guard = make(world, active=False, member="n2", interval=1.0)
    world.lease = LeaseView("dc1", "dc1/n1", 8.0, 3)  # deadline 100 + 8 - 3 = 105
    tick(guard, world)
    assert guard.store_wait() == 1.0
    world.lease = LeaseView("dc1", "dc1/n1", 4.0, 3)  # 3.5 s later, no renewal yet: the deadline stays 105
    tick(guard, world, 3.5)
    assert guard.store_wait() < 0.5
    world.lease = LeaseView("dc1", "dc1/n1", 9.0, 3)  # renewed: deadline 103.75 + 9 - 3
    tick(guard, world, 0.25)
    assert guard.store_wait() == 1.0 and world.patches() == []
    world.store_up = False
    tick(guard, world, 1.0)
    assert guard.store_wait() < 0.5
