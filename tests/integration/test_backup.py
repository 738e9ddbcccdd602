"""Backups you can trust, on a real two-DC lab with one shared pgBackRest repository.

Scenarios: backups and their listing; check-archive finding a segment removed from the repository and a
broken archive_command; verify-restore passing on a good set, failing on a damaged file and cleaning up on
Ctrl-C; rebuilding a replica and a standby leader by pgBackRest delta restore; a scheduled job recorded in
the DC's etcd.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from backup.archive_check import check_archive
from backup.cluster import primary_leader
from backup.jobs import Job, JobKind, JobStore, run_job
from backup.listing import list_backups
from backup.rebuild import rebuild
from backup.take import CANARY_TABLE, take_backup
from backup.verify import verify_restore
from backup.wal import Segment
from federation.cli.app import cli
from federation.dcs import connect
from federation.errors import OperationRefused
from federation.lab.pgbackrest_conf import ARCHIVE_PUSH
from federation.patroni_api import patch_config
from federation.patroni_dynamic import ARCHIVE_GET
from federation.topology import Member
from tests.integration.labkit import LabHandle, eventually

pytestmark = pytest.mark.integration


def fedctl(lab: LabHandle, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*args[:1], "-t", str(lab.path), *args[1:]])
    return result.exit_code, result.output


def repo_dir(lab: LabHandle) -> Path:
    repo = lab.topo.pgbackrest_for(lab.dc("dc1"))
    assert repo is not None
    return Path(repo.repo_path)


def switch_wal(lab: LabHandle, primary: Member) -> str:
    """Write a little, switch to a new segment, wait until the old one is archived; returns its name."""
    lab.sql(primary, "CREATE TABLE IF NOT EXISTS wal_filler (n int)")
    lab.sql(primary, "INSERT INTO wal_filler SELECT generate_series(1, 100)")
    name = lab.sql_one(primary, "SELECT pg_walfile_name(pg_switch_wal())")
    eventually(f"{name} archived", lambda: lab.sql_one(
        primary, "SELECT last_archived_wal >= %s FROM pg_stat_archiver", (name,)), timeout=30)
    return str(name)


def verify_runs(lab: LabHandle) -> list[Path]:
    root = lab.lab.layout.root / "verify"
    return list(root.iterdir()) if root.is_dir() else []


def test_backups_run_on_the_primary_dc_and_are_listed(backup_lab: LabHandle) -> None:
    lab = backup_lab
    full = take_backup(lab.topo, "dc1", "full")
    incr = take_backup(lab.topo, "dc1", "incr")
    assert full.backup.type == "full" and incr.backup.type == "incr" and incr.backup.prior == full.backup.label
    primary = lab.leader_of(lab.dc("dc1"))
    assert lab.sql_one(primary, f"SELECT backup_label FROM {CANARY_TABLE} WHERE id = %s",
                       (incr.canary.id,)) == incr.backup.label

    listed = {b.label: b for b in list_backups(lab.topo, "dc2").backups}  # any DC reads the shared stanza
    assert full.backup.label in listed and incr.backup.label in listed
    got = listed[full.backup.label]
    assert got.archive.start and got.archive.stop and got.info.size and got.info.repository.size
    assert Segment.from_name(got.archive.start) <= Segment.from_name(got.archive.stop)

    code, out = fedctl(lab, "backups", "--format", "json")
    assert code == 0
    rows = {r["label"]: r for r in json.loads(out)}
    assert rows[incr.backup.label]["type"] == "incr" and rows[incr.backup.label]["error"] is False

    with pytest.raises(OperationRefused, match="standby DC"):
        take_backup(lab.topo, "dc2", "full")
    code, out = fedctl(lab, "backup", "dc2")
    assert code == 1 and "dc2 is a standby DC" in out


def test_check_archive_names_a_segment_missing_from_the_repository(backup_lab: LabHandle) -> None:
    lab = backup_lab
    primary = lab.leader_of(lab.dc("dc1"))
    victim = switch_wal(lab, primary)
    switch_wal(lab, primary)
    assert check_archive(lab.topo, "dc1").ok

    [path] = list(repo_dir(lab).glob(f"archive/fed/*/{victim[:16]}/{victim}-*"))
    aside = lab.lab.layout.root / path.name
    shutil.move(path, aside)
    try:
        report = check_archive(lab.topo, "dc1")
        assert not report.ok
        assert [s.name for gap in report.gaps for s in gap.segments()] == [victim]
        code, out = fedctl(lab, "check-archive", "dc2")  # a standby DC reads the same archive
        assert code == 1 and f"missing WAL segment {victim}" in out
    finally:
        shutil.move(aside, path)
    assert check_archive(lab.topo).ok


@contextmanager
def archive_command(lab: LabHandle, command: str) -> Iterator[None]:
    leader = lab.leader_of(lab.dc("dc1"))
    patch_config(leader, {"postgresql": {"parameters": {"archive_command": command}}})
    try:
        eventually(f"archive_command = {command}", lambda: lab.sql_one(leader, "SHOW archive_command") == command,
                   timeout=20)
        yield
    finally:
        patch_config(leader, {"postgresql": {"parameters": {"archive_command": ARCHIVE_PUSH}}})
        eventually("archive_command restored", lambda: lab.sql_one(leader, "SHOW archive_command") == ARCHIVE_PUSH,
                   timeout=20)


def test_check_archive_reports_a_broken_archive_command(backup_lab: LabHandle) -> None:
    lab = backup_lab
    primary = lab.leader_of(lab.dc("dc1"))
    with archive_command(lab, "false"):
        lab.sql(primary, "CREATE TABLE IF NOT EXISTS wal_filler (n int)")
        lab.sql(primary, "INSERT INTO wal_filler SELECT generate_series(1, 100)")
        lab.sql(primary, "SELECT pg_switch_wal()")
        eventually("a failure newer than the last success", lambda: lab.sql_one(
            primary, "SELECT last_failed_time > coalesce(last_archived_time, '-infinity') FROM pg_stat_archiver"),
            timeout=30)
        report = check_archive(lab.topo, "dc1", archive_timeout=5)
        problems = {f.check: f for f in report.findings if not f.ok}
        assert "archive_command is failing" in problems["archiver"].message
        assert "[068 archive-command-invalid]" in problems["pgbackrest check"].message
        assert not report.gaps  # segments still waiting in pg_wal are not gaps
    eventually("archiving recovered", lambda: check_archive(lab.topo, "dc1").ok, timeout=60)


def test_verify_restore_passes_on_a_good_set(backup_lab: LabHandle) -> None:
    lab = backup_lab
    outcome = take_backup(lab.topo, "dc1", "full")
    report = verify_restore(lab.topo, "dc1")
    assert report.label == outcome.backup.label
    assert {f.check: f.ok for f in report.findings} == {
        "restore": True, "recovery": True, "pg_amcheck": True, "canary": True, "page checksums": True}
    canary = next(f for f in report.findings if f.check == "canary")
    assert f"canary row {outcome.canary.id} " in canary.message
    assert report.restore_seconds > 0 and report.recovery_seconds > 0
    assert verify_runs(lab) == []


def test_verify_restore_fails_on_a_damaged_backup_file(backup_lab: LabHandle) -> None:
    lab = backup_lab
    outcome = take_backup(lab.topo, "dc1", "full")
    relation = lab.sql_one(lab.leader_of(lab.dc("dc1")), f"SELECT pg_relation_filepath('{CANARY_TABLE}')")
    [path] = list(repo_dir(lab).glob(f"backup/fed/{outcome.backup.label}/pg_data/{relation}*"))
    good = path.read_bytes()
    damaged = bytearray(good)
    for i in range(len(damaged) // 2, len(damaged) // 2 + 8):
        damaged[i] ^= 0xFF
    path.write_bytes(bytes(damaged))
    try:
        code, out = fedctl(lab, "verify-restore", "dc1", "--set", outcome.backup.label)
    finally:
        path.write_bytes(good)
    assert code == 1
    assert "restore" in out and "PROBLEM" in out
    assert verify_runs(lab) == []


def test_verify_restore_cleans_up_on_ctrl_c(backup_lab: LabHandle) -> None:
    lab = backup_lab
    # The whole run takes about 2 s on a quiet machine: hold it while the scratch copy runs, so that the
    # Ctrl-C surely lands in the middle of it.
    # SIGINT's default disposition in the child: a suite run in the background (`make test &`) ignores SIGINT,
    # the child would inherit that, and Python then installs no Ctrl-C handler.
    proc = subprocess.Popen([sys.executable, "-m", "federation", "verify-restore", "dc1", "-t", str(lab.path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "FEDCTL_FAILPOINTS": "verify-restore/after-recovery=sleep(60)"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        started = eventually("the scratch PostgreSQL running", lambda: [
            p for p in verify_runs(lab) if (p / "postgres.pid").exists()], timeout=60, interval=0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0, out
    assert verify_runs(lab) == []
    data = str(started[0] / "data")
    assert not any(data.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
                   for pid in os.listdir("/proc") if pid.isdigit() and Path(f"/proc/{pid}/cmdline").exists())


def test_rebuild_a_replica_through_patroni_with_pgbackrest(backup_lab: LabHandle) -> None:
    lab = backup_lab
    dc = lab.dc("dc1")
    leader = lab.leader_of(dc)
    replica = next(m for m in dc.members if m != leader)
    take_backup(lab.topo, "dc1", "full")
    for _ in range(10):  # more than wal_keep_size (128 MB): the primary recycles the WAL since the backup
        switch_wal(lab, leader)
    lab.sql(leader, "CHECKPOINT")
    with pytest.raises(OperationRefused, match=f"{replica.name} has no restore_command"):
        rebuild(lab.topo, "dc1", replica.name)

    patch_config(leader, {"postgresql": {"recovery_conf": {"restore_command": ARCHIVE_GET}}})
    eventually(f"restore_command on {replica.name}", lambda: lab.sql_one(replica, "SHOW restore_command"),
               timeout=20)
    report = rebuild(lab.topo, "dc1", replica.name)
    assert report.replica_method == "pgbackrest", report
    assert report.role_after == "replica" and report.stats and report.stats.total_bytes
    lab.sql(leader, "CREATE TABLE IF NOT EXISTS after_rebuild (note text)")
    lab.sql(leader, "INSERT INTO after_rebuild VALUES ('replica')")
    eventually(f"new row on {replica.name}", lambda: lab.sql_one(
        replica, "SELECT count(*) FROM after_rebuild WHERE note = 'replica'") == 1, timeout=30)


def test_rebuild_a_standby_leader_by_delta_restore(backup_lab: LabHandle) -> None:
    lab = backup_lab
    member = lab.leader_of(lab.dc("dc2"))
    report = rebuild(lab.topo, "dc2", member.name)
    stats = report.stats
    assert report.role_before == "standby_leader" and report.role_after in ("replica", "standby_leader")
    assert stats and stats.copied_bytes is not None and stats.total_bytes
    assert stats.copied_bytes < stats.total_bytes  # a delta restore keeps the files that still match
    primary = primary_leader(lab.dc("dc1")).member
    lab.sql(primary, "CREATE TABLE IF NOT EXISTS after_rebuild (note text)")
    lab.sql(primary, "INSERT INTO after_rebuild VALUES ('standby leader')")
    eventually(f"new row on {member.name}", lambda: lab.sql_one(
        member, "SELECT count(*) FROM after_rebuild WHERE note = 'standby leader'") == 1, timeout=60)


def test_a_job_result_is_kept_in_the_dcs(backup_lab: LabHandle) -> None:
    lab = backup_lab
    dc = lab.dc("dc1")
    started = time.monotonic()
    result = run_job(lab.topo, dc, Job(name="archive", kind=JobKind.CHECK_ARCHIVE, cron="*/10 * * * *"))
    assert result.status == "ok", result.summary
    skipped = run_job(lab.topo, "dc2", Job(name="nightly", kind=JobKind.FULL_BACKUP, cron="0 2 * * *"))
    assert skipped.status == "skipped"
    with connect(dc) as dcs:
        store = JobStore(dcs, dc.dcs.namespace, lab.topo.federation)
        store.record(result)
        store.record(skipped)
        assert [(r.job, r.status) for r in store.history("dc1")][-1] == ("archive", "ok")
        assert [(r.job, r.status) for r in store.history("dc2")][-1] == ("nightly", "skipped")
    assert time.monotonic() - started < 60


def test_the_backup_host_agent_serves_each_dcs_job_metrics_and_events(backup_lab: LabHandle, tmp_path: Path) -> None:
    """The lab's backup-host agent answers GET /health over https with the repository host's certificate. A
    second one, with a job every minute and a port of its own, exports that job's fedctl_job_* series with
    its `dc` on /metrics once the job has run, and the run's `job` event on /events. (Up to a minute's wait
    for the cron.)"""
    import yaml
    from prometheus_client.parser import text_string_to_metric_families

    from federation.agent_gates import agent_get_at, backup_host_get
    from federation.pgbackrest_layout import repo_host_of
    from tests.integration.dcs_servers import free_port

    lab = backup_lab
    code, body = backup_host_get(lab.topo, "/health", timeout=5)
    assert code == 200, body
    repo = repo_host_of(lab.topo)
    assert repo is not None and lab.topo.agent_tls is not None
    data = yaml.safe_load(lab.path.read_text())
    data["datacenters"][0]["jobs"] = [{"name": "minute-metrics", "kind": "check_archive", "cron": "* * * * *"}]
    path = tmp_path / "backup-host-metrics.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    port = free_port(repo.address)  # the lab's own backup-host agent holds agent_port

    def get(what: str) -> bytes | None:
        code, body = agent_get_at(repo.address, port, lab.topo.agent_tls, what, timeout=5)
        return body if code == 200 else None

    def job_series() -> dict[str, dict[str, str]] | None:
        body = get("/metrics")
        found = {s.name: s.labels for family in text_string_to_metric_families((body or b"").decode())
                 for s in family.samples if s.labels.get("job") == "minute-metrics"}
        return found if "fedctl_job_last_success" in found else None

    log = tmp_path / "backup-host.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "federation", "agent", "run", "--backup-host", "-t", str(path),
                                 "--listen", f"{repo.address}:{port}", "--events-file",
                                 str(tmp_path / "events.jsonl")],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path)
    try:
        found = eventually("the job's series on the backup host's /metrics", job_series, timeout=100, interval=1.0)
        metrics = (get("/metrics") or b"").decode()
        events = json.loads(get("/events") or b"[]")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert {"dc": "dc1", "job": "minute-metrics", "kind": "check_archive"}.items() <= \
        found["fedctl_job_last_success"].items(), found
    assert "fedctl_job_last_run_timestamp_seconds" in found
    assert f'fedctl_backup_host_info{{federation="{lab.topo.federation}"' in metrics
    assert 'fedctl_backup_host_dcs_up{dc="dc1"} 1.0' in metrics
    runs = [e for e in events if e.get("kind") == "job" and e.get("name") == "minute-metrics"]
    assert runs and runs[0]["dc"] == "dc1", events
    assert f"API on https://{repo.address}:{port}" in log.read_text()
