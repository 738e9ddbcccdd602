"""Benchmark: rebuild a replica by pgBackRest delta restore against pg_basebackup, and restore verification.

Run: `.venv/bin/python -m bench.bench_rebuild [--gb 1.0] [--tables 100] [--keep]` (several minutes; it wipes and
starts the backup lab, tests/integration/topologies/backup-two-dc.yaml, and wipes it again at the end).

Data: `--tables` tables of equal size adding up to `--gb`; after a full backup one table is rewritten (1 % of
the data with 100 tables). pgBackRest 2.45's delta restore works per file (it keeps a file whose checksum
matches the backup, else copies all of it), so "1 % changed" here means 1 % of the files' bytes; the same
change spread over every page of one big relation segment (1 GB) would be copied whole.

Measured on the replica dc1/n2, each from "fedctl starts" to "the member streams again":
  a) pgBackRest delta through Patroni (POST /reinitialize, the member's create_replica_methods);
  b) pgBackRest delta run by the bench on the member (Patroni stopped, restore with per-file output,
     started), which times the copy step alone;
  c) pg_basebackup (Patroni stopped, data directory removed, pg_basebackup -X stream from the primary, started).
Then `verify-restore` of the set: restore, recovery and check times, per GB of database.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from backup.cluster import find_leader, sql
from backup.rebuild import RebuildReport, dir_size, rebuild, wait_streaming
from backup.restore_log import RestoreStats, parse_restore_output
from backup.take import take_backup
from backup.verify import verify_restore
from federation.lab.health import member_state
from federation.lab.lab import Lab, lab_down, lab_up, start_member
from federation.lab.layout import PG_BIN_DIR
from federation.lab.processes import kill_postmaster, run_as
from federation.patroni_api import patch_config
from federation.patroni_dynamic import ARCHIVE_GET, REPLICA_RESTORE
from federation.progress import Progress
from federation.topology import Topology, load_topology

TOPOLOGY = Path(__file__).resolve().parents[1] / "tests" / "integration" / "topologies" / "backup-two-dc.yaml"
GB = 1024**3


def say(message: str) -> None:
    print(message, flush=True)


def make_data(topo: Topology, gb: float, tables: int) -> int:
    """`tables` tables of about gb/tables each, frozen; returns the database size in bytes.

    VACUUM FREEZE before the backup, autovacuum off on these tables: otherwise the first vacuum after the load
    rewrites every page (hint bits, visibility map; FPIs with checksums) and no file matches the backup."""
    primary = find_leader(topo.dc("dc1")).member
    rows = rows_per_table(gb, tables)
    for n in range(tables):
        create_table(topo, f"bench_{n:03d}", rows)
    sql(topo, primary, "VACUUM (FREEZE, ANALYZE)")
    sql(topo, primary, "CHECKPOINT")
    return int(sql(topo, primary, "SELECT pg_database_size(current_database())")[0][0])


def rows_per_table(gb: float, tables: int) -> int:
    # ~214 bytes a row in the heap (tuple header, line pointer) and ~16 in its primary key index
    return int(gb * GB / tables / 226)


def create_table(topo: Topology, name: str, rows: int, salt: str = "") -> None:
    primary = find_leader(topo.dc("dc1")).member
    sql(topo, primary, f"DROP TABLE IF EXISTS {name}")
    sql(topo, primary, f"CREATE TABLE {name} WITH (autovacuum_enabled = off) AS SELECT g AS id, "
                       f"md5(g::text || '{salt}') || repeat('x', 150) AS pad FROM generate_series(1, {rows}) g")
    sql(topo, primary, f"ALTER TABLE {name} ADD PRIMARY KEY (id)")


def change_one_table(topo: Topology, rows: int, salt: str) -> int:
    """Replace bench_000 by a new table of the same size (a new relation file): 1/tables of the data."""
    primary = find_leader(topo.dc("dc1")).member
    create_table(topo, "bench_new", rows, salt)
    sql(topo, primary, "VACUUM (FREEZE) bench_new")
    sql(topo, primary, "DROP TABLE bench_000")
    sql(topo, primary, "ALTER TABLE bench_new RENAME TO bench_000")
    sql(topo, primary, "ALTER INDEX bench_new_pkey RENAME TO bench_000_pkey")
    sql(topo, primary, "CHECKPOINT")
    return int(sql(topo, primary, "SELECT pg_total_relation_size('bench_000')")[0][0])


def give_replicas_a_restore_command(topo: Topology) -> None:
    """A replica restored from a backup replays the WAL since from the repository; Patroni drops the
    restore_command pgBackRest writes, so it must come from Patroni's config (see backup/catchup.py)."""
    leader = find_leader(topo.dc("dc1")).member
    patch_config(leader, {"postgresql": {"recovery_conf": {"restore_command": ARCHIVE_GET}}})
    deadline = time.monotonic() + 120
    while not sql(topo, topo.dc("dc1").member("n2"), "SHOW restore_command")[0][0]:
        if time.monotonic() > deadline:
            state = member_state(topo.dc("dc1").member("n2")) or {}
            raise SystemExit(f"n2 did not get its restore_command within 120 s (n2: role {state.get('role')}, "
                             f"pending restart {state.get('pending_restart')})")
        time.sleep(0.2)


