"""The federation record when the topology names a federation store: the store decides, the copies cache.

`current_state` reads the record from the store (a linearizable read through its majority) and the
per-DC copies alongside it, for display. `commit` is one compare-and-set on the store against the record
it read; only then are the per-DC copies written, best effort, as read caches for the agents and the
gate during a cut (a failed copy write changes nothing: the store holds the commit). A copy never
decides and is never read to find the newest record. The state module dispatches here when the
topology has a `federation_store:` section.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from federation.dcs import connect
from federation.dcs.base import Versioned
from federation.errors import DCSError, OperationFailed, OperationRefused
from federation.state import FederationState, StateCopy, _parse, _write_copy, newest, raced, read_copies, state_key
from federation.store import FederationStore, LeaseView, StoreError, StoreNotInitialised
from federation.topology import Topology


class RecordStore(Protocol):
    """What the record needs of the store (FederationStore; a fake in unit tests)."""

    @property
    def last_committed(self) -> Versioned | None: ...

    def read_record(self) -> Versioned | None: ...

    def commit_record(self, value: str, version: int | None, *, lease_absent: bool = False,
                      revoke: LeaseView | None = None) -> bool: ...


def open_store(topo: Topology, *, quorum_reuse: float = 0.0) -> RecordStore:
    assert topo.federation_store is not None
    return FederationStore(topo.federation_store, topo.federation, quorum_reuse=quorum_reuse)


def _stored(topo: Topology, store: RecordStore) -> tuple[FederationState, Versioned]:
    found = store.read_record()
    if found is None:
        raise StoreNotInitialised(topo.federation)
    record = _parse(found.value)
    if record is None:
        raise StoreError(f"the federation store's record of {topo.federation} does not parse as a federation "
                         "record", hint="inspect it with etcdctl/zkCli; nothing was changed")
    return record, found


def current_state(topo: Topology, store: RecordStore | None = None) -> tuple[FederationState, list[StateCopy]]:
    """The store's record and every DC's copy (read in parallel with it, for display only)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        copies = pool.submit(read_copies, topo)
        record, _found = _stored(topo, store or open_store(topo))
        return record, copies.result()


def commit(topo: Topology, base: FederationState, new: FederationState, copies: Sequence[StateCopy],
           *, require: Sequence[str] = (), lease_absent: bool = False, revoke: LeaseView | None = None,
           refresh_copies: bool = True, store: RecordStore | None = None) -> list[str]:
    """Commit `new` (derived from `base`) with one compare-and-set on the store, then refresh the copies.

    Refuses (OperationRefused, nothing written) when the store no longer holds `base`. DCs in `require`
    must take the copy (the target of a promotion, whose gate reads it); when one does not, the commit
    stands and OperationFailed says so. Returns the DCs whose copy now holds `new`. `store`: the one an
    operation keeps across its commits; when `base` is what it last committed, the compare-and-set goes
    against the version that commit left, without reading the record first.
    """
    store = store or open_store(topo)
    last = store.last_committed
    if last is not None and last.value == base.model_dump_json():
        found = last
    else:
        seen, found = _stored(topo, store)
        if seen != base:
            raise OperationRefused(raced("the federation store", seen))
    payload = new.model_dump_json()
    if not store.commit_record(payload, found.version, lease_absent=lease_absent, revoke=revoke):
        again = store.read_record()
        # A lost compare-and-set can be our own write confirmed late (a retried request): then it stands.
        if again is None or again.value != payload:
            fresh = _parse(again.value) if again else None
            if lease_absent and fresh == base:
                raise OperationRefused("the primary-DC lease was taken meanwhile: its DC reaches the store's "
                                       "majority again; nothing was changed",
                                       hint="check `fedctl status`; use switchover-dc while that DC is alive")
            raise OperationRefused(raced("the federation store", fresh))
    if not refresh_copies:
        return []
    written = write_copies(topo, new, copies)
    missing = [dc for dc in require if dc not in written]
    if missing:
        raise OperationFailed(f"epoch {new.epoch} is committed in the federation store, but the record's copy in "
                              f"{', '.join(missing)} could not be written",
                              hint="rerun the operation once that DC's DCS answers: it resumes from the store")
    return written


def write_copies(topo: Topology, new: FederationState, copies: Sequence[StateCopy]) -> list[str]:
    """Write `new` into each DC's copy that is older (best effort, in parallel). The DCs that hold it."""
    by_dc = {c.dc: c for c in copies}

    def one(name: str) -> bool:
        dc = topo.dc(name)
        try:
            with connect(dc) as dcs:
                key = state_key(topo, dc)
                seen = by_dc.get(name)
                for _ in range(3):
                    if seen is None or not seen.reachable:
                        found = dcs.get(key)
                        seen = StateCopy(name, _parse(found.value) if found else None,
                                         found.version if found else None)
                    if seen.state is not None and seen.state == new:
                        return True
                    if seen.state is not None and seen.state.epoch > new.epoch:
                        return False  # a cache ahead of the store: left alone, it never decides
                    if _write_copy(dcs, key, new, seen):
                        return True
                    seen = None  # moved since read: read again
        except DCSError:
            return False
        return False

    names = [dc.name for dc in topo.datacenters]
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return [name for name, ok in zip(names, pool.map(one, names), strict=True) if ok]


def init_store(topo: Topology, *, allow_unreachable: bool = False) -> tuple[FederationState, list[StateCopy]]:
    """Copy the newest per-DC record into an empty store, once. Returns it and the copies it came from."""
    store = open_store(topo)
    if store.read_record() is not None:
        record, _found = _stored(topo, store)
        raise OperationRefused(f"the federation store already holds the record of {topo.federation} (epoch "
                               f"{record.epoch}, primary DC {record.primary_dc}): `fedctl store init` runs once",
                               hint="nothing was changed; the store is the record from now on")
    copies = read_copies(topo)
    unreachable = [c.dc for c in copies if not c.reachable]
    if unreachable and not allow_unreachable:
        raise OperationRefused(f"cannot read the record's copy in {', '.join(unreachable)}: the newest record may "
                               "be there, and copying an older one would roll the federation back",
                               hint="bring those DCs' DCS back, or pass --allow-unreachable if they hold no newer "
                                    "record")
    record = newest(topo, copies)
    if not store.commit_record(record.model_dump_json(), None):
        raise OperationRefused("another operator initialised the federation store meanwhile; nothing was changed")
    write_copies(topo, record, copies)
    return record, copies
