"""The demotion token: where a demoted primary DC stopped writing, the proof a switchover is lossless."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from federation.lsn import format_lsn, parse_lsn


@dataclass(frozen=True)
class DemotionToken:
    """Where the demoted source DC stopped writing: its final LSN, timeline and system identifier."""

    lsn: int
    timeline: int
    system_identifier: str
    member: str

    def to_json_dict(self) -> dict[str, Any]:
        return {"lsn": format_lsn(self.lsn), "timeline": self.timeline,
                "system_identifier": self.system_identifier, "member": self.member}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> DemotionToken:
        return cls(parse_lsn(data["lsn"]), int(data["timeline"]), str(data["system_identifier"]),
                   str(data["member"]))

    def sentence(self) -> str:
        return f"LSN {format_lsn(self.lsn)} timeline {self.timeline} system {self.system_identifier}"
