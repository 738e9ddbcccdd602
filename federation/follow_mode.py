"""How a standby DC follows its upstream DC: one pure decision that validate, the operations and the agent share.

Patroni's `standby_cluster` takes a `host` (a libpq multi-host list is allowed) and one integer `port`. A
standby DC therefore streams through every member of its upstream only when that DC is the primary DC
(Patroni adds target_session_attrs=read-write to a multi-host list, which finds the leader) and all its
members share one PostgreSQL port. Otherwise it streams from one member, the upstream's leader, and the
agents re-point it when that leader changes:

- CASCADE: the upstream is itself a standby DC, whose members never accept read-write sessions;
- LEADER: the upstream's members use different ports, which one `port` cannot carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from federation.topology import Datacenter, Member


class FollowMode(StrEnum):
    EVERY_MEMBER = "every-member"  # multi-host list of the upstream's members, one shared port
    LEADER = "leader"  # the upstream (primary) DC's leader host:port; its members use different ports
    CASCADE = "cascade"  # the upstream standby DC's standby leader host:port


def shared_port(dc: Datacenter) -> int | None:
    """The PostgreSQL port every member of `dc` uses, or None when they use different ones."""
    ports = {m.port for m in dc.members}
    return ports.pop() if len(ports) == 1 else None


def follow_mode(upstream: Datacenter, upstreams: Mapping[str, str | None]) -> FollowMode:
    """How a DC whose upstream is `upstream` streams from it, in the layout `upstreams` (DC -> its upstream)."""
    if upstreams.get(upstream.name) is not None:
        return FollowMode.CASCADE
    if shared_port(upstream) is None:
        return FollowMode.LEADER
    return FollowMode.EVERY_MEMBER


def member_to_follow(upstream: Datacenter, leader: Member | None,
                     configured: Mapping[str, Any] | None) -> Member:
    """The one upstream member to stream from: its leader; while no leader is seen, the member the
    standby_cluster section already names (so a moment without a leader moves nothing), else the first."""
    if leader is not None:
        return leader
    configured = configured or {}
    host, port = configured.get("host"), configured.get("port")
    for member in upstream.members:
        if member.host == host and str(member.port) == str(port):
            return member
    return upstream.members[0]


def followed_member(upstream: Datacenter, upstreams: Mapping[str, str | None], leader: Member | None,
                    configured: Mapping[str, Any] | None) -> Member | None:
    """The member a standby DC of `upstream` names in its standby_cluster section (None: every member).
    `leader` is the upstream's leader as last seen (None: unknown); `configured` the section in force."""
    if follow_mode(upstream, upstreams) is FollowMode.EVERY_MEMBER:
        return None
    return member_to_follow(upstream, leader, configured)


def describe_follow(upstream: Datacenter, mode: FollowMode) -> str:
    """What `fedctl validate` says a standby DC of `upstream` does, e.g. "follows dc1 through every member
    (multi-host, port 5432)"."""
    if mode is FollowMode.EVERY_MEMBER:
        return f"follows {upstream.name} through every member (multi-host, port {shared_port(upstream)})"
    if mode is FollowMode.LEADER:
        return (f"follows {upstream.name}'s leader host:port, re-pointed by the agents when it changes "
                f"({upstream.name}'s members use different ports)")
    return (f"follows {upstream.name}'s standby leader host:port, re-pointed by the agents when it changes "
            f"({upstream.name} is itself a standby DC)")
