"""Every operation plan crashed at every step boundary, then resumed (or aborted), on a fake federation.

A crash is a failpoint's `panic` (a BaseException nothing catches, like a SIGKILL for the record and the
DCs: what was committed stays, nothing else runs). The run after it is a new fedctl process's: a new
plan, the same record and the same DCs.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.errors import BadInput, OperationRefused
from federation.failpoints import ENV, FailpointPanic
from federation.follow_mode import shared_port
from federation.operations import plan
from federation.operations.abort import abort_operation
from federation.operations.lease_fence import LeaseFence
from federation.operations.pending import past_commit_point, view
from federation.operations.promote import promote_dc
from federation.operations.rejoin import rejoin_dc
from federation.operations.switchover import switchover_dc
from federation.progress import Progress
from federation.topology import Topology, load_topology
from tests.unit.fake_federation import FakeFederation
from tests.unit.test_promote_lease import Clock

TOPOLOGIES = Path(__file__).parents[1] / "integration" / "topologies"
Run = Callable[[FakeFederation], Any]


@pytest.fixture(params=["two-dc", "three-dc"])
def topo(request: pytest.FixtureRequest) -> Topology:
    return load_topology(TOPOLOGIES / f"{request.param}.yaml")


def quiet() -> Progress:
    return Progress(out=io.StringIO())


def switchover(fed: FakeFederation) -> Any:
    return switchover_dc(fed.topo, "dc2", quiet(), world=fed, record=fed)


class Promoter:
    """promote-dc runs sharing one fake clock (the fence wait sleeps on it) and one view of the lease."""

    def __init__(self, force: bool = False) -> None:
        self.clock = Clock()
        self.force = force

    def __call__(self, fed: FakeFederation) -> Any:
        lease = LeaseFence(fed, fed.record.primary_dc if fed.record.operation is None else
                           fed.record.operation.source or "dc1", ttl=10, force=self.force, bound=5.0,
                           clock=self.clock, wall=self.clock.wall, sleep=self.clock.sleep)
        return promote_dc(fed.topo, "dc2", Progress(out=io.StringIO(), clock=self.clock), force=self.force,
                          lease=lease, world=fed, record=fed)


def disaster(fed: FakeFederation) -> FakeFederation:
    """dc1 is gone and its lease has expired."""
    fed.write(5000)
    fed.kill("dc1")
    fed.lease_holder = None
    return fed


def points_of(run: Run, fed: FakeFederation, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every failpoint an uninterrupted run passes, in order."""
    seen: list[str] = []
    real = plan.hit
    monkeypatch.setattr(plan, "hit", lambda name: (seen.append(name), real(name)))
    run(fed)
    monkeypatch.setattr(plan, "hit", real)
    return seen


@pytest.fixture
def crash_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, Run, FakeFederation], None]]:
    def crash(point: str, run: Run, fed: FakeFederation) -> None:
        monkeypatch.setenv(ENV, f"{point}=panic")
        with pytest.raises(FailpointPanic):
            run(fed)
        monkeypatch.delenv(ENV)

    yield crash


def test_switchover_uninterrupted_is_lossless_with_one_writer(topo: Topology) -> None:
    fed = FakeFederation(topo)
    fed.write(3000)
    report = switchover(fed)
    assert report.outcome == "succeeded"
    assert fed.roles()["dc2"] == "primary" and fed.roles()["dc1"] == "standby"
    assert fed.record.primary_dc == "dc2" and fed.record.epoch == 1 and fed.record.operation is None
    assert report.facts["switch_point"] == report.facts["demotion_token"]["lsn"]
    assert fed.violations == [] and fed.lease_holder is None
    assert fed.token_reads == ["agent n1"], "the token is the source's pg_control, read by its agent"
    assert report.facts["token_source"] == "pg_control"


