"""`fedctl check-archive`: is every WAL segment a restore needs in the shared repository, and is archiving alive?

Three checks, each a `Finding`:
- archiver: pg_stat_archiver on the primary (a failure newer than the last success), the age of the last
  archived WAL, and the `.ready` backlog in pg_wal/archive_status (segments PostgreSQL still has to push);
- pgbackrest check: forces a WAL switch on the primary and waits until that segment reaches the repository;
- continuity: every segment from the oldest backup's WAL start to the current WAL is in the repository,
  following the current timeline's history file across switchovers (backup/wal.py), each gap by name.
For a standby DC the archive it reads is the same shared stanza, pushed by the primary DC; we also check
that none of its members archives by itself (archive_mode=always would push a second history into it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backup.cluster import Leader, find_leader, primary_dc, sql
from backup.findings import Finding
from backup.info import StanzaInfo, read_info
from backup.runner import PgBackRestError, PgBackRestHost, run, stanza_host
from backup.wal import (
    Gap,
    Segment,
    TimelineRange,
    archived_segment,
    expected_segments,
    find_gaps,
    history_file_name,
    parse_history,
    ranges_per_timeline,
    timeline_path,
)
from federation.errors import OperationFailed
from federation.topology import Topology

DEFAULT_MAX_READY_AGE = 120.0


@dataclass(frozen=True)
class ArchiverStats:
    """pg_stat_archiver and the archive_status directory of one primary, at `now`."""

    archive_mode: str
    last_archived_wal: str | None
    last_archived_time: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: datetime | None
    ready: list[tuple[str, datetime]]  # segment names waiting in archive_status, with their mtime
    current_wal: str
    now: datetime


@dataclass
class ArchiveReport:
    dc: str
    primary: str
    findings: list[Finding] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    ranges: list[TimelineRange] = field(default_factory=list)
    checked: tuple[str, str] | None = None  # first and last segment name checked for continuity

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def to_json_dict(self) -> dict[str, Any]:
        return {"dc": self.dc, "primary": self.primary, "ok": self.ok,
                "findings": [f.__dict__ for f in self.findings],
                "gaps": [{"first": g.first.name, "last": g.last.name, "count": g.count,
                          "segments": [s.name for s in g.segments()]} for g in self.gaps],
                "timelines": [{"timeline": r.timeline, "first": r.first.name, "last": r.last.name,
                               "segments": r.count} for r in self.ranges],
                "checked_from": self.checked[0] if self.checked else None,
                "checked_to": self.checked[1] if self.checked else None}


def archiver_findings(stats: ArchiverStats, max_ready_age: float = DEFAULT_MAX_READY_AGE) -> list[Finding]:
    """Pure judgement of the primary's archiver state."""
    found: list[Finding] = []
    if stats.archive_mode == "off":
        found.append(Finding("archiver", False, "archive_mode is off on the primary: no WAL reaches the repository",
                             "set archive_mode=on in the DC's Patroni config (needs a restart)"))
    failing = stats.failed_count > 0 and stats.last_failed_time is not None and (
        stats.last_archived_time is None or stats.last_failed_time > stats.last_archived_time)
    if failing:
        found.append(Finding(
            "archiver", False, f"archive_command is failing: last failure on {stats.last_failed_wal} at "
            f"{_ts(stats.last_failed_time)}, newer than the last success ({_ts(stats.last_archived_time)})",
            "run the archive_command by hand as the postgres user and read the PostgreSQL log; "
            "`pgbackrest check` on the primary shows pgBackRest's side"))
    age = (stats.now - stats.last_archived_time).total_seconds() if stats.last_archived_time else None
    age_text = f"{age:.0f} s ago" if age is not None else "never"
    oldest = min((t for _, t in stats.ready), default=None)
    backlog_age = (stats.now - oldest).total_seconds() if oldest else 0.0
    if stats.ready and backlog_age > max_ready_age:
        found.append(Finding(
            "archiver", False, f"{len(stats.ready)} WAL segment(s) wait to be archived (.ready), the oldest "
            f"({min(n for n, _ in stats.ready)}) for {backlog_age:.0f} s; last archived {age_text}",
            "archiving is stuck or too slow: fix archive_command before pg_wal fills the disk"))
    if not any(not f.ok for f in found):
        found.append(Finding("archiver", True, f"last archived {stats.last_archived_wal or '-'} {age_text}; "
                             f"{len(stats.ready)} segment(s) waiting; current WAL {stats.current_wal}"))
    return found


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if value else "never"


