"""Who the backup-host agent is and where it serves its API: repo_host.address:agent_port unless --listen says
otherwise, https with agent_api.tls (the repository host's certificate, `{host}` = repo_host.name)."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from agent.settings import Network, parse_allow, parse_listen
from federation.errors import BadInput
from federation.pgbackrest_layout import RepoHost, repo_host_of
from federation.topology import Address, Topology


@dataclass(frozen=True)
class BackupHostSettings:
    topo: Topology
    repo_host: RepoHost
    identity: str  # backup-host@<hostname>: the member of its events, and of fedctl_backup_host_info
    listen: Address
    api_allow: tuple[Network, ...] = ()  # empty: every address
    events_file: str | None = None  # None: kept in memory only

    @property
    def certificate_name(self) -> str:
        """Whose certificate of agent_api.tls it serves: the repository host's (its `{host}`)."""
        return self.repo_host.name


def default_identity() -> str:
    return f"backup-host@{socket.gethostname()}"


def backup_host_settings(topo: Topology, listen: str | None = None, *, allow: Sequence[str] = (),
                         events_file: str | None = None, identity: str | None = None) -> BackupHostSettings:
    repo = repo_host_of(topo)
    if repo is None:
        raise BadInput("the topology has no pgbackrest.repo_host: the DC agents run the jobs there")
    address = parse_listen(listen) if listen else Address(host=repo.address, port=repo.agent_port)
    events = os.path.abspath(events_file) if events_file else None
    return BackupHostSettings(topo, repo, identity or default_identity(), address, parse_allow(allow), events)
