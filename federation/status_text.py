"""How a member's fields read in `fedctl status`'s table and its HTML view: sizes, roles, states, addresses."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from federation.status_model import MemberStatus


def human_bytes(value: int | None) -> str:
    """1536 -> '1.5 kB'; None -> ''."""
    if value is None:
        return ""
    amount = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if amount < 1024 or unit == "TB":
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{value} B"


def role_text(member: MemberStatus) -> str:
    if member.role == "replica" and member.sync in ("sync", "quorum"):
        return f"{member.sync} replica"
    return member.role.replace("_", " ")


def state_text(member: MemberStatus) -> str:
    if member.reachable:
        return member.state
    if member.source == "dcs":
        return f"unreachable (dcs: {member.state})"
    return "unreachable"


def host_text(member: MemberStatus) -> str:
    if member.host is None:
        return ""
    return f"{member.host}:{member.port}" if member.port else member.host
