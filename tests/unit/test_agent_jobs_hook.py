"""The daemon starts the job scheduler when its agent becomes active and stops it when it is not."""

from __future__ import annotations

from pathlib import Path

import yaml

from agent.daemon import Agent
from agent.settings import agent_settings
from federation.topology import load_topology
from tests.unit.test_backup_jobs import TOPOLOGY


def test_the_scheduler_follows_the_lease(tmp_path: Path) -> None:
    """Without a repository host the DC's active agent runs the jobs (with one, agent/backup_host.py does)."""
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["pgbackrest"] = {"stanza": "fed", "repo_path": "/var/tmp/pg-federation/test-backup/pgbackrest/repo"}
    data["datacenters"][0]["jobs"] = [{"name": "archive", "kind": "check_archive", "cron": "*/10 * * * *"}]
    path = tmp_path / "topo.yaml"
    path.write_text(yaml.safe_dump(data))
    agent = Agent(agent_settings(load_topology(path), "dc1", "n1"))
    agent._lease_changed(True)
    assert agent.jobs.running and set(agent.jobs.next_run_times()) == {"archive"}
    assert b'fedctl_job_runs_total{dc="dc1",job="archive",kind="check_archive",status="ok"} 0.0' in agent.metrics_text()
    agent._lease_changed(False)
    assert not agent.jobs.running
