"""`fedctl rebuild DC MEMBER`: reinitialise a member from the shared repository with a pgBackRest delta restore.

A replica: Patroni's `POST /reinitialize` (force), which runs the member's `create_replica_methods`
(`pgbackrest --delta --type=standby restore` with keep_data, falling back to basebackup) on that host:
pgBackRest restores only locally, so the restore runs where the data is. A standby leader is never
reinitialised by Patroni itself: its role first goes to another streaming member of the DC (Patroni's
switchover inside the standby cluster), then it is reinitialised as a replica; a standby DC with no other
member gets a refusal saying what to do by hand. Never `--archive-mode=off`: a rebuilt member is a real member.

What was copied is read from pgBackRest's restore log (`<log-path>/<stanza>-restore.log`, per-file lines at
`log-level-file=detail`) when that file is readable where fedctl runs (fedctl on the database host, or a
shared log directory); the data directory's size before and after likewise. Elsewhere the report says so.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backup.catchup import require_catch_up
from backup.cluster import PRIMARY_ROLES, sql
from backup.restore_log import RESTORE_DONE, RestoreStats, last_restore_in_log, parse_restore_output
from federation.errors import FedError, OperationFailed, OperationRefused
from federation.patroni_api import PatroniAPIError, patroni_state, post_action
from federation.patroni_dynamic import REPLICA_RESTORE
from federation.pgbackrest_layout import PgBackRestConfig
from federation.progress import Progress
from federation.topology import Datacenter, Member, Topology

DEFAULT_LOG_PATH = "/var/log/pgbackrest"  # pgBackRest's default log-path


@dataclass
class RebuildReport:
    dc: str
    member: str
    role_before: str
    how: str
    seconds: float = 0.0
    replica_method: str | None = None
    stats: RestoreStats | None = None
    bytes_how: str = ""
    size_before: int | None = None  # None: the data directory is not readable where fedctl runs
    size_after: int | None = None
    role_after: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        s = self.stats
        return {"dc": self.dc, "member": self.member, "role_before": self.role_before, "how": self.how,
                "replica_method": self.replica_method, "seconds": round(self.seconds, 3),
                "copied_bytes": s.copied_bytes if s else None, "copied_files": s.copied_files if s else None,
                "kept_bytes": s.kept_bytes if s else None, "total_bytes": s.total_bytes if s else None,
                "bytes_how": self.bytes_how, "data_dir_bytes_before": self.size_before,
                "data_dir_bytes_after": self.size_after, "role_after": self.role_after}


def post_reinitialize(member: Member, timeout: float = 10.0) -> str:
    """Patroni's POST /reinitialize {"force": true}."""
    try:
        return post_action(member, "/reinitialize", {"force": True}, timeout=timeout)
    except PatroniAPIError as exc:
        raise OperationFailed(f"Patroni on {member.name} refused to reinitialize: HTTP {exc.status} {exc.body}",
                              hint="Patroni reinitialises only replicas of a cluster that has a leader") from None
    except FedError as exc:
        raise OperationFailed(exc.message, hint=exc.hint) from None


def dir_size(path: Path) -> int | None:
    """Bytes under `path`; None when it is not a directory fedctl can read from here."""
    if not path.is_dir():
        return None
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def plan(topo: Topology, dc_name: str, member_name: str) -> tuple[str, list[str]]:
    """(role, steps) a rebuild would take; refuses a primary."""
    dc = topo.dc(dc_name)
    member = dc.member(member_name)
    role = (patroni_state(member, timeout=2.0) or {}).get("role")
    if role in PRIMARY_ROLES:
        raise OperationRefused(f"{member.name} is the primary of {dc.name}: a primary is not rebuilt",
                               hint="switch over inside the DC first (patronictl switchover), then rebuild it")
    if role in ("replica", "standby_leader"):
        require_catch_up(topo, dc, member)
    if role == "replica":
        return role, [f"POST {member.api_url}/reinitialize {{\"force\": true}} (Patroni runs create_replica_methods: "
                      f"{REPLICA_RESTORE})", f"wait until {member.name} streams again"]
    if role == "standby_leader":
        candidate = switchover_candidate(dc, member)
        return role, [f"POST {member.api_url}/switchover {{\"leader\": \"{member.name}\", \"candidate\": "
                      f"\"{candidate.name}\"}}: {candidate.name} becomes {dc.name}'s standby leader",
                      f"POST {member.api_url}/reinitialize {{\"force\": true}} (Patroni runs create_replica_methods: "
                      f"{REPLICA_RESTORE})", f"wait until {member.name} streams again"]
    raise OperationFailed(f"{member.name} is not running as a replica or standby leader (role: {role or 'unknown'})",
                          hint="start its Patroni first; a member that cannot start is rebuilt by Patroni itself "
                               "when you remove its data directory")


def rebuild(topo: Topology, dc_name: str, member_name: str, progress: Progress | None = None,
            *, timeout: float = 900.0) -> RebuildReport:
    """Rebuild a replica (through Patroni) or a standby leader (its role handed to another member, then
    through Patroni)."""
    progress = progress or Progress(quiet=True)
    dc = topo.dc(dc_name)
    member = dc.member(member_name)
    role, _steps = plan(topo, dc_name, member_name)
    data = Path(str(sql(topo, member, "SHOW data_directory")[0][0]))
    report = RebuildReport(dc.name, member.name, role, "")
    report.size_before = dir_size(data)
    started = time.monotonic()
    if role == "standby_leader":
        # Patroni reinitialises only replicas: hand the standby leader role to another member first.
        _hand_over_standby_leader(dc, member, progress, timeout)
        report.how = "standby leader role handed over, then "
    _via_patroni(topo.pgbackrest_for(dc), dc, member, data, report, progress, timeout)
    report.seconds = time.monotonic() - started
    report.size_after = dir_size(data)
    report.role_after = (patroni_state(member) or {}).get("role")
    return report


