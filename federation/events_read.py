"""`fedctl events`: every agent's events log and the federation's operations, merged by time.

Sources, asked in parallel, each within one deadline (`read_sources`): every member's agent (GET /events,
federation.agent_gates' client), the federation record's history (the operations `fedctl history` lists,
kind `operation`), and, in pgBackRest's repository-host layout, the backup-host agent (GET /events, the
same client); when it does not answer, the job results it records in each DC's DCS stand in for its events,
and the answer says so. A source that does not answer is reported, never fatal. `merge` sorts by time and
drops duplicates; `EventFollower` polls and returns only what is new.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from federation.agent_gates import agent_get, agent_url, backup_host_get, backup_host_url
from federation.errors import BadInput, FedError
from federation.pgbackrest_layout import repo_host_of
from federation.state import HistoryEntry
from federation.topology import Datacenter, Member, Topology

DEFAULT_TIMEOUT = 2.0
# A follow asks again from this long before the newest event seen, not from that event: an agent whose
# clock is a little behind would otherwise have its events skipped. What comes twice is dropped by its key.
FOLLOW_OVERLAP = timedelta(seconds=30)
DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Event:
    time: datetime
    dc: str
    member: str
    kind: str
    sentence: str
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.time.isoformat(), self.dc, self.member, self.kind, self.sentence)

    @classmethod
    def from_json_dict(cls, data: object) -> Event | None:
        """Leniently: anything without a time, a kind and a sentence is not an event (None)."""
        if not isinstance(data, dict):
            return None
        at = parse_time(data.get("time"))
        kind, sentence = data.get("kind"), data.get("sentence")
        if at is None or not isinstance(kind, str) or not isinstance(sentence, str):
            return None
        details = {k: v for k, v in data.items() if k not in ("time", "dc", "member", "kind", "sentence")}
        return cls(at, str(data.get("dc") or "-"), str(data.get("member") or "-"), kind, sentence, details)

    def to_json_dict(self) -> dict[str, Any]:
        return {"time": self.time.isoformat(timespec="milliseconds"), "dc": self.dc, "member": self.member,
                "kind": self.kind, "sentence": self.sentence, **self.details}

    def line(self) -> str:
        return _line(self.time.isoformat(timespec="milliseconds"), f"{self.dc}/{self.member}", self.kind,
                     self.sentence)


def _line(at: str, who: str, kind: str, sentence: str) -> str:
    return f"{at:<29}  {who:<12}  {kind:<14}  {sentence}"


TABLE_HEADER = _line("TIME", "DC/MEMBER", "KIND", "SENTENCE")


@dataclass(frozen=True)
class SourceAnswer:
    source: str  # "dc1/n1", "federation record", "jobs of dc1"
    events: list[Event] = field(default_factory=list)
    error: str | None = None  # None: it answered

    @property
    def answered(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Source:
    name: str
    read: Callable[[datetime | None], SourceAnswer]


def parse_time(value: object) -> datetime | None:
    """ISO 8601 as an aware UTC datetime (naive counts as UTC); None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: a duration back from `now` (90s, 5m, 2h, 1d) or an ISO 8601 time. BadInput otherwise."""
    match = DURATION.match(text.strip())
    if match:
        return now - timedelta(seconds=float(match.group(1)) * UNITS[match.group(2)])
    at = parse_time(text)
    if at is None:
        raise BadInput(f"--since {text!r} is neither a duration (30s, 5m, 2h, 1d) nor an ISO 8601 time",
                       hint="e.g. --since 10m or --since 2026-01-01T12:00:00Z")
    return at


# ---- the sources
def agent_source(dc: Datacenter, member: Member, timeout: float = DEFAULT_TIMEOUT) -> Source:
    return Source(f"{dc.name}/{member.name}", lambda since: read_agent_events(dc, member, since, timeout))


def read_agent_events(dc: Datacenter, member: Member, since: datetime | None,
                      timeout: float = DEFAULT_TIMEOUT) -> SourceAnswer:
    """GET /events of the member's agent."""
    return _read_events(f"{dc.name}/{member.name}", agent_url(member),
                        lambda path: agent_get(member, path, timeout), since)


