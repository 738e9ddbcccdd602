"""An operation's journal in the federation record: the pending operation, committed before each step acts.

`RecordPort` is what the journal needs of the record (LiveRecord: the store or the per-DC copies through
federation.state; a fake in unit tests).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from federation import record_store, state
from federation.errors import OperationRefused
from federation.state import FederationState, HistoryEntry, PendingOperation
from federation.store import FederationStore, LeaseView
from federation.topology import Topology


class RecordPort(Protocol):
    def read(self) -> FederationState: ...

    def commit(self, base: FederationState, new: FederationState, *, refresh_copies: bool = True,
               require: Sequence[str] = (), lease_absent: bool = False, revoke: LeaseView | None = None,
               hand_over_lease: bool = False) -> None:
        """Compare-and-set `new` over `base`; OperationRefused when the record moved meanwhile."""


# An operation's commits come one after another within a second or so: a probe of the store's members that
# found a majority stands for that long (a member cut off meanwhile costs one request deadline and an
# "outcome unknown", never a false success). A lease renewal never reuses one.
OPERATION_QUORUM_REUSE = 1.0


class LiveRecord:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.store = (record_store.open_store(topo, quorum_reuse=OPERATION_QUORUM_REUSE)
                      if topo.federation_store is not None else None)

    def read(self) -> FederationState:
        return state.current_state(self.topo, self.store)[0]

    def commit(self, base: FederationState, new: FederationState, *, refresh_copies: bool = True,
               require: Sequence[str] = (), lease_absent: bool = False, revoke: LeaseView | None = None,
               hand_over_lease: bool = False) -> None:
        if hand_over_lease and self.topo.federation_store is not None:
            from federation.operations.lease_fence import commit_handing_over

            reader = self.store if isinstance(self.store, FederationStore) else None  # else: a unit test's fake
            commit_handing_over(self.topo, base, new, reader=reader, store=self.store)
            return
        copies = state.read_copies(self.topo) if refresh_copies or self.topo.federation_store is None else []
        state.commit(self.topo, base, new, copies, require=require, lease_absent=lease_absent, revoke=revoke,
                     refresh_copies=refresh_copies, store=self.store)


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def new_operation(kind: str, source: str | None, target: str, plan: list[str], *,
                  rollback: bool = False) -> PendingOperation:
    return PendingOperation(kind=kind, source=source, target=target, step=plan[0] if plan else "", plan=plan,
                            started=state.utc_now(), id=uuid.uuid4().hex[:12], owner=owner(), rollback=rollback)


class RecordJournal:
    """Keeps the record this run last committed and commits the operation's progress on top of it."""

    def __init__(self, port: RecordPort, record: FederationState, op: PendingOperation) -> None:
        self.port = port
        self.record = record
        self.op = op

    def at(self, step: str, inputs: dict[str, Any]) -> None:
        op = self.op.model_copy(update={"step": step, "inputs": dict(inputs), "owner": owner()})
        if self.record.operation == op:
            return
        # The copies learn of a new operation (the agents leave the roles to it); its later steps only
        # move the store's record, one compare-and-set each.
        refresh = self.record.operation is None or self.record.operation.id != op.id
        self.commit(self.record.model_copy(update={"operation": op}), refresh_copies=refresh)

    def commit(self, new: FederationState, **conditions: Any) -> FederationState:
        new = new.model_copy(update={"updated": state.utc_now()})
        self.port.commit(self.record, new, **conditions)
        self.record = new
        if new.operation is not None:
            self.op = new.operation
        return new

    def raise_epoch(self, primary_dc: str, upstreams: dict[str, str | None], next_step: str,
                    inputs: dict[str, Any], **conditions: Any) -> FederationState:
        """The commit point: the epoch names the new primary DC, and the operation is at `next_step`."""
        op = self.op.model_copy(update={"step": next_step, "inputs": dict(inputs)})
        return self.commit(self.record.model_copy(update={"epoch": self.record.epoch + 1, "primary_dc": primary_dc,
                                                          "upstreams": upstreams, "operation": op}), **conditions)

    def finish(self, entry: HistoryEntry, attempts: int = 5) -> FederationState:
        """The operation is over: clear it and add its history entry, in one commit. When another writer moved
        the record meanwhile (an agent's own history entry), read it again: an operation left pending after
        it ended would make every agent wait for it."""
        for attempt in range(1, attempts + 1):
            ours = self.record.operation is not None and self.record.operation.id == self.op.id
            base = self.record.model_copy(update={"operation": None}) if ours else self.record
            try:
                return self.commit(base.with_history(entry))
            except OperationRefused:
                if attempt == attempts:
                    raise
                self.record = self.port.read()
        raise AssertionError("unreachable")