def restore_log_path(section: PgBackRestConfig | None) -> Path | None:
    """pgBackRest's restore log on the database hosts, from the topology's pgbackrest options."""
    if section is None:
        return None
    return Path(section.options.get("log-path", DEFAULT_LOG_PATH)) / f"{section.stanza}-restore.log"


def switchover_candidate(dc: Datacenter, member: Member) -> Member:
    """Another member of the standby DC that streams and can take the standby leader role; refuses without one."""
    for other in dc.members:
        if other == member:
            continue
        state = patroni_state(other, timeout=2.0) or {}
        if state.get("role") == "replica" and state.get("state") in ("streaming", "running") \
                and state.get("replication_state") == "streaming":
            return other
    raise OperationRefused(
        f"{member.name} is {dc.name}'s standby leader and no other member of {dc.name} streams to take that role: "
        "Patroni reinitialises only replicas",
        hint=f"add a member to {dc.name} (or bring one back), or on {member.host}: stop Patroni, run `"
             f"{REPLICA_RESTORE}` as the postgres user, start Patroni")


def post_switchover(member: Member, leader: str, candidate: str, timeout: float = 30.0) -> str:
    """Patroni's POST /switchover {leader, candidate}."""
    try:
        return post_action(member, "/switchover", {"leader": leader, "candidate": candidate}, timeout=timeout)
    except PatroniAPIError as exc:
        raise OperationFailed(f"Patroni on {member.name} refused the switchover to {candidate}: HTTP {exc.status} "
                              f"{exc.body}", hint="`patronictl list` shows whether the candidate is healthy") from None
    except FedError as exc:
        raise OperationFailed(exc.message, hint=exc.hint) from None


def _hand_over_standby_leader(dc: Datacenter, member: Member, progress: Progress, timeout: float) -> None:
    candidate = switchover_candidate(dc, member)
    with progress.step(f"switch {dc.name}'s standby leader role over to {candidate.name}") as step:
        step.detail = post_switchover(member, member.name, candidate.name).strip()[:120]
        deadline = time.monotonic() + timeout
        while True:
            roles = {m.name: (patroni_state(m, timeout=2.0) or {}).get("role") for m in (member, candidate)}
            if roles[candidate.name] == "standby_leader" and roles[member.name] == "replica":
                return
            if time.monotonic() > deadline:
                raise OperationFailed(f"{candidate.name} did not take over {dc.name}'s standby leader role within "
                                      f"{timeout:.0f} s (roles now: {roles})",
                                      hint="`patronictl list`; the old standby leader was not rebuilt")
            time.sleep(0.3)


def _via_patroni(section: PgBackRestConfig | None, dc: Datacenter, member: Member, data: Path,
                 report: RebuildReport, progress: Progress, timeout: float) -> None:
    report.how += "Patroni POST /reinitialize (create_replica_methods)"
    restore_log = restore_log_path(section)
    offset = _size(restore_log)
    before = (patroni_state(member) or {}).get("postmaster_start_time")
    with progress.step(f"POST /reinitialize on {member.name}"):
        post_reinitialize(member)
    with progress.step(f"wait until {member.name} is recreated and streams") as step:
        wait_streaming(member, timeout, must_restart=True, previous_start=before)
        step.detail = "streaming"
    if restore_log is None or offset is None:
        report.bytes_how = (f"not known here: pgBackRest's restore log ({restore_log or 'log-path'}) is on "
                           f"{member.host}, not readable where fedctl runs; Patroni's log there names the method")
        return
    run_text = last_restore_in_log(_read_from(restore_log, offset), str(data))
    if run_text is None or RESTORE_DONE not in run_text:
        report.replica_method = "basebackup"
        report.bytes_how = (f"no completed pgBackRest restore of {data} in {restore_log} since the rebuild "
                            "started: Patroni fell back to basebackup and copied every byte (see its log)")
        return
    report.replica_method = "pgbackrest"
    report.stats = parse_restore_output(run_text)
    if report.stats.copied_bytes is not None:
        report.bytes_how = "from pgBackRest's per-file lines in its restore log (log-level-file=detail)"
    else:
        report.bytes_how = "not known: pgBackRest logs copied files only at log-level-file=detail; total restore " \
                           "size from its log, data directory size before/after by walking it"


def wait_streaming(member: Member, timeout: float, must_restart: bool, previous_start: str | None = None) -> None:
    """Until the member runs and streams; with `must_restart`, only after it was seen restarting."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    restarted = not must_restart
    while time.monotonic() < deadline:
        state = patroni_state(member, timeout=2.0) or {}
        last = state or last
        start_time = state.get("postmaster_start_time")
        if state and (state.get("state") != "running" or (previous_start and start_time not in (None, previous_start))):
            restarted = True
        if restarted and state.get("state") == "running" and state.get("replication_state") == "streaming":
            return
        time.sleep(0.2)
    raise OperationFailed(f"{member.name} does not stream {timeout:.0f} s after the rebuild started (last: "
                          f"role={last.get('role')}, state={last.get('state')}, "
                          f"replication={last.get('replication_state')})",
                          hint=f"read {member.name}'s Patroni log; `patronictl list` shows its state")


def _size(path: Path | None) -> int | None:
    try:
        return path.stat().st_size if path is not None else None
    except FileNotFoundError:
        return 0 if path is not None and path.parent.is_dir() else None
    except OSError:
        return None


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""
