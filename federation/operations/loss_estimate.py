"""promote-dc's data-loss estimate: what the old primary DC wrote that the target never received."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from federation.errors import OperationFailed
from federation.lsn import parse_lsn
from federation.operations.common import lsn_text, sql_row
from federation.samples import LsnSample, newest_sample
from federation.topology import Datacenter, Member, Topology


@dataclass(frozen=True)
class LossEstimate:
    old_primary: str
    last_known_lsn: int | None
    sample_age_seconds: float | None
    received_lsn: int
    bytes: int | None
    seconds: float | None
    # With a federation store: the moment (Unix time) from which the old DC acknowledges no write, the
    # end of the window this estimate counts. None: one sampling interval after the sample.
    fence_point: float | None = None
    # What the estimate was computed from, to count it again to a later fence point (promote-dc --force
    # learns its fence point only once the lease is revoked).
    inputs: tuple[LsnSample, float | None, float] | None = field(default=None, compare=False, repr=False)

    def until(self, fence_point: float) -> LossEstimate:
        """The same estimate, counted to `fence_point` instead."""
        if self.inputs is None:
            return replace(self, fence_point=fence_point)
        sample, replayed_at, now = self.inputs
        return loss_from_sample(self.old_primary, sample, self.received_lsn, replayed_at, now,
                                fence_point=fence_point)

    def to_json_dict(self) -> dict[str, Any]:
        data = {"old_primary": self.old_primary, "last_known_lsn": lsn_text(self.last_known_lsn),
                "sample_age_seconds": _round(self.sample_age_seconds), "received_lsn": lsn_text(self.received_lsn),
                "data_loss_estimate_bytes": self.bytes, "data_loss_estimate_seconds": _round(self.seconds)}
        if self.fence_point is not None:
            data["data_loss_counted_until"] = _iso(self.fence_point)
        return data

    def sentence(self) -> str:
        if self.last_known_lsn is None:
            return (f"no LSN sample of {self.old_primary} exists (is the agent running?): the loss cannot be "
                    f"estimated; the target received up to {lsn_text(self.received_lsn)}")
        until = (f", counting what {self.old_primary} could acknowledge until it has certainly fenced "
                 f"({_iso(self.fence_point)})" if self.fence_point is not None else "")
        return (f"{self.old_primary} was last seen at {lsn_text(self.last_known_lsn)} "
                f"{self.sample_age_seconds:.1f} s ago; the target received {lsn_text(self.received_lsn)}: "
                f"up to {self.bytes} bytes (~{self.seconds:.1f} s of writes) may be lost{until}")


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def estimate_loss(topo: Topology, old_primary: str, target: Datacenter, leader: Member,
                  fence_point: float | None = None) -> LossEstimate:
    row = sql_row(topo, leader, "SELECT greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text, "
                                "extract(epoch FROM pg_last_xact_replay_timestamp())")
    if not row or not row[0]:
        raise OperationFailed(f"{leader.name} did not report what it received")
    received = parse_lsn(row[0])
    replayed_at = float(row[1]) if row[1] is not None else None
    sample = newest_sample(topo, old_primary)
    if sample is None:
        return LossEstimate(old_primary, None, None, received, None, None, fence_point)
    return loss_from_sample(old_primary, sample, received, replayed_at, datetime.now(UTC).timestamp(),
                            fence_point=fence_point)


def loss_from_sample(old_primary: str, sample: LsnSample, received: int, replayed_at: float | None,
                     now: float, *, fence_point: float | None = None) -> LossEstimate:
    """What the target lacks of the last known LSN, plus what the old primary may have written after that
    sample at the highest WAL rate of the last few sampling intervals (samples.PEAK_HALF_LIFE): until
    `fence_point` (Unix time) when given, the moment from which it has certainly fenced itself; otherwise
    until its death, at most one sampling interval."""
    sampled = sample.taken_at.timestamp()
    age = max(0.0, now - sampled)
    # The WAL the target received after the sample was written at no less than this rate; a sample taken
    # just before writes began would otherwise report a rate of zero.
    since_sample = max(0, received - sample.lsn) / age if age > 0 else 0.0
    rate = max(sample.worst_rate, since_sample)
    window = max(0.0, fence_point - sampled) if fence_point is not None else min(age, sample.interval_seconds)
    unseen = rate * window
    lost = max(0, sample.lsn - received) + math.ceil(unseen)
    seconds: float | None
    if lost == 0:
        seconds = 0.0
    elif rate > 0:
        seconds = lost / rate
    else:
        seconds = max(0.0, sampled - replayed_at) if replayed_at else None
    return LossEstimate(old_primary, sample.lsn, age, received, lost, seconds, fence_point,
                        (sample, replayed_at, now))


