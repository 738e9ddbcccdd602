"""Judging a primary's archiver state (pg_stat_archiver, .ready backlog) without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backup.archive_check import ArchiverStats, archiver_findings

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def stats(**changes: object) -> ArchiverStats:
    base = {"archive_mode": "on", "last_archived_wal": "000000010000000000000009",
            "last_archived_time": NOW - timedelta(seconds=30), "failed_count": 0, "last_failed_wal": None,
            "last_failed_time": None, "ready": [], "current_wal": "00000001000000000000000A", "now": NOW}
    base.update(changes)
    return ArchiverStats(**base)  # type: ignore[arg-type]


def test_healthy_archiver_reports_age_and_backlog() -> None:
    [finding] = archiver_findings(stats())
    assert finding.ok
    assert "last archived 000000010000000000000009 30 s ago; 0 segment(s) waiting" in finding.message


def test_failure_older_than_the_last_success_is_fine() -> None:
    [finding] = archiver_findings(stats(failed_count=3, last_failed_wal="000000010000000000000001",
                                        last_failed_time=NOW - timedelta(hours=1)))
    assert finding.ok


def test_failure_newer_than_the_last_success_is_a_problem() -> None:
    found = archiver_findings(stats(failed_count=4, last_failed_wal="00000001000000000000000A",
                                    last_failed_time=NOW - timedelta(seconds=2)))
    assert [f.ok for f in found] == [False]
    assert "archive_command is failing: last failure on 00000001000000000000000A" in found[0].message


def test_failure_without_any_success_is_a_problem() -> None:
    found = archiver_findings(stats(last_archived_wal=None, last_archived_time=None, failed_count=1,
                                    last_failed_wal="000000010000000000000001", last_failed_time=NOW))
    assert not found[0].ok and "last success (never)" in found[0].message


def test_old_ready_backlog_is_a_problem_and_a_fresh_one_is_not() -> None:
    fresh = [("00000001000000000000000A", NOW - timedelta(seconds=5))]
    assert archiver_findings(stats(ready=fresh))[0].ok
    stuck = [("00000001000000000000000B", NOW - timedelta(seconds=10)),
             ("00000001000000000000000A", NOW - timedelta(seconds=400))]
    [finding] = archiver_findings(stats(ready=stuck), max_ready_age=120)
    assert not finding.ok
    assert "2 WAL segment(s) wait to be archived (.ready), the oldest (00000001000000000000000A) for 400 s" \
        in finding.message


def test_archive_mode_off_is_a_problem() -> None:
    found = archiver_findings(stats(archive_mode="off"))
    assert not found[0].ok and "archive_mode is off" in found[0].message
