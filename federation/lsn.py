"""PostgreSQL WAL positions (LSNs): the 'X/Y' text form and the 64-bit integer form."""

from __future__ import annotations


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