def test_switchover_reads_the_token_over_sql_when_the_source_agent_cannot_read_pg_control(topo: Topology) -> None:
    fed = FakeFederation(topo)
    fed.agents_read_control = False
    fed.write(3000)
    out = io.StringIO()
    report = switchover_dc(fed.topo, "dc2", Progress(out=out), world=fed, record=fed)
    assert report.outcome == "succeeded" and fed.roles()["dc2"] == "primary"
    assert fed.token_reads == ["sql n1"] and report.facts["token_source"] == "sql"
    assert report.facts["switch_point"] == report.facts["demotion_token"]["lsn"]
    assert "n1 runs again as standby leader (n1's agent answered /controldata with 503: no patroni.yml)" \
        in out.getvalue()
    assert "(over SQL)" in out.getvalue()


def test_switchover_promotes_no_sooner_than_the_entrypoints_drained_the_source(topo: Topology) -> None:
    fed = FakeFederation(topo)
    fed.drain_seconds = 0.3
    fed.write(3000)
    out = io.StringIO()
    report = switchover_dc(fed.topo, "dc2", Progress(out=out), world=fed, record=fed)
    assert report.outcome == "succeeded" and fed.violations == []
    # The fake answers at once, so the whole drain is waited for; a real shutdown and catch-up take most of it.
    gap = fed.promoted_at["dc2"] - fed.demoted_at["dc1"]
    assert gap >= 0.3, f"dc2 was promoted {gap:.3f} s after dc1 stopped answering as the primary"
    assert 0 < report.facts["entrypoint_drain_wait"] <= 0.3
    assert "for the entrypoints' checks to drain dc1" in out.getvalue()


def test_a_resumed_switchover_does_not_wait_for_a_drain_it_did_not_see(
        topo: Topology, crash_at: Callable[[str, Run, FakeFederation], None]) -> None:
    fed = FakeFederation(topo)
    fed.drain_seconds = 30.0
    fed.write(3000)
    crash_at("switchover/after-epoch", switchover, fed)
    assert fed.roles()["dc1"] == "standby" and fed.roles()["dc2"] == "standby"
    report = switchover(fed)
    assert report.outcome == "succeeded" and fed.roles()["dc2"] == "primary"
    assert "entrypoint_drain_wait" not in report.facts


def test_switchover_crashed_at_every_step_boundary_resumes_to_the_same_end(
        topo: Topology, monkeypatch: pytest.MonkeyPatch, crash_at: Callable[[str, Run, FakeFederation], None]) -> None:
    reference = FakeFederation(topo)
    reference.write(3000)
    points = points_of(switchover, reference, monkeypatch)
    assert len(points) >= 18, points  # two per step: the plan has nine
    for point in points:
        fed = FakeFederation(topo)
        fed.write(3000)
        crash_at(point, switchover, fed)
        pending = fed.record.operation
        assert pending is not None, f"{point}: a crash mid-operation leaves it pending in the record"
        assert view(fed.record).finish == "`fedctl switchover-dc dc2`"
        report = switchover(fed)
        assert report.outcome == "succeeded", point
        assert fed.outcome() == reference.outcome(), point
        assert fed.violations == [], point


def test_switchover_aborted_after_a_crash_anywhere_before_the_epoch_goes_back_to_the_source(
        topo: Topology, monkeypatch: pytest.MonkeyPatch, crash_at: Callable[[str, Run, FakeFederation], None]) -> None:
    points = points_of(switchover, FakeFederation(topo), monkeypatch)
    aborted = finished = 0
    for point in points:
        fed = FakeFederation(topo)
        fed.write(3000)
        crash_at(point, switchover, fed)
        before = fed.record
        if past_commit_point(before, before.operation) is None:  # type: ignore[arg-type]
            report = abort_operation(topo, quiet(), world=fed, record=fed)
            assert report.outcome == "rolled back", point
            assert fed.record.primary_dc == "dc1" and fed.record.epoch == 0 and fed.record.operation is None
            assert fed.roles()["dc1"] == "primary" and fed.roles()["dc2"] == "standby", point
            assert fed.record.history[-1].outcome == "rolled back"
            aborted += 1
        else:
            with pytest.raises(OperationRefused, match="can only be finished") as refused:
                abort_operation(topo, quiet(), world=fed, record=fed)
            assert "fedctl switchover-dc dc2" in str(refused.value), point
            assert fed.record == before, "a refused abort changes nothing"
            switchover(fed)
            assert fed.roles()["dc2"] == "primary"
            finished += 1
        assert fed.violations == [], point
        fed.write(100)  # the surviving primary takes writes
    assert aborted >= 8 and finished >= 6, (aborted, finished)


