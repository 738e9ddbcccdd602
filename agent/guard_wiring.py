"""The lease guard built from the agent's settings: the real store, the DC's Patroni and its own DCS."""

from __future__ import annotations

from collections.abc import Callable

from agent.events import NO_EVENTS, EventSink
from agent.fence_marker import DCSMarkers
from agent.lease_guard import LeaseGuard
from agent.observe import KnownRecord, refresh_record
from agent.self_fence import RestPatroni
from agent.settings import AgentSettings
from federation.state import FederationState
from federation.store import FederationStore
from federation.store_config import LEASE_CHECK_SECONDS

CACHE_TIMEOUT = 1.0


class CachedRecord:
    """The per-DC copies, read when the store does not answer (highest epoch, never going backwards)."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.known: KnownRecord | None = None

    def __call__(self) -> FederationState | None:
        self.known = refresh_record(self.settings.topo, self.known, CACHE_TIMEOUT)
        return self.known.state if self.known else None


def store_deadline(ttl: float, margin: float) -> float:
    """A store call may take this long. Short: a call sent during a cut hangs to its deadline even when the
    cut heals meanwhile, and the first answer after the heal must come before the fence deadline (a few
    seconds after a short cut). A healthy store answers in milliseconds, a WAN round trip in well under this."""
    return max(0.5, min(LEASE_CHECK_SECONDS, (ttl - margin) / 4))


def open_guard(settings: AgentSettings, active: Callable[[], bool],
               on_fence: Callable[[], None] = lambda: None, events: EventSink = NO_EVENTS) -> LeaseGuard | None:
    """The guard when the topology names a federation store; None without one (nothing changes then)."""
    config = settings.topo.federation_store
    if config is None:
        return None
    store = FederationStore(config, settings.topo.federation,
                            deadline=store_deadline(config.lease_ttl, config.fencing_margin))
    return LeaseGuard(dc=settings.dc.name, identity=settings.identity, store=store,
                      lease=store.primary_lease(settings.dc.name, settings.identity),
                      patroni=RestPatroni(settings.dc), markers=DCSMarkers(settings.topo, settings.dc),
                      ttl=config.lease_ttl, margin=config.fencing_margin, active=active,
                      cached_record=CachedRecord(settings), on_fence=on_fence, events=events)
