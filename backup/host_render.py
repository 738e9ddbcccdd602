"""`fedctl backup-config`: gather what the layout needs now, render it, write it atomically."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

from backup.host_config import member_config, repo_host_config, require_repo_host, restore_config
from backup.host_layout import backup_hosts, data_location
from backup.runner import PgBackRestHost, repo_host_runner
from federation.errors import BadInput
from federation.os_user import OsUser
from federation.pgbackrest_layout import PgBackRestConfig
from federation.topology import Topology


def render_repo_host(topo: Topology) -> tuple[str, list[str], str]:
    """(config text, notes on members left out, where the repository host keeps it)."""
    dc, looks = backup_hosts(topo)
    section, repo = require_repo_host(topo.pgbackrest_for(dc), f"datacenter {dc.name}")
    hosts = [look.host for look in looks if look.host is not None]
    notes = [f"{look.member.name} left out of the backup hosts: {look.why_left_out}" for look in looks
             if look.why_left_out]
    if hosts and not any(h.healthy and not h.is_primary for h in hosts):
        notes.append(f"no healthy standby in {dc.name}: backups read from the primary (backup-standby=n)")
    return repo_host_config(topo, section, hosts), notes, repo.config


def render_member(topo: Topology, member_name: str) -> str:
    dc = next((d for d, m in topo.members() if m.name == member_name), None)
    if dc is None:
        known = ", ".join(m.name for _d, m in topo.members())
        raise BadInput(f"no member {member_name!r} in {topo.source} (members: {known})")
    member = dc.member(member_name)
    section, _repo = require_repo_host(topo.pgbackrest_for(dc), f"datacenter {dc.name}")
    data_dir, socket_dir = data_location(topo, member)
    return member_config(topo, section, member, data_dir, socket_dir)


def write_config(path: str, text: str, owner: OsUser | None = None) -> None:
    """Replace `path` atomically (readers never see half a file), mode 0640, owned by `owner` (the user
    pgBackRest runs as there) when we are root."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o640)
        if owner is not None and os.geteuid() == 0:
            os.chown(tmp, owner.uid, owner.gid)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def restore_host(section: PgBackRestConfig) -> PgBackRestHost:
    """pgBackRest on the repository host for a local restore (verify-restore): its own small config next to
    the repository host's, written afresh."""
    assert section.repo_host is not None
    host = repo_host_runner(section)
    path = Path(section.repo_host.config).with_name("pgbackrest-restore.conf")
    write_config(str(path), restore_config(section), owner=host.user)
    return replace(host, label=f"{host.label} (local restore)", env={**host.env, "PGBACKREST_CONFIG": str(path)})
