"""Leader leases in a DC's own DCS: one holder of a key at a time, gone when the holder stops renewing.

etcd: an etcd lease with a TTL, granted once and kept alive by `step()`; the key is created only if
absent (a transaction comparing create_revision with 0) and carries the lease, so etcd deletes it when
the lease expires. ZooKeeper: an ephemeral znode owned by a dedicated session whose timeout is the TTL;
the server deletes it when the session expires. Either way a holder that dies loses the key within
about one TTL, and another candidate that keeps calling `step()` takes it.

`step()` is the one primitive: renew when held, otherwise try to take the key. It returns whether the
caller holds the key now, and raises DCSError only when the DCS cannot be reached (callers then treat
the lease as lost once the TTL since the last successful renewal has passed).

A key that names this very candidate but belongs to another lease or session was left by its previous
incarnation (a crash, a restart); it is taken over at once, with compare-and-set, instead of waiting
out its TTL, which etcd even restarts when etcd itself restarts. Identities must therefore be unique
(the agent uses `<dc>/<member>`).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from federation.dcs.etcd3 import EtcdDCS, _b64, _unb64
from federation.dcs.zookeeper import ZooKeeperAuth, create_znode
from federation.errors import DCSError

if TYPE_CHECKING:
    from federation.topology import Datacenter

log = logging.getLogger(__name__)


def lease_value(identity: str) -> str:
    return json.dumps({"holder": identity})


def holder_of(value: str | None) -> str | None:
    """The identity stored in a lease key's value (None for an empty or foreign value)."""
    try:
        data = json.loads(value or "")
    except ValueError:
        return None
    holder = data.get("holder") if isinstance(data, dict) else None
    return holder if isinstance(holder, str) else None


class LeaderLease(ABC):
    """One candidate's handle on a leader key. Not thread-safe: drive it from one thread."""

    def __init__(self, key: str, identity: str, ttl: int) -> None:
        if ttl < 2:
            raise ValueError("a lease TTL below 2 s is refused by etcd and ZooKeeper alike")
        self.key = key
        self.identity = identity
        self.ttl = ttl
        self.last_holder: str | None = None  # who held the key at the last step()

    @abstractmethod
    def step(self) -> bool:
        """Renew the key when held, else try to take it. True when this candidate holds it afterwards."""

    @abstractmethod
    def holder(self) -> str | None:
        """Who holds the key now (None when nobody does)."""

    @abstractmethod
    def release(self) -> None:
        """Give the key up at once (a clean shutdown), so another candidate need not wait for the TTL."""

    @abstractmethod
    def close(self) -> None: ...


