"""The promotion gate Patroni runs as `pre_promote` before every promotion of a member.

Patroni aborts a promotion when the command exits non-zero (and releases the leader key), so a DC
that a newer federation epoch has replaced can never accept a write, even when it restarts with its
old configuration and its old leader key. Inside a DC this is P-A (a local failover during a WAN cut
still works when no peer answers); across DCs it is P-C. `fencing: strict` makes it P-C everywhere:
no peer answering means no promotion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from federation.state import StateCopy, newest
from federation.topology import FencingPolicy, Topology

# Patroni treats any non-zero exit of pre_promote as "do not promote".
GATE_ALLOW = 0
GATE_REFUSE = 1


@dataclass(frozen=True)
class GateDecision:
    allowed: bool
    reason: str

    @property
    def exit_code(self) -> int:
        return GATE_ALLOW if self.allowed else GATE_REFUSE


def decide_promotion(topo: Topology, dc_name: str, copies: Sequence[StateCopy]) -> GateDecision:
    """May a member of `dc_name` promote now? Pure: takes the record copies read from every DC."""
    state = newest(topo, copies)
    holder = next((c.dc for c in copies if c.state is not None and c.state.epoch == state.epoch), None)
    where = f"held by {holder}" if holder else "the topology's initial roles"
    if state.primary_dc != dc_name:
        return GateDecision(False, f"refusing promotion of {dc_name}: federation epoch {state.epoch} ({where}) "
                                   f"names {state.primary_dc} as the primary DC; bring {dc_name} back with "
                                   f"`fedctl rejoin-dc {dc_name}`")
    peers = [c for c in copies if c.dc != dc_name]
    answering = [c.dc for c in peers if c.reachable]
    if peers and not answering:
        if topo.fencing is FencingPolicy.STRICT:
            return GateDecision(False, f"refusing promotion of {dc_name}: no peer DC answered "
                                       f"({', '.join(c.dc for c in peers)}) and the topology sets fencing: strict")
        return GateDecision(True, f"allowing promotion of {dc_name}: no peer DC answered; fencing is permissive "
                                  f"and the newest record we see (epoch {state.epoch}) names {dc_name}")
    return GateDecision(True, f"allowing promotion of {dc_name}: epoch {state.epoch} ({where}) names it the "
                              f"primary DC; peers answering: {', '.join(answering) or 'none (single DC)'}")
