"""The agent's eyes: one cycle's reads, done in parallel, none of which raises for an unreachable part.

Reads every DC's copy of the federation record, the own DC's members (REST) and Patroni config (own
DCS), then the upstream DC's members. The record never goes backwards: a newer epoch seen once is kept
when the DC that held it stops answering ("keep the last known upstream").
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from agent.decide import Observation
from federation.dcs import connect
from federation.dcs.patroni_keys import config_key
from federation.errors import DCSError
from federation.operations.common import DCLook, look_at
from federation.state import FederationState, StateCopy, newest, read_copies
from federation.topology import Datacenter, Topology

REST_TIMEOUT = 1.5
DCS_TIMEOUT = 1.5


@dataclass(frozen=True)
class KnownRecord:
    """The newest record this agent has seen so far, and whether any DC actually held it."""

    state: FederationState
    written: bool


def read_config(dc: Datacenter) -> dict[str, Any]:
    """The DC's Patroni dynamic config straight from its DCS ({} when not bootstrapped yet)."""
    with connect(dc, timeout=DCS_TIMEOUT) as dcs:
        found = dcs.get(config_key(dc))
    if found is None:
        return {}
    try:
        value = json.loads(found.value)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def merge_record(topo: Topology, copies: list[StateCopy], known: KnownRecord | None) -> KnownRecord:
    written = any(c.state is not None for c in copies)
    current = KnownRecord(newest(topo, copies), written)
    if known is not None and known.written and (not written or known.state.epoch > current.state.epoch):
        return known
    return current


def refresh_record(topo: Topology, known: KnownRecord | None, timeout: float = DCS_TIMEOUT) -> KnownRecord | None:
    """Every DC's copy read and merged into `known` (highest epoch wins, never going backwards); `known`
    unchanged when no DC answers."""
    copies = read_copies(topo, None, timeout)
    return merge_record(topo, copies, known) if any(c.reachable for c in copies) else known


def observe(topo: Topology, dc: Datacenter, known: KnownRecord | None) -> tuple[Observation, KnownRecord | None]:
    """One cycle's observation and the record to remember for the next one."""
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="agent-observe") as pool:
        copies_f = pool.submit(read_copies, topo, None, DCS_TIMEOUT)
        own_f = pool.submit(look_at, dc, REST_TIMEOUT)
        config_f = pool.submit(read_config, dc)
        copies = copies_f.result()
        own_look = own_f.result()
        try:
            config: dict[str, Any] | None = config_f.result()
            config_error = None
        except DCSError as exc:
            config, config_error = None, exc.message
    own_copy = next(c for c in copies if c.dc == dc.name)
    own_error = own_copy.error or config_error
    if own_copy.error is None:
        known = merge_record(topo, copies, known)
    record = known.state if known else None
    upstream_name = record.upstream_of(dc.name) if record else None
    upstream: DCLook | None = look_at(topo.dc(upstream_name), REST_TIMEOUT) if upstream_name else None
    obs = Observation(
        dc=dc.name, record=record, record_written=known.written if known else False,
        own_epoch=own_copy.state.epoch if own_copy.state else None, own_dcs_error=own_error,
        unreachable_peers=tuple(c.dc for c in copies if c.dc != dc.name and not c.reachable),
        own=own_look, config=config, upstream=upstream)
    return obs, known
