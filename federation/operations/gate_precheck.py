"""Pre-check of switchover-dc and promote-dc: every member of the target DC runs the promotion gate.

Once a DC is the primary DC, Patroni promotes its members on its own (a failover inside the DC). A member
whose local patroni.yml lacks `pre_promote` (which fedctl cannot change remotely) would then promote without
the federation's checks, also after a later operation has moved the primary role elsewhere: a split brain.
So the target's agents are asked, all at once with a short deadline (federation.agent_gates), and the
operation is refused while one of them says no or cannot tell; `--force` goes ahead with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from federation.agent_gates import AgentGate
from federation.errors import OperationRefused
from federation.gate_install import GateState
from federation.progress import Progress
from federation.topology import Datacenter

GATE_CHECK_TIMEOUT = 1.5


class GateSource(Protocol):
    def member_gates(self, dc: Datacenter, timeout: float) -> Mapping[str, AgentGate]: ...


@dataclass(frozen=True)
class GatePrecheck:
    dc: str
    gates: tuple[AgentGate, ...]
    forced: bool = False

    @property
    def ungated(self) -> list[AgentGate]:
        return [g for g in self.gates if not g.installed]

    def risk(self) -> str:
        names = ", ".join(g.member for g in self.ungated)
        them = "it" if len(self.ungated) == 1 else "them"
        return (f"{self.dc} cannot be shown to run the promotion gate on {names}: Patroni could promote {them} on "
                "its own, without the federation's checks (a split brain)")

    def sentence(self) -> str:
        if not self.ungated:
            return f"every member of {self.dc} runs the promotion gate"
        return f"--force: {self.risk()}"

    def to_json_dict(self) -> dict[str, Any]:
        return {"dc": self.dc, "forced": self.forced and bool(self.ungated),
                "members": {g.member: {"agent": "running" if g.running else "missing", "gate": g.check.state.value,
                                       "reason": g.check.reason} for g in self.gates}}


def check_target_gates(world: GateSource, dc: Datacenter, progress: Progress, *, force: bool) -> GatePrecheck:
    """Refuse (OperationRefused) unless every member of `dc` has the gate; with `force`, warn instead."""
    found = world.member_gates(dc, GATE_CHECK_TIMEOUT)
    gates = tuple(found[m.name] for m in dc.members if m.name in found)
    check = GatePrecheck(dc.name, gates, forced=force)
    if not check.ungated:
        return check
    if not force:
        details = "".join(f"\n  - {g.member}: {g.check.reason}" for g in check.ungated)
        raise OperationRefused(f"{check.risk()}; nothing was changed:{details}", hint=_what_to_do(dc, check))
    progress.warn(f"{check.risk()}; going ahead because of --force")
    return check


def _what_to_do(dc: Datacenter, check: GatePrecheck) -> str:
    steps = []
    wrong = [g for g in check.ungated if g.running and g.check.state in (GateState.MISSING, GateState.WRONG_DC)]
    lines = sorted({g.check.line for g in wrong if g.check.line})
    if wrong:
        names = ", ".join(g.member for g in wrong)
        line = " or ".join(f"`{x}`" for x in lines) or "the gate's pre_promote"
        steps.append(f"put {line} into the postgresql section of {names}'s patroni.yml and run `patronictl reload`")
    unknown = [g.member for g in check.ungated if g.running and g.check.state is GateState.UNKNOWN]
    if unknown:
        steps.append(f"let {', '.join(unknown)}'s agent read its patroni.yml (fedctl agent run ... --patroni-config "
                     "PATH; see the reason above)")
    for gate in check.ungated:
        if not gate.running:
            steps.append(f"start {gate.member}'s agent: `fedctl agent run -t TOPOLOGY --dc {dc.name} --member "
                         f"{gate.member} --patroni-config /path/to/patroni.yml`")
    steps.append("`fedctl status` shows every member's gate; --force goes ahead anyway, at the risk above")
    return "; ".join(steps)
