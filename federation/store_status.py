"""The federation store as `fedctl status` shows it: its quorum from here, the record's epoch, the lease.

`read_store_status` does the I/O (bounded by the status timeout, never raises); `store_summary` is pure:
it gives the JSON value of `federation_store`, the problems, and `store_line` the table's line.

JSON shape (`federation_store`, only when the topology has a store): members_answering, members,
quorum (bool), record_epoch, primary_dc (as the store's record names it), lease ({holder, agent,
seconds_left} or null when nobody holds it), error (why it could not be read, or null),
entrypoint_followers (null when not read): [{id, pgbouncer, state (following|pausing|paused), operation,
epoch, target, writable, blocking[], paused_at, last_operation, last_hold, last_release, heartbeat, live,
age_s, line}] (federation/entrypoint_registry.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from federation.entrypoint_registry import (
    FollowerReport,
    FollowerState,
    describe_follower,
    followers_prefix,
    parse_followers,
    read_followers,
)
from federation.errors import DCSError
from federation.state import FederationState
from federation.store import FederationStore, LeaseView, NoQuorum
from federation.store_quorum import QuorumView
from federation.topology import Topology


@dataclass(frozen=True)
class StoreRead:
    quorum: QuorumView
    epoch: int | None = None
    primary_dc: str | None = None
    initialised: bool = False
    lease: LeaseView | None = None  # None: not read (no quorum, error)
    error: str | None = None
    record: FederationState | None = None  # the store's record (the copies may lag behind an operation's steps)
    followers: tuple[FollowerReport, ...] | None = None  # the entrypoint followers registered; None: not read
    followers_error: str | None = None


def read_store_status(topo: Topology, timeout: float) -> StoreRead:
    from federation.state import _parse

    assert topo.federation_store is not None
    # One probe round, then the record, the lease and the entrypoint followers from the best member in one
    # request (and the lease's TTL). Should that member fail, the store's own reads retry on the others, within
    # what is left.
    started = time.monotonic()
    probe_timeout = min(0.5, timeout / 3)
    store = FederationStore(topo.federation_store, topo.federation, deadline=max(0.3, timeout - probe_timeout),
                            probe_timeout=probe_timeout)
    view = store.quorum()
    if not view.has_majority:
        return StoreRead(view)
    followers: tuple[FollowerReport, ...] | None = None
    followers_error: str | None = None
    try:
        try:
            found, lease, under = store.read_for_status(view, followers_prefix(store))
            followers = tuple(parse_followers(under))
        except DCSError:
            left = max(0.3, timeout - (time.monotonic() - started))
            store = FederationStore(topo.federation_store, topo.federation, deadline=left / 2,
                                    probe_timeout=min(probe_timeout, left / 6))
            found, lease = store.read_record(), store.read_lease()
            followers, followers_error = _read_followers(store)
        parsed = _parse(found.value) if found else None
    except NoQuorum as exc:
        return StoreRead(exc.view)
    except Exception as exc:  # status must survive anything
        return StoreRead(view, error=getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
    return StoreRead(view, parsed.epoch if parsed else None, parsed.primary_dc if parsed else None,
                     found is not None, lease, record=parsed, followers=followers, followers_error=followers_error)


def _read_followers(store: FederationStore) -> tuple[tuple[FollowerReport, ...] | None, str | None]:
    try:
        return tuple(read_followers(store)), None
    except Exception as exc:  # status must survive anything
        return None, getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"


def store_summary(read: StoreRead, now: float | None = None) -> tuple[dict[str, Any], list[str]]:
    """(the `federation_store` JSON value, problems). `now`: unix time, to judge the followers' heartbeats."""
    now = time.time() if now is None else now
    view = read.quorum
    lease = read.lease
    summary: dict[str, Any] = {
        "members_answering": len(view.serving), "members": view.total, "quorum": view.has_majority,
        "record_epoch": read.epoch, "primary_dc": read.primary_dc,
        "lease": {"holder": lease.holder, "agent": lease.agent, "seconds_left": lease.remaining}
        if lease is not None and lease.held else None,
        "error": read.error,
        "entrypoint_followers": None if read.followers is None else [follower_json(f, now) for f in read.followers]}
    problems: list[str] = follower_problems(read, now)
    if not view.has_majority:
        problems.append(f"the federation store has no quorum from here: {len(view.serving)} of {view.total} "
                        f"members answer (a majority is {view.majority}): {view.describe()}")
    elif read.error is not None:
        problems.append(f"the federation store could not be read: {read.error}")
    elif not read.initialised:
        problems.append("the federation store holds no record yet: run `fedctl store init`, or `fedctl adopt` for "
                        "clusters fedctl has not managed yet")
    elif lease is not None and read.primary_dc is not None:
        if not lease.held:
            problems.append(f"the primary DC {read.primary_dc} holds no live lease in the federation store: its "
                            "agents fence it (is its active agent running and reaching the store?)")
        elif lease.holder != read.primary_dc:
            problems.append(f"the primary-DC lease is held by {lease.holder}, but the store's record names "
                            f"{read.primary_dc}")
    return summary, problems


def follower_json(follower: FollowerReport, now: float) -> dict[str, Any]:
    return {**follower.model_dump(mode="json"), "live": follower.live(now), "age_s": round(follower.age(now), 1),
            "line": describe_follower(follower, now)}


def follower_problems(read: StoreRead, now: float) -> list[str]:
    problems = []
    if read.followers_error is not None:
        problems.append(f"the entrypoint followers could not be read from the federation store: {read.followers_error}")
    for follower in read.followers or ():
        if not follower.live(now):
            problems.append(f"entrypoint follower {follower.id} has not reported for {follower.age(now):.0f} s: "
                            "switchover-dc cannot pause its PgBouncer; is `fedctl entrypoint follow` running there? "
                            "(a follower stopped for good removes its registration when it exits)")
        elif follower.state is not FollowerState.FOLLOWING and follower.blocking:
            problems.append(f"entrypoint follower {follower.id}: PAUSE waits for {', '.join(follower.blocking)}")
    return problems


def followers_lines(summary: dict[str, Any]) -> list[str]:
    """The table's lines for the entrypoint followers (none when the store was not read or has none)."""
    followers = summary.get("entrypoint_followers") or []
    return [f"  {f['line']}" for f in followers]


def store_line(summary: dict[str, Any]) -> str:
    """One line for the status table."""
    if "members" not in summary:
        return f"Federation store: not readable ({summary.get('error')})"
    text = f"Federation store: {summary['members_answering']} of {summary['members']} members answer"
    if not summary["quorum"]:
        return text + " (no quorum from here)"
    if summary["error"]:
        return text + "; not readable (see problems)"
    if summary["record_epoch"] is None:
        return text + "; no record yet"
    text += f"; record epoch {summary['record_epoch']} (primary DC {summary['primary_dc']})"
    lease = summary["lease"]
    if lease is None:
        return text + "; lease: nobody holds it"
    left = f", {lease['seconds_left']:g} s left" if lease["seconds_left"] is not None else ""
    return text + f"; lease held by {lease['holder']}{left}"
