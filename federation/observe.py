"""Observe the whole federation: every DC's DCS, every member's REST API and its agent, read in parallel.

`observe_federation(topo)` does the I/O (one thread per DCS, per member and per agent, one deadline) and hands
the raw answers to `assemble`, which is pure: it derives roles, health and lag (see
`federation.status_model` for the definitions and the JSON shape) and is what the unit tests drive.
Each member's fedctl agent is asked whether the member's Patroni runs the promotion gate (GET /gate,
federation.agent_gates); a member without its agent, or without the gate, is a problem.
Nothing unreachable raises: it is reported in the result.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from federation.dcs.patroni_keys import DCSMember, PatroniClusterView
from federation.errors import FedError
from federation.gate_install import GateState
from federation.lsn import lag_behind
from federation.patroni_api import PRIMARY_ROLES, NodeStatus
from federation.status_model import DCStatus, FederationStatus, MemberStatus
from federation.status_problems import cascade_problems, dc_problems, gate_problems

if TYPE_CHECKING:
    from federation.agent_gates import AgentGate
    from federation.state import FederationState, StateCopy
    from federation.topology import Datacenter, Member, PatroniApi, Topology

T = TypeVar("T")

DEFAULT_TIMEOUT = 2.0
MIN_READ_TIMEOUT = 0.05  # a read started at the deadline still gets a chance to connect
# Threads for one observation: enough for 30 DCs of 3 members and more (30 + 2 * 90 + 1 = 211 reads at once).
MAX_READERS = 256
UNLISTED_MEMBER_ROOM = 4


@dataclass(frozen=True)
class DCSRead:
    """The outcome of reading one DC's Patroni keys: a view, or the error that prevented it."""

    view: PatroniClusterView | None = None
    error: str | None = None


@dataclass(frozen=True)
class ApiRead:
    """The outcome of GET /patroni on one member: its status, or the error that prevented it."""

    node: NodeStatus | None = None
    error: str | None = None
    url: str | None = None


def member_role(node_role: str | None, is_leader: bool, dc_role: str) -> str:
    """leader | standby_leader | replica | primary (a primary without the leader key) | unknown."""
    if node_role in PRIMARY_ROLES:
        return "leader" if is_leader else "primary"
    if node_role == "standby_leader" or (is_leader and dc_role == "standby"):
        return "standby_leader"
    if is_leader:
        return "leader"
    if node_role in ("replica", "standby"):
        return "replica"
    return node_role or "unknown"


def dc_role(view: PatroniClusterView | None, leader_node_role: str | None) -> str:
    """primary | standby | unknown. The DCS config decides (standby_cluster present or not); without
    a config the leader's own role does (primary -> primary DC, standby_leader -> standby DC)."""
    if view is not None and view.config:
        return "standby" if view.standby_cluster is not None else "primary"
    if leader_node_role in PRIMARY_ROLES:
        return "primary"
    if leader_node_role == "standby_leader":
        return "standby"
    return "unknown"


def _standby_target(view: PatroniClusterView | None) -> str | None:
    section = view.standby_cluster if view else None
    if not section:
        return None
    host, port = section.get("host"), section.get("port")
    return f"{host}:{port}" if port else str(host)


def _member_sync(name: str, node: NodeStatus | None, view: PatroniClusterView | None) -> str:
    if node is not None and node.quorum_standby:
        return "quorum"
    if node is not None and node.sync_standby:
        return "sync"
    if view is not None and name in view.sync.members:
        return view.sync_mode
    return "async"


def _from_api(base: MemberStatus, node: NodeStatus, is_leader: bool, role_of_dc: str,
              view: PatroniClusterView | None) -> MemberStatus:
    role = member_role(node.role, is_leader, role_of_dc)
    state = (node.replication_state if role != "leader" and node.replication_state else node.state) or "unknown"
    return MemberStatus(
        name=base.name, host=base.host, port=base.port, api_url=base.api_url, role=role, state=state,
        sync=None if is_leader else _member_sync(base.name, node, view), timeline=node.timeline,
        lsn=node.lsn, reachable=True, source="api", replayed_at=node.replayed_at, in_topology=base.in_topology)


def _from_dcs(base: MemberStatus, key: DCSMember | None, error: str | None, is_leader: bool,
              role_of_dc: str, view: PatroniClusterView | None) -> MemberStatus:
    if key is None:
        return MemberStatus(name=base.name, host=base.host, port=base.port, api_url=base.api_url,
                            role=member_role(None, is_leader, role_of_dc), state="unreachable", error=error,
                            in_topology=base.in_topology)
    role = member_role(key.role, is_leader, role_of_dc)
    state = (key.replication_state if role != "leader" and key.replication_state else key.state) or "unknown"
    return MemberStatus(
        name=base.name, host=base.host or key.host, port=base.port or key.port,
        api_url=base.api_url or key.api_url, role=role, state=state,
        sync=None if is_leader else _member_sync(base.name, None, view), timeline=key.timeline,
        lsn=key.replay_lsn if key.replay_lsn is not None else key.xlog_location, reachable=False,
        error=error, source="dcs", in_topology=base.in_topology)


