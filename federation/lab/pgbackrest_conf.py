"""pgBackRest settings for lab members: one shared repository and stanza.

With `pgbackrest.repo_host` (every shipped lab topology) the lab deploys the production layout, with the
files the product renders (backup/host_config.py): each member its own config (the repository over TLS),
the repository host its own. A lab topology without one still starts, in the old one-machine layout: every
member shares one config file and gets its per-node settings by environment (archive-push/archive-get
require pg1-path to equal the node's data directory); fedctl's backup commands then refuse, as they would
on real hosts.
"""

from __future__ import annotations

from pathlib import Path

from federation.lab.layout import LabLayout, MemberPaths
from federation.patroni_dynamic import ARCHIVE_PUSH as ARCHIVE_PUSH  # re-exported for the lab's callers
from federation.patroni_dynamic import REPLICA_RESTORE as REPLICA_RESTORE
from federation.pgbackrest_layout import PgBackRestConfig
from federation.topology import Datacenter, Member


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
    if repo.repo_host is not None:
        return {"PGBACKREST_CONFIG": str(member_config_path(layout, dc, member)), "PGBACKREST_STANZA": repo.stanza}
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


def repository_host(layout: LabLayout) -> PgBackRestConfig | None:
    """The section of the repository-host layout, when the lab deploys it."""
    section = layout.topo.pgbackrest_for(layout.topo.datacenters[0])
    return section if section is not None and section.repo_host is not None else None


def member_config_path(layout: LabLayout, dc: Datacenter, member: Member) -> Path:
    return layout.member(dc, member).root / "pgbackrest.conf"


def repo_host_env(section: PgBackRestConfig) -> dict[str, str]:
    assert section.repo_host is not None
    return {"PGBACKREST_CONFIG": section.repo_host.config, "PGBACKREST_STANZA": section.stanza}


def write_layout_configs(layout: LabLayout) -> None:
    """Every member's config and the repository host's, as `fedctl backup-config` renders them; the lab knows
    where each member's data and socket are, so it needs no running PostgreSQL to ask."""
    from backup.host_config import PgHost, member_config, repo_host_config

    section = repository_host(layout)
    assert section is not None and section.repo_host is not None
    topo = layout.topo
    for dc, member in topo.members():
        paths = layout.member(dc, member)
        member_config_path(layout, dc, member).parent.mkdir(parents=True, exist_ok=True)
        member_config_path(layout, dc, member).write_text(
            member_config(topo, section, member, str(paths.data), str(paths.socket_dir)))
    primary = topo.initial_primary
    hosts = [PgHost(m, str(layout.member(primary, m).data), str(layout.member(primary, m).socket_dir), i == 0)
             for i, m in enumerate(primary.members)]
    config = Path(section.repo_host.config)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(repo_host_config(topo, section, hosts))