def _events_path(since: datetime | None) -> str:
    return "/events" + (f"?since={quote(since.isoformat(timespec='milliseconds'))}" if since else "")


def _read_events(name: str, url: str, get: Callable[[str], tuple[int, bytes]],
                 since: datetime | None) -> SourceAnswer:
    """GET /events of one agent (`get` asks it), as a SourceAnswer named `name`."""
    from http.client import HTTPException

    try:
        code, body = get(_events_path(since))
    except (OSError, HTTPException) as exc:
        return SourceAnswer(name, error=f"its agent does not answer at {url}: "
                                        f"{getattr(exc, 'strerror', None) or exc or type(exc).__name__}")
    if code == 404:
        return SourceAnswer(name, error=f"the agent at {url} predates the events log (no GET /events): upgrade it")
    if code != 200:
        return SourceAnswer(name, error=f"the agent at {url} answered GET /events with HTTP {code}")
    try:
        items = json.loads(body)
    except ValueError:
        return SourceAnswer(name, error=f"the agent at {url} answered GET /events with something not JSON")
    if not isinstance(items, list):
        return SourceAnswer(name, error=f"the agent at {url} answered GET /events without a list")
    return SourceAnswer(name, [e for e in map(Event.from_json_dict, items) if e is not None])


def operation_event(entry: HistoryEntry) -> Event | None:
    at = parse_time(entry.time)
    if at is None:
        return None
    took = f" in {entry.seconds:.1f} s" if entry.seconds is not None else ""
    moved = f"{entry.source} -> {entry.target}" if entry.source else entry.target
    return Event(at, entry.target, "fedctl", "operation",
                 f"{entry.operation} {moved}: {entry.outcome}{took} (epoch {entry.epoch})",
                 {"operation": entry.operation, "source": entry.source, "target": entry.target,
                  "outcome": entry.outcome, "epoch": entry.epoch, "seconds": entry.seconds,
                  "details": entry.details})


def history_source(topo: Topology) -> Source:
    """The operations of the newest federation record, as `fedctl history` reads them."""

    def read(since: datetime | None) -> SourceAnswer:
        from federation.state import current_state

        try:
            state, _copies = current_state(topo)
        except FedError as exc:
            return SourceAnswer("federation record", error=exc.message)
        found = [e for e in map(operation_event, state.history) if e is not None]
        return SourceAnswer("federation record", [e for e in found if since is None or e.time >= since])

    return Source("federation record", read)


def repo_host_jobs_source(topo: Topology, dc: Datacenter) -> Source:
    """The backup-host agent's job results for `dc`, from the DC's DCS (where it records them)."""

    name = f"jobs of {dc.name} (backup host)"

    def read(since: datetime | None) -> SourceAnswer:
        from backup.job_report import read_dc

        found = read_dc(topo, dc)
        if found.error is not None:
            return SourceAnswer(name, error=found.error)
        events = []
        for result in found.history:
            started = parse_time(result.started)
            if started is None:
                continue
            at = started + timedelta(seconds=result.seconds)
            if since is None or at >= since:
                events.append(Event(at, dc.name, "backup-host", "job",
                                    f"job {result.job} ({result.kind.value}) {result.status} after "
                                    f"{result.seconds:.1f} s: {result.summary}",
                                    {"name": result.job, "job_kind": result.kind.value, "outcome": result.status,
                                     "seconds": result.seconds, "started": result.started}))
        return SourceAnswer(name, events)

    return Source(name, read)


BACKUP_HOST = "backup host"


def read_backup_host_events(topo: Topology, since: datetime | None, timeout: float = DEFAULT_TIMEOUT) -> SourceAnswer:
    """GET /events of the backup-host agent."""
    return _read_events(BACKUP_HOST, backup_host_url(topo) or "-",
                        lambda path: backup_host_get(topo, path, timeout), since)


