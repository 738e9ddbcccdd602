"""PostgreSQL WAL positions (LSNs): the 'X/Y' text form and the 64-bit integer form."""

from __future__ import annotations

from datetime import datetime


def parse_lsn(text: str) -> int:
    """'0/D0000A0' -> 218103968. Raises ValueError on anything else."""
    high, sep, low = text.strip().partition("/")
    if not sep or not high or not low:
        raise ValueError(f"{text!r} is not an LSN (expected hex 'X/Y', e.g. 0/3000060)")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    """218103968 -> '0/D0000A0', the way PostgreSQL prints it."""
    if value < 0:
        raise ValueError(f"an LSN cannot be negative: {value}")
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def lsn_or_none(value: object) -> int | None:
    """Lenient reading of an LSN from JSON: an int, a numeric string or 'X/Y' text; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str):
        try:
            return parse_lsn(value) if "/" in value else int(value)
        except ValueError:
            return None
    return None


def lag_behind(mine: int | None, replayed_at: datetime | None, theirs: int | None,
               now: datetime) -> tuple[int | None, float | None]:
    """(bytes, seconds) a standby at `mine` is behind an upstream at `theirs`; None where unknown.

    Seconds are 0 when caught up, else the age of the standby's last replayed transaction.
    """
    if mine is None or theirs is None:
        return None, None
    lag = max(0, theirs - mine)
    if lag == 0:
        return 0, 0.0
    if replayed_at is None:
        return lag, None
    return lag, max(0.0, (now - replayed_at).total_seconds())
