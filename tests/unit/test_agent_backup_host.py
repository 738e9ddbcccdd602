"""In the repository-host layout the repository host's agent runs the jobs, and the DC agents leave them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from agent.backup_host import BackupHostAgent, jobs_on_repo_host
from agent.backup_host_settings import backup_host_settings
from agent.daemon import Agent
from agent.settings import agent_settings
from federation.cli import cli
from federation.topology import Topology, parse_topology

TOPOLOGY = Path(__file__).parents[1] / "integration" / "topologies" / "backup-two-dc.yaml"
JOB = {"name": "nightly", "kind": "full_backup", "cron": "0 2 * * *"}


def topology(*, repo_host: bool = True) -> Topology:
    data: dict[str, Any] = yaml.safe_load(TOPOLOGY.read_text())
    data["datacenters"][0]["jobs"] = [JOB]
    if not repo_host:
        data["pgbackrest"] = {"stanza": "fed", "repo_path": "/var/lib/pgbackrest"}
    return parse_topology(data, str(TOPOLOGY))


def test_the_dc_agents_leave_the_jobs_to_the_repository_host() -> None:
    with_host, without = topology(), topology(repo_host=False)
    assert jobs_on_repo_host(with_host) and not jobs_on_repo_host(without)
    assert Agent(agent_settings(with_host, "dc1", "n1"))._runs_jobs is False
    assert Agent(agent_settings(without, "dc1", "n1"))._runs_jobs is True
    host = BackupHostAgent(backup_host_settings(with_host, identity="backup-host@test"))
    assert [s.dc.name for s in host.schedulers] == ["dc1"] and set(host.schedulers[0].jobs) == {"nightly"}


def test_backup_host_needs_a_repository_host_and_no_dc(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["pgbackrest"] = {"stanza": "fed", "repo_path": "/var/lib/pgbackrest"}
    plain.write_text(yaml.safe_dump(data))
    out = CliRunner().invoke(cli, ["agent", "run", "--backup-host", "-t", str(plain)])
    assert out.exit_code == 2 and "has no pgbackrest.repo_host" in out.output
    out = CliRunner().invoke(cli, ["agent", "run", "--backup-host", "--dc", "dc1", "-t", str(TOPOLOGY)])
    assert out.exit_code == 2 and "leave --dc out" in out.output
    out = CliRunner().invoke(cli, ["agent", "run", "-t", str(TOPOLOGY)])
    assert out.exit_code == 2 and "--dc DC is required" in out.output