def _with_lag(member: MemberStatus, leader_lsn: int | None) -> MemberStatus:
    if member.lsn is None or leader_lsn is None:
        return member
    return replace(member, lag_bytes=max(0, leader_lsn - member.lsn))


def _with_agent(member: MemberStatus, agent: AgentGate | None) -> MemberStatus:
    if agent is None:
        return member
    return replace(member, agent="running" if agent.running else "missing", agent_error=agent.error,
                   gate=agent.check)


def build_dc(dc: Datacenter, dcs: DCSRead, api: Mapping[str, ApiRead], upstream: str | None,
             agents: Mapping[str, AgentGate] | None = None) -> DCStatus:
    """One DC's status from its DCS read, its members' REST answers and (when asked) their agents' gate
    verdicts, both keyed by member name. Pure."""
    view = dcs.view
    bases = {m.name: MemberStatus(name=m.name, host=m.host, port=m.port, api_url=m.api_url) for m in dc.members}
    for name, key in (view.members.items() if view else []):
        if name not in bases:
            bases[name] = MemberStatus(name=name, host=key.host, port=key.port, api_url=key.api_url,
                                       in_topology=False)
    nodes = {name: read.node for name, read in api.items() if read.node is not None}

    leader = view.leader if view else None
    if leader is None and view is None:
        # No DCS: the member that says it leads (primary or standby_leader) is the best we know.
        claimants = [n for n, node in nodes.items() if node.role in PRIMARY_ROLES | {"standby_leader"}]
        leader = claimants[0] if len(claimants) == 1 else None
    leader_key = view.members.get(leader) if view and leader else None
    leader_node_role = nodes[leader].role if leader in nodes else (leader_key.role if leader_key else None)
    role_of_dc = dc_role(view, leader_node_role)

    members: list[MemberStatus] = []
    for name, base in bases.items():
        read = api.get(name, ApiRead(error="not queried"))
        is_leader = name == leader
        if read.node is not None:
            members.append(_from_api(base, read.node, is_leader, role_of_dc, view))
        else:
            dcs_key = view.members.get(name) if view else None
            members.append(_from_dcs(base, dcs_key, read.error, is_leader, role_of_dc, view))
    leader_status = next((m for m in members if m.name == leader), None)
    leader_lsn = leader_status.lsn if leader_status else None
    members = [_with_agent(_with_lag(m, leader_lsn), (agents or {}).get(m.name)) for m in members]

    problems = (dc_problems(dc, dcs.error, view, members, leader, leader_node_role, role_of_dc)
                + gate_problems(dc, members))
    return DCStatus(
        name=dc.name, scope=dc.patroni_scope, role=role_of_dc,
        upstream=None if role_of_dc == "primary" else upstream, reachable=dcs.error is None, error=dcs.error,
        leader=leader, timeline=leader_status.timeline if leader_status else None,
        standby_cluster=_standby_target(view), members=tuple(members), problems=tuple(problems),
        maintenance=(view is not None and view.config.get("pause") is True)
        or any(node.maintenance for node in nodes.values()))


def _cross_dc_lag(standby: DCStatus, upstream: DCStatus | None, now: datetime) -> tuple[int | None, float | None]:
    mine = standby.leader_member
    theirs = upstream.leader_member if upstream else None
    if mine is None or theirs is None:
        return None, None
    return lag_behind(mine.lsn, mine.replayed_at, theirs.lsn, now)


def _resolve_upstream(dc: Datacenter, view: PatroniClusterView | None, topo: Topology,
                      upstream_of: Mapping[str, str] | None) -> str | None:
    if upstream_of is not None and dc.name in upstream_of:
        return upstream_of[dc.name]
    if dc.upstream is not None:
        return dc.upstream
    return _pointed_at(view, topo)


def _pointed_at(view: PatroniClusterView | None, topo: Topology) -> str | None:
    """The DC owning the member that the standby_cluster section points at, if any."""
    section = view.standby_cluster if view else None
    if not section:
        return None
    hosts = {h.strip() for h in str(section.get("host", "")).split(",")}
    port = section.get("port")
    for other, member in topo.members():
        if member.host in hosts and (port is None or str(member.port) == str(port)):
            return other.name
    return None


