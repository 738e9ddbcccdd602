"""Samples of each upstream DC's WAL position, kept in the sampling DC's own DCS.

A standby DC's agent samples its upstream leader's current LSN every few seconds. When the upstream
is lost, the newest sample is the best knowledge of how far it had written: promote-dc compares it
with what the target received to estimate the data loss, and says how old the sample is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from federation.dcs import connect
from federation.errors import DCSError
from federation.lsn import format_lsn, parse_lsn
from federation.topology import Datacenter, Topology


@dataclass(frozen=True)
class LsnSample:
    dc: str
    member: str
    lsn: int
    time: str
    sampled_by: str
    bytes_per_second: float = 0.0
    interval_seconds: float = 2.0

    @property
    def taken_at(self) -> datetime:
        return datetime.fromisoformat(self.time)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "lsn": format_lsn(self.lsn)})

    @classmethod
    def from_json(cls, raw: str) -> LsnSample | None:
        try:
            data = json.loads(raw)
            return cls(str(data["dc"]), str(data["member"]), parse_lsn(data["lsn"]), str(data["time"]),
                       str(data["sampled_by"]), float(data.get("bytes_per_second", 0.0)),
                       float(data.get("interval_seconds", 2.0)))
        except (ValueError, KeyError, TypeError):
            return None


def sample_key(topo: Topology, holder: Datacenter, sampled_dc: str) -> str:
    return f"{holder.dcs.namespace}_fedctl/{topo.federation}/samples/{sampled_dc}"


def store_sample(topo: Topology, holder: Datacenter, sample: LsnSample) -> LsnSample:
    """Store `sample`, with the WAL rate since the previous sample of the same DC. Returns what was stored."""
    key = sample_key(topo, holder, sample.dc)
    with connect(holder) as dcs:
        found = dcs.get(key)
        previous = LsnSample.from_json(found.value) if found else None
        if previous is not None and previous.dc == sample.dc:
            elapsed = (sample.taken_at - previous.taken_at).total_seconds()
            if elapsed > 0 and sample.lsn >= previous.lsn:
                sample = replace(sample, bytes_per_second=(sample.lsn - previous.lsn) / elapsed)
        dcs.put(key, sample.to_json())
    return sample


def newest_sample(topo: Topology, sampled_dc: str) -> LsnSample | None:
    """The newest sample of `sampled_dc` held by any reachable DC other than itself."""
    found: list[LsnSample] = []
    for holder in topo.datacenters:
        if holder.name == sampled_dc:
            continue
        try:
            with connect(holder, timeout=1.5) as dcs:
                raw = dcs.get(sample_key(topo, holder, sampled_dc))
        except DCSError:
            continue
        sample = LsnSample.from_json(raw.value) if raw else None
        if sample is not None:
            found.append(sample)
    return max(found, key=lambda s: (s.lsn, s.time)) if found else None
