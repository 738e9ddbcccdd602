"""The entrypoint followers' reports in the federation store: who keeps a PgBouncer, and whether it has
paused it for a switchover.

Each `fedctl entrypoint follow` with a PgBouncer writes `<namespace><federation>/followers/<id>` when
its state changes and at least every HEARTBEAT seconds. switchover-dc reads them before it demotes the
source: it waits (a bounded time) for every follower seen within FRESH seconds to report `paused` for
its operation, and reports those that did not. A report is advisory, never a lock: a follower that
stops reporting ages out, and one that cannot pause never blocks a switchover.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Protocol

from federation.dcs.base import Versioned

PREFIX = "followers/"
HEARTBEAT = 2.0
FRESH = 3 * HEARTBEAT

FOLLOWING = "following"
PAUSING = "pausing"  # PAUSE sent; PgBouncer still waits for running transactions to finish
PAUSED = "paused"
STATES = (FOLLOWING, PAUSING, PAUSED)


class KeyStore(Protocol):
    def put_key(self, suffix: str, value: str) -> None: ...

    def read_keys(self, suffix: str) -> dict[str, Versioned]: ...

    def delete_key(self, suffix: str) -> None: ...


@dataclass(frozen=True)
class FollowerReport:
    id: str
    state: str
    seen: str  # when it wrote this report (UTC, ISO 8601)
    operation: str | None = None  # the switchover it paused (or is pausing) for
    pgbouncer: str = ""  # host:port of the PgBouncer it keeps
    detail: str = ""  # what a pause waits for, or why it failed

    def age(self, now: datetime) -> float:
        try:
            return (now - datetime.fromisoformat(self.seen)).total_seconds()
        except ValueError:
            return float("inf")

    def paused_for(self, operation: str) -> bool:
        return self.state == PAUSED and self.operation == operation


def write(store: KeyStore, report: FollowerReport) -> None:
    store.put_key(PREFIX + report.id, json.dumps(asdict(report), sort_keys=True))


def remove(store: KeyStore, follower_id: str) -> None:
    store.delete_key(PREFIX + follower_id)


def read_all(store: KeyStore) -> list[FollowerReport]:
    """Every report in the store (a malformed one is skipped: reports are advisory)."""
    reports = []
    for found in store.read_keys(PREFIX).values():
        try:
            data = json.loads(found.value)
            report = FollowerReport(**{k: data[k] for k in FollowerReport.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            continue
        if report.state in STATES:
            reports.append(report)
    return sorted(reports, key=lambda r: r.id)


def fresh(reports: list[FollowerReport], now: datetime | None = None) -> list[FollowerReport]:
    """The reports of followers that are alive: written within FRESH seconds."""
    now = now or datetime.now(UTC)
    return [r for r in reports if r.age(now) <= FRESH]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
