"""The promotion gate's decision: the highest epoch anywhere decides; fencing policy when no peer answers."""

from __future__ import annotations

from federation.gate_core import CopyView, decide


def view(dc: str, epoch: int | None, primary: str | None, reachable: bool = True) -> CopyView:
    return CopyView(dc, epoch, primary, reachable)


def test_a_replaced_dc_is_refused_when_a_peer_holds_a_higher_epoch() -> None:
    copies = [view("dc1", 3, "dc1"), view("dc2", 4, "dc2")]
    decision = decide("dc1", False, "dc1", copies)
    assert not decision.allowed and decision.exit_code == 1
    assert "epoch 4" in decision.reason and "dc2" in decision.reason and "rejoin-dc dc1" in decision.reason


def test_the_dc_the_newest_epoch_names_may_promote() -> None:
    decision = decide("dc2", False, "dc1", [view("dc1", 4, "dc2"), view("dc2", 4, "dc2")])
    assert decision.allowed and decision.exit_code == 0


def test_without_any_record_the_topology_primary_decides() -> None:
    assert decide("dc1", False, "dc1", [view("dc1", None, None), view("dc2", None, None)]).allowed
    assert not decide("dc2", False, "dc1", [view("dc1", None, None), view("dc2", None, None)]).allowed


def test_no_peer_answering_allows_when_permissive_and_refuses_when_strict() -> None:
    copies = [view("dc1", 2, "dc1"), view("dc2", None, None, reachable=False)]
    assert decide("dc1", False, "dc1", copies).allowed
    strict = decide("dc1", True, "dc1", copies)
    assert not strict.allowed and "strict" in strict.reason


def test_an_unreachable_peer_does_not_hide_a_reachable_newer_epoch() -> None:
    copies = [view("dc1", 1, "dc1"), view("dc2", None, None, reachable=False), view("dc3", 2, "dc3")]
    assert not decide("dc1", True, "dc1", copies).allowed
