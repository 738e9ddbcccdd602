"""Whether each DC's DCS still answers the backup-host agent, probed in threads of its own.

The backup-host agent touches a DC's DCS only around a job run (its run claim, its result), hours apart, so
that tells nothing about now; and /health must answer at once, without opening a DCS per request. So one
thread per DC reads the key the agent records its results in every `every` seconds and keeps when it last
answered, and the last error. /health and fedctl_backup_host_dcs_up read only that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from federation.errors import FedError

log = logging.getLogger("agent.dcs_watch")

PROBE_SECONDS = 5.0
Probe = Callable[[], None]  # one read of the DC's DCS; raises when it does not answer


@dataclass(frozen=True)
class Sighting:
    answered_at: float | None = None  # monotonic time of the last answer; None: never answered
    error: str | None = None  # the last probe's error; None when it answered


class DcsWatch:
    def __init__(self, probes: Mapping[str, Probe], *, every: float = PROBE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._probes = dict(probes)
        self.every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._seen = {dc: Sighting(error="no answer yet") for dc in self._probes}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def dcs(self) -> list[str]:
        return list(self._probes)

    def start(self) -> None:
        for dc in self._probes:
            thread = threading.Thread(target=self._watch, args=(dc,), name=f"dcs-watch-{dc}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _watch(self, dc: str) -> None:
        while not self._stop.is_set():
            self.probe(dc)
            self._stop.wait(self.every)

    def probe(self, dc: str) -> None:
        """Read `dc`'s DCS once and keep the outcome (the threads call it; so can a test)."""
        try:
            self._probes[dc]()
        except FedError as exc:
            self._saw(dc, error=exc.message)
        except Exception as exc:  # the watch thread must outlive any one probe
            log.exception("probing the DCS of %s failed unexpectedly (please report it as a BUG)", dc)
            self._saw(dc, error=str(exc) or type(exc).__name__)
        else:
            self._saw(dc, error=None)

    def _saw(self, dc: str, *, error: str | None) -> None:
        with self._lock:
            before = self._seen[dc]
            if error is None:
                self._seen[dc] = Sighting(self._clock(), None)
            else:
                self._seen[dc] = Sighting(before.answered_at, error)
        if error != before.error and error is not None:
            log.warning("the DCS of %s does not answer: %s", dc, error)
        elif error is None and before.error is not None and before.answered_at is not None:
            log.info("the DCS of %s answers again", dc)

    def sighting(self, dc: str) -> Sighting:
        with self._lock:
            return self._seen[dc]

    def answered_within(self, dc: str, seconds: float) -> bool:
        seen = self.sighting(dc)
        return seen.answered_at is not None and self._clock() - seen.answered_at <= seconds

    def silent(self, seconds: float) -> dict[str, str]:
        """{DC: why} for every DC whose DCS has not answered within `seconds`."""
        return {dc: self.sighting(dc).error or f"no answer for over {seconds:g} s" for dc in self._probes
                if not self.answered_within(dc, seconds)}
