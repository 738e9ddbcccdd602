"""promote-dc and switchover-dc with a federation store: the old primary DC's lease decides (fakes only)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from federation import state
from federation.dcs.base import Versioned
from federation.errors import OperationRefused
from federation.operations.lease_fence import LeaseFence, commit_handing_over
from federation.operations.promote import LossEstimate, loss_from_sample, promote_dc
from federation.progress import Progress
from federation.samples import LsnSample
from federation.store import LeaseView
from federation.topology import Topology, parse_topology
from tests.unit.fake_federation import FakeFederation
from tests.unit.test_backup_jobs import MemoryDCS
from tests.unit.test_record_store import STORE, TOPOLOGY, FakeStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ALIVE = LeaseView("dc1", "dc1/n1", 7.0, 3, 42)


class Clock:
    """Monotonic and wall time that only `sleep` moves."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []
        self.wall0 = T0.timestamp()

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall0 + self.now - 100.0

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class LeaseStore(FakeStore):
    """The record register plus the primary-DC lease, with the commit's lease conditions."""

    def __init__(self) -> None:
        super().__init__()
        self.lease = LeaseView(None)
        self.leases: list[LeaseView] = []  # read_lease answers these first, one each

    def read_lease(self) -> LeaseView:
        self._check()
        return self.leases.pop(0) if self.leases else self.lease

    def commit_record(self, value: str, version: int | None, *, lease_absent: bool = False,
                      revoke: LeaseView | None = None) -> bool:
        if lease_absent and self.lease.held:
            self.commits.append({"value": value, "lease_absent": True, "revoke": revoke, "refused": True})
            return False
        if revoke is not None and revoke.held and revoke.version != self.lease.version:
            return False
        won = super().commit_record(value, version, lease_absent=lease_absent, revoke=revoke)
        if won and revoke is not None:
            self.lease = LeaseView(None)
        return won


@pytest.fixture
def topo() -> Topology:
    data = yaml.safe_load(TOPOLOGY.read_text())
    return parse_topology({**data, "federation_store": STORE}, str(TOPOLOGY))


@pytest.fixture
def copies(topo: Topology, monkeypatch: pytest.MonkeyPatch) -> dict[str, MemoryDCS]:
    """Every DC's DCS (where the record's copies live) as an in-memory store."""
    from federation import record_store

    stores = {dc.name: MemoryDCS() for dc in topo.datacenters}
    monkeypatch.setattr(state, "connect", lambda dc, timeout=None: stores[dc.name])
    monkeypatch.setattr(record_store, "connect", lambda dc, timeout=None: stores[dc.name])
    return stores


@pytest.fixture
def lstore(monkeypatch: pytest.MonkeyPatch) -> LeaseStore:
    from federation import record_store

    fake = LeaseStore()
    monkeypatch.setattr(record_store, "open_store", lambda topo, **_: fake)
    return fake


def seed(topo: Topology, fake: LeaseStore) -> None:
    fake.value = Versioned("/fedctl/rec", state.initial_state(topo).model_dump_json(), 1)


def fence(fake: LeaseStore, clock: Clock, *, force: bool = False) -> LeaseFence:
    return LeaseFence(fake, "dc1", ttl=10, force=force, bound=5.0, clock=clock, wall=clock.wall, sleep=clock.sleep)


@pytest.fixture
def world(topo: Topology, lstore: LeaseStore, copies: dict[str, MemoryDCS]) -> dict[str, Any]:
    """dc1 does not answer, dc2 has a standby leader (a fake federation); the record is the fake store's."""
    seed(topo, lstore)
    fed = FakeFederation(topo)
    fed.kill("dc1")
    calls: dict[str, Any] = {"fence": "no fence command in the topology", "estimate_fence_point": [], "fed": fed}

    def estimate(old: str, dc: Any, leader: Any, fence_point: float | None = None) -> LossEstimate:
        calls["estimate_fence_point"].append(fence_point)
        sample = LsnSample("dc1", "n1", 10_000, T0.isoformat(), "dc2/n3", bytes_per_second=1000.0)
        return loss_from_sample("dc1", sample, 10_000, None, T0.timestamp(), fence_point=fence_point)

    fed.estimate = estimate
    fed.fence_result = lambda dc: calls["fence"]
    fed.record_names = lambda name: state.current_state(topo)[0].primary_dc == name
    return calls


