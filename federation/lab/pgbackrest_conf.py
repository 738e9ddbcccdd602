"""pgBackRest settings for lab members: one shared repo and stanza, per-node settings by environment.

archive-push/archive-get require pg1-path to equal the node's data directory, and archive_command is a
cluster-wide setting, so every Patroni process gets PGBACKREST_* variables that PostgreSQL and the
replica-creation command inherit.
"""

from __future__ import annotations

from pathlib import Path

from federation.lab.layout import LabLayout, MemberPaths
from federation.topology import Datacenter, Member

ARCHIVE_PUSH = "pgbackrest archive-push %p"
REPLICA_RESTORE = "pgbackrest --delta --type=standby restore"


def render_config(layout: LabLayout) -> str:
    base = layout.pgbackrest_dir
    repo = layout.topo.pgbackrest_for(layout.topo.datacenters[0])
    assert repo is not None
    lines = [
        "[global]",
        f"repo1-path={repo.repo_path}",
        "repo1-retention-full=2",
        f"log-path={base / 'log'}",
        f"lock-path={base / 'lock'}",
        f"spool-path={base / 'spool'}",
        "log-level-console=warn",
        "log-level-file=detail",
        "start-fast=y",
        "compress-type=lz4",
        "process-max=2",
        "archive-timeout=30",
        *(f"{k}={v}" for k, v in sorted(repo.options.items())),
        "",
        f"[{repo.stanza}]",
        "",
    ]
    return "\n".join(lines)


def member_env(layout: LabLayout, dc: Datacenter, member: Member) -> dict[str, str]:
    paths: MemberPaths = layout.member(dc, member)
    repo = layout.topo.pgbackrest_for(dc)
    assert repo is not None
    return {
        "PGBACKREST_CONFIG": str(layout.pgbackrest_config),
        "PGBACKREST_STANZA": repo.stanza,
        "PGBACKREST_PG1_PATH": str(paths.data),
        "PGBACKREST_PG1_PORT": str(member.port),
        "PGBACKREST_PG1_SOCKET_PATH": str(paths.socket_dir),
    }


def repo_dirs(layout: LabLayout) -> list[Path]:
    repo = layout.topo.pgbackrest_for(layout.topo.datacenters[0])
    assert repo is not None
    base = layout.pgbackrest_dir
    return [Path(repo.repo_path), base / "log", base / "lock", base / "spool"]
