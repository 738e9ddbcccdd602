"""The federation record: epoch, primary DC, the upstream of every DC, the operation in flight, history.

When the topology has a `federation_store:` section, the store holds the record and every commit is one
compare-and-set on it (federation.record_store); the per-DC copies below are then read caches only.
Without one, what follows holds (it is not consensus: see docs and `fedctl validate`'s warning).

A copy lives in every DC's own DCS at `<namespace>_fedctl/<federation>/state`, written with
compare-and-set. Copies may disagree (a DC was down during an operation): the highest epoch wins.

Committing a new epoch writes the copies one DC at a time in the topology's order, each with
compare-and-set. The first reachable DC in that order is therefore the serialisation point: of two
operators raising the epoch at once, exactly one wins there and the other is refused before it
changes anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from federation.dcs import DCS, Versioned, connect
from federation.errors import DCSError, OperationRefused
from federation.topology import Datacenter, DCRole, Topology

if TYPE_CHECKING:
    from federation.record_store import RecordStore
    from federation.store import LeaseView

HISTORY_LIMIT = 50
STATE_TIMEOUT = 1.5


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class HistoryEntry(Frozen):
    epoch: int
    time: str
    operation: str
    source: str | None = None
    target: str
    outcome: str
    seconds: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class PendingOperation(Frozen):
    """An operation in flight: its plan, the step it is at (committed before that step acts) and every input
    a later step needs, so that `fedctl status` can say where it stopped and a rerun resumes there."""

    kind: str
    source: str | None
    target: str
    step: str
    started: str
    id: str = ""
    plan: list[str] = Field(default_factory=list)
    inputs: dict[str, Any] = Field(default_factory=dict)
    owner: str = ""  # host:pid of the fedctl that runs it
    rollback: bool = False  # a switchover being rolled back to its source


class FederationState(Frozen):
    federation: str
    epoch: int
    primary_dc: str
    upstreams: dict[str, str | None]
    operation: PendingOperation | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    updated: str = ""

    def upstream_of(self, dc: str) -> str | None:
        return self.upstreams.get(dc)

    def with_history(self, entry: HistoryEntry) -> FederationState:
        return self.model_copy(update={"history": [*self.history, entry][-HISTORY_LIMIT:]})


def initial_state(topo: Topology) -> FederationState:
    """Epoch 0: the roles the topology declares, before any operation."""
    return FederationState(federation=topo.federation, epoch=0, primary_dc=topo.initial_primary.name,
                           upstreams={dc.name: dc.upstream if dc.role is DCRole.STANDBY else None
                                      for dc in topo.datacenters})


def state_key(topo: Topology, dc: Datacenter) -> str:
    return f"{dc.dcs.namespace}_fedctl/{topo.federation}/state"


@dataclass(frozen=True)
class StateCopy:
    """One DC's copy of the record: the state (None when never written), its DCS version, or the error."""

    dc: str
    state: FederationState | None
    version: int | None
    error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None


def _parse(raw: str) -> FederationState | None:
    try:
        return FederationState.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None


def read_copy(topo: Topology, dc: Datacenter, timeout: float = STATE_TIMEOUT) -> StateCopy:
    try:
        with connect(dc, timeout=timeout) as dcs:
            return read_copy_from(dcs, topo, dc)
    except DCSError as exc:
        return StateCopy(dc.name, None, None, error=exc.message)


def read_copy_from(dcs: DCS, topo: Topology, dc: Datacenter) -> StateCopy:
    """The DC's copy read through an open connection to its DCS. Raises DCSError when the DCS fails."""
    return copy_of(dc, dcs.get(state_key(topo, dc)))


def copy_of(dc: Datacenter, found: Versioned | None) -> StateCopy:
    """The DC's copy from its key as read (None: never written)."""
    if found is None:
        return StateCopy(dc.name, None, None)
    return StateCopy(dc.name, _parse(found.value), found.version)


def read_copies(topo: Topology, dcs: Sequence[Datacenter] | None = None,
                timeout: float = STATE_TIMEOUT) -> list[StateCopy]:
    """Every DC's copy, read in parallel, in topology order."""
    chosen = list(dcs if dcs is not None else topo.datacenters)
    with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
        return list(pool.map(lambda dc: read_copy(topo, dc, timeout), chosen))


def newest(topo: Topology, copies: Sequence[StateCopy]) -> FederationState:
    """The copy with the highest epoch; the topology's initial state when no DC holds one."""
    states = [c.state for c in copies if c.state is not None]
    if not states:
        return initial_state(topo)
    return max(states, key=lambda s: s.epoch)


