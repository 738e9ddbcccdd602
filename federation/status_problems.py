"""What `fedctl status` counts as a problem in one DC: its DCS, its leader, its members, their promotion gates;
and in the record's cascade: a temporary link.

Pure: `federation.observe.build_dc` passes what it read and derived; each problem is one sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from federation.cascade import skipped, temporary_links
from federation.gate_install import GateState
from federation.patroni_api import PRIMARY_ROLES
from federation.status_model import HEALTHY_STATES, MemberStatus

if TYPE_CHECKING:
    from federation.dcs.patroni_keys import PatroniClusterView
    from federation.topology import Datacenter, Topology


def dc_problems(dc: Datacenter, dcs_error: str | None, view: PatroniClusterView | None, members: list[MemberStatus],
                leader: str | None, leader_node_role: str | None, role_of_dc: str) -> list[str]:
    """What is wrong with one DC: its DCS, its leader, its members' REST APIs and states."""
    problems: list[str] = []
    if dcs_error is not None:
        problems.append(f"DCS unreachable: {dcs_error}")
    elif view is not None and not view.members and not view.initialized:
        problems.append(f"no Patroni cluster {dc.patroni_scope!r} under {view.prefix} (not bootstrapped yet?)")
    if leader is None and dcs_error is not None:
        problems.append("leader unknown: the DCS is unreachable and no member answers as a leader")
    elif leader is None:
        problems.append("no leader: no member holds the leader key")
    elif role_of_dc == "primary" and leader_node_role not in PRIMARY_ROLES and leader_node_role is not None:
        problems.append(f"leader {leader} is {leader_node_role} although the config has no standby_cluster "
                        "(promotion in progress?)")
    elif role_of_dc == "standby" and leader_node_role in PRIMARY_ROLES:
        problems.append(f"leader {leader} is still primary although the config has standby_cluster "
                        "(demotion in progress?)")
    for m in members:
        if m.role == "primary":
            problems.append(f"{m.name} runs as primary but {leader or 'nobody'} holds the leader key")
        if not m.reachable:
            problems.append(f"{m.name}: REST API unreachable ({m.error or 'no answer'})"
                            + (f"; last state in DCS: {m.state}" if m.source == "dcs" else ""))
        elif m.state not in HEALTHY_STATES:
            problems.append(f"{m.name} is {m.state}")
        if not m.in_topology:
            problems.append(f"{m.name} is registered in the DCS but is not in the topology")
    return problems


def gate_problems(dc: Datacenter, members: list[MemberStatus]) -> list[str]:
    """A member whose agent does not answer, or whose Patroni may promote without the federation's gate."""
    problems: list[str] = []
    for m in members:
        gate = m.gate
        if m.agent == "missing":
            problems.append(f"{m.name}: its fedctl agent does not answer ({m.agent_error or 'no answer'}), so nothing "
                            f"tells whether its Patroni runs the promotion gate: start it on {m.host}: `fedctl "
                            f"agent run -t TOPOLOGY --dc {dc.name} --member {m.name} --patroni-config "
                            "/path/to/patroni.yml` (docs/agent.md)")
        elif gate is None or gate.installed:
            continue
        elif gate.state is GateState.UNKNOWN:
            problems.append(f"{m.name}: cannot tell whether its Patroni runs the promotion gate: {gate.reason}")
        else:
            where = f" of {gate.config_path}" if gate.config_path else ""
            problems.append(f"{m.name}: promotion gate {gate.state.value.replace('_', ' ')}: {gate.reason}; Patroni "
                            f"could promote {m.name} without the federation's checks: put `{gate.line}` into the "
                            f"postgresql section{where}, then `patronictl reload`")
    return problems


def cascade_problems(topo: Topology, upstreams: Mapping[str, str | None]) -> list[str]:
    """A DC that streams over a link the topology does not declare: a DC between it and its upstream was gone
    when the roles were last set, and rejoining that DC puts the declared link back."""
    problems = []
    names = {dc.name for dc in topo.datacenters}
    for dc, upstream in temporary_links(topo, upstreams):
        if upstream not in names:
            problems.append(f"the federation record names {upstream!r} the upstream of {dc}: no such DC in the "
                            "topology")
            continue
        between = skipped(topo, dc, upstream)
        nearest, rest = between[0], between[1:]
        back = f"{' and '.join(between)} are" if rest else f"{nearest} is"
        then = f" (then {', '.join(rest)})" if rest else ""
        problems.append(f"{dc} streams from {upstream} over a temporary link (declared: {dc} ← {nearest}, {back} "
                        f"not back yet): `fedctl rejoin-dc {nearest}`{then} restores it")
    return problems
