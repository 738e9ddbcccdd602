"""Multi-key compare-and-set on etcd v3 and ZooKeeper: all checks hold and every write applies, or nothing.

The federation store needs it for a commit that also touches the primary-DC lease (promote-dc
commits only while no lease exists, or deletes it in the same commit; a DC takes the lease only
while the record is still the one it read). etcd: one transaction (`/v3/kv/txn`). ZooKeeper: one
`multi` request; "key absent" has no check operation there, so it is a create-then-delete of the key
inside the same multi, which fails exactly when the key exists.

A lost race returns False; only an unreachable or failing server raises DCSError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from federation.dcs.base import DCS
from federation.dcs.etcd3 import EtcdDCS, _b64
from federation.errors import DCSError


@dataclass(frozen=True)
class Check:
    """`key` is at `version` (its etcd mod_revision or znode version); `version=None`: `key` is absent."""

    key: str
    version: int | None


@dataclass(frozen=True)
class Put:
    key: str
    value: str
    create: bool  # True: the key is new (checked absent); False: it exists (checked at a version)
    # etcd: the lease id the key is attached to; ZooKeeper: any value makes the node ephemeral, owned by
    # the session that runs the transaction (the session is the lease).
    lease: int | None = None


@dataclass(frozen=True)
class Delete:
    key: str


Write = Put | Delete


@dataclass(frozen=True)
class Outcome:
    won: bool
    # The version each key put holds after a won transaction (etcd: its mod_revision, the transaction's
    # revision; ZooKeeper: its znode version), to compare against in the next one without reading it first.
    versions: dict[str, int] = field(default_factory=dict)


def transact(dcs: DCS, checks: Sequence[Check], writes: Sequence[Write], what: str) -> bool:
    """Apply `writes` only if every check holds. False when one does not (someone else wrote first)."""
    return transact_outcome(dcs, checks, writes, what).won


def transact_outcome(dcs: DCS, checks: Sequence[Check], writes: Sequence[Write], what: str) -> Outcome:
    """`transact`, with the versions the keys put hold afterwards."""
    if isinstance(dcs, EtcdDCS):
        return _etcd(dcs, checks, writes, what)
    from federation.dcs.zookeeper import ZooKeeperDCS

    if isinstance(dcs, ZooKeeperDCS):
        return _zookeeper(dcs, checks, writes, what)
    raise TypeError(f"no transactions on {type(dcs).__name__}")


def etcd_compare(check: Check) -> dict[str, Any]:
    if check.version is None:
        return {"key": _b64(check.key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}
    return {"key": _b64(check.key), "result": "EQUAL", "target": "MOD", "mod_revision": check.version}


def _etcd(dcs: EtcdDCS, checks: Sequence[Check], writes: Sequence[Write], what: str) -> Outcome:
    success: list[dict[str, Any]] = []
    for w in writes:
        if isinstance(w, Put):
            put: dict[str, Any] = {"key": _b64(w.key), "value": _b64(w.value)}
            if w.lease is not None:
                put["lease"] = w.lease
            success.append({"request_put": put})
        else:
            success.append({"request_delete_range": {"key": _b64(w.key)}})
    body = {"compare": [etcd_compare(c) for c in checks], "success": success, "failure": []}
    answer = dcs.post(what, "/kv/txn", body)
    if not answer.get("succeeded", False):
        return Outcome(False)
    revision = answer.get("header", {}).get("revision")
    if revision is None:
        return Outcome(True)
    return Outcome(True, {w.key: int(revision) for w in writes if isinstance(w, Put)})


def _zookeeper(dcs: Any, checks: Sequence[Check], writes: Sequence[Write], what: str) -> Outcome:
    from federation.dcs.zookeeper import _kazoo

    kz = _kazoo()
    zk = dcs._zk
    path = dcs._path
    created = [c.key for c in checks if c.version is None] + [w.key for w in writes if isinstance(w, Put) and w.create]
    for key in dict.fromkeys(created):
        # A multi cannot create missing parents; they hold no data, so making them first is harmless.
        dcs.ensure_parents(f"prepare {path(key)}", path(key))
    t = zk.transaction()
    for c in checks:
        if c.version is None:
            t.create(path(c.key), b"", acl=dcs.acl_for(path(c.key)))
            t.delete(path(c.key))
        else:
            t.check(path(c.key), c.version)
    for w in writes:
        if isinstance(w, Put):
            if w.create:
                t.create(path(w.key), w.value.encode(), acl=dcs.acl_for(path(w.key)), ephemeral=w.lease is not None)
            else:
                t.set_data(path(w.key), w.value.encode())
        else:
            t.delete(path(w.key))
    results = dcs._wait(what, t.commit_async())
    failed = [r for r in results if isinstance(r, Exception)]
    if not failed:
        return Outcome(True, _zookeeper_versions(checks, writes, results))
    lost = (kz.exceptions.BadVersionError, kz.exceptions.NoNodeError, kz.exceptions.NodeExistsError,
            kz.exceptions.RolledBackError, kz.exceptions.RuntimeInconsistency)
    if all(isinstance(r, lost) for r in failed):
        return Outcome(False)
    raise DCSError(f"{dcs.describe()} failed to {what}: {', '.join(type(r).__name__ for r in failed)}")


def _zookeeper_versions(checks: Sequence[Check], writes: Sequence[Write], results: Sequence[Any]) -> dict[str, int]:
    """The version of each key put, from the multi's results: a created znode is at version 0, a set_data
    answers with its ZnodeStat. The results follow the operations (an absent-check is two of them)."""
    first_write = sum(2 if c.version is None else 1 for c in checks)
    versions: dict[str, int] = {}
    for w, result in zip(writes, results[first_write:], strict=False):
        if isinstance(w, Put):
            if w.create:
                versions[w.key] = 0
            elif hasattr(result, "version"):
                versions[w.key] = int(result.version)
    return versions
