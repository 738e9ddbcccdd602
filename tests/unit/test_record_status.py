"""How `fedctl status` reports the federation record: epoch, copies, an operation left in flight."""

from __future__ import annotations

from pathlib import Path

from federation.record_status import record_summary
from federation.state import FederationState, PendingOperation, StateCopy
from federation.topology import load_topology

TOPOLOGY = Path(__file__).resolve().parents[2] / "topologies" / "lab-two-dc.yaml"


def test_no_record_yet_means_no_summary_and_no_problem() -> None:
    topo = load_topology(TOPOLOGY)
    assert record_summary(topo, [StateCopy("dc1", None, None), StateCopy("dc2", None, None)]) == (None, [])


def test_an_interrupted_switchover_is_a_problem_that_says_how_to_finish_or_undo_it() -> None:
    topo = load_topology(TOPOLOGY)
    op = PendingOperation(kind="switchover", source="dc1", target="dc2", step="promote", started="t0")
    st = FederationState(federation=topo.federation, epoch=3, primary_dc="dc2",
                         upstreams={"dc1": "dc2", "dc2": None}, operation=op)
    old = st.model_copy(update={"epoch": 2, "primary_dc": "dc1", "operation": None})
    summary, problems = record_summary(topo, [StateCopy("dc1", old, 7), StateCopy("dc2", st, 9),
                                              StateCopy("dc3", None, None, error="down")])
    assert summary is not None
    assert summary["epoch"] == 3 and summary["primary_dc"] == "dc2"
    assert summary["copies"] == {"dc1": 2, "dc2": 3, "dc3": "unreachable"}
    assert len(problems) == 1
    assert "step 'promote'" in problems[0]
    # Past its commit point (epoch 3 names dc2): it can only be finished.
    assert "`fedctl switchover-dc dc2` finishes it" in problems[0] and "abort" not in problems[0]
    at_token = op.model_copy(update={"step": "token"})
    before = st.model_copy(update={"epoch": 2, "primary_dc": "dc1", "operation": at_token})
    _summary, problems = record_summary(topo, [StateCopy("dc1", before, 7)])
    assert "`fedctl operation abort` undoes it" in problems[0] and "`fedctl operation show`" in problems[0]
    # With a federation store, its record is the one shown, however far behind the copies are.
    _summary, problems = record_summary(topo, [StateCopy("dc1", old, 7)], store_record=st)
    assert "step 'promote'" in problems[0]
