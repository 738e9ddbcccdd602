"""The federation record through a federation store (a fake one here): the store decides, copies cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from federation import record_store, state
from federation.dcs.base import Versioned
from federation.errors import DCSError, OperationFailed, OperationRefused
from federation.state import FederationState, HistoryEntry, append_history, current_state, state_key, update
from federation.store import LeaseView, NoQuorum, StoreNotInitialised
from federation.store_config import StoreHost
from federation.store_quorum import MemberProbe, QuorumView
from federation.topology import Topology, parse_topology
from tests.unit.fixtures import without_store
from tests.unit.test_backup_jobs import MemoryDCS

TOPOLOGY = Path(__file__).resolve().parents[2] / "topologies" / "lab-two-dc.yaml"
STORE = {"etcd3": {"hosts": [{"address": f"127.0.9.{i}:23901", "site": s}
                             for i, s in enumerate(["dc1", "dc2", "witness"], start=1)]}}


class FakeStore:
    """A compare-and-set register like the store's record key; `no_quorum` makes every call refuse."""

    def __init__(self) -> None:
        self.value: Versioned | None = None
        self.commits: list[dict[str, Any]] = []
        self.no_quorum = False
        self.before_commit: list[str] = []  # values another operator commits just before our next commit
        self.confirm_late = False  # our next commit applies but answers False (a retried request)
        self.last_committed: Versioned | None = None  # as FederationStore keeps it after a won commit
        self.reads = 0

    def _check(self) -> None:
        if self.no_quorum:
            hosts = [StoreHost(address=h["address"], site=h["site"]) for h in STORE["etcd3"]["hosts"]]
            raise NoQuorum(QuorumView(tuple(MemberProbe(h, i == 0, "serving" if i == 0 else "no answer")
                                            for i, h in enumerate(hosts))))

    def read_record(self) -> Versioned | None:
        self._check()
        self.reads += 1
        return self.value

    def _write(self, value: str) -> None:
        self.value = Versioned("/fedctl/rec", value, (self.value.version if self.value else 0) + 1)

    def commit_record(self, value: str, version: int | None, *, lease_absent: bool = False,
                      revoke: LeaseView | None = None) -> bool:
        self._check()
        while self.before_commit:
            self._write(self.before_commit.pop(0))
        self.commits.append({"value": value, "version": version, "lease_absent": lease_absent, "revoke": revoke})
        current = self.value.version if self.value else None
        self.last_committed = None
        if current != version:
            return False
        self._write(value)
        if self.confirm_late:
            self.confirm_late = False
            return False
        self.last_committed = self.value
        return True


@pytest.fixture
def topo() -> Topology:
    data = yaml.safe_load(TOPOLOGY.read_text())
    return parse_topology({**data, "federation_store": STORE}, str(TOPOLOGY))


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    fake = FakeStore()
    monkeypatch.setattr(record_store, "open_store", lambda topo, **_: fake)
    return fake


@pytest.fixture
def copies(topo: Topology, monkeypatch: pytest.MonkeyPatch) -> dict[str, MemoryDCS]:
    stores = {dc.name: MemoryDCS() for dc in topo.datacenters}
    down: set[str] = set()

    def connect(dc: Any, timeout: float | None = None) -> MemoryDCS:
        if dc.name in down:
            raise DCSError(f"etcd of {dc.name} is unreachable")
        return stores[dc.name]

    monkeypatch.setattr(state, "connect", connect)
    monkeypatch.setattr(record_store, "connect", connect)
    stores["down"] = down  # type: ignore[assignment]
    return stores


def copy_epoch(topo: Topology, copies: dict[str, MemoryDCS], dc: str) -> int | None:
    found = copies[dc].get(state_key(topo, topo.dc(dc)))
    return FederationState.model_validate_json(found.value).epoch if found else None


def seed_copy(topo: Topology, copies: dict[str, MemoryDCS], dc: str, epoch: int, primary: str) -> None:
    record = state.initial_state(topo).model_copy(update={"epoch": epoch, "primary_dc": primary})
    copies[dc].put(state_key(topo, topo.dc(dc)), record.model_dump_json())