def wait_caught_up(topo: Topology, timeout: float = 600) -> None:
    primary = find_leader(topo.dc("dc1")).member
    target = sql(topo, primary, "SELECT pg_current_wal_lsn()")[0][0]
    deadline = time.monotonic() + timeout
    for dc, member in topo.members():
        if member == primary:
            continue
        while True:
            rows = sql(topo, member, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (str(target),))
            if rows and rows[0][0]:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{dc.name}/{member.name} did not catch up within {timeout:.0f} s")
            time.sleep(0.5)


def basebackup_rebuild(topo: Topology, dc_name: str, member_name: str) -> tuple[float, float, int]:
    """Patroni stopped, data removed, pg_basebackup from the primary, Patroni started, wait for streaming."""
    lab = Lab.of(topo)
    dc = topo.dc(dc_name)
    member = dc.member(member_name)
    primary = find_leader(dc).member
    paths = lab.layout.member(dc, member)
    started = time.monotonic()
    paths.patroni.stop(timeout=60)
    kill_postmaster(paths.data)
    shutil.rmtree(paths.data)
    paths.data.mkdir(mode=0o700)
    shutil.chown(paths.data, lab.user.uid, lab.user.gid)
    creds = topo.credentials.replication
    copy_started = time.monotonic()
    run_as(lab.user, [str(PG_BIN_DIR / "pg_basebackup"), "-h", primary.host, "-p", str(primary.port), "-U",
                      creds.username, "-D", str(paths.data), "-X", "stream", "-c", "fast"],
           env={"PGPASSWORD": creds.password.resolve()}, timeout=3600)
    copy_seconds = time.monotonic() - copy_started
    start_member(lab, dc, member)
    wait_streaming(member, 900, must_restart=False)
    return time.monotonic() - started, copy_seconds, dir_size(paths.data) or 0


def delta_restore_rebuild(topo: Topology, dc_name: str, member_name: str) -> tuple[float, float, RestoreStats]:
    """Patroni stopped, the member's replica method run by hand with per-file output, Patroni started, wait for
    streaming: (seconds end to end, seconds of the restore step, what it copied)."""
    lab = Lab.of(topo)
    dc = topo.dc(dc_name)
    member = dc.member(member_name)
    paths = lab.layout.member(dc, member)
    started = time.monotonic()
    paths.patroni.stop(timeout=60)
    kill_postmaster(paths.data)
    copy_started = time.monotonic()
    try:
        done = run_as(lab.user, [*REPLICA_RESTORE.split(), "--log-level-console=detail"],
                      env=lab.patroni_env(dc, member), cwd=paths.data, timeout=3600, netns=paths.netns)
    finally:
        copy_seconds = time.monotonic() - copy_started
        start_member(lab, dc, member)
    wait_streaming(member, 900, must_restart=False)
    return time.monotonic() - started, copy_seconds, parse_restore_output(done.stdout + done.stderr)


