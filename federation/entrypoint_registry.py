"""Entrypoint followers and the switchover's pause request, in the federation store.

Every `fedctl entrypoint follow` that keeps a PgBouncer registers under
`<ns><federation>/entrypoints/<follower id>` and rewrites that key at least every HEARTBEAT seconds (and
at once when its state changes): its heartbeat. A follower that stops cleanly deletes its key; one that
died leaves it, and is told apart by the heartbeat's age (STALE_AFTER), compared with the reader's
clock: the hosts are expected to keep their clocks in step (NTP), as Patroni's own TTLs expect.

switchover-dc writes `<ns><federation>/pause` before it demotes the source: each live follower PAUSEs its
PgBouncer (new transactions wait, running ones finish), says so in its key, and RESUMEs once its
database points at the new primary DC's writable leader. The request carries `hold`: a follower never
holds clients longer than that, whatever happens to fedctl (a crash between two steps, an unreachable
store), so a forgotten request cannot stall applications.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from federation.dcs.base import Versioned

HEARTBEAT = 1.0
STALE_AFTER = 10.0
DEFAULT_HOLD = 30.0
MAX_HOLD = 120.0  # a request asking for longer is not one fedctl wrote: followers ignore it
FOLLOWER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"


class KeyStore(Protocol):
    """What these keys need of the federation store (federation.store.FederationStore)."""

    config: Any
    federation: str

    def read_prefix(self, prefix: str, what: str) -> dict[str, Versioned]: ...

    def read_key(self, key: str, what: str) -> Versioned | None: ...

    def put_key(self, key: str, value: str, what: str) -> None: ...

    def delete_key(self, key: str, what: str) -> None: ...


class FollowerState(StrEnum):
    FOLLOWING = "following"  # PgBouncer passes transactions through
    PAUSING = "pausing"  # PAUSE sent, waiting for running transactions to finish
    PAUSED = "paused"  # every server connection closed; new transactions wait


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class FollowerReport(Frozen):
    """What one follower says of itself (the value of its key)."""

    id: str
    pgbouncer: str  # its admin console, host:port
    state: FollowerState = FollowerState.FOLLOWING
    operation: str | None = None  # the pause request it answers
    epoch: int | None = None  # the record epoch its target comes from
    target: str | None = None  # dc/member PgBouncer points at
    writable: bool = False
    blocking: tuple[str, ...] = ()  # clients whose transactions keep a PAUSE from completing
    paused_at: float | None = None  # unix time of the PAUSE
    last_operation: str | None = None  # the last request it released clients for
    last_hold: float | None = None  # how long it held them then, seconds (PAUSE to RESUME)
    last_release: str | None = None  # why it released them
    heartbeat: float  # unix time of this write

    def age(self, now: float) -> float:
        return max(0.0, now - self.heartbeat)

    def live(self, now: float) -> bool:
        return self.age(now) <= STALE_AFTER

    def answers(self, operation: str) -> bool:
        """It paused (or is pausing, held up by a running transaction) for `operation`, or already released
        clients for it."""
        return ((self.operation == operation and self.state in (FollowerState.PAUSING, FollowerState.PAUSED))
                or self.last_operation == operation)

    def settled(self, operation: str) -> bool:
        """No transaction of its clients runs any more for `operation`: paused, or released already."""
        return ((self.operation == operation and self.state is FollowerState.PAUSED)
                or self.last_operation == operation)

    def released(self, operation: str) -> bool:
        return self.state is FollowerState.FOLLOWING and self.operation is None and self.last_operation == operation


class PauseRequest(Frozen):
    operation: str  # the switchover's operation id
    source: str
    target: str
    epoch: int  # the epoch before the switchover: a follower resumes once its target is of a later one
    requested_at: float  # unix time
    hold: float = Field(default=DEFAULT_HOLD, gt=0, le=MAX_HOLD)

    def expired(self, now: float) -> bool:
        return now > self.requested_at + self.hold


def check_follower_id(follower_id: str) -> str:
    """The id is part of a store key: letters, digits and `._:@-` only, at most 128 characters."""
    import re

    from federation.errors import BadInput

    if not re.match(FOLLOWER_ID_PATTERN, follower_id):
        raise BadInput(f"entrypoint follower id {follower_id!r} is not valid: use letters, digits and . _ : @ - "
                       "(at most 128 characters, starting with a letter or digit)",
                       hint="pass another --id to `fedctl entrypoint follow`")
    return follower_id


def _key(store: KeyStore, name: str) -> str:
    return f"{store.config.namespace}{store.federation}/{name}"


def followers_prefix(store: KeyStore) -> str:
    return _key(store, "entrypoints/")


def pause_key(store: KeyStore) -> str:
    return _key(store, "pause")


def publish(store: KeyStore, report: FollowerReport) -> None:
    store.put_key(followers_prefix(store) + report.id, report.model_dump_json(), "register the entrypoint follower")


def withdraw(store: KeyStore, follower_id: str) -> None:
    store.delete_key(followers_prefix(store) + follower_id, "remove the entrypoint follower's registration")


def read_followers(store: KeyStore) -> list[FollowerReport]:
    """Every registered follower, by id; a value that does not parse is skipped (written by a newer fedctl)."""
    return parse_followers(store.read_prefix(followers_prefix(store), "read the entrypoint followers"))


def parse_followers(found: dict[str, Versioned]) -> list[FollowerReport]:
    """The followers among the keys read under followers_prefix, by id."""
    reports = []
    for _, versioned in sorted(found.items()):
        try:
            reports.append(FollowerReport.model_validate_json(versioned.value))
        except ValidationError:
            continue
    return reports


def request_pause(store: KeyStore, request: PauseRequest) -> None:
    store.put_key(pause_key(store), request.model_dump_json(), "ask the entrypoint followers to pause")


def read_pause(store: KeyStore) -> PauseRequest | None:
    found = store.read_key(pause_key(store), "read the pause request")
    if found is None:
        return None
    try:
        return PauseRequest.model_validate_json(found.value)
    except (ValidationError, json.JSONDecodeError):
        return None


def clear_pause(store: KeyStore) -> None:
    store.delete_key(pause_key(store), "withdraw the pause request")


def describe_follower(report: FollowerReport, now: float, clock_text: Callable[[float], str] | None = None) -> str:
    """One line for status and the switchover's progress."""
    when = clock_text or _clock
    text = f"{report.id} ({report.pgbouncer}): {report.state.value}"
    if report.target:
        text += f", pointing at {report.target}" + ("" if report.writable else " (not writable yet)")
    if report.state is not FollowerState.FOLLOWING and report.paused_at is not None:
        text += f" since {when(report.paused_at)}"
    if report.blocking:
        text += f"; PAUSE waits for {', '.join(report.blocking)}"
    if report.state is FollowerState.FOLLOWING and report.last_hold is not None:
        text += f"; the last switchover held transactions {report.last_hold:.2f} s"
    if not report.live(now):
        text += f"; last heard {report.age(now):.0f} s ago"
    return text


def _clock(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M:%S")
