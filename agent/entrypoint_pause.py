"""The follower's half of a seamless switchover: PAUSE PgBouncer while the primary DC has no writer.

switchover-dc writes a pause request to the federation store before it demotes the source
(federation.entrypoint_registry). The follower PAUSEs its PgBouncer: running transactions finish, new
ones wait inside PgBouncer instead of failing read-only on the demoted source. It RESUMEs as soon as its
database points at a writable leader of a later epoch than the request's, which is the new primary DC's
leader: the held transactions then run there. It also RESUMEs when the request is withdrawn (the
switchover finished, rolled back or was aborted) and, whatever happens, once the request's `hold` has
passed, so that a crashed fedctl or an unreachable store never stalls applications for longer.

PAUSE is answered only once the last running transaction has ended, so it is sent without waiting
(agent.pgbouncer_admin.PendingPause) and the follower's loop looks for the answer, reporting meanwhile
which clients it waits for. A transaction that outlives the switchover's bound is cut by the demotion, as
it would have been without a pause.

`decide` is the pure rule; `PauseHolder` carries it out and publishes the follower's state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from federation.dcs.base import DCS
from federation.entrypoint_registry import (
    HEARTBEAT,
    FollowerReport,
    FollowerState,
    KeyStore,
    PauseRequest,
    pause_key,
    publish,
    read_pause,
    withdraw,
)
from federation.errors import DCSError, FedError
from federation.store import FederationStore

log = logging.getLogger("agent.entrypoint")
PAUSED_INTERVAL = 0.1  # how often the follower looks while it holds clients: each look may release them
# How often, between two cycles, the follower looks whether PgBouncer answered a PAUSE it sent: a look is a
# read on the admin socket, no request; the switchover's demotion waits for the answer to be published.
ANSWER_POLL = 0.01
BLOCKERS_AFTER = 0.3  # a PAUSE still waiting after this long: name the transactions it waits for


class Pausing(Protocol):
    """A PAUSE sent and not answered yet (agent.pgbouncer_admin.PendingPause)."""

    def done(self) -> bool:
        """True once the PAUSE completed, and on every later call."""
        ...

    def close(self) -> None: ...


class Action(Enum):
    NONE = "none"
    PAUSE = "pause"
    RESUME = "resume"


@dataclass(frozen=True)
class Held:
    """The pause in effect: the request it answers and when PAUSE was sent."""

    request: PauseRequest
    since: float


def decide(held: Held | None, request: PauseRequest | None, request_known: bool, handled: frozenset[str],
           target_epoch: int | None, target_writable: bool, now: float) -> tuple[Action, str]:
    """What to do this cycle, and why. `request_known` is False when the store could not be read (then
    only the hold and the target can release clients); `handled`, the requests answered already."""
    if held is None:
        if (request_known and request is not None and request.operation not in handled
                and not request.expired(now)):
            return Action.PAUSE, (f"switchover {request.source} -> {request.target} "
                                  f"({request.operation}) asks to hold transactions")
        return Action.NONE, ""
    if target_writable and target_epoch is not None and target_epoch > held.request.epoch:
        return Action.RESUME, f"PgBouncer points at a writable leader of epoch {target_epoch}"
    if request_known and (request is None or request.operation != held.request.operation):
        return Action.RESUME, "the switchover withdrew its pause request"
    if now >= held.since + held.request.hold:
        return Action.RESUME, (f"held for {held.request.hold:g} s, the request's bound, without a new writable "
                               "leader: releasing clients (they may see errors until there is one)")
    return Action.NONE, ""


@dataclass
class PauseHolder:
    """Carries out `decide` on one PgBouncer and keeps the follower's registration current."""

    store: KeyStore
    follower_id: str
    pgbouncer_name: str  # the admin console's host:port, for status
    pause: Callable[[], Pausing]
    resume: Callable[[], None]
    blockers: Callable[[], list[str]]
    clock: Callable[[], float] = time.time
    peek: Callable[[], PauseRequest | None] | None = None  # a cheap look between cycles (PausePeek)
    held: Held | None = None
    handled: set[str] = field(default_factory=set)
    state: FollowerState = FollowerState.FOLLOWING
    blocking: tuple[str, ...] = ()
    last: tuple[str, float, str] | None = None  # the last request released: its operation, hold, and why
    _pausing: Pausing | None = None
    _published: tuple[object, ...] | None = None
    _published_at: float = 0.0

    def interval(self, normal: float) -> float:
        return PAUSED_INTERVAL if self.held is not None else normal

    def asked(self) -> bool:
        """Between cycles: has a new pause request come (so the follower should look now)?"""
        if self.peek is None or self.held is not None:
            return False
        request = self.peek()
        return (request is not None and request.operation not in self.handled
                and not request.expired(self.clock()))

    def answered(self) -> bool:
        """Between cycles: has PgBouncer answered the PAUSE sent (so the follower should publish it now)? An
        error says yes too: the next cycle takes it in."""
        if self._pausing is None:
            return False
        try:
            return self._pausing.done()
        except FedError:
            return True

    def wake_interval(self, peek: float) -> float:
        """How often to look between cycles: for PgBouncer's answer while a PAUSE waits, else for a request."""
        return ANSWER_POLL if self._pausing is not None else peek

    def step(self, target_epoch: int | None, target: str | None, target_writable: bool) -> None:
        """One cycle, after the follower pointed PgBouncer where the record says."""
        now = self.clock()
        try:
            request, known = read_pause(self.store), True
        except FedError as exc:
            request, known = None, False
            if self.held is not None:
                log.warning("pause: %s (clients stay held at most until the request's bound)", exc.message)
        self._settle_pause()
        action, why = decide(self.held, request, known, frozenset(self.handled), target_epoch, target_writable, now)
        if action is Action.PAUSE and request is not None:
            self._start_pause(request, now, why)
        elif action is Action.RESUME:
            self._resume(why)
        elif self.held is not None and self.state is FollowerState.PAUSING and now - self.held.since > BLOCKERS_AFTER:
            self._find_blockers()
        self._publish(target_epoch, target, target_writable, now)

    def release(self) -> None:
        """On shutdown: never leave clients held; then withdraw the registration."""
        if isinstance(self.peek, PausePeek):
            self.peek.close()
        if self.held is not None:
            self._resume("the follower stops")
        try:
            withdraw(self.store, self.follower_id)
        except FedError as exc:
            log.warning("could not remove this follower's registration: %s", exc.message)

    def _start_pause(self, request: PauseRequest, now: float, why: str) -> None:
        log.info("PAUSE PgBouncer: %s", why)
        try:
            self._pausing = self.pause()
        except FedError as exc:
            log.warning("PAUSE failed, clients are not held: %s", exc.message)
            self.handled.add(request.operation)
            return
        self.held = Held(request, now)
        self.state, self.blocking = FollowerState.PAUSING, ()

    def _settle_pause(self) -> None:
        """Take in the answer to a PAUSE that was sent."""
        if self._pausing is None or self.held is None:
            return
        try:
            if not self._pausing.done():
                return
        except FedError as exc:
            log.warning("PAUSE failed, clients are not held: %s", exc.message)
            self._drop_pausing()
            self.handled.add(self.held.request.operation)
            self.held, self.state = None, FollowerState.FOLLOWING
            return
        self._drop_pausing()
        waited = self.clock() - self.held.since
        log.info("PgBouncer paused after %.3f s: no transaction runs, new ones wait", waited)
        self.state, self.blocking = FollowerState.PAUSED, ()

    def _find_blockers(self) -> None:
        try:
            found = tuple(self.blockers())
        except FedError:
            return
        if found != self.blocking and found:
            log.warning("PAUSE waits for %d transaction(s) to end: %s", len(found), ", ".join(found))
        self.blocking = found

    def _resume(self, why: str) -> None:
        assert self.held is not None
        try:
            self.resume()
        except FedError as exc:
            log.warning("RESUME failed (tried again next cycle): %s", exc.message)
            return
        self._drop_pausing()
        held_for = self.clock() - self.held.since
        log.info("RESUME PgBouncer after holding transactions for %.3f s: %s", held_for, why)
        self.handled.add(self.held.request.operation)
        self.last = (self.held.request.operation, round(held_for, 3), why)
        self.held, self.state, self.blocking = None, FollowerState.FOLLOWING, ()

    def _drop_pausing(self) -> None:
        if self._pausing is not None:
            self._pausing.close()
            self._pausing = None

    def _publish(self, epoch: int | None, target: str | None, writable: bool, now: float) -> None:
        operation = self.held.request.operation if self.held else None
        shown = (self.state, operation, epoch, target, writable, self.blocking, self.last)
        if shown == self._published and now - self._published_at < HEARTBEAT:
            return
        report = FollowerReport(id=self.follower_id, pgbouncer=self.pgbouncer_name, state=self.state,
                                operation=operation, epoch=epoch, target=target, writable=writable,
                                blocking=self.blocking, paused_at=self.held.since if self.held else None,
                                last_operation=self.last[0] if self.last else None,
                                last_hold=self.last[1] if self.last else None,
                                last_release=self.last[2] if self.last else None, heartbeat=now)
        try:
            publish(self.store, report)
        except FedError as exc:
            log.warning("could not publish this follower's state: %s", exc.message)
            return
        self._published, self._published_at = shown, now


