"""The one JSON object every operation ends with under --format json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from federation.progress import Progress


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

    def to_json_dict(self, progress: Progress) -> dict[str, Any]:
        return {
            "operation": self.operation, "source": self.source, "target": self.target,
            "outcome": self.outcome, "epoch": self.epoch, "dry_run": self.dry_run,
            "plan": self.plan, "steps": [s.to_json_dict() for s in progress.steps],
            "total_seconds": round(sum(s.seconds for s in progress.steps), 3),
            **self.facts, "error": self.error,
        }
