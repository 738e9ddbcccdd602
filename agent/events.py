"""The agent's events log: one JSON line per decision that changed something, in a file of its own.

Each event is `{"time", "dc", "member", "kind", "sentence", ...details}`, `time` ISO 8601 UTC with
milliseconds, stamped when the decision is carried out. The kinds (EVENT_KINDS) are written where the
change is made, once per change, never per cycle; `fedctl events` merges every agent's with the
federation record's history.

Writing never blocks nor breaks the agent: `emit` only queues the event (the lease guard's fence must not
wait for a slow disk) and one writer thread appends it. A failure (a full queue, an unwritable file) is
counted (`on_error`, the metric fedctl_agent_event_write_errors_total) and logged once per outage, then
again when writing works again. The file is bounded: when the next line would take it beyond `max_bytes`
it is renamed to `<file>.1` (replacing the older one) and a new file begins, so between `max_bytes` and
twice that is kept on disk. Without a file (tests, the default of `agent_settings`) events are kept in
memory only, the newest MEMORY_LIMIT of them.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from federation.events_read import parse_time

log = logging.getLogger("agent.events")

EVENT_KINDS = ("fence", "unfence", "lease_taken", "lease_lost", "lease_released", "agent_active", "agent_standby",
               "repoint", "fence_replaced", "job")
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
SERVE_LIMIT = 1000  # GET /events answers at most this many, the newest
MEMORY_LIMIT = SERVE_LIMIT
QUEUE_LIMIT = 1000
BASE_KEYS = ("time", "dc", "member", "kind", "sentence")


class EventSink(Protocol):
    def emit(self, kind: str, sentence: str, /, **details: Any) -> None: ...


class NoEvents:
    """For parts built without an events log (tests, tools): every event is dropped."""

    def emit(self, kind: str, sentence: str, /, **details: Any) -> None:
        pass


NO_EVENTS = NoEvents()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class EventLog:
    """One agent's events, appended to `path` (None: in memory only), `dc`/`member` on each by default."""

    def __init__(self, path: Path | None, *, dc: str, member: str, max_bytes: int = DEFAULT_MAX_BYTES,
                 on_error: Callable[[], None] = lambda: None, wall: Callable[[], datetime] = _utc_now) -> None:
        self.path = path
        self.dc, self.member = dc, member
        self.max_bytes = max_bytes
        self.errors = 0
        self._on_error = on_error
        self._wall = wall
        self._lock = threading.Lock()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_LIMIT)
        self._memory: deque[dict[str, Any]] = deque(maxlen=MEMORY_LIMIT)
        self._writer: threading.Thread | None = None
        self._failing: str | None = None

    # ---- writing (any thread)
    def emit(self, kind: str, sentence: str, /, **details: Any) -> None:
        self.emit_as(self.dc, self.member, kind, sentence, details)

    def emit_as(self, dc: str, member: str, kind: str, sentence: str, details: dict[str, Any]) -> None:
        try:
            event: dict[str, Any] = {"time": self._wall().astimezone(UTC).isoformat(timespec="milliseconds"),
                                     "dc": dc, "member": member, "kind": kind, "sentence": sentence}
            event.update((k, v) for k, v in details.items() if k not in BASE_KEYS)
            if self.path is None:
                with self._lock:
                    self._memory.append(event)
                return
            self._start_writer()
            self._queue.put_nowait(event)
        except queue.Full:
            self._failed(f"{QUEUE_LIMIT} events wait to be written (is the disk stalled?): dropping {kind}")
        except Exception as exc:  # an event must never break the decision that emits it
            self._failed(f"could not queue a {kind} event: {exc}")

    def for_dc(self, dc: str) -> EventSink:
        """The same log, with `dc` on every event (the backup host runs the jobs of several DCs)."""
        return _ForDC(self, dc)

    def _start_writer(self) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_queued, name="agent-events", daemon=True)
                self._writer.start()

    def _write_queued(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                self._append(event)
            except Exception as exc:  # the writer thread must outlive any one event
                self._failed(f"could not write a {event.get('kind') if event else '?'} event: {exc}")
            finally:
                self._queue.task_done()

    def _append(self, event: dict[str, Any]) -> None:
        assert self.path is not None
        line = json.dumps(event, default=str, separators=(",", ":")) + "\n"
        try:
            self._rotate_for(len(line.encode()))
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(line)
        except OSError as exc:
            self._failed(f"cannot write {self.path}: {exc.strerror or exc}")
            return
        if self._failing is not None:
            log.info("the events file %s is written again (%d event(s) lost meanwhile)", self.path, self.errors)
            self._failing = None

    def _rotate_for(self, size: int) -> None:
        assert self.path is not None
        try:
            current = self.path.stat().st_size
        except FileNotFoundError:
            return
        if current and current + size > self.max_bytes:
            os.replace(self.path, rotated(self.path))

    def _failed(self, message: str) -> None:
        self.errors += 1
        try:
            self._on_error()
        except Exception:
            pass  # a broken counter is no reason to break the writer
        if self._failing is None:
            log.warning("events log: %s; counting failures in fedctl_agent_event_write_errors_total, logging "
                        "no more of them until it works again", message)
            self._failing = message

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event is written (or failed); False after `timeout`."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued and stop the writer (the agent's exit)."""
        with self._lock:
            writer = self._writer
        if writer is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        writer.join(timeout)
        with self._lock:
            self._writer = None

    # ---- reading (the API's threads)
    def read(self, since: datetime | None = None, limit: int = SERVE_LIMIT) -> list[dict[str, Any]]:
        """Events at or after `since` (all without), oldest first, at most the newest `limit`."""
        if self.path is None:
            with self._lock:
                events: Iterable[dict[str, Any]] = list(self._memory)
        else:
            # `fedctl events --follow` asks every 2 s from a few seconds back: the older file is read only
            # when the current one may not reach back far enough.
            first = _first_time(self.path)
            older = since is None or first is None or first > since
            paths = (rotated(self.path), self.path) if older else (self.path,)
            events = (e for p in paths for e in _read_lines(p, since))
        kept: deque[dict[str, Any]] = deque(maxlen=limit)
        for event in events:
            at = parse_time(event.get("time"))
            if at is not None and (since is None or at >= since):
                kept.append(event)
        return list(kept)


class _ForDC:
    def __init__(self, log_: EventLog, dc: str) -> None:
        self._log, self._dc = log_, dc

    def emit(self, kind: str, sentence: str, /, **details: Any) -> None:
        self._log.emit_as(self._dc, self._log.member, kind, sentence, details)


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


TIME_PREFIX = '{"time":"'  # how _append writes every line: the time can be compared before parsing the JSON


def _line_time(line: str) -> datetime | None:
    if not line.startswith(TIME_PREFIX):
        return None
    end = line.find('"', len(TIME_PREFIX))
    return parse_time(line[len(TIME_PREFIX):end]) if end > 0 else None


def _first_time(path: Path) -> datetime | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            return _line_time(lines.readline())
    except OSError:
        return None


def _read_lines(path: Path, since: datetime | None = None) -> Iterable[dict[str, Any]]:
    """The events of one file from `since` on; a line that does not parse (a write cut short) is left out."""
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if since is not None:
                    at = _line_time(line)
                    if at is not None and at < since:
                        continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    yield event
    except OSError:
        return
