"""One checked fact for a report: which check, whether it passed, what was seen and what to do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    message: str
    hint: str | None = None