def raise_epoch(s: FederationState) -> FederationState:
    return s.model_copy(update={"epoch": s.epoch + 1})


def test_without_a_store_record_commands_refuse_and_name_store_init(topo: Topology, store: FakeStore,
                                                                    copies: dict[str, MemoryDCS]) -> None:
    with pytest.raises(StoreNotInitialised) as caught:
        update(topo, raise_epoch)
    assert "fedctl store init" in str(caught.value)
    assert store.commits == [] and copy_epoch(topo, copies, "dc1") is None


def test_store_init_copies_the_newest_record_once(topo: Topology, store: FakeStore,
                                                  copies: dict[str, MemoryDCS]) -> None:
    seed_copy(topo, copies, "dc1", 4, "dc1")
    seed_copy(topo, copies, "dc2", 5, "dc2")
    record, _ = record_store.init_store(topo)
    assert (record.epoch, record.primary_dc) == (5, "dc2")
    assert current_state(topo)[0].epoch == 5
    assert copy_epoch(topo, copies, "dc1") == 5  # the stale cache was refreshed
    with pytest.raises(OperationRefused, match="runs once"):
        record_store.init_store(topo)


def test_store_init_refuses_while_a_copy_cannot_be_read(topo: Topology, store: FakeStore,
                                                        copies: dict[str, MemoryDCS]) -> None:
    copies["down"].add("dc2")  # type: ignore[attr-defined]
    with pytest.raises(OperationRefused, match="cannot read the record's copy in dc2"):
        record_store.init_store(topo)
    assert store.value is None
    assert record_store.init_store(topo, allow_unreachable=True)[0].epoch == 0


def test_a_commit_is_one_compare_and_set_on_the_store_then_the_copies(topo: Topology, store: FakeStore,
                                                                      copies: dict[str, MemoryDCS]) -> None:
    record_store.init_store(topo)
    base_version = store.value.version if store.value else None
    new = update(topo, raise_epoch)
    assert new.epoch == 1
    assert len(store.commits) == 2 and store.commits[-1]["version"] == base_version
    assert copy_epoch(topo, copies, "dc1") == copy_epoch(topo, copies, "dc2") == 1


def test_copies_never_decide(topo: Topology, store: FakeStore, copies: dict[str, MemoryDCS]) -> None:
    record_store.init_store(topo)
    seed_copy(topo, copies, "dc2", 9, "dc2")  # a cache ahead of the store (say, written by hand)
    record, read = current_state(topo)
    assert record.epoch == 0 and {c.dc: c.state.epoch for c in read if c.state} == {"dc1": 0, "dc2": 9}
    assert update(topo, raise_epoch).epoch == 1
    assert copy_epoch(topo, copies, "dc2") == 9  # left alone, and still not deciding


def test_of_two_operators_with_the_same_base_the_second_is_refused(topo: Topology, store: FakeStore,
                                                                   copies: dict[str, MemoryDCS]) -> None:
    record_store.init_store(topo)
    base, read = current_state(topo)
    winner = raise_epoch(base).model_copy(update={"primary_dc": "dc2"})
    state.commit(topo, base, winner, read)
    with pytest.raises(OperationRefused, match="another operator committed first: the federation store now holds "
                                                "epoch 1 \\(primary DC dc2"):
        state.commit(topo, base, raise_epoch(base), read)
    assert current_state(topo)[0] == winner


def test_a_race_inside_the_compare_and_set_is_refused_too(topo: Topology, store: FakeStore,
                                                          copies: dict[str, MemoryDCS]) -> None:
    record_store.init_store(topo)
    base, read = current_state(topo)
    store.before_commit.append(raise_epoch(base).model_copy(update={"primary_dc": "dc2"}).model_dump_json())
    with pytest.raises(OperationRefused, match="another operator committed first"):
        state.commit(topo, base, raise_epoch(base), read)
    assert copy_epoch(topo, copies, "dc1") == 0