def test_promote_crashed_at_every_step_boundary_resumes_to_the_same_end(
        topo: Topology, monkeypatch: pytest.MonkeyPatch, crash_at: Callable[[str, Run, FakeFederation], None]) -> None:
    reference = disaster(FakeFederation(topo))
    points = points_of(Promoter(), reference, monkeypatch)
    assert "promote/after-epoch" in points and "promote/before-promote" in points
    for point in points:
        fed, promoter = disaster(FakeFederation(topo)), Promoter()
        crash_at(point, promoter, fed)
        assert fed.record.operation is not None and fed.record.operation.kind == "promote", point
        report = promoter(fed)
        assert report.outcome == "succeeded", point
        assert fed.outcome() == reference.outcome(), point
        assert fed.violations == [], point


def test_a_crash_right_after_the_epoch_raise_is_finished_by_promote_dc_again(
        topo: Topology, crash_at: Callable[[str, Run, FakeFederation], None]) -> None:
    """The bug the step plan fixes: the epoch names dc2, dc2 is still a standby. Before, promote-dc answered
    "already the primary DC" and nothing would promote it."""
    fed, promoter = disaster(FakeFederation(topo)), Promoter()
    crash_at("promote/after-epoch", promoter, fed)
    assert fed.record.primary_dc == "dc2" and fed.roles()["dc2"] == "standby"
    assert "can only be finished" in view(fed.record).undo
    with pytest.raises(OperationRefused, match="can only be finished"):
        abort_operation(topo, quiet(), world=fed, record=fed)
    with pytest.raises(OperationRefused, match="a promote dc1 -> dc2 is pending at step 'promote'"):
        switchover(fed)
    promoter(fed)
    assert fed.roles()["dc2"] == "primary" and fed.record.operation is None


def test_promote_aborted_before_the_epoch_changes_no_role(
        topo: Topology, crash_at: Callable[[str, Run, FakeFederation], None]) -> None:
    fed, promoter = disaster(FakeFederation(topo)), Promoter()
    crash_at("promote/before-epoch", promoter, fed)
    report = abort_operation(topo, quiet(), world=fed, record=fed)
    assert report.outcome == "aborted" and fed.record.operation is None
    assert fed.record.primary_dc == "dc1" and fed.roles()["dc2"] == "standby"
    assert fed.record.history[-1].outcome == "aborted"


def test_forced_promotion_resumed_after_the_revoking_commit_still_waits_for_the_fence_point(
        topo: Topology, crash_at: Callable[[str, Run, FakeFederation], None]) -> None:
    """--force revokes a live lease in the epoch commit; the wait comes after it. A rerun after a crash right
    after that commit must still wait until the fence point the commit recorded, not promote at once."""
    fed, promoter = FakeFederation(topo), Promoter(force=True)
    fed.kill("dc1")  # cut off: it does not answer, but its lease still lives
    assert fed.lease_holder == "dc1"
    crash_at("promote/after-epoch", promoter, fed)
    assert fed.lease_holder is None and fed.record.primary_dc == "dc2"
    fence_point = fed.record.operation.inputs["fence_point"]  # type: ignore[union-attr]
    promoter.clock.now += 2  # the operator takes 2 s to rerun it
    promoter(fed)
    assert promoter.clock.wall() >= fence_point, "promoted before the old DC had certainly fenced itself"
    assert sum(promoter.clock.slept) == pytest.approx(16.0 - 2.0)
    assert fed.roles()["dc2"] == "primary"