def read_archiver(topo: Topology, leader: Leader) -> ArchiverStats:
    row = sql(topo, leader.member, "SELECT current_setting('archive_mode'), last_archived_wal, last_archived_time, "
              "failed_count, last_failed_wal, last_failed_time, pg_walfile_name(pg_current_wal_lsn()), now() "
              "FROM pg_stat_archiver")[0]
    ready = sql(topo, leader.member, "SELECT left(name, 24), modification FROM pg_ls_archive_statusdir() "
                r"WHERE name ~ '^[0-9A-F]{24}\.ready$' ORDER BY name")
    return ArchiverStats(row[0], row[1], row[2], int(row[3]), row[4], row[5], [(r[0], r[1]) for r in ready],
                         row[6], row[7])


def continuity(info: StanzaInfo, host: PgBackRestHost, stanza: str, current_wal: str,
               pending: list[str]) -> tuple[list[Finding], list[Gap], list[TimelineRange], tuple[str, str] | None]:
    """Gaps between the oldest backup's WAL start and the last segment that should already be archived."""
    backups = [b for b in info.backups if b.archive.start]
    if not backups:
        return [Finding("continuity", False, "no backup set: nothing to restore from",
                        "take one with `fedctl backup DC --type full`")], [], [], None
    oldest = backups[0]
    archive_id = _archive_id(info, oldest.database.id)
    files = repo_archive_files(host, stanza, archive_id)
    present = {seg for name in files if (seg := archived_segment(name.rsplit("/", 1)[-1]))}
    ranges = ranges_per_timeline(present)
    current = Segment.from_name(current_wal)
    findings: list[Finding] = []
    history = []
    if current.timeline > 1:
        name = history_file_name(current.timeline)
        if name not in {f.rsplit("/", 1)[-1] for f in files}:
            return [Finding("continuity", False, f"timeline history file {name} is missing from the repository "
                            f"(archive {archive_id}): a restore cannot follow the switch to timeline "
                            f"{current.timeline}", "copy it from the primary's pg_wal into the archive with "
                            "`pgbackrest archive-push pg_wal/" + name + "`")], [], ranges, None
        try:
            history = parse_history(repo_get(host, f"archive/{stanza}/{archive_id}/{name}"), current.timeline)
        except ValueError as exc:
            return [Finding("continuity", False, f"unreadable {name} in the repository: {exc}")], [], ranges, None
    path = timeline_path(current.timeline, history)
    end_segno = min([current.segno, *(Segment.from_name(p).segno for p in pending)]) - 1
    start = Segment.from_name(oldest.archive.start or "")
    try:
        expected = list(expected_segments(path, start, end_segno))
    except ValueError as exc:
        return [Finding("continuity", False, f"oldest backup {oldest.label}: {exc}",
                        "take a new full backup on the current timeline")], [], ranges, None
    gaps = find_gaps(expected, present)
    checked = (expected[0].name, expected[-1].name) if expected else None
    span = f"{checked[0]} .. {checked[1]} ({len(expected)} segments)" if checked else "nothing to check yet"
    if gaps:
        missing = sum(g.count for g in gaps)
        findings.append(Finding("continuity", False, f"{missing} segment(s) missing in {span}: "
                                + "; ".join(str(g) for g in gaps),
                                "backups older than the last gap cannot be restored past it: take a new full "
                                "backup now; find out who deleted WAL from the repository"))
    else:
        findings.append(Finding("continuity", True, f"no gap from oldest backup {oldest.label}: {span}"))
    return findings, gaps, ranges, checked


