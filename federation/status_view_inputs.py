"""What the HTML view shows beside the status itself: past operations, recent job results, cross-DC lag samples.

Plain frozen values, built leniently from the JSON shapes they come from (the federation record's history in
`fedctl status`'s `federation_record`, the job results of `fedctl jobs`), so the renderer stays pure.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from federation.status_model import FederationStatus

LAG_SAMPLES_KEPT = 60


@dataclass(frozen=True)
class PastOperation:
    """One entry of the federation record's history (`fedctl history`)."""

    epoch: int | None
    time: str
    operation: str
    source: str | None
    target: str
    outcome: str
    seconds: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PastOperation:
        seconds = data.get("seconds")
        epoch = data.get("epoch")
        return cls(epoch=epoch if isinstance(epoch, int) else None, time=str(data.get("time", "")),
                   operation=str(data.get("operation", "?")), source=_text_or_none(data.get("source")),
                   target=str(data.get("target", "")), outcome=str(data.get("outcome", "?")),
                   seconds=float(seconds) if isinstance(seconds, int | float) else None)


@dataclass(frozen=True)
class JobRun:
    """One result of a scheduled job (`fedctl jobs`)."""

    dc: str
    job: str
    kind: str
    started: str
    status: str
    seconds: float | None
    summary: str

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobRun:
        seconds = data.get("seconds")
        return cls(dc=str(data.get("dc", "")), job=str(data.get("job", "?")), kind=str(data.get("kind", "")),
                   started=str(data.get("started", "")), status=str(data.get("status", "?")),
                   seconds=float(seconds) if isinstance(seconds, int | float) else None,
                   summary=str(data.get("summary", "")))


@dataclass(frozen=True)
class RecentJobs:
    """The newest job results of every DC, newest first, and the DCs whose history could not be read."""

    runs: tuple[JobRun, ...] = ()
    unread: tuple[str, ...] = ()  # one sentence each: "dc2: <why>"


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def past_operations(status: FederationStatus) -> list[PastOperation]:
    """The record's recent history as `fedctl status` read it (oldest first); empty before any record exists."""
    record = status.extra.get("federation_record") or {}
    entries = record.get("history") or ([record["last_operation"]] if record.get("last_operation") else [])
    return [PastOperation.from_json(e) for e in entries if isinstance(e, Mapping)]


class LagHistory:
    """A small in-memory ring of cross-DC lag samples (bytes behind the upstream DC), per standby DC.

    Thread-safe: the agent's loop and its API threads both add samples."""

    def __init__(self, size: int = LAG_SAMPLES_KEPT) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._rings: dict[str, deque[int | None]] = {}

    def add(self, dc: str, lag_bytes: int | None) -> None:
        with self._lock:
            self._rings.setdefault(dc, deque(maxlen=self._size)).append(lag_bytes)

    def add_status(self, status: FederationStatus, *, skip: Iterable[str] = ()) -> None:
        """One sample for every standby DC of the status, except those in `skip` (sampled elsewhere)."""
        skipped = set(skip)
        for dc in status.datacenters:
            if dc.role == "standby" and dc.name not in skipped:
                self.add(dc.name, dc.lag_bytes)

    def samples(self) -> dict[str, list[int | None]]:
        """DC name -> its samples, oldest first."""
        with self._lock:
            return {dc: list(ring) for dc, ring in self._rings.items()}
