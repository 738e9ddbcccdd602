"""Who this agent is: its DC, the member it runs next to, where it listens, its lease and its timings.

Nothing here needs new topology fields: the listen address defaults to the member's host and its
Patroni REST port + 100 (8108 next to Patroni's 8008), and the lease key lives beside the federation
record in the DC's own DCS.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from federation.errors import BadInput
from federation.topology import AGENT_PORT_OFFSET, Address, Datacenter, Member, Topology

DEFAULT_INTERVAL = 2.0
DEFAULT_LEASE_TTL = 5
EVENTS_FILE_NAME = "events.jsonl"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def lease_key(topo: Topology, dc: Datacenter) -> str:
    """`<namespace>_fedctl/<federation>/agent/<dc>/leader` in the DC's own DCS."""
    return f"{dc.dcs.namespace}_fedctl/{topo.federation}/agent/{dc.name}/leader"


def default_listen(member: Member) -> Address:
    return Address(host=member.host, port=member.api.port + AGENT_PORT_OFFSET)


def default_events_file() -> str:
    """Where `fedctl agent run` keeps its events log by default: the systemd state directory
    (`StateDirectory=fedctl` sets $STATE_DIRECTORY) or else the working directory (the lab starts each agent
    in its member's directory, next to its pid file and log)."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return os.path.join(os.path.abspath(state or os.getcwd()), EVENTS_FILE_NAME)


def _is_local(host: str) -> bool:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.bind((host, 0))
        return True
    except OSError:
        return False


def local_member(dc: Datacenter) -> Member:
    """The one member of `dc` whose address belongs to this host; BadInput when none or several do."""
    mine = [m for m in dc.members if _is_local(m.host)]
    if len(mine) == 1:
        return mine[0]
    names = ", ".join(m.name for m in (mine or dc.members))
    found = "several members" if mine else "no member"
    raise BadInput(f"{found} of {dc.name} ({names}) has an address on this host: cannot tell which one this is",
                   hint="pass --member NAME (and --listen HOST:PORT if the default does not suit)")


@dataclass(frozen=True)
class AgentSettings:
    topo: Topology
    dc: Datacenter
    member: Member
    listen: Address
    interval: float = DEFAULT_INTERVAL
    lease_ttl: int = DEFAULT_LEASE_TTL
    api_allow: tuple[Network, ...] = ()  # empty: every address
    patroni_config: str | None = None  # the member's patroni.yml (or config directory), for the gate check
    events_file: str | None = None  # the events log (agent/events.py); None: kept in memory only

    @property
    def identity(self) -> str:
        return f"{self.dc.name}/{self.member.name}"

    @property
    def lease_key(self) -> str:
        return lease_key(self.topo, self.dc)


def agent_settings(topo: Topology, dc_name: str, member_name: str | None = None, listen: str | None = None,
                   *, interval: float = DEFAULT_INTERVAL, lease_ttl: int = DEFAULT_LEASE_TTL,
                   allow: Sequence[str] = (), patroni_config: str | None = None,
                   events_file: str | None = None) -> AgentSettings:
    dc = topo.dc(dc_name)
    member = dc.member(member_name) if member_name else local_member(dc)
    address = parse_listen(listen) if listen else default_listen(member)
    if interval <= 0 or lease_ttl < 2:
        raise BadInput("the loop interval must be positive and the lease TTL at least 2 s")
    # Absolute, so the gate check and its messages do not depend on the agent's working directory.
    config = os.path.abspath(patroni_config) if patroni_config else None
    events = os.path.abspath(events_file) if events_file else None
    return AgentSettings(topo, dc, member, address, interval, lease_ttl, parse_allow(allow), config, events)


def parse_listen(listen: str) -> Address:
    """`--listen HOST:PORT`; BadInput otherwise."""
    try:
        return Address.model_validate(listen)
    except ValueError as exc:
        raise BadInput(f"--listen {listen!r} is not HOST:PORT: {exc}") from None


def parse_allow(allow: Sequence[str]) -> tuple[Network, ...]:
    """`--allow CIDR ...` as networks (empty: every address); BadInput for one that is not a network."""
    networks = []
    for cidr in allow:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise BadInput(f"--allow {cidr!r} is not a network such as 10.1.0.0/24 or 10.1.0.7") from None
    return tuple(networks)
