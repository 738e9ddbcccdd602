"""promote-dc's side of the primary-DC lease: refuse while it lives, else wait until the old DC has fenced.

Only used when the topology has a `federation_store:` section. The decision itself is the pure
`federation.lease_policy.promote_gate`; this module reads the lease, keeps track of since when it is seen
gone, turns the verdict into a refusal or a countdown, and says what fenced the old DC.

Since when the lease is gone: an absent lease was absent when the store answered, so the first absent
read counts from its *end* (the expiry happened before it). Two absent reads closer together than the
TTL prove that nobody took and lost the lease in between (a lease lives at least one TTL); a longer gap
(the operator thinking at the confirmation prompt) restarts the count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from federation.errors import OperationRefused
from federation.lease_policy import PromoteGate, PromoteVerdict, promote_gate
from federation.progress import Progress
from federation.store import LeaseView, NoQuorum
from federation.store_config import FENCING_BOUND_SECONDS
from federation.topology import Topology

if TYPE_CHECKING:
    from federation.record_store import RecordStore
    from federation.state import FederationState


class LeaseReader(Protocol):
    def read_lease(self) -> LeaseView: ...


def open_lease_reader(topo: Topology) -> LeaseReader:
    from federation.store import FederationStore

    assert topo.federation_store is not None
    return FederationStore(topo.federation_store, topo.federation)


@dataclass(frozen=True)
class Fenced:
    """How the old DC is known to acknowledge no more writes, and from when (Unix time)."""

    fenced_by: str  # "fence_command" | "lease expiry + 5.0 s"
    fence_point: float
    waited_seconds: float
    detail: str


class LeaseFence:
    """One promote-dc run's view of the old primary DC's lease."""

    def __init__(self, reader: LeaseReader, old_dc: str, *, ttl: float, force: bool,
                 bound: float = FENCING_BOUND_SECONDS, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.reader, self.old_dc, self.ttl, self.force, self.bound = reader, old_dc, ttl, force, bound
        self.clock, self.wall, self.sleep = clock, wall, sleep
        self.lease: LeaseView | None = None
        self.gone_since: float | None = None
        self._last_read_started: float | None = None

    @property
    def fenced_by_lease(self) -> str:
        return f"lease expiry + {self.bound:.1f} s"

    def read(self) -> LeaseView:
        """Read the lease (NoQuorum becomes a refusal: nothing was changed) and track since when it is gone."""
        started = self.clock()
        try:
            lease = self.reader.read_lease()
        except NoQuorum as exc:
            raise OperationRefused(exc.message, hint=exc.hint) from None
        ended = self.clock()
        if lease.held:
            self.gone_since = None
        elif (self.gone_since is None or self._last_read_started is None
              or ended - self._last_read_started >= self.ttl):
            self.gone_since = ended
        self._last_read_started = started
        self.lease = lease
        return lease

    def check(self) -> PromoteGate:
        """Read the lease and decide; refuses (OperationRefused) while the old DC holds it without --force."""
        lease = self.read()
        now = self.clock()
        gate = promote_gate(self.old_dc, lease.holder, lease.remaining, now=now, ttl=self.ttl,
                            fence_bound=self.bound, force=self.force, seen_gone_at=self.gone_since)
        if gate.verdict is PromoteVerdict.REFUSE:
            if lease.holder == self.old_dc:
                raise OperationRefused(
                    f"the primary DC {self.old_dc} still holds its lease in the federation store "
                    f"({self._renewed(lease)}): it still reaches the store's majority — this is not a disaster; "
                    "use switchover-dc",
                    hint=f"`fedctl switchover-dc` makes a planned, lossless change; --force revokes {self.old_dc}'s "
                         "lease in the promotion's commit, and its agents fence it at once")
            raise OperationRefused(gate.sentence, hint="nothing was changed")
        return gate

    def _renewed(self, lease: LeaseView) -> str:
        if lease.remaining is None:
            return f"renewed within the last {self.ttl:g} s"
        return f"renewed {max(0.0, self.ttl - lease.remaining):.0f} s ago, {lease.remaining:g} s left"

    def after_revoke(self, committed_at: float) -> PromoteGate:
        """The wait after a commit that revoked a live lease. A renewal may have landed up to the commit
        (etcd renews without changing the key's version), so the lease could have lived until the commit
        plus a whole TTL: count from there, not from what the earlier read said was left."""
        return promote_gate(self.old_dc, self.old_dc, self.ttl, now=committed_at, ttl=self.ttl,
                            fence_bound=self.bound, force=True)

    def _still_gone(self, not_before: float) -> float:
        """Read the lease again: refuse when it is held, else the (possibly later) end of the wait."""
        if self.read().held:
            raise OperationRefused(
                f"the lease of {self.old_dc} is held again ({self.lease.holder if self.lease else '?'}): "
                f"{self.old_dc} reaches the store's majority again; nothing was changed",
                hint="check `fedctl status`; use switchover-dc while that DC is alive")
        assert self.gone_since is not None
        return max(not_before, self.gone_since + self.bound)

    def fence_point(self, gate: PromoteGate) -> float:
        """The Unix time matching the gate's `not_before` (now when the gate has none)."""
        now = self.clock()
        return self.wall() + max(0.0, (gate.not_before if gate.not_before is not None else now) - now)

    def wait(self, gate: PromoteGate, progress: Progress, *, fenced_by_command: bool,
             watch_lease: bool) -> Fenced:
        """Wait until `gate.not_before`, one countdown line a second; at once after a successful fence_command.

        `watch_lease`: read the lease at every tick and refuse when the old DC holds it again (before the
        epoch commit, whose `lease_absent` condition would refuse anyway, but later)."""
        if fenced_by_command:
            return Fenced("fence_command", self.wall(), 0.0, f"{self.old_dc}'s fence_command succeeded: no wait")
        started = self.clock()
        not_before = gate.not_before if gate.not_before is not None else started
        if watch_lease:  # also when the confirmation took longer than the wait: a gap may restart the count
            not_before = self._still_gone(not_before)
        while (left := not_before - self.clock()) > 0:
            progress.say(f"   {self.old_dc} has certainly fenced itself in {math.ceil(left)} s")
            self.sleep(min(1.0, left))
            if watch_lease:
                not_before = self._still_gone(not_before)
        waited = self.clock() - started
        return Fenced(self.fenced_by_lease, self.wall(), waited,
                      f"fenced_by {self.fenced_by_lease}: waited {waited:.1f} s")


def commit_handing_over(topo: Topology, base: FederationState, new: FederationState, *,
                        reader: LeaseReader | None = None, attempts: int = 3,
                        store: RecordStore | None = None) -> LeaseView | None:
    """Commit `new` and, in the same compare-and-set, revoke a lease held by any DC but `new.primary_dc`, so
    that the new primary DC's agent can take it (switchover-dc). Returns the lease revoked, if any.

    The revocation is conditional on the lease's version, which a ZooKeeper renewal moves: a commit lost to
    a renewal is tried again with the lease read anew (a commit lost to another operator is refused again,
    as the record no longer matches `base`)."""
    from federation import state

    reader = reader or open_lease_reader(topo)
    for attempt in range(attempts):
        seen = reader.read_lease()
        revoke = seen if seen.held and seen.holder != new.primary_dc else None
        try:
            state.commit(topo, base, new, state.read_copies(topo), revoke=revoke, store=store)
            return revoke
        except OperationRefused:
            if revoke is None or attempt == attempts - 1:
                raise
    return None  # not reached: the last attempt returns or raises