def backup_host_source(topo: Topology, timeout: float = DEFAULT_TIMEOUT,
                       fallbacks: Sequence[Source] | None = None) -> Source:
    """The backup-host agent's events; when it does not answer, the job results it recorded in each DC's DCS
    (`fallbacks`, by default repo_host_jobs_source of every DC with jobs) stand in, and the error says so."""
    stand_ins = list(fallbacks) if fallbacks is not None else \
        [repo_host_jobs_source(topo, dc) for dc in topo.datacenters if dc.jobs]

    def read(since: datetime | None) -> SourceAnswer:
        # Half the deadline, so the stand-ins still fit in it when the agent does not answer.
        asked = read_backup_host_events(topo, since, timeout / 2 if stand_ins else timeout)
        if asked.answered:
            return asked
        found = [source.read(since) for source in stand_ins]
        unread = [f"{a.source}: {a.error}" for a in found if not a.answered]
        instead = "showing the job results recorded in each DC's DCS instead"
        if unread:
            instead += f" (not read: {'; '.join(unread)})"
        return SourceAnswer(BACKUP_HOST, [e for a in found for e in a.events], error=f"{asked.error}; {instead}")

    return Source(BACKUP_HOST, read)


def event_sources(topo: Topology, timeout: float = DEFAULT_TIMEOUT) -> list[Source]:
    sources = [agent_source(dc, m, timeout) for dc, m in topo.members()]
    sources.append(history_source(topo))
    if repo_host_of(topo) is not None:
        sources.append(backup_host_source(topo, timeout))
    return sources


# ---- reading and merging
def read_sources(sources: Sequence[Source], since: datetime | None, deadline: float) -> list[SourceAnswer]:
    """Every source at once; one that has not answered within `deadline` seconds counts as not answering."""
    if not sources:
        return []
    pool = ThreadPoolExecutor(max_workers=min(32, len(sources)), thread_name_prefix="fedctl-events")
    try:
        futures = [(source, pool.submit(source.read, since)) for source in sources]
        ends = time.monotonic() + deadline
        answers = []
        for source, future in futures:
            try:
                answers.append(future.result(timeout=max(0.0, ends - time.monotonic())))
            except FutureTimeout:
                answers.append(SourceAnswer(source.name, error=f"no answer within {deadline:g} s"))
            except Exception as exc:  # one broken source must not hide the others' events
                answers.append(SourceAnswer(source.name, error=str(exc) or type(exc).__name__))
        return answers
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def merge(batches: Iterable[Iterable[Event]]) -> list[Event]:
    """One list, oldest first; an event met twice (same time, who, kind and sentence) is kept once."""
    unique: dict[tuple[str, str, str, str, str], Event] = {}
    for batch in batches:
        for event in batch:
            unique.setdefault(event.key, event)
    return sorted(unique.values(), key=lambda e: (e.time, e.dc, e.member, e.kind))


@dataclass(frozen=True)
class Poll:
    events: list[Event]  # new since the last poll, oldest first
    answers: list[SourceAnswer]

    @property
    def silent(self) -> list[SourceAnswer]:
        return [a for a in self.answers if not a.answered]


class EventFollower:
    """Polls the sources; each poll returns only events not returned before."""

    def __init__(self, sources: Sequence[Source], since: datetime | None, *, deadline: float = DEFAULT_TIMEOUT + 0.5,
                 read: Callable[[Sequence[Source], datetime | None, float], list[SourceAnswer]] = read_sources) -> None:
        self.sources = list(sources)
        self.since = since
        self.deadline = deadline
        self._read = read
        self._seen: dict[tuple[str, str, str, str, str], datetime] = {}
        self._newest: datetime | None = None

    def poll(self) -> Poll:
        ask = self.since
        if self._newest is not None:
            overlapped = self._newest - FOLLOW_OVERLAP
            ask = overlapped if ask is None else max(ask, overlapped)
        answers = self._read(self.sources, ask, self.deadline)
        fresh = [e for e in merge(a.events for a in answers)
                 if e.key not in self._seen and (self.since is None or e.time >= self.since)]
        for event in fresh:
            self._seen[event.key] = event.time
            self._newest = event.time if self._newest is None else max(self._newest, event.time)
        if ask is not None:  # what is older than the next question cannot come back: forget it
            self._seen = {k: at for k, at in self._seen.items() if at >= ask - FOLLOW_OVERLAP}
        return Poll(fresh, answers)
