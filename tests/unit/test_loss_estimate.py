"""promote-dc's data-loss estimate from the newest LSN sample of the lost primary."""

from __future__ import annotations

from datetime import UTC, datetime

from federation.operations.promote import loss_from_sample
from federation.samples import LsnSample

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sample(lsn: int, rate: float) -> LsnSample:
    return LsnSample("dc1", "n1", lsn, T0.isoformat(), "dc2/n3", bytes_per_second=rate, interval_seconds=2.0)


def test_an_idle_primary_that_the_target_had_caught_up_with_loses_nothing() -> None:
    estimate = loss_from_sample("dc1", sample(1000, 0.0), 1000, None, T0.timestamp() + 1.5)
    assert estimate.bytes == 0 and estimate.seconds == 0.0


def test_wal_the_target_never_received_plus_one_interval_at_the_measured_rate() -> None:
    estimate = loss_from_sample("dc1", sample(5000, 1000.0), 4000, None, T0.timestamp() + 1.0)
    assert estimate.bytes == 1000 + 1000  # 1000 behind the sample, plus 1 s at 1000 B/s
    assert estimate.seconds == 2.0


def test_writes_that_began_after_the_last_sample_still_count() -> None:
    # The sample saw no WAL rate, but the target received 300 kB in the 3 s since: the primary was writing.
    estimate = loss_from_sample("dc1", sample(100_000, 0.0), 400_000, None, T0.timestamp() + 3.0)
    assert estimate.bytes == 200_000  # 100 kB/s for one sampling interval (2 s)
    assert estimate.sample_age_seconds == 3.0


def test_a_burst_in_the_last_minute_counts_even_when_the_last_interval_was_calm() -> None:
    from dataclasses import replace

    from federation.samples import PEAK_HALF_LIFE, with_rate

    def at(seconds: float, lsn: int) -> LsnSample:
        return replace(sample(lsn, 0.0), time=datetime.fromtimestamp(T0.timestamp() + seconds, UTC).isoformat())

    burst = with_rate(at(2, 300_000), at(0, 100_000), 2.0)  # 100 kB/s
    calm = with_rate(at(4, 320_000), burst, 2.0)  # 10 kB/s
    assert calm.bytes_per_second == 10_000
    decayed = 100_000 * 0.5 ** (2.0 / PEAK_HALF_LIFE)
    assert abs(calm.peak_bytes_per_second - decayed) < 1
    estimate = loss_from_sample("dc1", calm, calm.lsn, None, T0.timestamp() + 5.0)
    assert estimate.bytes is not None and estimate.bytes >= decayed, "one second counted at the burst's rate"
    too_soon = with_rate(at(4.2, 400_000), calm, 0.2)  # 80 kB in 0.2 s: noise, not a rate
    assert (too_soon.bytes_per_second, too_soon.peak_bytes_per_second) == (10_000, calm.peak_bytes_per_second)
    much_later = with_rate(at(4 + 4 * PEAK_HALF_LIFE, 330_000), calm, 4 * PEAK_HALF_LIFE)
    assert much_later.peak_bytes_per_second < 100_000 / 15, "a burst long past no longer dominates"
