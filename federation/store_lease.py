"""The primary-DC lease, held in the federation store by the active agent of the primary DC.

It is taken only together with a check that the record is still the version the agent read (one
transaction), so a DC cannot take the lease after a promote-dc that replaced it committed; promote-dc in
turn commits only while the lease is absent (or deletes it in the same commit). The holder is the DC,
not the agent: another agent of the same DC takes a key left by its predecessor over at once (compare-
and-set on the key's version), so an agent failover inside the DC does not let the lease lapse.

etcd: a lease of `lease_ttl` seconds, granted per agent and kept alive by `renew()`; the key is attached
to it. ZooKeeper: an ephemeral node of a session of its own whose timeout is the TTL; `renew()` writes
the node (a write goes through the ensemble's leader, so success proves the quorum is reachable) and
moves its version, which is what other agents watch, since ZooKeeper does not say how long a session
has left.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod

from federation.dcs.base import DCS
from federation.dcs.etcd3 import EtcdDCS, _b64, _unb64
from federation.dcs.txn import Check, Delete, Put, Write, transact
from federation.dcs.zookeeper import ZooKeeperDCS
from federation.errors import DCSError
from federation.store import STORE_HINT, FederationStore, LeaseView, StoreError, lease_value, parse_lease

log = logging.getLogger(__name__)


class PrimaryLease(ABC):
    """One agent's handle on its DC's primary-DC lease. Not thread-safe: drive it from one thread."""

    def __init__(self, store: FederationStore, dc: str, agent: str) -> None:
        self.store = store
        self.dc = dc
        self.agent = agent
        self.ttl = store.config.lease_ttl

    @abstractmethod
    def take(self, record_version: int) -> LeaseView | None:
        """Take (or keep) the lease while the record is still at `record_version`. None when another DC
        holds it or the record moved. Raises NoQuorum / StoreError when the store cannot be asked."""

    @abstractmethod
    def renew(self) -> LeaseView | None:
        """Renew the lease this agent holds. None when it is lost (expired, revoked, taken over)."""

    @abstractmethod
    def release(self) -> None:
        """Give the lease up at once (a clean stop, or a switchover that moves the primary DC)."""

    @abstractmethod
    def close(self) -> None:
        """Drop connections. etcd: the lease is left to expire. ZooKeeper: closing the session ends it."""

    def _record_names_us(self, dcs: DCS, record_version: int) -> bool:
        """The record is still at `record_version` and names this DC: only then may it hold the lease."""
        found = dcs.get(self.store.record_key)
        if found is None or found.version != record_version:
            return False
        try:
            primary = json.loads(found.value).get("primary_dc")
        except (ValueError, AttributeError):
            return False
        return bool(primary == self.dc)


class EtcdPrimaryLease(PrimaryLease):
    def __init__(self, store: FederationStore, dc: str, agent: str) -> None:
        super().__init__(store, dc, agent)
        self._lease_id: int | None = None

    def _key(self, dcs: EtcdDCS) -> tuple[int, str, int] | None:
        kvs = dcs.post("read the primary-DC lease", "/kv/range", {"key": _b64(self.store.lease_key)}).get("kvs")
        if not kvs:
            return None
        return int(kvs[0].get("lease", 0)), _unb64(kvs[0].get("value")), int(kvs[0].get("mod_revision", 0))

    def take(self, record_version: int) -> LeaseView | None:
        try:
            with self.store._session() as opened:
                dcs = _etcd(opened)
                if self._lease_id is None or self._time_left(dcs) <= 0:
                    granted = dcs.post("grant the primary-DC lease", "/lease/grant", {"TTL": self.ttl, "ID": 0})
                    self._lease_id = int(granted["ID"])
                if not self._record_names_us(dcs, record_version):
                    return None
                found = self._key(dcs)
                if found is not None:
                    lease_id, value, revision = found
                    holder, _agent = parse_lease(value)
                    if lease_id == self._lease_id:
                        return LeaseView(self.dc, self.agent, float(self.ttl), revision, lease_id)
                    if holder != self.dc:
                        return None
                    log.info("%s takes over the primary-DC lease of %s left by %s", self.agent, self.dc, _agent)
                check = Check(self.store.lease_key, found[2] if found else None)
                put = Put(self.store.lease_key, lease_value(self.dc, self.agent), create=found is None,
                          lease=self._lease_id)
                if not transact(dcs, [Check(self.store.record_key, record_version), check], [put],
                                "take the primary-DC lease"):
                    return None
                return LeaseView(self.dc, self.agent, float(self.ttl), None, self._lease_id)
        except DCSError as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{self.store.describe()} could not grant the primary-DC lease: {exc.message}",
                             hint=STORE_HINT) from None

    def _time_left(self, dcs: EtcdDCS) -> int:
        result = dcs.post("renew the primary-DC lease", "/lease/keepalive", {"ID": self._lease_id})
        return int(result.get("result", {}).get("TTL", -1))

    def renew(self) -> LeaseView | None:
        if self._lease_id is None:
            return None
        try:
            with self.store._session() as opened:
                dcs = _etcd(opened)
                left = self._time_left(dcs)
                found = self._key(dcs) if left > 0 else None
        except DCSError as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{self.store.describe()} did not renew the primary-DC lease: {exc.message}",
                             hint=STORE_HINT) from None
        if found is None or found[0] != self._lease_id:
            self._lease_id = None
            return None
        return LeaseView(self.dc, self.agent, float(left), found[2], self._lease_id)

    def release(self) -> None:
        if self._lease_id is None:
            return
        lease_id, self._lease_id = self._lease_id, None
        self.store._revoke_etcd_lease(lease_id)

    def close(self) -> None:
        pass  # every call opens its own connection


def _etcd(dcs: DCS) -> EtcdDCS:
    assert isinstance(dcs, EtcdDCS), "an etcd3 store opens etcd members"
    return dcs


class ZooKeeperPrimaryLease(PrimaryLease):
    def __init__(self, store: FederationStore, dc: str, agent: str) -> None:
        super().__init__(store, dc, agent)
        self._dcs: ZooKeeperDCS | None = None
        self._version: int | None = None
        self._renewals = 0

    def _session_dcs(self) -> ZooKeeperDCS:
        if self._dcs is None:
            # The session outlives one operation (it is the lease), so it gets the plain per-call timeout.
            serving, deadline_at = self.store._serving()
            self._dcs = ZooKeeperDCS([(h.host, h.port) for h in serving], label="federation store",
                                     timeout=max(0.1, deadline_at - self.store.clock()),
                                     session_timeout=float(self.ttl), auth=self.store.config.zookeeper_auth)
        return self._dcs

    def _lost(self) -> None:
        if self._dcs is not None:
            self._dcs.close()
        self._dcs, self._version = None, None

    def take(self, record_version: int) -> LeaseView | None:
        key = self.store.lease_key
        try:
            dcs = self._session_dcs()
            dcs.sync(key)
            if not self._record_names_us(dcs, record_version):
                return None
            found = dcs.get(key)
            checks = [Check(self.store.record_key, record_version)]
            writes: list[Write] = [Put(key, lease_value(self.dc, self.agent), create=True, lease=1)]
            if found is not None:
                holder, previous = parse_lease(found.value)
                if dcs.owner_of(key) == dcs.session_id:
                    self._version = found.version
                    return LeaseView(self.dc, self.agent, None, found.version)
                if holder != self.dc:
                    return None
                log.info("%s takes over the primary-DC lease of %s left by %s", self.agent, self.dc, previous)
                checks.append(Check(key, found.version))
                writes.insert(0, Delete(key))
            else:
                checks.append(Check(key, None))
            if not transact(dcs, checks, writes, "take the primary-DC lease"):
                return None
            self._version = 0
            return LeaseView(self.dc, self.agent, None, 0)
        except DCSError as exc:
            self._lost()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{self.store.describe()} could not take the primary-DC lease: {exc.message}",
                             hint=STORE_HINT) from None

    def renew(self) -> LeaseView | None:
        if self._dcs is None or self._version is None:
            return None
        dcs, key = self._dcs, self.store.lease_key
        try:
            self._renewals += 1
            ok = dcs.replace(key, lease_value(self.dc, self.agent, self._renewals), self._version)
            if not ok or dcs.owner_of(key) != dcs.session_id:
                self._lost()
                return None
        except DCSError as exc:
            raise StoreError(f"{self.store.describe()} did not renew the primary-DC lease: {exc.message}",
                             hint=STORE_HINT) from None
        self._version += 1
        return LeaseView(self.dc, self.agent, None, self._version)

    def release(self) -> None:
        if self._dcs is not None and self._version is not None:
            try:
                self._dcs.delete(self.store.lease_key, self._version)
            except DCSError:
                pass  # closing the session below deletes the ephemeral node anyway
        self._lost()

    def close(self) -> None:
        self._lost()


def open_primary_lease(store: FederationStore, dc: str, agent: str) -> PrimaryLease:
    if store.config.kind == "etcd3":
        return EtcdPrimaryLease(store, dc, agent)
    return ZooKeeperPrimaryLease(store, dc, agent)