def current_state(topo: Topology, store: RecordStore | None = None) -> tuple[FederationState, list[StateCopy]]:
    """The newest record and every DC's copy. With a store, the store's record (StoreNotInitialised when
    it holds none yet, NoQuorum when its majority cannot be reached from here), read through `store` when
    given (one operation's, see `commit`)."""
    if topo.federation_store is not None:
        from federation import record_store

        return record_store.current_state(topo, store)
    copies = read_copies(topo)
    return newest(topo, copies), copies


def _write_copy(dcs: DCS, key: str, new: FederationState, seen: StateCopy) -> bool:
    payload = new.model_dump_json()
    if seen.version is None:
        return dcs.create(key, payload)
    return dcs.replace(key, payload, seen.version)


def commit(topo: Topology, base: FederationState, new: FederationState, copies: Sequence[StateCopy],
           *, require: Sequence[str] = (), lease_absent: bool = False, revoke: LeaseView | None = None,
           refresh_copies: bool = True, store: RecordStore | None = None) -> list[str]:
    """Write `new` (derived from `base`) into every reachable DC, in topology order, with compare-and-set.

    With a federation store: one compare-and-set on the store, then the copies (record_store.commit;
    `lease_absent` and `revoke` condition that commit on the primary-DC lease and need a store;
    `refresh_copies=False` leaves the copies as they are, for an operation's step-by-step progress;
    `store` is the one an operation keeps for all its commits).

    Refuses (OperationRefused, nothing written) when the first reachable DC no longer holds what
    `base` was read from, i.e. another operator committed first. DCs named in `require` must take the
    write. Returns the names of the DCs that hold the new record.
    """
    if topo.federation_store is not None:
        from federation import record_store

        return record_store.commit(topo, base, new, copies, require=require, lease_absent=lease_absent,
                                   revoke=revoke, refresh_copies=refresh_copies, store=store)
    if lease_absent or revoke is not None:
        raise ValueError("lease conditions need a federation_store in the topology")
    by_dc = {c.dc: c for c in copies}
    written: list[str] = []
    for dc in topo.datacenters:
        seen = by_dc.get(dc.name) or StateCopy(dc.name, None, None, error="not read")
        if not seen.reachable and dc.name not in require:
            continue
        held = seen.state.epoch if seen.state else -1
        if held > base.epoch:
            if not written:
                raise OperationRefused(_raced(dc, seen.state))
            continue  # a copy newer than ours: leave it, the higher epoch wins anyway
        try:
            with connect(dc, timeout=STATE_TIMEOUT) as dcs:
                ok = _write_copy(dcs, state_key(topo, dc), new, seen)
                if not ok:
                    fresh = read_copy(topo, dc)
                    if not written:
                        raise OperationRefused(_raced(dc, fresh.state))
                    if fresh.state is None or fresh.state.epoch < new.epoch:
                        ok = _write_copy(dcs, state_key(topo, dc), new, fresh)
        except DCSError:
            if dc.name in require or not written:
                raise
            continue
        if ok:
            written.append(dc.name)
        elif dc.name in require:
            raise OperationRefused(f"could not write the federation record into {dc.name}: it changed meanwhile")
    if not written:
        raise DCSError("no DCS could be written: the federation record is unchanged",
                       hint="check that at least the target DC's DCS is reachable")
    return written


def _raced(dc: Datacenter, state: FederationState | None) -> str:
    return raced(dc.name, state)


def raced(holder: str, now: FederationState | None) -> str:
    """Why a compare-and-set on the record held by `holder` (a DC, or the federation store) was lost."""
    if now is None:
        return f"the federation record in {holder} changed while this operation was being prepared; run it again"
    op = now.history[-1].operation if now.history else "an operation"
    pending = now.operation
    running = (f", and a {pending.kind} of {pending.target} is pending at step '{pending.step}' (run by "
               f"{pending.owner or 'an unnamed fedctl'})" if pending is not None else "")
    return (f"another operator committed first: {holder} now holds epoch {now.epoch} (primary DC "
            f"{now.primary_dc}, last operation: {op}{running}); nothing was changed — check `fedctl status`")


def update(topo: Topology, change: Callable[[FederationState], FederationState],
           *, require: Sequence[str] = ()) -> FederationState:
    """Read the newest record, apply `change`, commit it. Returns the committed record."""
    base, copies = current_state(topo)
    new = change(base).model_copy(update={"updated": utc_now()})
    commit(topo, base, new, copies, require=require)
    return new


def append_history(topo: Topology, entry: HistoryEntry, attempts: int = 5) -> FederationState:
    """Add `entry` to the newest record. An append raises no epoch, so when another writer commits first
    (a DC's agent recording its own rejoin at the same moment, say) read again and append to that."""
    for attempt in range(1, attempts + 1):
        try:
            return update(topo, lambda s: s.with_history(entry))
        except OperationRefused:
            if attempt == attempts:
                raise
            time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")