def run(topo: Topology, fake: LeaseStore, clock: Clock, *, force: bool = False,
        world: dict[str, Any] | None = None) -> tuple[Any, str]:
    out = io.StringIO()
    report = promote_dc(topo, "dc2", Progress(out=out, clock=clock), force=force,
                        lease=fence(fake, clock, force=force), world=world["fed"] if world else None)
    return report, out.getvalue()


def test_refuses_while_the_old_primary_dc_holds_its_lease(topo: Topology, lstore: LeaseStore,
                                                         world: dict[str, Any]) -> None:
    lstore.lease = ALIVE
    with pytest.raises(OperationRefused) as caught:
        run(topo, lstore, Clock(), world=world)
    text = str(caught.value)
    assert "the primary DC dc1 still holds its lease in the federation store (renewed 3 s ago" in text
    assert "this is not a disaster; use switchover-dc" in text and "--force" in text
    assert lstore.commits == [] and state.current_state(topo)[0].epoch == 0


def test_force_revokes_the_lease_in_the_epoch_commit_then_waits_ttl_plus_bound(
        topo: Topology, lstore: LeaseStore, world: dict[str, Any]) -> None:
    lstore.lease = ALIVE
    clock = Clock()
    report, out = run(topo, lstore, clock, force=True, world=world)
    epoch_commits = [c for c in lstore.commits if '"epoch":1' in c["value"]]
    assert epoch_commits[0]["revoke"] == ALIVE and not epoch_commits[0]["lease_absent"]
    assert not lstore.lease.held
    # A renewal may have landed up to the commit: TTL + 1 (etcd's rounding) + the bound from there.
    assert sum(clock.slept) == pytest.approx(16.0)
    assert out.count("has certainly fenced itself in") == 16
    assert report.facts["fenced_by"] == "lease expiry + 5.0 s" and report.facts["lease"]["revoked"] is True
    assert report.outcome == "succeeded" and report.epoch == 1


def test_a_gone_lease_waits_the_fence_bound_then_commits_on_lease_absent(
        topo: Topology, lstore: LeaseStore, world: dict[str, Any]) -> None:
    clock = Clock()
    report, out = run(topo, lstore, clock, world=world)
    assert sum(clock.slept) == pytest.approx(5.0)
    assert "dc1 has certainly fenced itself in 5 s" in out and "in 1 s" in out
    epoch_commit = next(c for c in lstore.commits if '"epoch":1' in c["value"])
    assert epoch_commit["lease_absent"] and epoch_commit["revoke"] is None
    wait = next(s for s in report_steps(out) if "done  wait until dc1 has certainly fenced" in s)
    assert "fenced_by lease expiry + 5.0 s: waited 5.0 s" in wait
    assert report.facts["fence_point"] == "2026-01-01T00:00:05.000+00:00"


def report_steps(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip().startswith("done")]


def test_a_successful_fence_command_goes_at_once(topo: Topology, lstore: LeaseStore,
                                                 world: dict[str, Any]) -> None:
    world["fence"] = "fence.sh exited 0"
    clock = Clock()
    report, _out = run(topo, lstore, clock, world=world)
    assert clock.slept == []
    assert report.facts["fenced_by"] == "fence_command" and report.facts["fence_wait_seconds"] == 0.0


def test_the_lease_taken_again_during_the_wait_refuses_and_changes_nothing(
        topo: Topology, lstore: LeaseStore, world: dict[str, Any]) -> None:
    lstore.leases = [LeaseView(None), LeaseView(None)]  # pre-check and the first tick; then dc1 is back
    lstore.lease = ALIVE
    with pytest.raises(OperationRefused, match="held again"):
        run(topo, lstore, Clock(), world=world)
    assert state.current_state(topo)[0].epoch == 0


