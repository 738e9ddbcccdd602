"""Ask members' fedctl agents whether their Patroni runs the promotion gate: GET /gate, all in parallel.

An agent is reached where HAProxy's checks reach it (the member's host, its Patroni API port + 100), over
https with the topology's agent client certificate when the agents serve TLS, within one deadline per
exchange (federation.http_deadline). Nothing raises: an agent that does not answer is `running=False`,
and every answer that says nothing usable is an unknown verdict, with the reason.

`agent_get` is fedctl's one client of the agents' API (fedctl events uses it too); `backup_host_get` asks the
backup-host agent of the repository-host layout the same way, at repo_host.address:agent_port.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from federation.gate_install import GateCheck, GateState
from federation.pgbackrest_layout import repo_host_of
from federation.topology import AGENT_PORT_OFFSET, AgentTLS, Datacenter, Member, Topology

DEFAULT_TIMEOUT = 1.5


@dataclass(frozen=True)
class AgentGate:
    """One member's agent: did it answer (`running`), and its verdict on the member's gate."""

    dc: str
    member: str
    url: str
    running: bool
    check: GateCheck
    error: str | None = None

    @property
    def installed(self) -> bool:
        return self.running and self.check.installed


def agent_url(member: Member) -> str:
    scheme = "https" if member.agent_tls is not None else "http"
    return f"{scheme}://{member.host}:{member.api.port + AGENT_PORT_OFFSET}"


def agent_get(member: Member, path: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, bytes]:
    """GET `path` of the member's agent, over https with the agent client certificate when the agents serve
    TLS, within `timeout` in all. OSError or http.client.HTTPException when it does not answer."""
    return agent_get_at(member.host, member.api.port + AGENT_PORT_OFFSET, member.agent_tls, path, timeout)


def agent_get_at(host: str, port: int, tls: AgentTLS | None, path: str,
                 timeout: float = DEFAULT_TIMEOUT) -> tuple[int, bytes]:
    """GET `path` of the agent at host:port (https with the agent client certificate when `tls`)."""
    from federation.http_deadline import exchange

    return exchange(host, port, "GET", path, timeout=timeout, tls=tls.client().context() if tls is not None else None)


def backup_host_url(topo: Topology) -> str | None:
    """Where the backup-host agent serves its API; None without a repository host."""
    repo = repo_host_of(topo)
    if repo is None:
        return None
    return f"{'https' if topo.agent_tls is not None else 'http'}://{repo.address}:{repo.agent_port}"


def backup_host_get(topo: Topology, path: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, bytes]:
    """GET `path` of the backup-host agent; as agent_get. BadInput without a repository host."""
    from federation.errors import BadInput

    repo = repo_host_of(topo)
    if repo is None:
        raise BadInput("the topology has no pgbackrest.repo_host, so no backup-host agent")
    return agent_get_at(repo.address, repo.agent_port, topo.agent_tls, path, timeout)


def read_gate(dc: Datacenter, member: Member, timeout: float = DEFAULT_TIMEOUT) -> AgentGate:
    """GET /gate of the member's agent."""
    from http.client import HTTPException

    url = agent_url(member)
    try:
        code, body = agent_get(member, "/gate", timeout)
    except (OSError, HTTPException) as exc:
        error = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return AgentGate(dc.name, member.name, url, False,
                         GateCheck(GateState.UNKNOWN, f"its fedctl agent does not answer at {url}: {error}"), error)
    return AgentGate(dc.name, member.name, url, True, _verdict(dc, member, url, code, body))


def _verdict(dc: Datacenter, member: Member, url: str, code: int, body: bytes) -> GateCheck:
    if code == 404:
        return GateCheck(GateState.UNKNOWN, f"the agent at {url} predates the gate check (no GET /gate): upgrade "
                                            "it")
    if code != 200:
        return GateCheck(GateState.UNKNOWN, f"the agent at {url} answered GET /gate with HTTP {code}")
    try:
        data = json.loads(body)
    except ValueError:
        return GateCheck(GateState.UNKNOWN, f"the agent at {url} answered GET /gate with something not JSON")
    if not isinstance(data, dict):
        return GateCheck(GateState.UNKNOWN, f"the agent at {url} answered GET /gate without a verdict")
    who = (data.get("dc"), data.get("member"))
    if who != (dc.name, member.name):
        return GateCheck(GateState.UNKNOWN, f"the agent at {url} is {who[0]}/{who[1]}'s, not {dc.name}/"
                                            f"{member.name}'s: check its --dc and --member")
    return GateCheck.from_json_dict(data.get("gate"))


def read_gates(members: Iterable[tuple[Datacenter, Member]],
               timeout: float = DEFAULT_TIMEOUT) -> dict[tuple[str, str], AgentGate]:
    """Every member's agent at once, keyed by (DC name, member name); takes about `timeout` at most."""
    pairs = list(members)
    if not pairs:
        return {}
    with ThreadPoolExecutor(max_workers=min(32, len(pairs)), thread_name_prefix="agent-gate") as pool:
        futures = {(dc.name, m.name): pool.submit(read_gate, dc, m, timeout) for dc, m in pairs}
        return {key: future.result() for key, future in futures.items()}
