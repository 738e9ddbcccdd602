"""Each decision point writes its event exactly once per change, never per cycle: the lease guard (fake store,
Patroni, markers and clock of test_lease_guard), the agent lease, the reconcile loop's re-point and fence, and
the job scheduler."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import act, daemon
from agent.daemon import Agent
from agent.decide import Observation
from agent.events import EventLog
from agent.fence_marker import FenceMarker
from agent.leadership import LeaseKeeper
from agent.lease_guard import LeaseGuard
from agent.settings import agent_settings
from backup.jobs import JobResult
from federation.dcs.lease import LeaderLease
from federation.topology import Topology, load_topology
from tests.unit.fixtures import without_store
from tests.unit.test_agent_decide import (
    TOPOLOGY,
    look,
    primary_config,
    primary_obs,
    record,
    standby_config,
    standby_obs,
)
from tests.unit.test_agent_scheduler import Runs, scheduler
from tests.unit.test_backup_jobs import TOPOLOGY as JOBS_TOPOLOGY
from tests.unit.test_backup_jobs import MemoryDCS
from tests.unit.test_lease_guard import MARGIN, TTL, Clock, World, _PatroniView
from tests.unit.test_lease_guard import record as guard_record


def kinds(log: EventLog) -> list[str]:
    return [e["kind"] for e in log.read()]


# ---- the lease guard: fence, unfence, lease_taken, lease_lost, lease_released ---------------------------------

@pytest.fixture
def world() -> World:
    return World(Clock())


def guard(world: World, log: EventLog, *, active: bool = True, member: str = "n1") -> LeaseGuard:
    return LeaseGuard(dc="dc1", identity=f"dc1/{member}", store=world, lease=world, patroni=_PatroniView(world),
                      markers=world, ttl=TTL, margin=MARGIN, active=lambda: active, clock=world.clock,
                      wall=lambda: datetime(2026, 1, 1, tzinfo=UTC), interval=1.0, events=log)


def tick(g: LeaseGuard, world: World, seconds: float = 0.0) -> str:
    world.clock.now += seconds
    g.poll_store()
    return g.enforce()


def test_a_fence_and_its_unfence_are_one_event_each_with_the_lease_changes_between(world: World) -> None:
    log = EventLog(None, dc="dc1", member="n1")
    g = guard(world, log)
    for _ in range(3):
        tick(g, world, 1.0)  # takes the lease once, then renews it: one event
    assert kinds(log) == ["lease_taken"]
    world.store_up = False
    for _ in range(8):
        tick(g, world, 1.0)  # the fence deadline passes; the PATCH and the check repeat every second
    assert kinds(log) == ["lease_taken", "fence", "lease_lost"]
    fence = log.read()[1]
    assert fence["reason"].startswith("primary-DC lease not renewed since") and fence["epoch"] == 4
    assert fence["decision"].startswith("fencing before the lease can expire")
    world.store_up = True
    for _ in range(5):
        tick(g, world, 1.0)  # back: the lease is taken again, the DC unfenced, the lease renewed
    assert not g.fenced()
    assert kinds(log) == ["lease_taken", "fence", "lease_lost", "lease_taken", "unfence"]
    assert "holds the primary-DC lease again" in log.read()[-1]["reason"]


def test_a_lease_the_store_refuses_to_renew_is_lost_once_and_the_dc_fenced(world: World) -> None:
    log = EventLog(None, dc="dc1", member="n1")
    g = guard(world, log)
    tick(g, world)
    world.held, world.takeable = False, False  # revoked in the store: renewal and takeover answer "no"
    for _ in range(5):
        tick(g, world, 1.0)
    assert kinds(log) == ["lease_taken", "lease_lost", "fence"]
    assert "refused to renew" in log.read()[1]["sentence"]


def test_the_lease_is_released_once_when_the_record_names_another_dc(world: World) -> None:
    log = EventLog(None, dc="dc1", member="n1")
    g = guard(world, log)
    tick(g, world)
    world.record = guard_record("dc2", epoch=5)  # switchover-dc committed
    for _ in range(3):
        tick(g, world, 1.0)
    assert kinds(log) == ["lease_taken", "lease_released"]
    released = log.read()[-1]
    assert released["primary_dc"] == "dc2" and "names dc2 the primary DC" in released["sentence"]


def test_a_non_active_agent_fences_on_its_own_and_says_when_the_active_one_unfenced(world: World) -> None:
    log = EventLog(None, dc="dc1", member="n2")
    world.lease = world.lease.__class__("dc1", "dc1/n1", 8.0, 3)
    g = guard(world, log, active=False, member="n2")
    tick(g, world)
    world.store_up = False
    for _ in range(6):
        tick(g, world, 1.0)
    assert kinds(log) == ["fence"]  # it never held the lease: no lease events
    world.store_up = True
    world.patch({"standby_cluster": None})  # the active agent unfences and removes the marker
    world.marker = None
    for _ in range(3):
        tick(g, world, 1.0)
    assert kinds(log) == ["fence", "unfence"] and "the active agent" in log.read()[-1]["reason"]


def test_the_end_of_a_fence_by_rejoin_dc_is_one_unfence(world: World) -> None:
    log = EventLog(None, dc="dc1", member="n1")
    g = guard(world, log)
    tick(g, world)
    world.store_up = False
    world.clock.now = 107.0
    g.enforce()
    world.store_up = True
    world.record = guard_record("dc2", epoch=5)
    tick(g, world, 1.0)
    world.config["standby_cluster"] = {"host": "127.0.32.11,127.0.32.12", "port": 5432}  # rejoin-dc did it
    for _ in range(3):
        tick(g, world, 1.0)
    assert kinds(log) == ["lease_taken", "fence", "lease_lost", "unfence"]
    assert "standby of dc2" in log.read()[-1]["reason"]


def test_a_marker_of_ours_found_at_start_is_one_fence(world: World) -> None:
    log = EventLog(None, dc="dc1", member="n1")
    world.marker = FenceMarker(since="2026-01-01T00:00:00", epoch=4, by="dc1/n2", reason="lease lapsed")
    g = guard(world, log)
    for _ in range(3):
        tick(g, world, 1.0)
    assert kinds(log).count("fence") == 1


# ---- the agent lease inside the DC: agent_active, agent_standby --------------------------------------------------

class FakeLease(LeaderLease):
    def __init__(self) -> None:
        super().__init__("/fed/_fedctl/test/agent/dc2/leader", "dc2/n3", 5)
        self.held = True

    def step(self) -> bool:
        self.last_holder = "dc2/n3" if self.held else "dc2/n4"
        return self.held

    def holder(self) -> str | None:
        return self.last_holder

    def release(self) -> None:
        self.held = False

    def close(self) -> None:
        pass


def test_the_agent_lease_is_one_event_per_change_and_one_at_release() -> None:
    log = EventLog(None, dc="dc2", member="n3")
    lease = FakeLease()
    now = [0.0]
    keeper = LeaseKeeper(lease, clock=lambda: now[0], events=log)
    for _ in range(3):
        keeper.step()
        now[0] += 1
    assert kinds(log) == ["agent_active"]
    lease.held = False
    for _ in range(3):
        keeper.step()
    assert kinds(log) == ["agent_active", "agent_standby"] and log.read()[-1]["holder"] == "dc2/n4"
    lease.held = True
    keeper.step()
    keeper._release()  # the agent stops
    assert kinds(log) == ["agent_active", "agent_standby", "agent_active", "agent_standby"]
    assert "the agent stops" in log.read()[-1]["sentence"]


# ---- the reconcile loop: repoint, fence_replaced -----------------------------------------------------------------

@pytest.fixture
def topo() -> Topology:
    return without_store(TOPOLOGY)


def active_agent(topo: Topology, dc: str, member: str, monkeypatch: pytest.MonkeyPatch) -> Agent:
    agent = Agent(agent_settings(topo, dc, member))
    agent.keeper._held, agent.keeper._valid_until = True, math.inf
    monkeypatch.setattr(act, "store", lambda *_: None)  # no LSN samples: no DCS, no SQL
    monkeypatch.setattr(act, "write_own_copy", lambda *_: False)
    return agent


def observing(monkeypatch: pytest.MonkeyPatch, obs: Observation) -> None:
    monkeypatch.setattr(daemon, "observe", lambda *_: (obs, None))


def test_a_repoint_is_one_event_with_from_and_to_and_an_unchanged_config_none(
        topo: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = active_agent(topo, "dc2", "n3", monkeypatch)
    outcomes = iter(["PATCH /config on n3", act.ALREADY_AS_WANTED])
    monkeypatch.setattr(act, "carry_out", lambda *_: next(outcomes))
    drifted = standby_obs(topo, config=standby_config(topo, host="127.0.31.11"))
    observing(monkeypatch, drifted)
    agent.cycle()
    agent.cycle()  # decided again, but the PATCH found nothing to change
    observing(monkeypatch, standby_obs(topo))
    agent.cycle()
    assert kinds(agent.events) == ["repoint"]
    event = agent.events.read()[0]
    assert event["from"] == "dc1" and event["to"] == "dc1" and event["from_hosts"] == "127.0.31.11"
    assert event["to_hosts"] == "127.0.31.11,127.0.31.12" and event["epoch"] == 0
    assert event["sentence"].startswith("PATCH /config on n3: dc2 should stream from dc1")


def test_a_replaced_dc_demoted_is_one_event_once_the_rejoin_is_done(
        topo: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = active_agent(topo, "dc1", "n1", monkeypatch)
    monkeypatch.setattr(act, "carry_out", lambda *_: "rejoin-dc done in 9.0 s; fork 0/3000000")
    observing(monkeypatch, primary_obs(topo, record=record(epoch=3, primary="dc2"), own_epoch=3))
    agent.cycle()
    assert agent.background.wait(5)
    assert kinds(agent.events) == ["fence_replaced"]
    observing(monkeypatch, primary_obs(topo, record=record(epoch=3, primary="dc2"), own_epoch=3,
                                       own=look(topo, "dc1", "standby_leader"),
                                       config=standby_config(topo, "dc1", "dc2")))
    agent.cycle()
    agent.cycle()
    event = agent.events.read()[0]
    assert kinds(agent.events) == ["fence_replaced"]
    assert event["epoch"] == 3 and event["upstream"] == "dc2" and "rejoin-dc done" in event["sentence"]


def test_a_failed_fence_writes_no_event(topo: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = active_agent(topo, "dc1", "n1", monkeypatch)

    def failing(*_: Any) -> str:
        raise RuntimeError("pg_rewind failed")

    monkeypatch.setattr(act, "carry_out", failing)
    observing(monkeypatch, primary_obs(topo, record=record(epoch=3, primary="dc2"), own_epoch=3,
                                       config=primary_config()))
    agent.cycle()
    assert agent.background.wait(5)
    assert kinds(agent.events) == []


# ---- the job scheduler: job ---------------------------------------------------------------------------------------

@pytest.fixture
def jobs_topo(tmp_path: Path) -> Topology:
    data = yaml.safe_load(JOBS_TOPOLOGY.read_text())
    data["datacenters"][0]["jobs"] = [{"name": "archive", "kind": "check_archive", "cron": "*/10 * * * *"}]
    path = tmp_path / "topo.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_topology(path)


def test_each_finished_job_is_one_event_with_name_outcome_and_seconds(jobs_topo: Topology) -> None:
    log = EventLog(None, dc="dc1", member="n1")
    s = scheduler(jobs_topo, MemoryDCS(), Runs("ok"), events=log)
    result: JobResult = s.run_now("archive")
    assert result.status == "ok"
    assert kinds(log) == ["job"]
    event = log.read()[0]
    assert (event["name"], event["outcome"], event["seconds"], event["job_kind"]) == ("archive", "ok", 2.5,
                                                                                       "check_archive")
    assert event["dc"] == "dc1" and "job archive (check_archive) ok after 2.5 s" in event["sentence"]


def test_the_backup_hosts_job_events_carry_the_jobs_dc(jobs_topo: Topology) -> None:
    log = EventLog(None, dc="-", member="backup-host@repo")
    s = scheduler(jobs_topo, MemoryDCS(), Runs("failed"), identity="backup-host@repo/dc1",
                  events=log.for_dc("dc1"))
    s.run_now("archive")
    event = log.read()[0]
    assert (event["dc"], event["member"], event["outcome"]) == ("dc1", "backup-host@repo", "failed")
