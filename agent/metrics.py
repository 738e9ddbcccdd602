"""The agent's Prometheus metrics, in a registry of its own (one per agent, so tests can run several).

Gauges hold what the last reconcile cycle saw; NaN means "unknown" (never observed, or not a standby).
Only the active agent of a DC observes, so a standby agent's gauges keep their last values and
`fedctl_agent_active` says which one to believe.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

PHASES = ("lease", "observe", "record", "decide", "act", "sample", "metrics")
ROLES = ("primary", "standby", "unknown")


class AgentMetrics:
    def __init__(self, federation: str, dc: str, member: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        self._last_sample: float | None = None
        r = self.registry
        info = Gauge("fedctl_agent_info", "Constant 1, labelled with who this agent is.",
                     ["federation", "dc", "member"], registry=r)
        info.labels(federation, dc, member).set(1)
        self.active = Gauge("fedctl_agent_active", "1 while this agent holds its DC's lease and acts.", registry=r)
        self.dcs_up = Gauge("fedctl_agent_own_dcs_up", "1 when the DC's own DCS answered the last access.", registry=r)
        self.role = Gauge("fedctl_dc_role", "1 for the DC's role as the last cycle saw it.", ["role"], registry=r)
        self.epoch = Gauge("fedctl_federation_epoch", "Epoch of the newest federation record seen.", registry=r)
        self.lag_bytes = Gauge("fedctl_cross_dc_lag_bytes",
                               "Bytes the DC's leader is behind its upstream DC's leader (NaN: unknown).", registry=r)
        self.lag_seconds = Gauge("fedctl_cross_dc_lag_seconds",
                                 "Seconds since the last transaction the DC's leader replayed while it is "
                                 "behind its upstream (0 when caught up; NaN: unknown).", registry=r)
        self.sample_age = Gauge("fedctl_upstream_lsn_sample_age_seconds",
                                "Seconds since this agent last stored an LSN sample of its upstream DC "
                                "(NaN: none yet).", registry=r)
        self.sample_age.set_function(self._sample_age)
        self.upstream_up = Gauge("fedctl_upstream_dc_reachable", "1 when a member of the upstream DC answered.",
                                 registry=r)
        self.peers_unreachable = Gauge("fedctl_peer_dcs_unreachable",
                                       "Peer DCs whose DCS did not answer the last record read.", registry=r)
        self.lease_held = Gauge("fedctl_agent_primary_lease_held",
                                "1 while this agent holds the primary-DC lease in the federation store.", registry=r)
        self.fenced = Gauge("fedctl_agent_fenced", "1 while this agent's DC is self-fenced (GET /primary says no).",
                            registry=r)
        self.lease_sighting_age = Gauge("fedctl_agent_lease_sighting_age_seconds",
                                        "Seconds since this agent last saw its DC's primary-DC lease confirmed "
                                        "(NaN: never, or no federation store).", registry=r)
        self.lease_sighting_age.set(math.nan)
        self.gate_installed = Gauge("fedctl_agent_gate_installed", "1 when this member's Patroni config runs the "
                                    "federation's promotion gate for its DC as pre_promote, 0 when not (missing or "
                                    "another DC's), NaN when the agent cannot tell.", registry=r)
        self.gate_installed.set(math.nan)
        self.self_fences = Counter("fedctl_agent_self_fences", "Times this agent fenced its own DC because the "
                                   "primary-DC lease could not be confirmed in time.", registry=r)
        self.fencing = Counter("fedctl_fencing_events", "Times this agent demoted its replaced DC (rejoin-dc).",
                               registry=r)
        self.actions = Counter("fedctl_agent_actions", "Decisions carried out, by action.", ["action"], registry=r)
        self.errors = Counter("fedctl_agent_loop_errors", "Unexpected errors, by reconcile-loop phase.", ["phase"],
                              registry=r)
        self.event_write_errors = Counter("fedctl_agent_event_write_errors", "Events this agent could not write "
                                          "to its events log (agent/events.py): each one is missing from fedctl "
                                          "events.", registry=r)
        self.cycles = Counter("fedctl_agent_cycles", "Reconcile cycles run while active.", registry=r)
        self.cycle_seconds = Gauge("fedctl_agent_cycle_seconds", "Duration of the last reconcile cycle.", registry=r)
        for phase in PHASES:
            self.errors.labels(phase)
        for action in ("repoint", "fence"):
            self.actions.labels(action)
        for gauge in (self.epoch, self.lag_bytes, self.lag_seconds):
            gauge.set(math.nan)
        self.set_role("unknown")

    def _sample_age(self) -> float:
        return math.nan if self._last_sample is None else self._clock() - self._last_sample

    def sampled(self) -> None:
        self._last_sample = self._clock()

    def set_role(self, role: str) -> None:
        for name in ROLES:
            self.role.labels(name).set(1 if name == role else 0)

    def set_lag(self, lag_bytes: int | None, lag_seconds: float | None) -> None:
        self.lag_bytes.set(math.nan if lag_bytes is None else lag_bytes)
        self.lag_seconds.set(math.nan if lag_seconds is None else lag_seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