def _archive_id(info: StanzaInfo, db_id: int | None) -> str:
    for entry in reversed(info.archive):
        if db_id is None or entry.database.id == db_id:
            return entry.id
    raise OperationFailed(f"stanza {info.name} lists no WAL archive for its backups",
                          hint="run `pgbackrest check` on the primary DC's leader")


def repo_archive_files(host: PgBackRestHost, stanza: str, archive_id: str) -> list[str]:
    """Paths (relative to the archive id) of every file in the repository's WAL archive, via `repo-ls`."""
    result = run(host.command("repo-ls", "--recurse", "--output=json", f"archive/{stanza}/{archive_id}",
                              timeout=300))
    entries: dict[str, Any] = json.loads(result.stdout or "{}")
    return [name for name, meta in entries.items() if meta.get("type") == "file"]


def repo_get(host: PgBackRestHost, path: str) -> str:
    return run(host.command("repo-get", path, timeout=60)).stdout


def pgbackrest_check(host: PgBackRestHost, archive_timeout: float | None) -> Finding:
    args = ["check"] + ([f"--archive-timeout={archive_timeout:g}"] if archive_timeout else [])
    try:
        result = run(host.command(*args, timeout=(archive_timeout or 60) + 60))
    except PgBackRestError as exc:
        return Finding("pgbackrest check", False, exc.message, exc.hint)
    return Finding("pgbackrest check", True, f"a forced WAL switch reached the repository in {result.seconds:.1f} s")


def standby_findings(topo: Topology, dc_name: str) -> list[Finding]:
    """A standby DC must not push WAL: archive_mode=on does not archive during recovery, `always` would."""
    found = []
    for member in topo.dc(dc_name).members:
        try:
            mode = sql(topo, member, "SELECT current_setting('archive_mode')")[0][0]
        except OperationFailed as exc:
            found.append(Finding("standby archiving", False, exc.message, exc.hint))
            continue
        if mode == "always":
            found.append(Finding("standby archiving", False, f"{member.name} has archive_mode=always: a standby DC "
                                 "would push its own WAL into the shared stanza",
                                 "set archive_mode=on in the DC's Patroni config"))
    return found or [Finding("standby archiving", True, f"no member of {dc_name} archives by itself")]


def check_archive(topo: Topology, dc_name: str | None = None, *, archive_timeout: float | None = None,
                  max_ready_age: float = DEFAULT_MAX_READY_AGE) -> ArchiveReport:
    """Run every archive check for `dc_name` (default: the DC that is primary now)."""
    leader = find_leader(topo.dc(dc_name)) if dc_name else primary_dc(topo)
    if not leader.is_primary:
        dc_leader, leader = leader, primary_dc(topo)
    else:
        dc_leader = leader
    report = ArchiveReport(dc_leader.dc.name, f"{leader.dc.name}/{leader.member.name}")
    host = stanza_host(topo, leader.dc)
    repo = topo.pgbackrest_for(leader.dc)
    assert repo is not None
    if not dc_leader.is_primary:
        report.findings.extend(standby_findings(topo, dc_leader.dc.name))
    report.findings.extend(archiver_findings(read_archiver(topo, leader), max_ready_age))
    report.findings.append(pgbackrest_check(host, archive_timeout))
    # Read the position after the check: its WAL switch has been archived by then (or reported as failing).
    stats = read_archiver(topo, leader)
    info = read_info(host, repo.stanza).require_ok(allow_no_backups=True)
    findings, report.gaps, report.ranges, report.checked = continuity(
        info, host, repo.stanza, stats.current_wal, [name for name, _ in stats.ready])
    report.findings.extend(findings)
    return report
