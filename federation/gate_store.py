"""The promotion gate's read of the federation store: standard library only, within one deadline.

An etcd member cut off from its peers does not refuse a linearizable read, it hangs until etcd's own
request timeout (about 7 s, see federation/store.py), far past the gate's deadline. So the gate first
asks every member in parallel whether it has a raft leader, with a short timeout, and reads only from
one that has (the leader first), and only when a majority has: anything else means "the store did not
answer" and the cached copies decide. A ZooKeeper store is not read here (that would need kazoo and a session on the
promotion path): the cached copies decide, as without a store.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from federation.http_deadline import exchange
from federation.tls_files import ClientTLS

PROBE_TIMEOUT = 0.4
STORE_DEADLINE = 1.2


@dataclass(frozen=True)
class StoreView:
    """What the store said. `answered` False: no majority or no answer (`why` says which)."""

    answered: bool
    why: str = ""
    epoch: int | None = None  # None with `answered`: the store holds no record yet
    primary_dc: str | None = None
    lease_holder: str | None = None


def _post(address: str, path: str, body: dict[str, Any], timeout: float,
          tls: ClientTLS | None = None) -> dict[str, Any]:
    host, _, port = address.rpartition(":")
    status, raw = exchange(host.strip("[]"), int(port), "POST", path, body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"}, timeout=timeout,
                           tls=tls.context() if tls is not None else None)
    if status != 200:
        raise OSError(f"HTTP {status} from {address}")
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"not an etcd answer from {address}")
    return data


def _serves(address: str, timeout: float, tls: ClientTLS | None = None) -> int:
    """2 when the member leads, 1 when it follows a leader, 0 when it has none or does not answer."""
    try:
        status = _post(address, "/v3/maintenance/status", {}, timeout, tls)
    except (OSError, HTTPException, ValueError):
        return 0
    leader = str(status.get("leader") or "0")
    if leader == "0":
        return 0
    header = status.get("header")
    return 2 if isinstance(header, dict) and str(header.get("member_id") or "") == leader else 1


def _get(address: str, key: str, timeout: float, tls: ClientTLS | None = None) -> str | None:
    body = {"key": base64.b64encode(key.encode()).decode()}
    kvs = _post(address, "/v3/kv/range", body, timeout, tls).get("kvs") or []
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def keys(store: dict[str, Any]) -> tuple[str, str]:
    """The record's and the lease's keys, as federation.store.FederationStore names them."""
    prefix = f"{store['namespace']}{store['federation']}"
    return f"{prefix}/record", f"{prefix}/primary_lease"


def read_store(store: dict[str, Any], deadline: float = STORE_DEADLINE, tls: ClientTLS | None = None) -> StoreView:
    """The record's epoch and primary DC and the lease's holder, or why the store did not answer."""
    if store.get("kind") != "etcd3":
        return StoreView(False, f"the gate does not read a {store.get('kind')} store")
    started = time.monotonic()
    hosts: Sequence[str] = store["hosts"]
    probe = min(PROBE_TIMEOUT, deadline / 2)
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        answers = list(pool.map(lambda h: _serves(h, probe, tls), hosts))
    # The leader first: a follower just back from a cut may hold a read while it catches up.
    serving = [h for rank, h in sorted(zip(answers, hosts, strict=True), key=lambda p: -p[0]) if rank]
    majority = len(hosts) // 2 + 1
    if len(serving) < majority:
        return StoreView(False, f"the federation store has no quorum from here: {len(serving)} of {len(hosts)} "
                                "members answer")
    record_key, lease_key = keys(store)
    try:
        record = _get(serving[0], record_key, deadline - (time.monotonic() - started), tls)
        lease = _get(serving[0], lease_key, deadline - (time.monotonic() - started), tls)
    except (OSError, HTTPException, ValueError, KeyError) as exc:
        return StoreView(False, f"the federation store did not answer within {deadline:g} s ({exc})")
    holder = _holder(lease)
    if record is None:
        return StoreView(True, "the store holds no record yet", lease_holder=holder)
    try:
        data = json.loads(record)
        return StoreView(True, epoch=int(data["epoch"]), primary_dc=str(data["primary_dc"]), lease_holder=holder)
    except (ValueError, KeyError, TypeError):
        return StoreView(False, "the store's record does not parse")


def _holder(lease: str | None) -> str | None:
    """The lease's holder; a lease that does not parse counts as held by somebody else (refuse, not allow)."""
    if lease is None:
        return None
    try:
        holder = json.loads(lease).get("holder")
    except (ValueError, AttributeError):
        holder = None
    return holder if isinstance(holder, str) else "an unreadable lease"