class EtcdLease(LeaderLease):
    def __init__(self, dcs: EtcdDCS, key: str, identity: str, ttl: int) -> None:
        super().__init__(key, identity, ttl)
        self._dcs = dcs
        self._lease_id: int | None = None

    def _post(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return dict(self._dcs._call(what, lambda c: c.post(c.get_url(path), json=payload)))

    def _alive_lease(self) -> int:
        """Our lease id, refreshed; a new lease when we had none or it expired."""
        if self._lease_id is not None:
            result = self._post("renew the agent lease", "/lease/keepalive", {"ID": self._lease_id})
            if int(result.get("result", {}).get("TTL", -1)) > 0:
                return self._lease_id
            log.info("lease %s on %s expired; granting a new one", self._lease_id, self.key)
        result = self._post("grant a lease", "/lease/grant", {"TTL": self.ttl, "ID": 0})
        self._lease_id = int(result["ID"])
        return self._lease_id

    def _key_lease(self) -> tuple[int | None, str | None, int]:
        """(lease id, value, mod_revision) of the key; (None, None, 0) when absent."""
        result = self._post(f"read {self.key}", "/kv/range", {"key": _b64(self.key)})
        kvs = result.get("kvs") or []
        if not kvs:
            return None, None, 0
        return int(kvs[0].get("lease", 0)), _unb64(kvs[0].get("value")), int(kvs[0].get("mod_revision", 0))

    def step(self) -> bool:
        lease_id = self._alive_lease()
        held_by, value, revision = self._key_lease()
        self.last_holder = holder_of(value)
        if held_by == lease_id:
            return True
        if held_by is not None and self.last_holder != self.identity:
            return False
        if held_by is None:
            compare = {"key": _b64(self.key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}
        else:
            log.info("%s holds a key left by its previous incarnation (lease %s): taking it over", self.identity,
                     held_by)
            compare = {"key": _b64(self.key), "result": "EQUAL", "target": "MOD", "mod_revision": revision}
        put = {"request_put": {"key": _b64(self.key), "value": _b64(lease_value(self.identity)), "lease": lease_id}}
        txn = {"compare": [compare], "success": [put], "failure": []}
        won = bool(self._post(f"create {self.key}", "/kv/txn", txn).get("succeeded", False))
        if won:
            self.last_holder = self.identity
        return won

    def holder(self) -> str | None:
        return holder_of(self._key_lease()[1])

    def release(self) -> None:
        if self._lease_id is None:
            return
        # Revoking the lease deletes every key attached to it, ours included.
        self._post("revoke the agent lease", "/kv/lease/revoke", {"ID": self._lease_id})
        self._lease_id = None

    def close(self) -> None:
        self._dcs.close()


class ZooKeeperLease(LeaderLease):
    def __init__(self, hosts: list[tuple[str, int]], key: str, identity: str, ttl: int, *, label: str = "",
                 timeout: float = 2.5, auth: ZooKeeperAuth | None = None, private_prefix: str = "/") -> None:
        super().__init__(key, identity, ttl)
        from federation.dcs.zookeeper import _kazoo, _kazoo_log, private_acl

        self._acl_for: Callable[[str], list[Any] | None] = partial(
            private_acl, auth.acl() if auth is not None else None, "/" + private_prefix.strip("/"))
        self.label = label
        self.timeout = timeout
        self._kz = _kazoo()
        self._path = "/" + key.strip("/")
        where = ",".join(f"{h}:{p}" for h, p in hosts)
        self._where = f"ZooKeeper at {where}" + (f" ({label})" if label else "")
        # A session of its own whose timeout is the TTL: the ephemeral node dies with it.
        self._zk: Any = self._kz.client.KazooClient(
            hosts=where, timeout=float(ttl), connection_retry={"max_tries": -1, "max_delay": 1.0}, logger=_kazoo_log,
            auth_data=auth.auth_data() if auth is not None else None)
        self._started = False

    def _ensure_session(self) -> None:
        if self._started:
            return
        try:
            self._zk.start(timeout=self.timeout)
        except self._kz.handlers.threading.KazooTimeoutError:
            self._zk.stop()
            raise DCSError(f"{self._where} is unreachable: no session within {self.timeout:g} s",
                           hint="check that ZooKeeper runs there and this host can reach it") from None
        self._started = True

    def _wait(self, what: str, async_result: Any) -> Any:
        try:
            return async_result.get(timeout=self.timeout)
        except self._kz.handlers.threading.KazooTimeoutError:
            raise DCSError(f"{self._where} did not answer within {self.timeout:g} s to {what}") from None
        except (self._kz.exceptions.ConnectionLoss, self._kz.exceptions.SessionExpiredError) as exc:
            raise DCSError(f"{self._where} lost the connection during {what}: {type(exc).__name__}") from None

    def _owner(self) -> tuple[int | None, str | None, int]:
        """(owning session, value, version) of the node; (None, None, -1) when absent."""
        try:
            data, stat = self._wait(f"read {self._path}", self._zk.get_async(self._path))
        except self._kz.exceptions.NoNodeError:
            return None, None, -1
        return int(stat.ephemeralOwner), data.decode("utf-8", errors="replace"), int(stat.version)

    def step(self) -> bool:
        self._ensure_session()
        owner, value, version = self._owner()
        self.last_holder = holder_of(value)
        session = self._zk.client_id[0] if self._zk.client_id else None
        if owner is not None and (owner == session or self.last_holder != self.identity):
            return owner == session
        errors = self._kz.exceptions
        if owner is not None:
            log.info("%s holds a node left by its previous incarnation (session %x): taking it over",
                     self.identity, owner)
            try:
                self._wait(f"delete {self._path}", self._zk.delete_async(self._path, version=version))
            except (errors.NoNodeError, errors.BadVersionError):
                return False
        try:
            create_znode(self._zk, lambda call: self._wait(f"create {self._path}", call), self._path,
                         lease_value(self.identity).encode(), self._acl_for, ephemeral=True)
        except errors.NodeExistsError:
            return False
        self.last_holder = self.identity
        return True

    def holder(self) -> str | None:
        self._ensure_session()
        return holder_of(self._owner()[1])

    def release(self) -> None:
        if not self._started:
            return
        owner, _, _ = self._owner()
        session = self._zk.client_id[0] if self._zk.client_id else None
        if owner is not None and owner == session:
            try:
                self._wait(f"delete {self._path}", self._zk.delete_async(self._path))
            except self._kz.exceptions.NoNodeError:
                pass

    def close(self) -> None:
        if self._started:
            self._zk.stop()
        self._zk.close()
        self._started = False


def open_lease(dc: Datacenter, key: str, identity: str, *, ttl: int = 5, timeout: float = 2.0) -> LeaderLease:
    """A lease on `key` in the DC's own DCS for the candidate `identity` (connects lazily, on `step`)."""
    hosts = [(a.host, a.port) for a in dc.dcs.hosts]
    if dc.dcs.kind == "etcd3":
        return EtcdLease(EtcdDCS(hosts, label=dc.name, timeout=timeout, tls=dc.etcd_tls), key, identity, ttl)
    return ZooKeeperLease(hosts, key, identity, ttl, label=dc.name, timeout=timeout, auth=dc.zookeeper_auth,
                          private_prefix=dc.fedctl_prefix)
