"""pgbackrest.conf for the repository-host layout, rendered from the topology (pure: no I/O).

`repo_host_config` is the repository host's file: its own TLS server (the database hosts' archive-push and
archive-get arrive there), and one `pgN-*` block per member of the DC that is primary now, leader first,
reached through each member's TLS server; `backup-standby=y` when one of them is a healthy standby, so the
backup reads from it and the primary only serves the start and stop calls. `member_config` is a database
host's file: the repository reached over TLS, and its own TLS server, which only the repository host's
certificate may use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from federation.errors import BadInput
from federation.pgbackrest_layout import PgBackRestConfig, RepoHost, member_tls_port
from federation.topology import Member, Topology

FILE_HEADER = "# Written by `fedctl backup config` from the topology: edit the topology, not this file."


@dataclass(frozen=True)
class PgHost:
    """One PostgreSQL member as the repository host reaches it: where its data is, whether it leads."""

    member: Member
    data_dir: str
    socket_dir: str | None
    is_primary: bool
    healthy: bool = True  # its TLS server answers and, for a standby, it streams


def require_repo_host(section: PgBackRestConfig | None, where: str) -> tuple[PgBackRestConfig, RepoHost]:
    if section is None or section.repo_host is None or section.tls is None:
        raise BadInput(f"{where} has no pgbackrest.repo_host: there is no repository host to render a config for",
                       hint="add repo_host and tls to the pgbackrest section (docs/backups.md, production layout)")
    return section, section.repo_host


def _global(section: PgBackRestConfig) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(section.options.items())]


def repo_host_config(topo: Topology, section: PgBackRestConfig, hosts: Sequence[PgHost]) -> str:
    """The repository host's pgbackrest.conf for backing up `hosts` (the primary DC's members)."""
    section, repo = require_repo_host(section, topo.source)
    assert section.tls is not None
    tls = section.tls
    usable = [h for h in hosts if h.healthy]
    primaries = [h for h in usable if h.is_primary]
    if not primaries:
        raise BadInput("no healthy primary among the hosts to back up: pgBackRest needs the primary",
                       hint="check `fedctl status`; a backup runs in the primary DC")
    standbys = [h for h in usable if not h.is_primary]
    lines = [FILE_HEADER, "[global]", f"repo1-path={section.repo_path}",
             f"tls-server-address={repo.address}", f"tls-server-port={repo.tls_port}",
             f"tls-server-cert-file={tls.cert(repo.name)}", f"tls-server-key-file={tls.key(repo.name)}",
             f"tls-server-ca-file={tls.ca_file}",
             # Every database host of every DC pushes WAL here: each may be the primary one day.
             *(f"tls-server-auth={m.name}={section.stanza}" for _dc, m in topo.members()),
             f"backup-standby={'y' if standbys else 'n'}", *_global(section), "", f"[{section.stanza}]"]
    for index, host in enumerate([*primaries, *standbys], start=1):
        member = host.member
        lines += [f"pg{index}-host={member.host}", f"pg{index}-host-type=tls",
                  f"pg{index}-host-port={member_tls_port(section, member.pgbackrest_port)}",
                  f"pg{index}-host-cert-file={tls.cert(repo.name)}", f"pg{index}-host-key-file={tls.key(repo.name)}",
                  f"pg{index}-host-ca-file={tls.ca_file}", f"pg{index}-path={host.data_dir}",
                  f"pg{index}-port={member.port}"]
        if host.socket_dir:
            lines.append(f"pg{index}-socket-path={host.socket_dir}")
    return "\n".join([*lines, ""])


def member_config(topo: Topology, section: PgBackRestConfig, member: Member, data_dir: str,
                  socket_dir: str | None) -> str:
    """A database host's pgbackrest.conf: WAL to and from the repository host, and its own TLS server."""
    section, repo = require_repo_host(section, topo.source)
    assert section.tls is not None
    tls = section.tls
    # repo1-path names the repository on the repository host: pgBackRest sends it along with each request.
    lines = [FILE_HEADER, "[global]", f"repo1-path={section.repo_path}", f"repo1-host={repo.address}",
             "repo1-host-type=tls",
             f"repo1-host-port={repo.tls_port}", f"repo1-host-cert-file={tls.cert(member.name)}",
             f"repo1-host-key-file={tls.key(member.name)}", f"repo1-host-ca-file={tls.ca_file}",
             f"tls-server-address={member.host}",
             f"tls-server-port={member_tls_port(section, member.pgbackrest_port)}",
             f"tls-server-cert-file={tls.cert(member.name)}", f"tls-server-key-file={tls.key(member.name)}",
             f"tls-server-ca-file={tls.ca_file}", f"tls-server-auth={repo.name}={section.stanza}",
             *_global(section), "", f"[{section.stanza}]", f"pg1-path={data_dir}", f"pg1-port={member.port}"]
    if socket_dir:
        lines.append(f"pg1-socket-path={socket_dir}")
    return "\n".join([*lines, ""])


def restore_config(section: PgBackRestConfig) -> str:
    """The repository host's config for restoring into a scratch directory there: the repository alone, no
    pg hosts (a restore with pgN-host set would be sent to that host)."""
    return "\n".join([FILE_HEADER, "[global]", f"repo1-path={section.repo_path}", *_global(section), "",
                      f"[{section.stanza}]", ""])
