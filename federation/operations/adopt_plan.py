"""`fedctl adopt`'s decisions, as pure functions of the running clusters and the topology.

`disagreements` lists every way the running clusters contradict the roles fedctl is about to record;
`adoption_steps` the online changes that bring them to fedctl's settings (permanent slots on each
upstream DC, the standby_cluster keys fedctl relies on). Each step compares before it changes anything,
so the plan of an adopted federation is empty: a second `adopt` changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from federation.patroni_dynamic import desired_slots, role_section
from federation.topology import Datacenter, Member, Topology


@dataclass(frozen=True)
class RunningDC:
    """One DC as it runs: its leader, whether that leader takes writes, its dynamic configuration."""

    dc: Datacenter
    leader: Member | None = None
    writable: bool = False
    config: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None  # why the DC could not be read (then nothing else is known)

    @property
    def standby_cluster(self) -> Mapping[str, Any] | None:
        section = self.config.get("standby_cluster")
        return section if isinstance(section, Mapping) and section else None

    @property
    def permanent_slots(self) -> set[str]:
        slots = self.config.get("slots")
        return set(slots) if isinstance(slots, Mapping) else set()


@dataclass(frozen=True)
class AdoptStep:
    """One PATCH /config of one DC (through its leader), and the sentence that says what it changes.
    `new_slots`: slots the PATCH declares, to be waited for on the DC's leader before anyone streams
    through them."""

    dc: str
    says: str
    patch: dict[str, Any]
    new_slots: tuple[str, ...] = ()


def streams_from(section: Mapping[str, Any]) -> tuple[list[str], str]:
    """The hosts and the port a standby_cluster section names (Patroni's default port is 5432)."""
    hosts = [h.strip() for h in str(section.get("host") or "").split(",") if h.strip()]
    return hosts, str(section.get("port") or 5432)


def disagreements(topo: Topology, upstreams: Mapping[str, str | None], running: Mapping[str, RunningDC],
                  source: str) -> list[str]:
    """Every contradiction between the running clusters and `upstreams` (read from `source`: the topology,
    or the federation record). Empty: adopting is safe."""
    problems: list[str] = []
    for dc in topo.datacenters:
        seen = running[dc.name]
        if seen.error is not None:
            problems.append(f"{dc.name}: cannot be read: {seen.error}")
            continue
        if seen.leader is None:
            problems.append(f"{dc.name}: no member holds the leader lock; adopt a federation whose every DC has a "
                            "leader")
            continue
        upstream = upstreams.get(dc.name)
        section = seen.standby_cluster
        if upstream is None:
            if section is not None or not seen.writable:
                hosts, port = streams_from(section or {})
                follows = f"follows {','.join(hosts)}:{port}" if hosts else "does not take writes"
                problems.append(f"{source} says {dc.name} is the primary DC, but {dc.name} is a standby cluster "
                                f"(its leader {seen.leader.name} {follows})")
            continue
        problems.extend(_standby_problems(topo, dc, topo.dc(upstream), seen, source))
    writable = [name for name, seen in running.items() if seen.error is None and seen.writable]
    if len(writable) > 1:
        problems.append(f"{' and '.join(writable)} all take writes: two primaries already (a split brain); make "
                        "all but one a standby cluster before adopting")
    return problems


def _standby_problems(topo: Topology, dc: Datacenter, upstream: Datacenter, seen: RunningDC,
                      source: str) -> list[str]:
    assert seen.leader is not None
    claim = f"{source} says {dc.name} follows {upstream.name}, but"
    section = seen.standby_cluster
    if seen.writable or section is None:
        return [f"{claim} {dc.name} is not a standby cluster: its leader {seen.leader.name} takes writes"]
    problems: list[str] = []
    hosts, port = streams_from(section)
    members = {(m.host, str(m.port)) for m in upstream.members}
    if not any((host, port) in members for host in hosts):
        listed = ", ".join(f"{m.host}:{m.port}" for m in upstream.members)
        problems.append(f"{claim} {dc.name} streams from {','.join(hosts) or 'no host'}:{port}, which is not a "
                        f"member of {upstream.name} ({listed})")
    slot = section.get("primary_slot_name")
    if slot and slot != dc.slot_name:
        problems.append(f"{dc.name} streams through the slot {slot}, but the topology names {dc.slot_name}: add "
                        f"`slot: {slot}` to {dc.name} in the topology to keep it")
    return problems


def adoption_steps(topo: Topology, upstreams: Mapping[str, str | None],
                   running: Mapping[str, RunningDC]) -> list[AdoptStep]:
    """The online changes, upstream slots first (a standby must not name a slot before it exists).
    A DC that streams from one upstream member (follow_mode) streams from that DC's running leader."""
    slot_steps: list[AdoptStep] = []
    standby_steps: list[AdoptStep] = []
    for dc in topo.datacenters:
        seen = running[dc.name]
        missing = sorted(desired_slots(topo, dc, upstreams) - seen.permanent_slots)
        if missing:
            users = ", ".join(other.name for other in topo.datacenters if other.slot_name in missing)
            slot_steps.append(AdoptStep(dc.name, f"{dc.name}: declare the permanent slot(s) {', '.join(missing)} "
                                        f"(streamed through by {users})",
                                        {"slots": {name: {"type": "physical"} for name in missing}}, tuple(missing)))
        upstream = upstreams.get(dc.name)
        if upstream is None:
            continue
        current = seen.standby_cluster or {}
        wanted = role_section(topo, dc, upstreams, running[upstream].leader, current)
        assert wanted is not None
        changed = {key: value for key, value in wanted.items() if not _same(current.get(key), value)}
        if changed:
            says = "; ".join(f"{key} {_shown(current.get(key))} -> {_shown(value)}" for key, value in changed.items())
            standby_steps.append(AdoptStep(dc.name, f"{dc.name}: standby_cluster: {says}",
                                           {"standby_cluster": changed}))
    return [*slot_steps, *standby_steps]


def _same(current: Any, wanted: Any) -> bool:
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        return str(current) == str(wanted)  # Patroni keeps a port as the user wrote it: 5432 or "5432"
    return bool(current == wanted)


def _shown(value: Any) -> str:
    return "(unset)" if value is None else repr(value)


def member_lines(topo: Topology, topology_path: str) -> list[str]:
    """What fedctl cannot set remotely, per DC: the gate in each member's local patroni.yml, an agent next
    to each member."""
    lines: list[str] = []
    for dc in topo.datacenters:
        names = ", ".join(m.name for m in dc.members)
        lines.append(f"{dc.name} ({names}): in each patroni.yml, postgresql.pre_promote: "
                     f"fedctl gate pre-promote -t {topology_path} --dc {dc.name}   (then `patronictl reload`)")
        lines.append(f"{dc.name} ({names}): a service next to each member running fedctl agent run -t "
                     f"{topology_path} --dc {dc.name} --member <member> --patroni-config <its patroni.yml>")
    return lines