def fenced_dc1_back(topo: Topology) -> FakeFederation:
    """After a promotion of dc2, dc1 is back: fenced (a standby of nothing) and waiting for rejoin-dc."""
    fed = disaster(FakeFederation(topo))
    Promoter()(fed)
    old = fed.dcs["dc1"]
    old.down, old.primary = False, False
    old.config["standby_cluster"] = {"host": "127.0.0.1", "port": 1}
    return fed


def rejoin(fed: FakeFederation) -> Any:
    return rejoin_dc(fed.topo, "dc1", quiet(), world=fed, record=fed)


def test_rejoin_crashed_at_every_step_boundary_resumes_to_the_same_end(
        topo: Topology, monkeypatch: pytest.MonkeyPatch, crash_at: Callable[[str, Run, FakeFederation], None]) -> None:
    reference = fenced_dc1_back(topo)
    points = points_of(rejoin, reference, monkeypatch)
    assert reference.dcs["dc1"].config["standby_cluster"]["port"] == shared_port(topo.dc("dc2"))
    for point in points:
        fed = fenced_dc1_back(topo)
        crash_at(point, rejoin, fed)
        rejoin(fed)
        assert fed.outcome() == reference.outcome(), point


def test_another_operation_refuses_while_one_is_pending_and_names_it(
        topo: Topology, crash_at: Callable[[str, Run, FakeFederation], None]) -> None:
    fed = FakeFederation(topo)
    crash_at("switchover/before-catch-up", switchover, fed)
    with pytest.raises(OperationRefused) as refused:
        Promoter()(fed)
    text = str(refused.value)
    # catch-up is not journaled (it lies in the clients' outage): the record names the step before it
    assert "a switchover dc1 -> dc2 is pending at step 'demote'" in text
    assert "`fedctl switchover-dc dc2`" in text and "`fedctl operation abort`" in text and "--force" in text
    with pytest.raises(OperationRefused, match="involves dc2"):
        rejoin_dc(topo, "dc2", quiet(), world=fed, record=fed)


def test_dry_run_prints_the_plan_and_changes_nothing(topo: Topology) -> None:
    fed = FakeFederation(topo)
    report = switchover_dc(topo, "dc2", quiet(), dry_run=True, world=fed, record=fed)
    assert report.outcome == "planned" and fed.commits == 0 and fed.record.operation is None
    assert report.plan[0] == "pre-checks: every member of dc2 runs the promotion gate"
    assert [line.split(":")[0] for line in report.plan] == [
        "pre-checks", "prepare", "pause-clients", "demote", "token", "catch-up", "epoch", "promote",
        "switch-point", "repoint", "release-clients"]
    waiting = switchover_dc(topo, "dc2", quiet(), dry_run=True, world=fed, record=fed, wait_streaming=True)
    assert [line.split(":")[0] for line in waiting.plan][-2:] == ["release-clients", "source-streams"]


def test_operation_show_names_the_step_what_comes_next_and_both_ways_out(
        topo: Topology, crash_at: Callable[[str, Run, FakeFederation], None]) -> None:
    fed = FakeFederation(topo)
    crash_at("switchover/after-demote", switchover, fed)
    text = "\n".join(view(fed.record).lines())
    assert "a switchover dc1 -> dc2 is pending at step 'demote'" in text
    assert "[demote]" in text and "plan: prepare -> pause-clients -> [demote] -> token" in text
    assert "finish it: `fedctl switchover-dc dc2`" in text and "undo it: `fedctl operation abort`" in text
    with pytest.raises(BadInput, match="no operation is pending"):
        view(FakeFederation(topo).record)
