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
