"""The promotion gate's core, on the standard library only, because it sits on the promotion's critical path.

Patroni runs `pre_promote` synchronously before every promotion, so every 100 ms the gate spends is
100 ms more without a writer. `fedctl-gate GATE.json` starts in well under 0.1 s: it imports no
pydantic, no click and no HTTP library, and reads the federation record straight from each DC's
etcd JSON gateway (ZooKeeper through kazoo, imported only for ZooKeeper DCs). With a federation store
in GATE.json (`store`: kind, hosts, namespace, federation) the store's record and lease decide when
its majority answers within the deadline (gate_store); the copies are the fallback. GATE.json is
rendered from the topology by `fedctl gate render` (the lab writes it for every DC).

Exit codes: 0 allows the promotion; 1 refuses it (Patroni releases the leader key and retries later).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from federation.gate_store import StoreView, read_store
from federation.http_deadline import exchange
from federation.tls_files import ClientTLS

GATE_ALLOW = 0
GATE_REFUSE = 1
READ_TIMEOUT = 1.5


@dataclass(frozen=True)
class CopyView:
    """What the gate needs of one DC's copy of the record: None epoch when the DC holds none."""

    dc: str
    epoch: int | None
    primary_dc: str | None
    reachable: bool


@dataclass(frozen=True)
class GateDecision:
    allowed: bool
    reason: str

    @property
    def exit_code(self) -> int:
        return GATE_ALLOW if self.allowed else GATE_REFUSE


def decide(dc_name: str, strict: bool, initial_primary: str, copies: Sequence[CopyView]) -> GateDecision:
    """May a member of `dc_name` promote now? The highest epoch seen anywhere decides."""
    held = [c for c in copies if c.epoch is not None]
    if held:
        newest = max(held, key=lambda c: c.epoch or 0)
        epoch, primary, where = newest.epoch, newest.primary_dc, f"held by {newest.dc}"
    else:
        epoch, primary, where = 0, initial_primary, "the topology's initial roles"
    if primary != dc_name:
        return GateDecision(False, f"refusing promotion of {dc_name}: federation epoch {epoch} ({where}) names "
                                   f"{primary} as the primary DC; bring {dc_name} back with "
                                   f"`fedctl rejoin-dc {dc_name}`")
    peers = [c for c in copies if c.dc != dc_name]
    answering = [c.dc for c in peers if c.reachable]
    if peers and not answering:
        if strict:
            return GateDecision(False, f"refusing promotion of {dc_name}: no peer DC answered "
                                       f"({', '.join(c.dc for c in peers)}) and the topology sets fencing: strict")
        return GateDecision(True, f"allowing promotion of {dc_name}: no peer DC answered; fencing is permissive "
                                  f"and the newest record we see (epoch {epoch}) names {dc_name}")
    return GateDecision(True, f"allowing promotion of {dc_name}: epoch {epoch} ({where}) names it the primary "
                              f"DC; peers answering: {', '.join(answering) or 'none (single DC)'}")


def decide_with_store(dc_name: str, strict: bool, initial_primary: str, copies: Sequence[CopyView],
                      store: StoreView | None) -> GateDecision:
    """With a federation store that answered, the store's record and lease decide: promote only when the
    record names this DC and the lease is held by this DC or by nobody (its agent takes it). Without an
    answer (no quorum from here, unreachable, not initialised, ZooKeeper) the cached copies decide."""
    if store is not None and store.answered and store.epoch is not None:
        where = f"the federation store's record (epoch {store.epoch})"
        if store.primary_dc != dc_name:
            return GateDecision(False, f"refusing promotion of {dc_name}: {where} names {store.primary_dc} as the "
                                       f"primary DC; bring {dc_name} back with `fedctl rejoin-dc {dc_name}`")
        if store.lease_holder is not None and store.lease_holder != dc_name:
            return GateDecision(False, f"refusing promotion of {dc_name}: {where} names it, but the primary-DC "
                                       f"lease is held by {store.lease_holder}")
        lease = "held by it" if store.lease_holder == dc_name else "free (its agent takes it)"
        return GateDecision(True, f"allowing promotion of {dc_name}: {where} names it the primary DC and the "
                                  f"lease is {lease}")
    decision = decide(dc_name, strict, initial_primary, copies)
    if store is None:
        return decision
    policy = "strict" if strict else "permissive"
    return GateDecision(decision.allowed, f"{decision.reason} (the federation store did not decide: "
                                          f"{store.why}; the cached copies and fencing: {policy} did)")


