"""A history entry is appended to the newest record even when another writer commits first."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation import state
from federation.state import HistoryEntry, append_history, current_state, state_key
from tests.unit.fixtures import without_store
from tests.unit.test_backup_jobs import MemoryDCS

TOPOLOGY = Path(__file__).resolve().parents[2] / "topologies" / "lab-two-dc.yaml"


def entry(name: str) -> HistoryEntry:
    return HistoryEntry(epoch=0, time="2026-11-26T00:00:00+00:00", operation=name, target="dc2", outcome="succeeded")


def test_an_append_that_loses_the_race_is_made_on_top_of_the_winner(monkeypatch: pytest.MonkeyPatch) -> None:
    topo = without_store(TOPOLOGY)
    stores = {dc.name: MemoryDCS() for dc in topo.datacenters}
    monkeypatch.setattr(state, "connect", lambda dc, timeout=None: stores[dc.name])
    append_history(topo, entry("first"))
    dc1_key = state_key(topo, topo.dc("dc1"))
    # Another writer (say dc2's agent recording its own rejoin) commits between our read and our write.
    stores["dc1"].before_replace.append(dc1_key)
    append_history(topo, entry("second"))
    record, _copies = current_state(topo)
    assert [h.operation for h in record.history] == ["first", "second"]
    assert all(c.state is not None and len(c.state.history) == 2 for c in state.read_copies(topo))
