"""The DC's own Patroni as the lease guard needs it: demote to a standby cluster with no upstream, and back.

The fence is a standby_cluster whose upstream nobody listens on (127.0.0.1 port 1): the leader shuts
down cleanly and comes back as a standby leader that cannot stream, no member can promote (a standby
cluster has no primary), and no replica can be built from it. The PATCH reaches the DC's own DCS
through its leader's REST API, so a WAN cut does not stop it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from federation import patroni_api
from federation.errors import OperationFailed
from federation.operations.common import look_at
from federation.topology import Datacenter, Member

FENCE_HOST = "127.0.0.1"
FENCE_PORT = 1
FENCE_PATCH: dict[str, Any] = {"standby_cluster": {"host": FENCE_HOST, "port": FENCE_PORT}}
UNFENCE_PATCH: dict[str, Any] = {"standby_cluster": None}
REST_TIMEOUT = 1.0


def is_fence_section(section: object) -> bool:
    return isinstance(section, Mapping) and section.get("host") == FENCE_HOST and section.get("port") == FENCE_PORT


class DCPatroni(Protocol):
    """What the guard reads and changes of its DC's Patroni. Raises FedError when it cannot."""

    def leader_role(self) -> str | None:
        """The role of the DC's leader (primary, standby_leader), None when it has none."""

    def config(self) -> dict[str, Any]: ...

    def patch(self, body: dict[str, Any]) -> None: ...


class RestPatroni:
    """The DC's members over their REST APIs; patches go to the leader (on etcd only it wakes at once)."""

    def __init__(self, dc: Datacenter) -> None:
        self.dc = dc

    def _leader(self) -> tuple[Member | None, str | None, list[Member]]:
        look = look_at(self.dc, REST_TIMEOUT)
        answering = [m for m in self.dc.members if look.statuses.get(m.name) is not None]
        status = look.leader_status
        return look.leader, status.role if status else None, answering

    def leader_role(self) -> str | None:
        return self._leader()[1]

    def config(self) -> dict[str, Any]:
        leader, _role, answering = self._leader()
        target = leader or (answering[0] if answering else None)
        if target is None:
            raise OperationFailed(f"no member of {self.dc.name} answers its REST API")
        return patroni_api.get_config(target, timeout=REST_TIMEOUT)

    def patch(self, body: dict[str, Any]) -> None:
        leader, _role, answering = self._leader()
        # Without a leader any member will do: the config lives in the DCS, not in the member.
        target = leader or (answering[0] if answering else None)
        if target is None:
            raise OperationFailed(f"no member of {self.dc.name} answers its REST API: cannot PATCH /config")
        patroni_api.patch_config(target, body, timeout=REST_TIMEOUT * 2)


def demote(patroni: DCPatroni) -> tuple[bool, str]:
    """One fencing attempt: (done, what happened). Sends the PATCH only when the config lacks the fence,
    then waits (the next attempt) for the leader to come back as a standby leader. Raises FedError."""
    section = patroni.config().get("standby_cluster")
    if is_fence_section(section):
        role = patroni.leader_role()
        if role == "standby_leader":
            return True, "fenced: the leader is a standby leader with no upstream"
        return False, f"fence PATCH in place, waiting for the leader to become a standby leader (it is {role})"
    if section:
        return True, "already a standby cluster: it takes no writes"
    patroni.patch(FENCE_PATCH)
    return False, f"sent PATCH /config standby_cluster {FENCE_HOST}:{FENCE_PORT} to the leader"


def promote_back(patroni: DCPatroni, has_marker: bool) -> tuple[bool, str]:
    """Undo our fence: PATCH standby_cluster null when the config holds the fence section. (False, why)
    when the DC holds the fence without a marker: not ours to undo. Raises FedError."""
    section = patroni.config().get("standby_cluster")
    if not is_fence_section(section):
        return True, "no fence section in the config to undo"
    if not has_marker:
        return False, "not unfencing: the DC is fenced but holds no fence marker; leaving it to an operator"
    patroni.patch(UNFENCE_PATCH)
    return True, "sent PATCH /config standby_cluster null to the leader"


def rejoined(patroni: DCPatroni) -> bool:
    """The DC is a standby cluster of a real upstream (rejoin-dc replaced the fence section). Raises FedError."""
    section = patroni.config().get("standby_cluster")
    return bool(section) and not is_fence_section(section)
