"""The self-fence marker in the DC's own DCS: `<namespace>_fedctl/<federation>/fence`.

It is written before the fencing PATCH, so that whoever finds the DC a standby cluster with no
upstream can tell a lease fence (which the active agent may undo once the DC holds the lease again)
from a demotion done by someone else (which the agent never undoes). It is created once (the first
agent of the DC to fence writes it; the others find it) and removed by the agent that unfences, or
once rejoin-dc has made the DC a standby of the new primary DC.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Protocol

from federation.dcs import connect
from federation.topology import Datacenter, Topology

DCS_TIMEOUT = 1.0


def marker_key(topo: Topology, dc: Datacenter) -> str:
    return f"{dc.dcs.namespace}_fedctl/{topo.federation}/fence"


@dataclass(frozen=True)
class FenceMarker:
    since: str  # wall-clock time (ISO 8601, UTC) the fence was decided
    epoch: int | None  # epoch of the record the fencing agent knew
    by: str  # the agent identity `<dc>/<member>` that wrote it
    reason: str

    def ours(self, dc: str) -> bool:
        """Written by an agent of `dc` (a lease fence), not by an operator or another tool."""
        return self.by.startswith(f"{dc}/")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> FenceMarker:
        """Lenient: an unreadable marker still counts as a marker, but as nobody's."""
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return cls(since="", epoch=None, by="", reason=f"unreadable marker {raw[:40]!r}")
        epoch = data.get("epoch")
        return cls(since=str(data.get("since", "")), epoch=epoch if isinstance(epoch, int) else None,
                   by=str(data.get("by", "")), reason=str(data.get("reason", "")))


class MarkerStore(Protocol):
    """The marker's home (the DC's own DCS; a dict in unit tests). Raises DCSError when unreachable."""

    def read(self) -> FenceMarker | None: ...

    def write(self, marker: FenceMarker) -> None:
        """Create the marker unless one exists already."""

    def remove(self) -> None: ...


class DCSMarkers:
    def __init__(self, topo: Topology, dc: Datacenter) -> None:
        self.dc = dc
        self.key = marker_key(topo, dc)

    def read(self) -> FenceMarker | None:
        with connect(self.dc, timeout=DCS_TIMEOUT) as dcs:
            found = dcs.get(self.key)
        return FenceMarker.from_json(found.value) if found is not None else None

    def write(self, marker: FenceMarker) -> None:
        with connect(self.dc, timeout=DCS_TIMEOUT) as dcs:
            dcs.create(self.key, marker.to_json())

    def remove(self) -> None:
        with connect(self.dc, timeout=DCS_TIMEOUT) as dcs:
            dcs.delete(self.key)
