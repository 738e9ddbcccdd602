"""Taking a backup on the primary DC's leader, with a canary row that restore verification looks for.

Before pgBackRest starts, a row goes into `fedctl_canary` on the primary; once the backup exists, the row
gets the backup's label (that update is newer than the backup, so a restore of the set holds the row
without the label). `verify-restore` then checks the row with that id is in the restored copy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backup.cluster import Leader, primary_leader, sql
from backup.host_render import render_repo_host, write_config
from backup.info import Backup, StanzaInfo, read_info
from backup.runner import PgBackRestCommand, repo_host_runner, repository_section, run
from federation.errors import BadInput, OperationFailed
from federation.pgbackrest_layout import PgBackRestConfig
from federation.progress import Progress
from federation.topology import Topology

BACKUP_TYPES = ("full", "diff", "incr")
CANARY_TABLE = "fedctl_canary"
CANARY_DDL = (f"CREATE TABLE IF NOT EXISTS {CANARY_TABLE} (id bigserial PRIMARY KEY, label_hint text NOT NULL, "
              "written_at timestamptz NOT NULL DEFAULT clock_timestamp(), backup_label text)")


@dataclass(frozen=True)
class Canary:
    id: int
    label_hint: str
    written_at: datetime


@dataclass(frozen=True)
class BackupOutcome:
    dc: str
    member: str
    backup: Backup
    canary: Canary
    seconds: float

    def to_json_dict(self) -> dict[str, Any]:
        return {"dc": self.dc, "member": self.member, "label": self.backup.label, "type": self.backup.type,
                "seconds": round(self.seconds, 3), "canary_id": self.canary.id,
                "canary_written_at": self.canary.written_at.isoformat()}


def write_canary(topo: Topology, leader: Leader, label_hint: str) -> Canary:
    sql(topo, leader.member, CANARY_DDL)
    rows = sql(topo, leader.member, f"INSERT INTO {CANARY_TABLE} (label_hint) VALUES (%s) RETURNING id, written_at",
               (label_hint,))
    return Canary(int(rows[0][0]), label_hint, rows[0][1])


def label_canary(topo: Topology, leader: Leader, canary: Canary, label: str) -> None:
    sql(topo, leader.member, f"UPDATE {CANARY_TABLE} SET backup_label = %s WHERE id = %s", (label, canary.id))


def backup_command(topo: Topology, dc_name: str, kind: str = "full") -> tuple[Leader, PgBackRestCommand]:
    """The pgbackrest command a backup of `dc_name` would run (refuses a standby DC)."""
    if kind not in BACKUP_TYPES:
        raise BadInput(f"unknown backup type {kind!r} (one of: {', '.join(BACKUP_TYPES)})")
    leader = primary_leader(topo.dc(dc_name))
    # The repository host backs up, through the members' TLS servers.
    return leader, repo_host_runner(repository_section(topo, leader.dc)).command("backup", f"--type={kind}",
                                                                                 timeout=3600)


def take_backup(topo: Topology, dc_name: str, kind: str = "full", progress: Progress | None = None) -> BackupOutcome:
    """Write a canary, back up the DC's primary with pgBackRest, label the canary; returns the new set."""
    progress = progress or Progress(quiet=True)
    with progress.step(f"find the primary of {dc_name}") as step:
        leader, command = backup_command(topo, dc_name, kind)
        step.detail = leader.member.name
    section = topo.pgbackrest_for(leader.dc)
    if section is not None and section.repo_host is not None:
        with progress.step("render the repository host's pgbackrest.conf (the primary DC as it is now)") as step:
            step.detail = _render_repo_config(topo, section, command, progress)
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with progress.step("write the canary row") as step:
        canary = write_canary(topo, leader, f"{dc_name} {kind} {stamp}")
        step.detail = f"id {canary.id}"
    before = {b.label for b in _info(topo, leader, command).backups}
    with progress.step(f"pgbackrest backup --type={kind} on {leader.member.name}") as step:
        run(command, attempts=3, retry_delay=5.0)
        new = [b for b in _info(topo, leader, command).backups if b.label not in before]
        if not new:
            raise OperationFailed("pgBackRest reported success but no new backup set appears in `pgbackrest info`")
        backup = new[-1]
        step.detail = backup.label
    with progress.step("label the canary row"):
        label_canary(topo, leader, canary, backup.label)
    return BackupOutcome(dc_name, leader.member.name, backup, canary, time.monotonic() - started)


def _info(topo: Topology, leader: Leader, command: PgBackRestCommand) -> StanzaInfo:
    repo = topo.pgbackrest_for(leader.dc)
    assert repo is not None
    return read_info(command.host, repo.stanza).require_ok(allow_no_backups=True)


def _render_repo_config(topo: Topology, section: PgBackRestConfig, command: PgBackRestCommand,
                        progress: Progress) -> str:
    """Write the repository host's config for the members as they are now; say who is left out and why."""
    text, notes, path = render_repo_host(topo)
    write_config(path, text, owner=command.host.user)
    for note in notes:
        progress.say(f"   {note}")
    standby = "backup-standby=y" in text.splitlines()
    source = "from a standby" if standby else "from the primary"
    return f"{path}: {source}" + (f"; {'; '.join(notes)}" if notes else "")
