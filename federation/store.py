"""The federation store: the record and the primary-DC lease on a consensus cluster (etcd or ZooKeeper).

The store is an existing consensus engine reached through the DCS adapters; fedctl builds no
quorum of its own. Every operation has one overall deadline and starts by probing each member on
its own (store_quorum): without a serving majority it raises `NoQuorum` ("1 of 3 members answer")
and sends nothing, so a refused commit can never take effect later. Requests then go to one member
that answered, and are never re-sent to another: a write that times out has an unknown outcome
(the member may have proposed it) and says so, instead of being retried into a false "lost race".

Measured on etcd 3.4 (3 members on loopback, default election timeout): a member cut off from its peers
keeps reporting its old leader for about 1.8 s; after that `/v3/maintenance/status` says leader 0. A
read or write sent to a member without quorum is not refused: it hangs until etcd's own request
timeout, about 7 s, and then fails ("context deadline exceeded", HTTP 503). A write that reached the old
leader in those first seconds failed for the client and was nevertheless applied once the peers
returned. Hence the probe first, the one deadline, and "outcome unknown" rather than "refused".

Keys, below the section's namespace: `<ns><federation>/record` (the FederationState JSON) and
`<ns><federation>/primary_lease` ({"holder": <dc>, "agent": <identity>}, attached to an etcd lease or
an ephemeral znode of a session whose timeout is the TTL).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from federation.dcs.base import DCS, Versioned
from federation.dcs.txn import Check, Delete, Outcome, Put, Write, transact_outcome
from federation.errors import DCSError, OperationRefused
from federation.store_config import StoreConfig, StoreHost
from federation.store_quorum import QuorumView, probe_members

if TYPE_CHECKING:
    from federation.dcs.etcd3 import EtcdDCS
    from federation.dcs.zookeeper import ZooKeeperAuth
    from federation.store_lease import PrimaryLease
    from federation.tls_files import ClientTLS

DEFAULT_DEADLINE = 4.0
PROBE_TIMEOUT = 0.5
RETRY_PAUSE = 0.1
ELECTION_PAUSE = 0.2  # between probes while a majority of the members is up but elects a leader
READ_SHARE = 0.6  # of the time left, for a read attempt while another serving member is left to try
MIN_ATTEMPT = 1.5
STORE_HINT = ("check the store's members (fedctl store status; etcdctl endpoint status / echo srvr | nc) and "
              "the federation_store section of the topology")
CUT_HINT = ("nothing was changed; from this side of a cut no commit is possible — run the command where the "
            "store's majority is reachable, or restore the store members that are down")
ELECTING_HINT = ("nothing was changed; a majority of the store's members is up but elected no leader within the "
                 "deadline — retry in a few seconds; if it persists, read those members' logs (their peer "
                 "addresses, clocks and disks)")
T = TypeVar("T")


class StoreError(DCSError):
    """The federation store could not be read or written (its majority answered, the request failed)."""


class NoQuorum(StoreError):
    """No member of the store serves from here (none follows a leader with a majority): nothing was read or
    written."""

    def __init__(self, view: QuorumView) -> None:
        self.view = view
        super().__init__(
            f"the federation store has no quorum from here: {len(view.serving)} of {view.total} members answer "
            f"(a majority is {view.majority}): {view.describe()}",
            hint=ELECTING_HINT if view.electing else CUT_HINT)


class StoreNotInitialised(OperationRefused):
    def __init__(self, federation: str) -> None:
        super().__init__(f"the federation store holds no record of federation {federation} yet",
                         hint="run `fedctl store init` once (it copies the newest per-DC record into the store), "
                              "or `fedctl adopt` for clusters fedctl has not managed yet")


@dataclass(frozen=True)
class LeaseView:
    """The primary-DC lease as the store holds it now. `remaining` is what the store says is left of the
    TTL (etcd; None on ZooKeeper, whose sessions do not tell); `version` moves at each ZooKeeper renewal."""

    holder: str | None
    agent: str | None = None
    remaining: float | None = None
    version: int | None = None
    lease_id: int | None = None

    @property
    def held(self) -> bool:
        return self.holder is not None


NO_LEASE = LeaseView(None)


def lease_value(dc: str, agent: str, renewals: int = 0) -> str:
    return json.dumps({"holder": dc, "agent": agent, "renewals": renewals})


def parse_lease(value: str) -> tuple[str | None, str | None]:
    try:
        data = json.loads(value)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    holder, agent = data.get("holder"), data.get("agent")
    return (holder if isinstance(holder, str) else None), (agent if isinstance(agent, str) else None)


class FederationStore:
    """One federation's record and lease in the store. Cheap to create: it connects per operation."""

    def __init__(self, config: StoreConfig, federation: str, *, deadline: float = DEFAULT_DEADLINE,
                 probe_timeout: float = PROBE_TIMEOUT, clock: Callable[[], float] = time.monotonic,
                 quorum_reuse: float = 0.0) -> None:
        """`quorum_reuse`: seconds for which a probe that found a serving majority stands for the next calls
        (one operation's consecutive commits). 0, the default, probes before every call: what a lease renewal
        needs, whose NoQuorum must come as soon as the majority is gone."""
        self.config = config
        self.federation = federation
        self.deadline = deadline
        self.probe_timeout = min(probe_timeout, deadline / 3)
        self.clock = clock
        self.quorum_reuse = quorum_reuse
        self.record_key = f"{config.namespace}{federation}/record"
        self.lease_key = f"{config.namespace}{federation}/primary_lease"
        self._majority_seen: tuple[float, QuorumView] | None = None
        # The record as this object last committed it (value and version), while nothing failed since.
        self.last_committed: Versioned | None = None

    def describe(self) -> str:
        return f"the federation store ({self.config.kind} at {', '.join(h.address for h in self.config.hosts)})"

    def quorum(self) -> QuorumView:
        if self._majority_seen is not None and self.clock() - self._majority_seen[0] <= self.quorum_reuse:
            return self._majority_seen[1]
        view = probe_members(self.config.kind, self.config.hosts, self.probe_timeout, self.config.etcd_tls)
        self._majority_seen = (self.clock(), view) if self.quorum_reuse > 0 and view.has_majority else None
        return view

    def _forget(self) -> None:
        """A request failed: the next one probes again, and reads the record before comparing against it."""
        self._majority_seen = None
        self.last_committed = None

    def _serving(self, deadline_at: float | None = None) -> tuple[list[StoreHost], float]:
        """The members that serve, and when the operation's deadline ends; NoQuorum without a majority. While
        a majority of the members is up and electing a leader, it probes again until the deadline: a command
        run a moment after a cut must not be told it stands on the wrong side of it."""
        deadline_at = deadline_at if deadline_at is not None else self.clock() + self.deadline
        view = self.quorum()
        while view.electing and deadline_at - self.clock() > self.probe_timeout + ELECTION_PAUSE:
            time.sleep(ELECTION_PAUSE)
            view = self.quorum()
        if not view.has_majority:
            raise NoQuorum(view)
        return view.serving, deadline_at

    @contextmanager
    def _session(self, deadline_at: float | None = None) -> Iterator[DCS]:
        serving, deadline_at = self._serving(deadline_at)
        with self._on_member(serving[0], deadline_at) as dcs:
            yield dcs

    @contextmanager
    def _on_member(self, member: StoreHost, deadline_at: float) -> Iterator[DCS]:
        dcs = open_member(self.config.kind, member, deadline_at=deadline_at, tls=self.config.etcd_tls,
                          zookeeper_auth=self.config.zookeeper_auth)
        try:
            yield dcs
        finally:
            dcs.close()

    # --- the record ------------------------------------------------------------------------------------

    def _read(self, what: str, read: Callable[[DCS], T]) -> T:
        """Run a read, again while the deadline allows when it fails: a read is safe to repeat, and etcd
        answers "leader changed" or "no leader" for a moment around every election. Each attempt goes to
        the next serving member and, while another one is left to try, gets only part of the time left: a
        member that serves but hangs (one catching up after a heal) must not take the whole deadline."""
        deadline_at = self.clock() + self.deadline
        attempt = 0
        while True:
            serving, _ = self._serving(deadline_at)
            member = serving[attempt % len(serving)]
            left = deadline_at - self.clock()
            attempt_at = deadline_at if len(serving) == 1 else self.clock() + max(READ_SHARE * left,
                                                                                  min(left, MIN_ATTEMPT))
            attempt += 1
            try:
                with self._on_member(member, attempt_at) as dcs:
                    return read(dcs)
            except DCSError as exc:
                self._forget()
                if deadline_at - self.clock() < RETRY_PAUSE * 2:
                    raise StoreError(f"{self.describe()} could not {what} within {self.deadline:g} s: "
                                     f"{exc.message}", hint=STORE_HINT) from None
            time.sleep(RETRY_PAUSE)

    def read_record(self) -> Versioned | None:
        """The record as the store's majority holds it (a linearizable read), None when never written."""
        def read(dcs: DCS) -> Versioned | None:
            _sync(dcs, self.record_key)
            return dcs.get(self.record_key)

        return self._read("read the federation record", read)

    def commit_record(self, value: str, version: int | None, *, lease_absent: bool = False,
                      revoke: LeaseView | None = None) -> bool:
        """Write the record with one compare-and-set against `version` (None: the store holds none yet).

        `lease_absent`: commit only while nobody holds the primary-DC lease (promote-dc). `revoke`: delete
        that lease in the same commit (promote-dc --force); its etcd lease is then revoked too, so the
        holder's next renewal fails at once. False when the record (or the lease) moved since it was read.
        """
        if revoke is not None and revoke.held and revoke.version is None:
            raise ValueError("revoke needs the lease as read_lease() returned it (with its version)")
        checks = [Check(self.record_key, version)]
        writes: list[Write] = [Put(self.record_key, value, create=version is None)]
        if lease_absent:
            checks.append(Check(self.lease_key, None))
        if revoke is not None and revoke.held:
            checks.append(Check(self.lease_key, revoke.version))
            writes.append(Delete(self.lease_key))
        outcome = self._transact(checks, writes, "commit the federation record")
        version = outcome.versions.get(self.record_key)
        self.last_committed = Versioned(self.record_key, value, version) if version is not None else None
        if outcome.won and revoke is not None and revoke.lease_id is not None:
            self._revoke_etcd_lease(revoke.lease_id)
        return outcome.won

    def _transact(self, checks: Sequence[Check], writes: Sequence[Write], what: str) -> Outcome:
        try:
            with self._session() as opened:
                return transact_outcome(opened, checks, writes, what)
        except NoQuorum:
            raise
        except DCSError as exc:
            self._forget()
            raise StoreError(f"{self.describe()} did not confirm the request to {what} within "
                             f"{self.deadline:g} s: {exc.message}",
                             hint="its outcome is unknown: the member may still apply it; read the record again "
                                  "(fedctl status) before retrying") from None

    # --- other keys of the federation (entrypoint followers, the pause request) -------------------------

    def read_prefix(self, prefix: str, what: str) -> dict[str, Versioned]:
        """Every key under `prefix` (a serializable read: these keys only inform, they decide nothing)."""
        return self._read(what, lambda dcs: dcs.get_prefix(prefix))

    def read_key(self, key: str, what: str) -> Versioned | None:
        return self._read(what, lambda dcs: dcs.get(key))

    def put_key(self, key: str, value: str, what: str) -> None:
        try:
            with self._session() as dcs:
                dcs.put(key, value)
        except NoQuorum:
            raise
        except DCSError as exc:
            self._forget()
            raise StoreError(f"{self.describe()} could not {what} within {self.deadline:g} s: {exc.message}",
                             hint=STORE_HINT) from None

    def delete_key(self, key: str, what: str) -> None:
        try:
            with self._session() as dcs:
                dcs.delete(key)
        except NoQuorum:
            raise
        except DCSError as exc:
            self._forget()
            raise StoreError(f"{self.describe()} could not {what} within {self.deadline:g} s: {exc.message}",
                             hint=STORE_HINT) from None

    # --- the primary-DC lease --------------------------------------------------------------------------

    def read_lease(self) -> LeaseView:
        def read(dcs: DCS) -> LeaseView:
            _sync(dcs, self.lease_key)
            found = dcs.get(self.lease_key)
            if found is None:
                return NO_LEASE
            holder, agent = parse_lease(found.value)
            lease_id, remaining = _etcd_time_to_live(dcs, self.lease_key)
            return LeaseView(holder, agent, remaining, found.version, lease_id)

        return self._read("read the primary-DC lease", read)

    def read_record_and_lease(self, view: QuorumView) -> tuple[Versioned | None, LeaseView]:
        """The record and the lease for `fedctl status`, from the best member of `view` (probed already): one
        etcd transaction, then the lease's TTL (ZooKeeper: one sync, two reads), where `read_record` and
        `read_lease` each probe every member again and read the lease key twice. Raises DCSError when that
        member fails (the caller may then fall back on them: they retry on the other members)."""
        record, lease, _ = self.read_for_status(view)
        return record, lease

    def read_for_status(self, view: QuorumView, prefix: str | None = None
                        ) -> tuple[Versioned | None, LeaseView, dict[str, Versioned]]:
        """As `read_record_and_lease`, and every key under `prefix` too, in the same etcd transaction."""
        if not view.has_majority:
            raise NoQuorum(view)
        with self._on_member(view.serving[0], self.clock() + self.deadline) as dcs:
            from federation.dcs.etcd3 import EtcdDCS

            if isinstance(dcs, EtcdDCS):
                return _etcd_record_and_lease(dcs, self.record_key, self.lease_key, prefix)
            _sync(dcs, self.record_key)
            record, lease = dcs.get(self.record_key), dcs.get(self.lease_key)
            under = dcs.get_prefix(prefix) if prefix is not None else {}
            return (record, NO_LEASE if lease is None else LeaseView(*parse_lease(lease.value), version=lease.version),
                    under)

    def revoke_lease(self, seen: LeaseView) -> bool:
        """Delete the lease `seen` (from read_lease; only if unchanged) and revoke its etcd lease. False when
        it moved."""
        if not seen.held:
            return True
        if seen.version is None:
            raise ValueError("revoke_lease needs the lease as read_lease() returned it (with its version)")
        won = self._transact([Check(self.lease_key, seen.version)], [Delete(self.lease_key)],
                             "revoke the primary-DC lease").won
        if won and seen.lease_id is not None:
            self._revoke_etcd_lease(seen.lease_id)
        return won

    def _revoke_etcd_lease(self, lease_id: int) -> None:
        from federation.dcs.etcd3 import EtcdDCS

        try:
            with self._session() as dcs:
                if isinstance(dcs, EtcdDCS):
                    dcs.post("revoke the primary-DC lease", "/kv/lease/revoke", {"ID": lease_id})
        except DCSError:
            self._forget()  # the key is gone already, which is what fences; the lease then just expires

    def primary_lease(self, dc: str, agent: str) -> PrimaryLease:
        from federation.store_lease import open_primary_lease

        return open_primary_lease(self, dc, agent)