def describe(report: RebuildReport) -> str:
    s = report.stats
    copied = (f", copied {s.copied_bytes / 1024**2:.1f} MB in {s.copied_files} files, kept "
              f"{(s.kept_bytes or 0) / 1024**2:.1f} MB" if s and s.copied_bytes is not None else "")
    return f"{report.seconds:.1f} s, method {report.replica_method}{copied}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="database size to create (GB)")
    parser.add_argument("--tables", type=int, default=100, help="number of tables (1/tables is changed)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    args = parser.parse_args(argv)
    topo = load_topology(TOPOLOGY)
    quiet = Progress(quiet=True)
    say(f"lab {topo.federation}: wiping and starting it ({TOPOLOGY.name})")
    lab_down(topo, quiet, wipe=True)
    try:
        t = time.monotonic()
        lab_up(topo, quiet)
        say(f"lab up in {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        size = make_data(topo, args.gb, args.tables)
        rows = rows_per_table(args.gb, args.tables)
        wait_caught_up(topo)
        say(f"data: {size / GB:.2f} GB in {args.tables} tables, written, frozen and replicated in "
            f"{time.monotonic() - t:.1f} s")
        give_replicas_a_restore_command(topo)
        outcome = take_backup(topo, "dc1", "full")
        say(f"full backup {outcome.backup.label}: {outcome.seconds:.1f} s, repo size "
            f"{(outcome.backup.info.repository.size or 0) / 1024**2:.0f} MB")
        changed = change_one_table(topo, rows, "a")
        wait_caught_up(topo)
        say(f"changed after the backup: bench_000 replaced, {changed / 1024**2:.1f} MB "
            f"({100 * changed / size:.1f} % of the database)")

        via_patroni = rebuild(topo, "dc1", "n2")
        say(f"a) pgBackRest delta via Patroni reinitialize: {describe(via_patroni)}")
        change_one_table(topo, rows, "b")  # n2 differs from the backup again by the same amount
        wait_caught_up(topo)
        delta_seconds, delta_copy, stats = delta_restore_rebuild(topo, "dc1", "n2")
        say(f"b) pgBackRest delta run on the member:       {delta_seconds:.1f} s (restore step {delta_copy:.1f} s), "
            f"copied {(stats.copied_bytes or 0) / 1024**2:.1f} MB in {stats.copied_files} files, kept "
            f"{(stats.kept_bytes or 0) / 1024**2:.1f} MB")
        wait_caught_up(topo)
        base_seconds, base_copy, base_bytes = basebackup_rebuild(topo, "dc1", "n2")
        say(f"c) pg_basebackup:                            {base_seconds:.1f} s (copy step {base_copy:.1f} s), "
            f"copied {base_bytes / 1024**2:.0f} MB (data directory size)")
        state = member_state(topo.dc("dc1").member("n2")) or {}
        say(f"   n2 after the runs: role {state.get('role')}, {state.get('replication_state')}")
        say(f"ratio pg_basebackup / pgBackRest delta, member streaming again: "
            f"{base_seconds / via_patroni.seconds:.1f}x (a, via Patroni), {base_seconds / delta_seconds:.1f}x "
            f"(b, by hand); copy step only: {base_copy / delta_copy:.1f}x (b); target >= 5x")

        report = verify_restore(topo, "dc1")
        per_gb = (report.restore_seconds + report.recovery_seconds + report.checks_seconds) / (size / GB)
        say(f"verify-restore {report.label}: {'ok' if report.ok else 'FAILED'}; restore {report.restore_seconds:.1f} s,"
            f" recovery {report.recovery_seconds:.1f} s (RTO {report.rto_seconds:.1f} s), checks "
            f"{report.checks_seconds:.1f} s; {per_gb:.1f} s per GB verified "
            f"(RTO {report.rto_seconds / (size / GB):.1f} s per GB)")
        for finding in report.findings:
            say(f"   {finding.check}: {'ok' if finding.ok else 'PROBLEM'}: {finding.message.splitlines()[0]}")
        return 0 if report.ok else 1
    finally:
        if not args.keep:
            lab_down(topo, quiet, wipe=True)
            say("lab stopped and wiped")


if __name__ == "__main__":
    sys.exit(main())