def _etcd_get(hosts: Sequence[str], key: str, timeout: float, tls: ClientTLS | None = None) -> str | None:
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    last: Exception | None = None
    for address in hosts:
        host, _, port = address.rpartition(":")
        try:
            status, raw = exchange(host.strip("[]"), int(port), "POST", "/v3/kv/range", body=body,
                                   headers={"Content-Type": "application/json"}, timeout=timeout,
                                   tls=tls.context() if tls is not None else None)
            if status != 200:
                raise OSError(f"HTTP {status}")
            kvs = json.loads(raw).get("kvs") or []
            return base64.b64decode(kvs[0]["value"]).decode() if kvs else None
        except (OSError, HTTPException, ValueError, KeyError) as exc:
            last = exc
    raise OSError(f"no etcd host answered: {last}")


def zookeeper_auth_data(auth: dict[str, Any] | None) -> list[tuple[str, str]] | None:
    """kazoo's auth_data for the gate config's zookeeper_auth: the password read now, from its file or variable."""
    if not auth:
        return None
    ref = auth["password"]
    if "file" in ref:
        with open(ref["file"]) as f:
            password = f.read().strip()
    else:
        password = os.environ[ref["env"]]
    return [("digest", f"{auth['username']}:{password}")]


class CopyRefused(Exception):
    """A DCS answered but would not let the gate read the record's copy: not an unreachable peer (which the
    permissive policy may pass over), so the gate cannot decide and refuses."""


def _zookeeper_get(hosts: Sequence[str], key: str, timeout: float,
                   auth: list[tuple[str, str]] | None = None) -> str | None:
    from kazoo.client import KazooClient
    from kazoo.exceptions import AuthFailedError, NoAuthError, NoNodeError

    client = KazooClient(hosts=",".join(hosts), timeout=timeout, connection_retry={"max_tries": 1}, auth_data=auth)
    try:
        client.start(timeout=timeout)
        try:
            data, _stat = client.get(key)
        except NoNodeError:
            return None
        return data.decode()
    except (NoAuthError, AuthFailedError) as exc:
        raise CopyRefused(f"ZooKeeper at {','.join(hosts)} refused to let the gate read {key} "
                          f"({type(exc).__name__}): check zookeeper_auth in the gate config") from exc
    except Exception as exc:
        raise OSError(f"ZooKeeper did not answer: {exc}") from exc
    finally:
        client.stop()
        client.close()


def read_copy(peer: dict[str, Any], timeout: float = READ_TIMEOUT, tls: ClientTLS | None = None,
              zookeeper_auth: list[tuple[str, str]] | None = None) -> CopyView:
    try:
        if peer["kind"] == "etcd3":
            raw = _etcd_get(peer["hosts"], peer["key"], timeout, tls)
        else:
            raw = _zookeeper_get(peer["hosts"], peer["key"], timeout, auth=zookeeper_auth)
    except OSError:
        return CopyView(peer["dc"], None, None, reachable=False)
    if raw is None:
        return CopyView(peer["dc"], None, None, reachable=True)
    try:
        data = json.loads(raw)
        return CopyView(peer["dc"], int(data["epoch"]), str(data["primary_dc"]), reachable=True)
    except (ValueError, KeyError, TypeError):
        return CopyView(peer["dc"], None, None, reachable=True)


def run(config: dict[str, Any]) -> GateDecision:
    peers = config["datacenters"]
    store = config.get("store")
    tls = ClientTLS(**config["etcd_tls"]) if config.get("etcd_tls") else None
    zk_auth = zookeeper_auth_data(config.get("zookeeper_auth"))
    with ThreadPoolExecutor(max_workers=max(1, len(peers)) + 1) as pool:
        # The store is read alongside the copies, not before them: the gate's time is the slower of the two.
        store_view = pool.submit(read_store, store, tls=tls) if store else None
        copies = list(pool.map(lambda peer: read_copy(peer, tls=tls, zookeeper_auth=zk_auth), peers))
        view = store_view.result() if store_view is not None else None
    return decide_with_store(config["dc"], config["fencing"] == "strict", config["initial_primary"], copies, view)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: fedctl-gate GATE.json   (render it with `fedctl gate render -t FILE --dc DC`)", file=sys.stderr)
        sys.exit(GATE_REFUSE)
    try:
        with open(args[0]) as f:
            decision = run(json.load(f))
    except Exception as exc:
        # A gate that cannot decide must refuse, and say why.
        print(f"fedctl gate: refusing promotion, the gate could not decide: {exc}", file=sys.stderr)
        sys.exit(GATE_REFUSE)
    print(f"fedctl gate: {decision.reason}", file=sys.stderr)
    sys.exit(decision.exit_code)


if __name__ == "__main__":
    main()