def test_a_commit_on_top_of_our_last_one_skips_the_read_and_still_loses_to_a_racer(
        topo: Topology, store: FakeStore, copies: dict[str, MemoryDCS]) -> None:
    record_store.init_store(topo)
    base, read = current_state(topo)
    first = raise_epoch(base)
    state.commit(topo, base, first, read)
    reads = store.reads
    second = raise_epoch(first)
    state.commit(topo, first, second, read)
    assert store.reads == reads, "compared against the version the first commit left, without reading"
    assert current_state(topo)[0] == second
    # Another operator commits between our two commits: the compare-and-set on that version is lost.
    store.before_commit.append(raise_epoch(second).model_copy(update={"primary_dc": "dc2"}).model_dump_json())
    with pytest.raises(OperationRefused, match="another operator committed first: the federation store now holds "
                                                "epoch 3 \\(primary DC dc2"):
        state.commit(topo, second, raise_epoch(second), read)
    assert current_state(topo)[0].primary_dc == "dc2"


def test_our_own_commit_confirmed_late_stands(topo: Topology, store: FakeStore,
                                              copies: dict[str, MemoryDCS]) -> None:
    record_store.init_store(topo)
    store.confirm_late = True
    assert update(topo, raise_epoch).epoch == 1
    assert current_state(topo)[0].epoch == 1


def test_no_quorum_changes_nothing(topo: Topology, store: FakeStore, copies: dict[str, MemoryDCS]) -> None:
    record_store.init_store(topo)
    store.no_quorum = True
    with pytest.raises(NoQuorum, match="no quorum from here: 1 of 3 members answer"):
        update(topo, raise_epoch)
    assert copy_epoch(topo, copies, "dc1") == 0 and copy_epoch(topo, copies, "dc2") == 0


def test_an_unreachable_copy_does_not_fail_the_commit_unless_required(topo: Topology, store: FakeStore,
                                                                      copies: dict[str, MemoryDCS]) -> None:
    record_store.init_store(topo)
    copies["down"].add("dc2")  # type: ignore[attr-defined]
    assert update(topo, raise_epoch).epoch == 1
    base, read = current_state(topo)
    with pytest.raises(OperationFailed, match="epoch 2 is committed in the federation store"):
        state.commit(topo, base, raise_epoch(base), read, require=["dc2"])
    assert current_state(topo)[0].epoch == 2


def test_lease_conditions_go_into_the_one_commit(topo: Topology, store: FakeStore,
                                                 copies: dict[str, MemoryDCS]) -> None:
    record_store.init_store(topo)
    base, read = current_state(topo)
    seen = LeaseView("dc1", "dc1/n1", 7.0, 12, 99)
    state.commit(topo, base, raise_epoch(base), read, revoke=seen)
    assert store.commits[-1]["revoke"] == seen
    base, read = current_state(topo)
    state.commit(topo, base, raise_epoch(base), read, lease_absent=True)
    assert store.commits[-1]["lease_absent"] is True


def test_history_appends_go_through_the_store(topo: Topology, store: FakeStore,
                                              copies: dict[str, MemoryDCS]) -> None:
    record_store.init_store(topo)
    entry = HistoryEntry(epoch=0, time="2026-12-01T00:00:00+00:00", operation="rejoin-dc", target="dc2",
                         outcome="succeeded")
    store.before_commit.append(current_state(topo)[0].with_history(entry).model_dump_json())
    append_history(topo, entry.model_copy(update={"operation": "mine"}))
    assert [h.operation for h in current_state(topo)[0].history] == ["rejoin-dc", "mine"]


def test_lease_conditions_need_a_store(copies: dict[str, MemoryDCS]) -> None:
    plain = without_store(TOPOLOGY)
    base = state.initial_state(plain)
    with pytest.raises(ValueError, match="need a federation_store"):
        state.commit(plain, base, raise_epoch(base), [], lease_absent=True)