def test_no_store_quorum_from_here_refuses_naming_it(topo: Topology, lstore: LeaseStore,
                                                     world: dict[str, Any]) -> None:
    lstore.no_quorum = True
    with pytest.raises(OperationRefused, match="no quorum from here: 1 of 3 members answer"):
        run(topo, lstore, Clock(), world=world)
    lstore.no_quorum = False
    assert lstore.commits == []


def test_the_estimate_counts_to_the_fence_point(topo: Topology, lstore: LeaseStore,
                                                world: dict[str, Any]) -> None:
    report, _out = run(topo, lstore, Clock(), world=world)
    # pre-check: the lease is gone now, so dc1 fences for certain by now + 5 s.
    assert world["estimate_fence_point"] == [T0.timestamp() + 5.0]
    assert report.facts["data_loss_estimate_bytes"] == 5000  # 5 s at 1000 B/s since the sample
    assert report.facts["data_loss_counted_until"] == "2026-01-01T00:00:05.000+00:00"


def test_a_long_pause_between_two_absent_reads_restarts_the_count() -> None:
    fake, clock = LeaseStore(), Clock()
    watch = fence(fake, clock)
    watch.read()
    assert watch.gone_since == 100.0
    clock.now += 3
    watch.read()
    assert watch.gone_since == 100.0  # within one TTL: nobody could take and lose the lease unseen
    clock.now += 30
    watch.read()
    assert watch.gone_since == 133.0


def test_loss_to_a_fence_point_and_without_one() -> None:
    sample = LsnSample("dc1", "n1", 5000, T0.isoformat(), "dc2/n3", bytes_per_second=1000.0, interval_seconds=2.0)
    without = loss_from_sample("dc1", sample, 4000, None, T0.timestamp() + 1.0)
    assert without.bytes == 2000 and without.fence_point is None
    assert "data_loss_counted_until" not in without.to_json_dict()
    until = loss_from_sample("dc1", sample, 4000, None, T0.timestamp() + 1.0, fence_point=T0.timestamp() + 12.0)
    assert until.bytes == 1000 + 12_000  # behind the sample, plus 12 s at 1000 B/s until the fence point
    assert until.to_json_dict()["data_loss_counted_until"] == "2026-01-01T00:00:12.000+00:00"
    assert "until it has certainly fenced" in until.sentence()
    assert without.until(T0.timestamp() + 12.0) == until


def test_switchover_commit_revokes_the_source_lease(topo: Topology, lstore: LeaseStore,
                                                    copies: dict[str, MemoryDCS]) -> None:
    seed(topo, lstore)
    lstore.lease = ALIVE
    base = state.current_state(topo)[0]
    new = base.model_copy(update={"epoch": 1, "primary_dc": "dc2"})
    assert commit_handing_over(topo, base, new, reader=lstore) == ALIVE
    assert lstore.commits[-1]["revoke"] == ALIVE and not lstore.lease.held
    assert state.current_state(topo)[0].primary_dc == "dc2"


def test_switchover_commit_retries_when_a_renewal_moved_the_lease(topo: Topology, lstore: LeaseStore,
                                                                  copies: dict[str, MemoryDCS]) -> None:
    seed(topo, lstore)
    moved = LeaseView("dc1", "dc1/n1", None, 4, None)
    lstore.lease = moved
    lstore.leases = [LeaseView("dc1", "dc1/n1", None, 3, None)]  # read just before a ZooKeeper renewal
    base = state.current_state(topo)[0]
    new = base.model_copy(update={"epoch": 1, "primary_dc": "dc2"})
    assert commit_handing_over(topo, base, new, reader=lstore) == moved


def test_switchover_commit_leaves_the_new_primarys_lease_alone(topo: Topology, lstore: LeaseStore,
                                                               copies: dict[str, MemoryDCS]) -> None:
    seed(topo, lstore)
    lstore.lease = LeaseView("dc2", "dc2/n3", 9.0, 5, 7)
    base = state.current_state(topo)[0]
    assert commit_handing_over(topo, base, base.model_copy(update={"epoch": 1, "primary_dc": "dc2"}),
                               reader=lstore) is None
    assert lstore.lease.held

