"""A standby leader is rebuilt through Patroni after handing its role over; without another member, a refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from backup import rebuild
from federation.errors import OperationRefused
from federation.topology import load_topology

TOPOLOGY = Path(__file__).parents[1] / "integration" / "topologies" / "backup-two-dc.yaml"


def test_the_standby_leader_hands_its_role_to_a_streaming_member(monkeypatch: pytest.MonkeyPatch) -> None:
    dc = load_topology(TOPOLOGY).dc("dc2")
    leader, other = dc.members
    monkeypatch.setattr(rebuild, "patroni_state", lambda m, timeout=1.0: {
        "role": "replica", "state": "streaming", "replication_state": "streaming"})
    assert rebuild.switchover_candidate(dc, leader) == other


def test_without_another_streaming_member_the_rebuild_says_what_to_do_by_hand(
        monkeypatch: pytest.MonkeyPatch) -> None:
    dc = load_topology(TOPOLOGY).dc("dc2")
    leader, _other = dc.members
    monkeypatch.setattr(rebuild, "patroni_state", lambda m, timeout=1.0: {"role": "replica", "state": "stopped"})
    with pytest.raises(OperationRefused, match="no other member of dc2 streams") as caught:
        rebuild.switchover_candidate(dc, leader)
    assert caught.value.hint is not None and "pgbackrest --delta --type=standby restore" in caught.value.hint
