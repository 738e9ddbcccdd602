"""PgBouncer's PAUSE and RESUME around a planned switchover, for the entrypoint follower.

`PAUSE` makes PgBouncer hold every client's next transaction and returns once the running ones have
finished (transaction pooling); `RESUME` lets them go on. Between the two the follower points PgBouncer at
the new primary, so clients see a pause instead of "read-only transaction" errors from the demoted
source. PAUSE can wait for a long transaction, so it runs in a thread of its own: the follower's loop
keeps observing and says `pausing` (with how many transactions still run) until PgBouncer confirms.

When to pause is read from the federation record (`pausing_switchover`): a switchover announces its
`pause-clients` step in every DC's copy before it demotes the source, and the copies move on only at
the epoch raise. A pause never outlives MAX_PAUSE: a switchover that crashed mid-way, or a follower that
missed its end, must not hold the clients for ever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agent import pgbouncer_admin
from federation.errors import FedError
from federation.follower_registry import FOLLOWING, PAUSED, PAUSING
from federation.state import FederationState

log = logging.getLogger("agent.entrypoint")
MAX_PAUSE = 20.0
# The steps of a switchover, as the record's copies show them, during which clients are held.
PAUSED_STEPS = frozenset({"pause-clients", "demote", "token", "catch-up", "epoch"})

Command = Callable[[str, str, str | None], list[dict[str, str | None]]]


def pausing_switchover(record: FederationState) -> str | None:
    """The id of the switchover that wants PgBouncer paused now, None when none does."""
    op = record.operation
    if op is None or op.kind != "switchover" or op.rollback or not op.id:
        return None
    if op.step not in PAUSED_STEPS or record.primary_dc != op.source:
        return None  # not yet announced, or past the epoch raise (the copies name the new primary DC)
    return op.id


class PgBouncerPause:
    """One PgBouncer's pause: at most one at a time, for one switchover."""

    def __init__(self, admin: str, password: Callable[[], str | None], *,
                 command: Command = pgbouncer_admin.admin_rows, clock: Callable[[], float] = time.monotonic) -> None:
        self.admin = admin
        self.password = password
        self.command = command
        self.clock = clock
        self.operation: str | None = None
        self.started = 0.0
        self._done = threading.Event()
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self.resumed: set[str] = set()  # switchovers already paused for and resumed: never paused again

    def pause(self, operation: str) -> None:
        if self.operation == operation or operation in self.resumed:
            return
        self.operation, self.started, self._error = operation, self.clock(), None
        self._done.clear()
        self._thread = threading.Thread(target=self._pause, name="pgbouncer-pause", daemon=True)
        self._thread.start()

    def _pause(self) -> None:
        try:
            self.command(self.admin, "PAUSE", self.password())
        except FedError as exc:
            self._error = exc.message
        finally:
            self._done.set()

    @property
    def seconds(self) -> float:
        return self.clock() - self.started if self.operation is not None else 0.0

    @property
    def overdue(self) -> bool:
        return self.operation is not None and self.seconds > MAX_PAUSE

    def state(self) -> tuple[str, str]:
        """(following | pausing | paused, what a pause waits for or why it failed)."""
        if self.operation is None:
            return FOLLOWING, ""
        if not self._done.is_set():
            return PAUSING, self._busy()
        if self._error is not None:
            return PAUSING, f"PAUSE failed: {self._error}"
        return PAUSED, f"for {self.seconds:.1f} s"

    def _busy(self) -> str:
        try:
            rows = self.command(self.admin, "SHOW POOLS", self.password())
        except FedError as exc:
            return f"waiting for PAUSE (SHOW POOLS: {exc.message})"
        active = sum(int(row.get("sv_active") or 0) for row in rows if row.get("database") != "pgbouncer")
        return f"waiting for {active} running transaction(s) to finish"

    def resume(self, why: str) -> None:
        """RESUME (also cancels a PAUSE still waiting); the switchover is never paused for again."""
        if self.operation is None:
            return
        try:
            self.command(self.admin, "RESUME", self.password())
        except FedError as exc:
            if "not paused" not in exc.message:
                raise
        log.info("PgBouncer resumed after %.1f s: %s", self.seconds, why)
        self.resumed.add(self.operation)
        self.operation = None
        if self._thread is not None:
            self._thread.join(timeout=2)
