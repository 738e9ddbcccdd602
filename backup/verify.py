"""`fedctl verify-restore`: prove a backup set restores, recovers and holds sound data, and time it (RTO).

Steps: restore the set with pgBackRest into a scratch directory (`--archive-mode=off`, `--pg1-path=<scratch>`,
`--type=immediate --target-action=promote`, so recovery stops at the backup's consistency point and ends),
start PostgreSQL there on a spare loopback port, wait until recovery has ended, run pg_amcheck (heap and
B-tree checks with --heapallindexed, installing amcheck in the copy), look for the canary row the `backup`
command wrote, stop the copy cleanly and run `pg_checksums --check` on it (page checksums of every file;
it needs a stopped cluster). The scratch server and directory are removed whatever happens, Ctrl-C,
SIGTERM and SIGHUP included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from backup.cluster import primary_dc, sql
from backup.findings import Finding
from backup.host_render import restore_host
from backup.info import Backup, read_info
from backup.pg_bin import bin_dir_for
from backup.runner import PgBackRestError, repository_section, run
from backup.scratch import Interrupted, ScratchCluster, signals_unwind, sweep_stale
from backup.take import CANARY_TABLE
from federation.errors import FedError, OperationFailed
from federation.failpoints import hit
from federation.progress import Progress
from federation.topology import Topology


@dataclass
class VerifyReport:
    dc: str
    label: str
    backup_type: str
    db_bytes: int | None
    restore_seconds: float = 0.0
    recovery_seconds: float = 0.0
    checks_seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.findings) and all(f.ok for f in self.findings)

    @property
    def rto_seconds(self) -> float:
        """Restore plus recovery: how long until a copy of this set accepts writes."""
        return self.restore_seconds + self.recovery_seconds

    def to_json_dict(self) -> dict[str, Any]:
        return {"dc": self.dc, "label": self.label, "type": self.backup_type, "ok": self.ok,
                "db_bytes": self.db_bytes, "restore_seconds": round(self.restore_seconds, 3),
                "recovery_seconds": round(self.recovery_seconds, 3), "rto_seconds": round(self.rto_seconds, 3),
                "checks_seconds": round(self.checks_seconds, 3), "findings": [f.__dict__ for f in self.findings]}


def expected_canary(topo: Topology, backup: Backup) -> tuple[int | None, str]:
    """(canary id, how it was chosen) for a set, read from the current primary; (None, why) if unknown."""
    try:
        leader = primary_dc(topo)
        rows = sql(topo, leader.member, f"SELECT id FROM {CANARY_TABLE} WHERE backup_label = %s ORDER BY id DESC "
                   "LIMIT 1", (backup.label,))
        if rows:
            return int(rows[0][0]), f"the canary `fedctl backup` wrote for {backup.label}"
        # A set taken outside fedctl: the newest canary committed before the backup's start second.
        rows = sql(topo, leader.member, f"SELECT id FROM {CANARY_TABLE} WHERE written_at < to_timestamp(%s) "
                   "ORDER BY written_at DESC LIMIT 1", (backup.timestamp.start,))
    except OperationFailed as exc:
        if isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
            return None, f"no {CANARY_TABLE} table on the primary (no backup was taken with `fedctl backup`)"
        return None, f"cannot read canaries from the primary: {exc.message}"
    if rows:
        return int(rows[0][0]), f"the newest canary written before {backup.started:%Y-%m-%d %H:%M:%S} UTC"
    return None, f"no canary was written before {backup.label} started"


def verify_restore(topo: Topology, dc_name: str, label: str | None = None, progress: Progress | None = None,
                   *, recovery_timeout: float = 600.0) -> VerifyReport:
    progress = progress or Progress(quiet=True)
    dc = topo.dc(dc_name)
    # On the repository host, where the repository is local (pgBackRest restores only locally).
    repo = repository_section(topo, dc)
    assert repo.repo_host is not None
    host = restore_host(repo)
    user, scratch_base = host.user, Path(repo.repo_host.scratch_dir)
    with progress.step("choose the backup set") as step:
        info = read_info(host, repo.stanza).require_ok()
        backup = info.find(label) if label else info.backups[-1]
        step.detail = f"{backup.label} ({backup.type}) of PostgreSQL {info.version_of(backup) or '?'} on {host.label}"
    bin_dir = bin_dir_for(info.version_of(backup))
    canary_id, canary_how = expected_canary(topo, backup)
    report = VerifyReport(dc_name, backup.label, backup.type, backup.info.size)
    sweep_stale(scratch_base)
    try:
        with signals_unwind():
            scratch = ScratchCluster.create(scratch_base, backup.label, user, topo.credentials.superuser.username,
                                            bin_dir)
            try:
                _restore_and_check(scratch, host, backup, report, progress, recovery_timeout, canary_id, canary_how)
            finally:
                with progress.step("remove the scratch copy"):
                    scratch.close()
    except Interrupted as exc:
        raise OperationFailed(f"verify-restore was interrupted ({exc}); the scratch copy was removed") from None
    return report


def _restore_and_check(scratch: ScratchCluster, host: Any, backup: Backup, report: VerifyReport, progress: Progress,
                       recovery_timeout: float, canary_id: int | None, canary_how: str) -> None:
    restore = host.command("restore", f"--set={backup.label}", "--archive-mode=off", f"--pg1-path={scratch.data}",
                           "--type=immediate", "--target-action=promote", timeout=7200)
    with progress.step(f"pgbackrest restore {backup.label} into {scratch.data}") as step:
        try:
            report.restore_seconds = run(restore).seconds
        except PgBackRestError as exc:
            report.findings.append(Finding("restore", False, exc.message, exc.hint))
            step.outcome = "failed"
            return
    report.findings.append(Finding("restore", True, f"restored in {report.restore_seconds:.1f} s"))
    scratch.write_overrides()
    env = {k: v for k, v in host.env.items() if k in ("PGBACKREST_CONFIG", "PGBACKREST_STANZA", "PATH")}
    started = time.monotonic()
    with progress.step(f"start the copy on {scratch.host}:{scratch.port} and wait for the end of recovery"):
        scratch.start(env)
        try:
            scratch.wait_promoted(recovery_timeout)
        except FedError as exc:
            report.findings.append(Finding("recovery", False, exc.message, exc.hint))
            return
    report.recovery_seconds = time.monotonic() - started
    hit("verify-restore/after-recovery")  # the scratch copy runs: where a test interrupts the run
    report.findings.append(Finding("recovery", True, f"consistent and promoted in {report.recovery_seconds:.1f} s "
                                   f"(RTO restore + recovery: {report.rto_seconds:.1f} s)"))
    checks_started = time.monotonic()
    with progress.step("pg_amcheck: heap and B-tree checks of every database"):
        report.findings.append(_amcheck(scratch))
    report.findings.append(_canary(scratch, canary_id, canary_how))
    with scratch.connect() as conn:
        row = conn.execute("SHOW data_checksums").fetchone()
    checksums_on = row is not None and row[0] == "on"
    with progress.step("stop the copy cleanly"):
        scratch.stop()
    with progress.step("pg_checksums --check on the stopped copy"):
        report.findings.append(_checksums(scratch, checksums_on))
    report.checks_seconds = time.monotonic() - checks_started


def _amcheck(scratch: ScratchCluster) -> Finding:
    done = scratch.run_tool([str(scratch.bin_dir / "pg_amcheck"), "-h", str(scratch.socket_dir),
                             "-p", str(scratch.port), "-U", scratch.superuser, "--all", "--install-missing",
                             "--heapallindexed"], timeout=7200)
    if done.returncode == 0:
        return Finding("pg_amcheck", True, "no corruption in heap tables and B-tree indexes (--heapallindexed)")
    output = (done.stdout + done.stderr).strip()
    what = "found corruption" if done.returncode == 2 else f"failed with exit code {done.returncode}"
    return Finding("pg_amcheck", False, f"pg_amcheck {what}:\n{_tail(output)}",
                   "this backup set is not trustworthy: take a new full backup and check the primary")


def _canary(scratch: ScratchCluster, canary_id: int | None, how: str) -> Finding:
    if canary_id is None:
        return Finding("canary", True, f"not checked: {how}")
    try:
        with scratch.connect() as conn:
            row = conn.execute(f"SELECT written_at FROM {CANARY_TABLE} WHERE id = %s", (canary_id,)).fetchone()
    except psycopg.errors.UndefinedTable:
        row = None
    if row is None:
        return Finding("canary", False, f"canary row {canary_id} ({how}) is not in the restored copy",
                       "the set does not hold data committed before it started: do not trust it; check the "
                       "archive with `fedctl check-archive`")
    return Finding("canary", True, f"canary row {canary_id} ({how}) is there")


def _checksums(scratch: ScratchCluster, checksums_on: bool) -> Finding:
    if not checksums_on:
        return Finding("page checksums", True, "not checked: the cluster runs without data checksums "
                       "(pg_amcheck's heap checks still read every table)")
    if scratch.process.running():
        return Finding("page checksums", False, "the copy did not stop, so pg_checksums could not run")
    done = scratch.run_tool([str(scratch.bin_dir / "pg_checksums"), "--check", "-D", str(scratch.data)], timeout=7200)
    summary = " ".join(line.strip() for line in done.stdout.splitlines() if ":" in line)
    if done.returncode == 0:
        return Finding("page checksums", True, f"pg_checksums --check on the stopped copy: {summary}")
    return Finding("page checksums", False, f"pg_checksums --check failed:\n{_tail(done.stdout + done.stderr)}",
                   "damaged pages in this backup set: take a new full backup and check the primary's storage")


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