def _sync(dcs: DCS, key: str) -> None:
    from federation.dcs.zookeeper import ZooKeeperDCS

    if isinstance(dcs, ZooKeeperDCS):
        dcs.sync(key)


def _etcd_record_and_lease(dcs: EtcdDCS, record_key: str, lease_key: str, prefix: str | None = None
                           ) -> tuple[Versioned | None, LeaseView, dict[str, Versioned]]:
    from federation.dcs.etcd3 import _b64, _versioned, prefix_range_end

    ranges = [{"request_range": {"key": _b64(key)}} for key in (record_key, lease_key)]
    if prefix is not None:
        ranges.append({"request_range": {"key": _b64(prefix), "range_end": _b64(prefix_range_end(prefix))}})
    answer = dcs.post("read the federation record and the primary-DC lease", "/kv/txn",
                      {"compare": [], "success": ranges, "failure": []})
    kvs: dict[str, dict[str, Any]] = {}
    for response in answer.get("responses") or []:
        for kv in (response.get("response_range") or {}).get("kvs") or [] if isinstance(response, dict) else []:
            kvs[_versioned(kv).key] = kv
    record = _versioned(kvs[record_key]) if record_key in kvs else None
    under = {key: _versioned(kv) for key, kv in kvs.items() if prefix is not None and key.startswith(prefix)}
    if lease_key not in kvs:
        return record, NO_LEASE, under
    lease = _versioned(kvs[lease_key])
    holder, agent = parse_lease(lease.value)
    lease_id = int(kvs[lease_key].get("lease", 0)) or None
    remaining = None
    if lease_id is not None:
        ttl = int(dcs.post("read the lease's TTL", "/kv/lease/timetolive", {"ID": lease_id}).get("TTL", -1))
        remaining = float(max(ttl, 0))
    return record, LeaseView(holder, agent, remaining, lease.version, lease_id), under


def _etcd_time_to_live(dcs: DCS, key: str) -> tuple[int | None, float | None]:
    """(lease id, seconds left) of an etcd key attached to a lease; (None, None) on ZooKeeper."""
    from federation.dcs.etcd3 import EtcdDCS, _b64

    if not isinstance(dcs, EtcdDCS):
        return None, None
    kvs = dcs.post(f"read {key}", "/kv/range", {"key": _b64(key)}).get("kvs") or []
    lease_id = int(kvs[0].get("lease", 0)) if kvs else 0
    if not lease_id:
        return None, None
    ttl = int(dcs.post("read the lease's TTL", "/kv/lease/timetolive", {"ID": lease_id}).get("TTL", -1))
    return lease_id, float(max(ttl, 0))


def open_member(kind: str, host: StoreHost, *, deadline_at: float, tls: ClientTLS | None = None,
                zookeeper_auth: ZooKeeperAuth | None = None) -> DCS:
    """A DCS adapter on one store member, bound to the deadline (requests are never re-sent elsewhere)."""
    from federation.dcs.deadline import open_with_deadline

    return open_with_deadline(kind, [(host.host, host.port)], label="federation store", deadline_at=deadline_at,
                              tls=tls, zookeeper_auth=zookeeper_auth)
