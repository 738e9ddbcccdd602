"""The lab's fedctl agents: one per member, run as the lab user, tracked by a pid file in the member dir.

Each agent reads the lab's copy of the topology (`<lab dir>/topology.yaml`) and the member's patroni.yml
(to report its promotion gate), and listens on the member's address, Patroni REST port + 100. Exactly one
per DC is active (it holds the DC's lease).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from federation.errors import LabError
from federation.lab.pgbackrest_conf import repository_host
from federation.lab.processes import ManagedProcess
from federation.topology import DEFAULT_LAB_ROOT, Datacenter, Member

if TYPE_CHECKING:
    from federation.lab.lab import Lab
    from federation.lab.layout import LabLayout


def topology_copy(layout: LabLayout) -> Path:
    return layout.root / "topology.yaml"


def agent_process(layout: LabLayout, dc: Datacenter, member: Member) -> ManagedProcess:
    root = layout.member(dc, member).root
    # The marker's trailing space (from the NUL that follows the member's name in /proc/<pid>/cmdline) tells
    # n1 from n10. --patroni-config comes after --member, so agents started before it existed still match.
    marker = f"{topology_copy(layout)} --dc {dc.name} --member {member.name} "
    return ManagedProcess("agent", root / "agent.pid", root / "agent.log", marker, netns=layout.netns(dc))


def agent_argv(lab: Lab, dc: Datacenter, member: Member) -> list[str]:
    """The agent is given the patroni.yml the lab writes for its member (it reports the promotion gate from it)."""
    return [str(lab.bin / "fedctl"), "agent", "run", "-t", str(topology_copy(lab.layout)), "--dc", dc.name,
            "--member", member.name, "--patroni-config", str(lab.layout.member(dc, member).patroni_config)]


def share_secrets_with_lab_user(lab: Lab) -> None:
    """Let the lab user read the topology's secret files (the agent's rejoin-dc needs the superuser
    password). It holds these passwords already, in every member's patroni.yml; nothing new is shared."""
    if os.geteuid() != 0 or lab.user.is_self:
        return
    from federation.lab.lab import secret_refs

    for ref in secret_refs(lab.topo):
        path = ref.file_path
        if path is None or not path.is_file():
            continue
        if not _under_lab_roots(lab, path):
            # Never chgrp/chmod a file the lab did not make (password: {file: /etc/shadow} must stay as it is).
            raise LabError(f"secret file {path} lies outside {DEFAULT_LAB_ROOT} and {lab.layout.root}: the lab "
                           "shares only secret files it keeps itself with its user",
                           hint=f"put the lab's secrets under {DEFAULT_LAB_ROOT}/secrets (lab up creates them)")
        for target, bits in ((path.parent, stat.S_IXGRP), (path, stat.S_IRGRP)):
            info = target.stat()
            if info.st_gid != lab.user.gid:
                os.chown(target, -1, lab.user.gid)
            if not info.st_mode & bits:
                os.chmod(target, stat.S_IMODE(info.st_mode) | bits)


def _under_lab_roots(lab: Lab, path: Path) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(Path(root).resolve()) for root in (DEFAULT_LAB_ROOT, lab.layout.root))


def start_agents(lab: Lab, dc: Datacenter) -> list[int]:
    """Start the agent of every member of `dc` (those already running are left alone). Returns the pids."""
    share_secrets_with_lab_user(lab)
    env = {"PATH": f"{lab.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}", "PYTHONUNBUFFERED": "1"}
    pids = []
    for member in dc.members:
        root = lab.layout.member(dc, member).root
        root.mkdir(parents=True, exist_ok=True)
        proc = agent_process(lab.layout, dc, member)
        pids.append(proc.start(lab.user, agent_argv(lab, dc, member), env=env, cwd=root))
    return pids


def stop_agents(lab: Lab, dc: Datacenter, timeout: float = 15.0) -> None:
    """SIGTERM every agent of `dc` (each releases its lease), SIGKILL after `timeout`."""
    for member in dc.members:
        agent_process(lab.layout, dc, member).stop(timeout=timeout)


def kill_agents(lab: Lab, dc: Datacenter) -> list[str]:
    """SIGKILL every agent of `dc`, as a power loss would (leases expire after their TTL)."""
    killed = []
    for member in dc.members:
        proc = agent_process(lab.layout, dc, member)
        if proc.running():
            killed.append(f"agent {member.name}")
        proc.kill()
    return killed


def agent_rows(layout: LabLayout, dc: Datacenter) -> list[list[str]]:
    """Rows (DC, process, address, pid or '-') for `fedctl lab status`."""
    from agent.settings import default_listen

    return [[dc.name, f"agent {m.name}", str(default_listen(m)), str(agent_process(layout, dc, m).pid() or "-")]
            for m in dc.members]


def backup_host_process(layout: LabLayout) -> ManagedProcess:
    """The repository host's agent (`agent run --backup-host`), in the repository-host layout. Its API's
    certificate is agent_api.tls's for repo_host.name, which the lab issues with the repository host's
    pgBackRest certificate (federation/lab/tls_certs.py: one file, the same `{host}` pattern)."""
    root = layout.root / "repo-host"
    section = repository_host(layout)
    netns = layout.netns_of_address(section.repo_host.address) if section and section.repo_host else None
    return ManagedProcess("backup-host agent", root / "agent.pid", root / "agent.log",
                          f"--backup-host -t {topology_copy(layout)} ", netns=netns)


def backup_host_listen(layout: LabLayout) -> str:
    """Where the repository host's agent serves its API (/health, /metrics, /events): repo_host.address and
    agent_port, the default it is started with."""
    section = repository_host(layout)
    repo = section.repo_host if section is not None else None
    return f"{repo.address}:{repo.agent_port}" if repo is not None else "-"


def start_backup_host_agent(lab: Lab) -> int:
    share_secrets_with_lab_user(lab)
    env = {"PATH": f"{lab.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}", "PYTHONUNBUFFERED": "1"}
    proc = backup_host_process(lab.layout)
    proc.pidfile.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and not lab.user.is_self:
        # The agent runs there as the lab user and keeps its events log there (events.jsonl).
        os.chown(proc.pidfile.parent, lab.user.uid, lab.user.gid)
    argv = [str(lab.bin / "fedctl"), "agent", "run", "--backup-host", "-t", str(topology_copy(lab.layout))]
    return proc.start(lab.user, argv, env=env, cwd=proc.pidfile.parent)