def assemble(topo: Topology, dcs_reads: Mapping[str, DCSRead], api_reads: Mapping[str, Mapping[str, ApiRead]],
             *, upstream_of: Mapping[str, str] | None = None, now: datetime | None = None,
             duration_s: float | None = None,
             agent_reads: Mapping[str, Mapping[str, AgentGate]] | None = None) -> FederationStatus:
    """The federation status from raw reads (DCS per DC name; REST and agents per DC name, then member name;
    without `agent_reads` the agents were not asked). Pure."""
    now = now or datetime.now(UTC)
    built: dict[str, DCStatus] = {}
    for dc in topo.datacenters:
        read = dcs_reads.get(dc.name, DCSRead(error="not queried"))
        upstream = _resolve_upstream(dc, read.view, topo, upstream_of)
        agents = agent_reads.get(dc.name, {}) if agent_reads is not None else None
        built[dc.name] = build_dc(dc, read, api_reads.get(dc.name, {}), upstream, agents)

    finished: list[DCStatus] = []
    for dc in topo.datacenters:
        status = built[dc.name]
        if status.role == "standby":
            lag_bytes, lag_seconds = _cross_dc_lag(status, built.get(status.upstream or ""), now)
            extra = []
            pointed = _pointed_at(dcs_reads[dc.name].view if dc.name in dcs_reads else None, topo)
            if pointed is not None and status.upstream is not None and pointed != status.upstream:
                extra.append(f"standby_cluster points at {status.standby_cluster} in {pointed}, but the "
                             f"upstream should be {status.upstream}")
            if status.upstream is None:
                extra.append("standby DC without a known upstream DC")
            status = replace(status, lag_bytes=lag_bytes, lag_seconds=lag_seconds,
                             problems=status.problems + tuple(extra))
        finished.append(status)

    primaries = [d.name for d in finished if d.role == "primary"]
    problems: list[str] = []
    if len(primaries) > 1:
        problems.append(f"split brain: {' and '.join(primaries)} are all primary DCs")
    elif not primaries:
        problems.append("no primary DC: no datacenter accepts writes")
    return FederationStatus(federation=topo.federation, primary_dc=primaries[0] if primaries else None,
                            datacenters=tuple(finished), problems=tuple(problems), observed_at=now,
                            duration_s=duration_s)


def _read_dcs(topo: Topology, dc: Datacenter, timeout: float) -> tuple[DCSRead, StateCopy]:
    """The DC's Patroni keys and its copy of the federation record, in one request to its DCS where it can
    (etcd: one transaction)."""
    from federation.dcs import connect
    from federation.dcs.patroni_keys import cluster_prefix, parse_cluster
    from federation.state import StateCopy, copy_of, state_key

    try:
        with connect(dc, timeout=timeout) as dcs:
            prefix, record_key = cluster_prefix(dc), state_key(topo, dc)
            items = dcs.read_many([prefix], [record_key])
        view = parse_cluster(prefix, {key: item for key, item in items.items() if key.startswith(prefix)})
        try:
            copy = copy_of(dc, items.get(record_key))
        except Exception as exc:  # status must survive anything; say it is a bug
            copy = StateCopy(dc.name, None, None, error=_bug(exc))
        return DCSRead(view=view), copy
    except FedError as exc:
        return DCSRead(error=exc.message), StateCopy(dc.name, None, None, error=exc.message)
    except Exception as exc:  # status must survive anything; say it is a bug
        text = _bug(exc)
        return DCSRead(error=text), StateCopy(dc.name, None, None, error=text)


def _read_store(topo: Topology, timeout: float) -> tuple[dict[str, Any], list[str], FederationState | None]:
    """The federation store's quorum, record epoch and lease (its JSON summary and problems), and its record."""
    from federation.store_status import read_store_status, store_summary

    try:
        read = read_store_status(topo, timeout)
        return (*store_summary(read), read.record)
    except Exception as exc:  # status must survive anything; say it is a bug
        return {"error": _bug(exc)}, [f"the federation store could not be read: {_bug(exc)}"], None


def _bug(exc: Exception) -> str:
    return f"unexpected {type(exc).__name__}: {exc} (please report this as a bug)"


def _read_api(target: Member | str, timeout: float, security: PatroniApi | None = None) -> ApiRead:
    from federation.patroni_api import base_url, get_patroni

    try:
        return ApiRead(node=NodeStatus.from_json(get_patroni(target, timeout=timeout, security=security)),
                       url=base_url(target))
    except FedError as exc:
        return ApiRead(error=exc.message.split(" is unreachable: ")[-1], url=base_url(target))
    except Exception as exc:  # status must survive anything; say it is a bug
        return ApiRead(error=_bug(exc))


def _read_api_of_unlisted(api_url: str, security: PatroniApi | None, timeout: float) -> ApiRead:
    return _read_api(api_url, timeout, security)


def _read_agent(dc: Datacenter, member: Member, timeout: float) -> AgentGate:
    from federation.agent_gates import AgentGate, read_gate
    from federation.gate_install import GateCheck

    try:
        return read_gate(dc, member, timeout)
    except Exception as exc:  # status must survive anything; say it is a bug
        return AgentGate(dc.name, member.name, "", True, GateCheck(GateState.UNKNOWN, _bug(exc)))


