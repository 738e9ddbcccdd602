"""The per-job run claim in the DC's DCS: at most one agent runs a given job at a time.

The lease already keeps one scheduler running per DC, but during a lease hand-over the old agent's run
may still be going when the new agent's scheduler fires. Each run therefore first creates
`<namespace>_fedctl/<federation>/jobs/<dc>/<job>/running` (create-if-absent) with its agent identity and
start time, and deletes it when done. A claim older than the job's timeout belongs to an agent that died
mid-run: it is replaced with compare-and-set, so two agents cannot both take over the same stale claim.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from federation.dcs.base import DCS, Versioned

log = logging.getLogger("agent.jobs")


@dataclass(frozen=True)
class Holder:
    identity: str
    started: datetime | None  # None when the claim does not parse: treated as stale

    def stale(self, now: datetime, timeout: float) -> bool:
        return self.started is None or now - self.started > timedelta(seconds=timeout)


def _holder(found: Versioned) -> Holder:
    try:
        data = json.loads(found.value)
        return Holder(str(data["identity"]), datetime.fromisoformat(data["started"]))
    except (ValueError, KeyError, TypeError):
        return Holder("an unreadable claim", None)


class RunClaim:
    def __init__(self, key: str, identity: str) -> None:
        self.key = key
        self.identity = identity
        self._value: str | None = None

    def acquire(self, dcs: DCS, now: datetime, timeout: float) -> Holder | None:
        """Take the claim; None when taken, else who holds it. Raises DCSError when the DCS fails."""
        value = json.dumps({"identity": self.identity, "started": now.isoformat()})
        for _ in range(2):  # a second go when the holder released between our create and our get
            if dcs.create(self.key, value):
                self._value = value
                return None
            found = dcs.get(self.key)
            if found is None:
                continue
            holder = _holder(found)
            if not holder.stale(now, timeout):
                return holder
            if dcs.replace(self.key, value, found.version):
                log.warning("took over the stale run claim %s of %s (started %s, job timeout %s s)", self.key,
                            holder.identity, holder.started.isoformat() if holder.started else "unknown", timeout)
                self._value = value
                return None
            return _holder(dcs.get(self.key) or found)
        return Holder("another agent (the claim keeps changing)", None)

    def release(self, dcs: DCS) -> None:
        """Remove the claim if it is still ours (a stale takeover may have replaced it)."""
        if self._value is None:
            return
        found = dcs.get(self.key)
        if found is not None and found.value == self._value:
            dcs.delete(self.key, found.version)
        self._value = None
