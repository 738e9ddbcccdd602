"""The agent's job scheduler on the real backup lab: a run lands in dc1's etcd and in `fedctl jobs`, and two
agents racing on one job run it once (the run claim in etcd).

`run_now` instead of a `* * * * *` cron: waiting for a fire time would cost up to a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from agent.scheduler import JobScheduler
from backup.jobs import JobResult, JobStore, claim_key
from backup.listing import list_backups
from backup.take import take_backup
from federation.dcs import connect
from federation.topology import load_topology
from tests.integration.labkit import LabHandle

pytestmark = pytest.mark.integration

JOB = "archive-check"


def with_jobs(lab: LabHandle, tmp_path: Path) -> Path:
    data = yaml.safe_load(lab.path.read_text())
    data["datacenters"][0]["jobs"] = [{"name": JOB, "kind": "check_archive", "cron": "*/10 * * * *"}]
    path = tmp_path / "backup-two-dc-jobs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_two_agents_racing_run_a_job_once_and_fedctl_jobs_shows_it(backup_lab: LabHandle, tmp_path: Path) -> None:
    path = with_jobs(backup_lab, tmp_path)
    topo = load_topology(path)
    if not list_backups(topo).backups:  # check_archive checks from the oldest backup on
        take_backup(topo, "dc1", "full")
    agents = [JobScheduler(topo, "dc1", identity) for identity in ("dc1/agent-a", "dc1/agent-b")]
    barrier = threading.Barrier(len(agents))
    results: dict[str, JobResult] = {}

    def race(scheduler: JobScheduler) -> None:
        barrier.wait()
        results[scheduler.identity] = scheduler.run_now(JOB)

    threads = [threading.Thread(target=race, args=(s,)) for s in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    ran = [(who, r) for who, r in results.items() if r.status != "skipped"]
    skipped = [(who, r) for who, r in results.items() if r.status == "skipped"]
    assert len(ran) == 1 and len(skipped) == 1, results
    (runner, result), (_, other) = ran[0], skipped[0]
    assert result.status == "ok", result.summary
    assert other.summary.startswith(f"skipped: already running on {runner} since")

    dc = topo.dc("dc1")
    with connect(dc) as dcs:
        assert dcs.get(claim_key(dc.dcs.namespace, topo.federation, "dc1", JOB)) is None
        mine = [r for r in JobStore(dcs, dc.dcs.namespace, topo.federation).history("dc1") if r.job == JOB]
    assert [r.status for r in mine[-2:]] == ["skipped", "ok"]  # the run records when it ends, after the skip

    out = subprocess.run([sys.executable, "-m", "federation", "jobs", "dc1", "-t", str(path), "--format", "json"],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)["datacenters"][0]
    declared = report["jobs"][0]
    assert (declared["name"], declared["last_status"], declared["running"]) == (JOB, "ok", None)
    assert declared["next_run"].endswith("0:00+00:00")
    assert (report["history"][0]["job"], report["history"][0]["summary"]) == (JOB, result.summary)
