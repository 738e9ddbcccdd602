"""`fedctl rebuild DC MEMBER`: reinitialise a member from the shared repository with a pgBackRest delta restore.

A replica: Patroni's `POST /reinitialize` (force), which runs the member's `create_replica_methods`
(`pgbackrest --delta --type=standby restore` with keep_data, falling back to basebackup) on that host. A
standby leader is never reinitialised by Patroni itself: its role first goes to another streaming member
of the DC (Patroni's switchover inside the standby cluster), then it is reinitialised as a replica; a
standby DC with no other member gets a refusal saying what to do by hand. `via="restore"` (the lab only)
stops the member's Patroni, runs the delta restore itself and starts Patroni again, for exact byte
counts. Never `--archive-mode=off`: a rebuilt member is a real member.

Bytes copied: for the restore we run, from pgBackRest's per-file `detail` output; for Patroni's, from the
pgBackRest restore log when `log-level-file=detail`, else only the total restore size is known. The data
directory's size before and after is reported too.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from backup.catchup import require_catch_up
from backup.cluster import PRIMARY_ROLES
from backup.restore_log import RestoreStats, last_restore_in_log, parse_restore_output
from backup.runner import PgBackRestCommand, lab_host, run
from federation.errors import FedError, OperationFailed, OperationRefused
from federation.lab.lab import Lab, start_member
from federation.lab.pgbackrest_conf import REPLICA_RESTORE
from federation.lab.processes import kill_postmaster
from federation.patroni_api import PatroniAPIError, patroni_state, post_action
from federation.progress import Progress
from federation.topology import Datacenter, Member, Topology

_CREATED_RE = re.compile(r"replica has been created using (\w+)")


@dataclass
class RebuildReport:
    dc: str
    member: str
    role_before: str
    how: str
    seconds: float = 0.0
    restore_seconds: float | None = None
    replica_method: str | None = None
    stats: RestoreStats | None = None
    bytes_how: str = ""
    size_before: int = 0
    size_after: int = 0
    role_after: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        s = self.stats
        return {"dc": self.dc, "member": self.member, "role_before": self.role_before, "how": self.how,
                "replica_method": self.replica_method, "seconds": round(self.seconds, 3),
                "restore_seconds": None if self.restore_seconds is None else round(self.restore_seconds, 3),
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


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def restore_command(lab: Lab, dc: Datacenter, member: Member) -> PgBackRestCommand:
    """The member's own replica method (`pgbackrest --delta --type=standby restore`), with per-file output."""
    args = REPLICA_RESTORE.split()[1:]
    return lab_host(lab, dc, member).command(*args, "--log-level-console=detail", timeout=7200)


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
            *, timeout: float = 900.0, via: Literal["auto", "patroni", "restore"] = "auto") -> RebuildReport:
    """Rebuild a replica (through Patroni) or a standby leader (its role handed to another member, then
    through Patroni). `via="restore"` (the lab only): Patroni stopped, delta restore, started (exact bytes)."""
    progress = progress or Progress(quiet=True)
    lab = Lab.of(topo)
    dc = topo.dc(dc_name)
    member = dc.member(member_name)
    role, _steps = plan(topo, dc_name, member_name)
    data = lab.layout.member(dc, member).data
    report = RebuildReport(dc.name, member.name, role, "")
    report.size_before = dir_size(data)
    started = time.monotonic()
    if via == "patroni" and role != "replica":
        raise OperationRefused(f"Patroni reinitialises only replicas; {member.name} is the {role}")
    if role == "standby_leader" and via != "restore":
        # Patroni reinitialises only replicas: hand the standby leader role to another member first.
        _hand_over_standby_leader(dc, member, progress, timeout)
        role = "replica"
        report.how = "standby leader role handed over, then "
    if role == "replica" and via != "restore":
        _via_patroni(lab, dc, member, report, progress, timeout)
    else:
        _by_restore(lab, dc, member, report, progress, timeout)
    report.seconds = time.monotonic() - started
    report.size_after = dir_size(data)
    report.role_after = (patroni_state(member) or {}).get("role")
    return report


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


def _via_patroni(lab: Lab, dc: Datacenter, member: Member, report: RebuildReport, progress: Progress,
                 timeout: float) -> None:
    report.how += "Patroni POST /reinitialize (create_replica_methods)"
    log = lab.layout.member(dc, member).patroni.logfile
    offset = log.stat().st_size if log.exists() else 0
    before = (patroni_state(member) or {}).get("postmaster_start_time")
    with progress.step(f"POST /reinitialize on {member.name}"):
        post_reinitialize(member)
    with progress.step(f"wait until {member.name} is recreated and streams") as step:
        wait_streaming(member, timeout, must_restart=True, previous_start=before)
        step.detail = "streaming"
    new_log = _read_from(log, offset)
    methods = _CREATED_RE.findall(new_log)
    report.replica_method = methods[-1] if methods else None
    restore_log = lab.layout.pgbackrest_dir / "log" / f"{_stanza(lab, dc)}-restore.log"
    run_text = last_restore_in_log(_read_from(restore_log, 0), str(lab.layout.member(dc, member).data))
    report.stats = parse_restore_output(run_text or "")
    if report.replica_method != "pgbackrest":
        report.bytes_how = f"Patroni used {report.replica_method or 'an unknown method'}, not pgBackRest: " \
                           "every byte was copied (see the data directory size)"
    elif report.stats.copied_bytes is not None:
        report.bytes_how = "from pgBackRest's per-file lines in its restore log (log-level-file=detail)"
    else:
        report.bytes_how = "not known: pgBackRest logs copied files only at log-level-file=detail; total restore " \
                           "size from its log, data directory size before/after by walking it"


def _by_restore(lab: Lab, dc: Datacenter, member: Member, report: RebuildReport, progress: Progress,
                    timeout: float) -> None:
    report.how = "Patroni stopped, pgbackrest --delta --type=standby restore, Patroni started"
    paths = lab.layout.member(dc, member)
    if not paths.patroni.running():
        raise OperationRefused(f"Patroni of {member.name} is not a process this lab started, so fedctl cannot "
                               "stop and start it", hint=f"stop Patroni on {member.host}, run "
                               f"`{REPLICA_RESTORE}` there as the postgres user, then start Patroni")
    with progress.step(f"stop Patroni of {member.name}"):
        paths.patroni.stop(timeout=60)
        kill_postmaster(paths.data)  # only if Patroni left it behind; a running server blocks the restore
    try:
        with progress.step(f"pgbackrest delta restore of {member.name}") as step:
            result = run(restore_command(lab, dc, member))
            report.restore_seconds = result.seconds
            report.stats = parse_restore_output(result.stdout + result.stderr)
            report.replica_method = "pgbackrest"
            report.bytes_how = "from pgBackRest's per-file output (--log-level-console=detail)"
            step.detail = f"{report.stats.copied_files} file(s) copied, {report.stats.kept_files} kept"
    finally:
        with progress.step(f"start Patroni of {member.name}"):
            start_member(lab, dc, member)
    with progress.step(f"wait until {member.name} streams"):
        wait_streaming(member, timeout, must_restart=False)


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


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _stanza(lab: Lab, dc: Datacenter) -> str:
    repo = lab.topo.pgbackrest_for(dc)
    assert repo is not None
    return repo.stanza
