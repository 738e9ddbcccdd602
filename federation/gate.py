"""The promotion gate Patroni runs as `pre_promote` before every promotion of a member.

Patroni aborts a promotion when the command exits non-zero (and releases the leader key), so a DC
that a newer federation epoch has replaced can never accept a write, even when it restarts with its
old configuration and its old leader key. Inside a DC this is P-A (a local failover during a WAN cut
still works when no peer answers); across DCs it is P-C. `fencing: strict` makes it P-C everywhere:
no peer answering means no promotion. With a federation store, the store's record and the primary-DC
lease decide whenever its majority answers; the copies and the policy only when it does not.

The decision and the fast reader live in `gate_core` (standard library only, for start-up speed);
this module feeds it from the typed topology and federation record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from federation.errors import BadInput
from federation.gate_core import GATE_ALLOW, GATE_REFUSE, CopyView, GateDecision, decide_with_store
from federation.gate_store import StoreView
from federation.state import StateCopy, state_key
from federation.topology import FencingPolicy, SecretRef, Topology

__all__ = ["GATE_ALLOW", "GATE_REFUSE", "GateDecision", "decide_promotion", "gate_config"]


def decide_promotion(topo: Topology, dc_name: str, copies: Sequence[StateCopy],
                     store: StoreView | None = None) -> GateDecision:
    """May a member of `dc_name` promote now? Pure: takes the record copies read from every DC and, with a
    federation store, what the store said (see gate_core.decide_with_store)."""
    views = [CopyView(c.dc, c.state.epoch if c.state else None, c.state.primary_dc if c.state else None,
                      c.reachable) for c in copies]
    return decide_with_store(dc_name, topo.fencing is FencingPolicy.STRICT, topo.initial_primary.name, views,
                             store)


def gate_config(topo: Topology, dc_name: str) -> dict[str, Any]:
    """What `fedctl-gate` needs, rendered once from the topology (no secrets in it)."""
    topo.dc(dc_name)
    config: dict[str, Any] = {
        "federation": topo.federation,
        "dc": dc_name,
        "fencing": topo.fencing.value,
        "initial_primary": topo.initial_primary.name,
        "datacenters": [{"dc": dc.name, "kind": dc.dcs.kind, "hosts": [str(h) for h in dc.dcs.hosts],
                         "key": state_key(topo, dc)} for dc in topo.datacenters],
    }
    if (store := topo.federation_store) is not None:
        config["store"] = {"kind": store.kind, "hosts": [h.address for h in store.hosts],
                           "namespace": store.namespace, "federation": topo.federation}
    if (tls := topo.etcd_tls) is not None:  # paths only: the key file stays where it is
        config["etcd_tls"] = {"ca_file": tls.ca_file, "cert_file": tls.cert_file, "key_file": tls.key_file}
    if (auth := topo.zookeeper_auth) is not None and any(dc.dcs.kind == "zookeeper" for dc in topo.datacenters):
        config["zookeeper_auth"] = {"username": auth.username, "password": _secret_reference(auth.password)}
    return config


def _secret_reference(ref: SecretRef) -> dict[str, str]:
    """Where the gate reads a secret at each run: a file or an environment variable, never the value."""
    if ref.file is not None:
        return {"file": ref.file}
    if ref.env is not None:
        return {"env": ref.env}
    raise BadInput("zookeeper_auth.password is given inline: the promotion gate's config holds no secrets, so "
                   "the gate could not authenticate to ZooKeeper",
                   hint="give it as {file: PATH} (readable by the OS user Patroni runs as) or {env: NAME}")
