"""switchover-dc's side of the client pause: ask the entrypoint followers to hold transactions, and wait.

The followers (agent.entrypoint_pause) PAUSE their PgBouncer when asked and RESUME by themselves once
they point at the new primary DC's writable leader; switchover-dc waits only a bounded time for their
answers and never for a follower that is silent or held up: it reports them and goes on (their clients
then see the errors they would have seen without a pause). The request is withdrawn at the end of the
switchover, of its rollback, and of an abort.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from federation.entrypoint_registry import (
    FollowerReport,
    FollowerState,
    KeyStore,
    PauseRequest,
    clear_pause,
    read_followers,
    read_pause,
    request_pause,
)
from federation.errors import FedError
from federation.topology import Topology

# For every live follower to say it paused: its next look (every 0.5 s by default) and the end of the
# transactions running then. A transaction still running at the bound is cut by the demotion.
PAUSE_WAIT = 2.0
RELEASE_WAIT = 3.0  # for every follower that paused to say it resumed
POLL = 0.02


class ClientPause(Protocol):
    def pause(self, request: PauseRequest) -> str:
        """Ask every live follower to hold transactions; return once they answered or the bound passed."""

    def requested(self, operation: str) -> bool:
        """A pause request of `operation` is in the store (its pause step is done)."""

    def release(self, operation: str) -> str:
        """Withdraw the request; wait (bounded) until the followers that paused for it resumed."""


class NoClientPause:
    """No federation store: no follower can be asked."""

    def pause(self, request: PauseRequest) -> str:
        return "no federation store: entrypoint followers cannot be paused (clients see errors meanwhile)"

    def requested(self, operation: str) -> bool:
        return False

    def release(self, operation: str) -> str:
        return "nothing to release"


class StoreClientPause:
    def __init__(self, store: KeyStore, *, pause_wait: float = PAUSE_WAIT, release_wait: float = RELEASE_WAIT,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.pause_wait = pause_wait
        self.release_wait = release_wait
        self.clock = clock

    def live(self) -> list[FollowerReport]:
        now = self.clock()
        return [f for f in read_followers(self.store) if f.live(now)]

    def pause(self, request: PauseRequest) -> str:
        followers = self.live()
        if not followers:
            return "no entrypoint follower is registered: nothing to pause"
        request_pause(self.store, request)
        deadline = time.monotonic() + self.pause_wait
        while True:
            seen = {f.id: f for f in self.live()}
            waiting = [f.id for f in followers if f.id not in seen or not seen[f.id].settled(request.operation)]
            if not waiting or time.monotonic() >= deadline:
                return pause_summary(followers, seen, request.operation, self.pause_wait)
            time.sleep(POLL)

    def requested(self, operation: str) -> bool:
        found = read_pause(self.store)
        return found is not None and found.operation == operation

    def release(self, operation: str) -> str:
        clear_pause(self.store)
        deadline = time.monotonic() + self.release_wait
        while True:
            held = [f for f in self.live() if f.operation == operation and f.state is not FollowerState.FOLLOWING]
            if not held or time.monotonic() >= deadline:
                break
            time.sleep(POLL)
        return release_summary(self.live(), operation)


def pause_summary(asked: list[FollowerReport], seen: dict[str, FollowerReport], operation: str, wait: float) -> str:
    parts = []
    for follower in asked:
        now = seen.get(follower.id)
        if now is None or not now.answers(operation):
            parts.append(f"{follower.id} did not answer within {wait:g} s (its clients may see errors)")
        elif now.state is FollowerState.PAUSING:
            blocking = ", ".join(now.blocking) or "a running transaction"
            parts.append(f"{follower.id} is still waiting for {blocking} (that client sees the demotion's error)")
        else:
            parts.append(f"{follower.id} paused")
    return "; ".join(parts)


def release_summary(followers: list[FollowerReport], operation: str) -> str:
    released = [f for f in followers if f.last_operation == operation and f.last_hold is not None]
    held = [f.id for f in followers if f.operation == operation and f.state is not FollowerState.FOLLOWING]
    parts = [f"{f.id} held transactions {f.last_hold:.2f} s" for f in released]
    if held:
        parts.append(f"still holding: {', '.join(held)} (they release at the request's bound)")
    return "; ".join(parts) or "no follower had paused"


def client_pause_for(topo: Topology) -> ClientPause:
    if topo.federation_store is None:
        return NoClientPause()
    from federation.store import FederationStore

    # Its reads and writes follow each other every few tens of milliseconds: one probe of the members serves
    # for a second of them (journal.OPERATION_QUORUM_REUSE).
    return StoreClientPause(FederationStore(topo.federation_store, topo.federation, deadline=1.0, quorum_reuse=1.0))


def quietly_release(pause: ClientPause, operation: str) -> str:
    """Release, but never fail the operation for it: the followers release at the bound anyway."""
    try:
        return pause.release(operation)
    except FedError as exc:
        return f"could not withdraw the pause request ({exc.message}); followers release clients at its bound"
