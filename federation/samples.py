"""Samples of each upstream DC's WAL position, kept in the sampling DC's own DCS.

A standby DC's agent samples its upstream leader's current LSN every few seconds. When the upstream
is lost, the newest sample is the best knowledge of how far it had written: promote-dc compares it
with what the target received to estimate the data loss, and says how old the sample is.

Each sample carries the WAL rate since the previous one and a peak rate that decays by half every
PEAK_HALF_LIFE seconds: the estimate counts what the lost DC may have written after its last sample at
that peak, because the rate of a single interval is noisy (full-page images after a checkpoint, a loaded
host): on a loaded 2-core machine the partition drill lost 1.3 times what the last interval's rate
predicted for the same window.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from federation.dcs import connect
from federation.errors import DCSError
from federation.lsn import format_lsn, parse_lsn
from federation.topology import Datacenter, Topology

PEAK_HALF_LIFE = 10.0
MIN_RATE_INTERVAL = 0.5  # seconds; a rate over less is mostly noise (two agents sampling in turn)


@dataclass(frozen=True)
class LsnSample:
    dc: str
    member: str
    lsn: int
    time: str
    sampled_by: str
    bytes_per_second: float = 0.0
    interval_seconds: float = 2.0
    peak_bytes_per_second: float = 0.0

    @property
    def worst_rate(self) -> float:
        return max(self.bytes_per_second, self.peak_bytes_per_second)

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
                       float(data.get("interval_seconds", 2.0)), float(data.get("peak_bytes_per_second", 0.0)))
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
            if elapsed >= 0 and sample.lsn >= previous.lsn:
                sample = with_rate(sample, previous, elapsed)
        dcs.put(key, sample.to_json())
    return sample


def with_rate(sample: LsnSample, previous: LsnSample, elapsed: float) -> LsnSample:
    """`sample` with the rate since `previous` (taken `elapsed` seconds before) and the decayed peak; the
    previous figures when the two are too close together to tell a rate."""
    if elapsed < MIN_RATE_INTERVAL:
        return replace(sample, bytes_per_second=previous.bytes_per_second,
                       peak_bytes_per_second=previous.peak_bytes_per_second)
    rate = (sample.lsn - previous.lsn) / elapsed
    decayed = previous.worst_rate * math.pow(0.5, elapsed / PEAK_HALF_LIFE)
    return replace(sample, bytes_per_second=rate, peak_bytes_per_second=max(rate, decayed))


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
