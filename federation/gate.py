"""The promotion gate Patroni runs as `pre_promote` before every promotion of a member.

Patroni aborts a promotion when the command exits non-zero (and releases the leader key), so a DC
that a newer federation epoch has replaced can never accept a write, even when it restarts with its
old configuration and its old leader key. Inside a DC this is P-A (a local failover during a WAN cut
still works when no peer answers); across DCs it is P-C. `fencing: strict` makes it P-C everywhere:
no peer answering means no promotion.

The decision and the fast reader live in `gate_core` (standard library only, for start-up speed);
this module feeds it from the typed topology and federation record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from federation.gate_core import GATE_ALLOW, GATE_REFUSE, CopyView, GateDecision, decide
from federation.state import StateCopy, state_key
from federation.topology import FencingPolicy, Topology

__all__ = ["GATE_ALLOW", "GATE_REFUSE", "GateDecision", "decide_promotion", "gate_config"]


def decide_promotion(topo: Topology, dc_name: str, copies: Sequence[StateCopy]) -> GateDecision:
    """May a member of `dc_name` promote now? Pure: takes the record copies read from every DC."""
    views = [CopyView(c.dc, c.state.epoch if c.state else None, c.state.primary_dc if c.state else None,
                      c.reachable) for c in copies]
    return decide(dc_name, topo.fencing is FencingPolicy.STRICT, topo.initial_primary.name, views)


def gate_config(topo: Topology, dc_name: str) -> dict[str, Any]:
    """What `fedctl-gate` needs, rendered once from the topology (no secrets in it)."""
    topo.dc(dc_name)
    return {
        "federation": topo.federation,
        "dc": dc_name,
        "fencing": topo.fencing.value,
        "initial_primary": topo.initial_primary.name,
        "datacenters": [{"dc": dc.name, "kind": dc.dcs.kind, "hosts": [str(h) for h in dc.dcs.hosts],
                         "key": state_key(topo, dc)} for dc in topo.datacenters],
    }
