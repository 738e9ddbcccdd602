"""pgBackRest's TLS servers in the lab's repository-host layout: one on the repository host, one per member."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from federation.errors import LabError
from federation.lab.layout import LabLayout
from federation.lab.pgbackrest_conf import member_config_path, repository_host
from federation.lab.processes import LabUser, ManagedProcess
from federation.pgbackrest_layout import member_tls_port
from federation.topology import Datacenter

START_TIMEOUT = 20.0


def _process(root: Path, config: str, netns: str | None = None) -> ManagedProcess:
    return ManagedProcess("pgbackrest-server", root / "pgbackrest-server.pid", root / "pgbackrest-server.log",
                          f"--config={config}", netns=netns)


def repo_server(layout: LabLayout) -> tuple[str, int, ManagedProcess] | None:
    section = repository_host(layout)
    if section is None or section.repo_host is None:
        return None
    repo = section.repo_host
    return repo.address, repo.tls_port, _process(Path(repo.config).parent, repo.config,
                                                 layout.netns_of_address(repo.address))


def member_servers(layout: LabLayout, dc: Datacenter) -> list[tuple[str, int, ManagedProcess]]:
    section = repository_host(layout)
    if section is None:
        return []
    return [(m.host, member_tls_port(section, m.pgbackrest_port),
             _process(layout.member(dc, m).root, str(member_config_path(layout, dc, m)), layout.netns(dc)))
            for m in dc.members]


def start_servers(servers: list[tuple[str, int, ManagedProcess]], user: LabUser) -> None:
    for _host, _port, proc in servers:
        if not proc.running():
            proc.start(user, ["pgbackrest", proc.marker, "server"], cwd=proc.pidfile.parent)
    deadline = time.monotonic() + START_TIMEOUT
    for host, port, proc in servers:
        while not _answers(host, port):
            if time.monotonic() > deadline:
                raise LabError(f"pgBackRest's TLS server on {host}:{port} did not start",
                               hint=f"see {proc.logfile}")
            time.sleep(0.1)


def stop_servers(servers: list[tuple[str, int, ManagedProcess]], *, kill: bool = False) -> list[str]:
    stopped = []
    for host, port, proc in servers:
        if proc.running():
            stopped.append(f"pgbackrest server {host}:{port}")
        if kill:
            proc.kill()
        else:
            proc.stop(timeout=15)
    return stopped


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
