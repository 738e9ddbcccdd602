"""Two runners of the same rejoin at once: an operator's `fedctl rejoin-dc dc1` and dc1's agent, which
carries through any pending rejoin of its DC (CI once saw the operator's run refused as "another operator
committed first" when the agent's rejoin started between its read and its first commit).

The second runner is started from inside the first at each of its failpoints, and either runs to the end
or crashes at each of its own; the first must still succeed, and the federation end as one rejoin would
leave it, with one history entry for it.
"""

from __future__ import annotations

import pytest

from federation.errors import OperationRefused
from federation.failpoints import FailpointPanic
from federation.operations import plan
from federation.state import HistoryEntry
from federation.topology import Topology, load_topology
from tests.unit.fake_federation import FakeFederation
from tests.unit.test_operation_plans import TOPOLOGIES, fenced_dc1_back, rejoin

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["two-dc", "three-dc"])
def topo(request: pytest.FixtureRequest) -> Topology:
    return load_topology(TOPOLOGIES / f"{request.param}.yaml")


def _points(monkeypatch: pytest.MonkeyPatch, topo: Topology) -> list[str]:
    seen: list[str] = []
    real = plan.hit
    fed = fenced_dc1_back(topo)

    def record(name: str) -> None:
        seen.append(name)
        real(name)

    monkeypatch.setattr(plan, "hit", record)
    rejoin(fed)
    monkeypatch.setattr(plan, "hit", real)
    return seen


def _with_second_runner(monkeypatch: pytest.MonkeyPatch, fed: FakeFederation, at: str,
                        second_crashes_at: str | None) -> list[str]:
    """Run the first rejoin; when it passes `at`, a second rejoin runs (crashing at `second_crashes_at`).
    Returns what the second run ended with."""
    inside = False
    ended: list[str] = []

    def hook(name: str) -> None:
        nonlocal inside
        if inside:
            if name == second_crashes_at:
                raise FailpointPanic(name)
            return
        if name == at and not ended:
            inside = True
            try:
                ended.append(rejoin(fed).outcome)
            except FailpointPanic:
                ended.append("crashed")
            finally:
                inside = False

    monkeypatch.setattr(plan, "hit", hook)
    return ended


def _rejoins(fed: FakeFederation) -> list[HistoryEntry]:
    return [e for e in fed.record.history if e.operation == "rejoin-dc" and e.target == "dc1"]


@pytest.mark.parametrize("second_crashes", [False, True])
def test_an_operator_and_the_agent_rejoining_at_once_both_end_well(
        topo: Topology, monkeypatch: pytest.MonkeyPatch, second_crashes: bool) -> None:
    reference = fenced_dc1_back(topo)
    rejoin(reference)
    points = _points(monkeypatch, topo)
    assert "rejoin/before-point" in points and "rejoin/before-stream" in points
    crashed = 0
    for at in points:
        for crash in (points if second_crashes else [None]):
            fed = fenced_dc1_back(topo)
            ended = _with_second_runner(monkeypatch, fed, at, crash)
            report = rejoin(fed)
            monkeypatch.setattr(plan, "hit", lambda _name: None)
            case = f"second runner started at {at}, crashing at {crash}: it {ended}"
            # A second run that resumes past `crash` (the first committed those steps) never reaches it.
            assert ended in ([["crashed"], ["succeeded"]] if crash else [["succeeded"]]), case
            crashed += ended == ["crashed"]
            assert report.outcome == "succeeded", case
            assert fed.outcome() == reference.outcome(), case
            assert fed.record.operation is None, case
            assert len(_rejoins(fed)) == 1, f"{case}: history {_rejoins(fed)}"
    assert crashed >= (len(points) if second_crashes else 0)


def test_a_record_moved_by_something_else_is_still_a_race(
        topo: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    fed = fenced_dc1_back(topo)

    def promote_meanwhile(name: str) -> None:
        if name == "rejoin/before-fork":
            fed.record = fed.record.model_copy(update={"epoch": fed.record.epoch + 1})

    monkeypatch.setattr(plan, "hit", promote_meanwhile)
    with pytest.raises(OperationRefused, match="another operator committed first"):
        rejoin(fed)


def test_the_race_message_names_the_operation_that_is_pending(
        topo: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    from federation.operations.journal import new_operation
    from federation.state import raced

    fed = fenced_dc1_back(topo)
    pending = fed.record.model_copy(update={"operation": new_operation("rejoin", "dc2", "dc1", ["point"])})
    text = raced("the federation store", pending)
    assert "a rejoin of dc1 is pending at step 'point'" in text and pending.operation is not None
    assert pending.operation.owner in text

