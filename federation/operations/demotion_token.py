"""The demotion token: where a demoted primary DC stopped writing, the proof a switchover is lossless."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from federation.lsn import format_lsn, parse_lsn

if TYPE_CHECKING:
    from federation.topology import Member


class AgentUnavailable(Exception):
    """The member's agent cannot tell where its WAL ended: why (the caller reads the token over SQL instead)."""


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


def token_from_control(answer: dict[str, Any], member: str) -> DemotionToken | None:
    """The token in `member`'s agent's GET /controldata answer (agent/control_report.py): its `wal_end` once
    it shut down cleanly as a primary; None while it has not (or runs again), or when it says nothing usable."""
    if not answer.get("wal_end"):
        return None
    try:
        return DemotionToken(parse_lsn(str(answer["wal_end"])), int(answer["timeline"]),
                             str(answer["system_identifier"]), member)
    except (KeyError, TypeError, ValueError):
        return None


def read_shutdown_token(member: Member, timeout: float) -> DemotionToken | None:
    """GET /controldata of the member's agent: the token once the member has shut down cleanly as a primary,
    None while it has not. AgentUnavailable when the agent does not answer or cannot read pg_control."""
    import http.client
    import json

    from federation.agent_gates import agent_get

    try:
        code, body = agent_get(member, "/controldata", timeout)
    except (OSError, http.client.HTTPException) as exc:
        raise AgentUnavailable(f"{member.name}'s agent does not answer: {exc}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if code != 200:
        why = answer.get("error") if isinstance(answer, dict) else None
        raise AgentUnavailable(f"{member.name}'s agent answered /controldata with {code}: {why or 'no reason'}")
    if not isinstance(answer, dict) or answer.get("member") != member.name:
        raise AgentUnavailable(f"the agent at {member.name}'s address is not {member.name}'s: it answered "
                               f"{answer.get('member') if isinstance(answer, dict) else answer!r}")
    return token_from_control(answer, member.name)
