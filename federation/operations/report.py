"""The one JSON object every operation ends with under --format json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from federation.cascade import describe, temporary_links
from federation.progress import Progress
from federation.topology import Topology


@dataclass
class OperationReport:
    operation: str
    target: str
    source: str | None = None
    outcome: str = "running"
    epoch: int | None = None
    dry_run: bool = False
    plan: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    upstreams_after: dict[str, str | None] = field(default_factory=dict)
    temporary_links: list[tuple[str, str]] = field(default_factory=list)

    def with_upstreams(self, topo: Topology, upstreams: dict[str, str | None]) -> OperationReport:
        """The upstream of every DC once the operation is done, and which of those links the topology never
        declared."""
        self.upstreams_after = dict(upstreams)
        self.temporary_links = temporary_links(topo, upstreams)
        return self

    def upstream_lines(self) -> list[str]:
        temporary = set(self.temporary_links)
        return [line + (" (temporary link)" if (dc, up) in temporary else "")
                for (dc, up), line in zip(self.upstreams_after.items(), describe(self.upstreams_after), strict=True)]

    def to_json_dict(self, progress: Progress) -> dict[str, Any]:
        return {
            "operation": self.operation, "source": self.source, "target": self.target,
            "outcome": self.outcome, "epoch": self.epoch, "dry_run": self.dry_run,
            "plan": self.plan, "steps": [s.to_json_dict() for s in progress.steps],
            "total_seconds": round(sum(s.seconds for s in progress.steps), 3),
            "upstreams_after": self.upstreams_after,
            "temporary_links": [{"dc": dc, "upstream": up} for dc, up in self.temporary_links],
            **self.facts, "error": self.error,
        }
