"""What one agent knows about its DC's primary-DC lease, built from store answers for lease_policy.

The active agent reports the outcome of each take()/renew(); every other agent reports each
read_lease(). Each call is timed from its start (the caller passes `at`), which is what makes the
sightings conservative (see federation/lease_policy.py). A failed call changes nothing: it confirms nothing,
so the fence deadline simply comes closer.
"""

from __future__ import annotations

from federation.lease_policy import LeaseFacts, Sighting, sighting_from_versions
from federation.store import LeaseView


class LeaseWatch:
    def __init__(self, dc: str, *, ttl: float, started_at: float) -> None:
        self.dc = dc
        self.ttl = ttl
        self.started_at = started_at
        self.sighting: Sighting | None = None
        self.seen_absent_at: float | None = None
        self._previous: tuple[float, int | None] | None = None  # (at, version) of the last read showing it

    def _confirm(self, sighting: Sighting) -> None:
        if self.sighting is None or self.seen_absent_at is not None or sighting.valid_until > self.sighting.valid_until:
            self.sighting = sighting
        self.seen_absent_at = None

    def renewed(self, at: float, view: LeaseView | None) -> None:
        """The active agent's take()/renew() that started at `at` returned `view` (None: not held)."""
        if view is None:
            self.seen_absent_at = at
            return
        self._confirm(Sighting(at, view.remaining if view.remaining is not None else self.ttl))

    def observed(self, at: float, view: LeaseView) -> None:
        """A read_lease() that started at `at` returned `view`."""
        if view.holder != self.dc:
            self.seen_absent_at = at
            self._previous = None
            return
        if view.remaining is not None:
            self._confirm(Sighting(at, view.remaining))
        else:
            previous_at, previous_version = self._previous if self._previous else (None, None)
            found = sighting_from_versions(previous_at, previous_version, at, view.version, self.ttl)
            if found is not None:
                self._confirm(found)
        self._previous = (at, view.version)

    def facts(self, *, record_primary: str | None, active: bool, fenced_at: float | None) -> LeaseFacts:
        return LeaseFacts(dc=self.dc, record_primary=record_primary, active=active, started_at=self.started_at,
                          sighting=self.sighting, seen_absent_at=self.seen_absent_at, fenced_at=fenced_at)