def observe_federation(topo: Topology, *, upstream_of: Mapping[str, str] | None = None,
                       timeout: float = DEFAULT_TIMEOUT) -> FederationStatus:
    """Read every DC's DCS, every member's GET /patroni and its agent's GET /gate, and the federation store, all
    in parallel within one deadline (`timeout` seconds from the call: each read gets what is left of it), and
    assemble the status.

    `upstream_of` (DC name -> upstream DC name), when given, overrides the topology's upstreams: the
    federation-state record passes it once it exists. Never raises for an unreachable DC or member.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    import federation.state  # noqa: F401  (imported once here, not by every worker thread at once)

    started = time.monotonic()
    deadline_at = started + timeout

    def time_left() -> float:
        return max(MIN_READ_TIMEOUT, deadline_at - time.monotonic())

    def with_time_left(read: Callable[[float], T]) -> Future[T]:
        """Start `read(timeout)`; the timeout is what is left of the deadline when the read starts."""
        return pool.submit(lambda: read(time_left()))

    known = {(dc.name, m.name) for dc, m in topo.members()}
    # Every read at once, so that N DCs cost one round trip (on a WAN) rather than N: one thread per DCS, per
    # member's REST API and per agent, the store, and room for members found only in a DCS.
    readers = len(topo.datacenters) + 2 * len(known) + 1 + UNLISTED_MEMBER_ROOM
    with ThreadPoolExecutor(max_workers=min(MAX_READERS, readers), thread_name_prefix="observe") as pool:
        store_future = (with_time_left(functools.partial(_read_store, topo))
                        if topo.federation_store is not None else None)
        dcs_futures = {dc.name: with_time_left(functools.partial(_read_dcs, topo, dc)) for dc in topo.datacenters}
        api_futures: dict[str, dict[str, Future[ApiRead]]] = {dc.name: {} for dc in topo.datacenters}
        for dc, member in topo.members():
            api_futures[dc.name][member.name] = with_time_left(functools.partial(_read_api, member))
        agent_futures = {(dc.name, member.name): with_time_left(functools.partial(_read_agent, dc, member))
                         for dc, member in topo.members()}
        dcs_results = {name: f.result() for name, f in dcs_futures.items()}
        dcs_reads = {name: read for name, (read, _copy) in dcs_results.items()}
        # Members registered in a DCS but missing from the topology: ask them too, via their own api_url, within
        # what is left of the deadline.
        for dc in topo.datacenters:
            view = dcs_reads[dc.name].view
            for name, key in (view.members.items() if view else []):
                if (dc.name, name) not in known and key.api_url:
                    api_futures[dc.name][name] = with_time_left(
                        functools.partial(_read_api_of_unlisted, key.api_url, topo.patroni_api))
        api_reads = {dc: {m: f.result() for m, f in futures.items()} for dc, futures in api_futures.items()}
        store_read = store_future.result() if store_future is not None else None
        agent_reads: dict[str, dict[str, AgentGate]] = {dc.name: {} for dc in topo.datacenters}
        for (dc_name, member_name), future in agent_futures.items():
            agent_reads[dc_name][member_name] = future.result()
    copies = [copy for _read, copy in dcs_results.values()]
    from federation.entrypoints import default_binds
    from federation.record_status import record_summary

    record, record_problems = record_summary(topo, copies, store_read[2] if store_read is not None else None)
    if record is not None:
        record_problems.extend(cascade_problems(topo, record["upstreams"]))
    if upstream_of is None and record is not None:
        upstream_of = {dc: up for dc, up in record["upstreams"].items() if up is not None}
    status = assemble(topo, dcs_reads, api_reads, upstream_of=upstream_of, now=datetime.now(UTC),
                      duration_s=time.monotonic() - started, agent_reads=agent_reads)
    if record is not None and status.primary_dc is not None and status.primary_dc != record["primary_dc"]:
        record_problems.append(f"the federation record (epoch {record['epoch']}) names {record['primary_dc']} the "
                               f"primary DC but {status.primary_dc}'s leader is the primary")
    binds = default_binds(topo)
    extra: dict[str, Any] = {
        "federation_record": record,
        "entrypoints": {"read_write": binds.read_write, "read_only": binds.read_only, "pgbouncer": binds.pgbouncer}}
    if store_read is not None:
        extra["federation_store"], store_problems, _record = store_read
        record_problems.extend(store_problems)
    if topo.lab.network == "namespaces":
        from federation.lab_network import read_cuts

        extra["lab_cuts"] = [cut.describe() for cut in read_cuts(topo.lab_cuts_file)]
    return replace(status, problems=(*status.problems, *record_problems), extra=extra)