class PausePeek:
    """A cheap look for a pause request between two of the follower's cycles: one kept-alive connection to
    the store and a plain read of one key. A stale answer only delays the pause by a cycle (the cycle reads
    the store properly); it can never start one."""

    def __init__(self, store: FederationStore, timeout: float = 0.3) -> None:
        self.store = store
        self.timeout = timeout
        self._dcs: DCS | None = None

    def __call__(self) -> PauseRequest | None:
        try:
            if self._dcs is None:
                self._dcs = self._open()
            found = self._dcs.get(pause_key(self.store))
        except (DCSError, OSError):
            self.close()
            return None
        if found is None:
            return None
        try:
            return PauseRequest.model_validate_json(found.value)
        except ValueError:
            return None

    def _open(self) -> DCS:
        config = self.store.config
        hosts = [(h.host, h.port) for h in config.hosts]
        if config.kind == "etcd3":
            from federation.dcs.etcd3 import EtcdDCS

            return EtcdDCS(hosts, label="federation store", timeout=self.timeout, tls=config.etcd_tls)
        from federation.dcs.zookeeper import ZooKeeperDCS

        return ZooKeeperDCS(hosts, label="federation store", timeout=self.timeout, auth=config.zookeeper_auth)

    def close(self) -> None:
        if self._dcs is not None:
            self._dcs.close()
            self._dcs = None
