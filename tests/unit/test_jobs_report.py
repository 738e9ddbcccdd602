"""`fedctl jobs` on a fake DCS reader: declared jobs with their next run, history newest first, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import backup.job_report
from backup.job_report import DcJobs, jobs_report
from backup.jobs import JobKind, JobResult
from federation.cli.app import cli
from federation.topology import Datacenter, Topology, load_topology
from tests.unit.test_backup_jobs import TOPOLOGY

NOW = datetime(2026, 1, 1, 12, 3, tzinfo=UTC)


@pytest.fixture
def topo_path(tmp_path: Path) -> Path:
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["datacenters"][0]["jobs"] = [{"name": "archive", "kind": "check_archive", "cron": "*/10 * * * *"},
                                      {"name": "nightly", "kind": "full_backup", "cron": "0 2 * * *"}]
    path = tmp_path / "topo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def result(job: str, minute: int, status: str) -> JobResult:
    return JobResult(job=job, kind=JobKind.CHECK_ARCHIVE if job == "archive" else JobKind.FULL_BACKUP, dc="dc1",
                     started=f"2026-01-01T12:{minute:02d}:00+00:00", seconds=1.5, status=status,  # type: ignore[arg-type]
                     summary=f"{status} at {minute}")


def reader(history: list[JobResult], claims: dict[str, str] | None = None,
           error: str | None = None) -> Callable[[Topology, Datacenter], DcJobs]:
    def read(_topo: Topology, dc: Datacenter) -> DcJobs:
        if dc.name != "dc1":
            return DcJobs()
        return DcJobs(history, claims or {}, error)
    return read


def test_jobs_show_next_run_last_result_and_history_newest_first(topo_path: Path) -> None:
    claim = json.dumps({"identity": "dc1/n1", "started": "2026-01-01T12:02:00+00:00"})
    history = [result("archive", 0, "failed"), result("nightly", 1, "skipped"), result("archive", 2, "ok")]
    report = jobs_report(load_topology(topo_path), None, NOW, reader(history, {"nightly": claim}))
    dc1, dc2 = report["datacenters"]
    assert report["ok"] and dc2 == {"name": "dc2", "jobs": [], "history": [], "failing": [], "error": None}
    archive, nightly = dc1["jobs"]
    assert (archive["next_run"], archive["last_status"], archive["running"]) == ("2026-01-01T12:10:00+00:00", "ok",
                                                                                None)
    assert (nightly["next_run"], nightly["running"]) == ("2026-01-02T02:00:00+00:00",
                                                          "dc1/n1 since 2026-01-01T12:02:00+00:00")
    assert [h["summary"] for h in dc1["history"]] == ["ok at 2", "skipped at 1", "failed at 0"]


@pytest.mark.parametrize("status", ["failed", "crashed", "overrun", "missed"])
def test_a_job_whose_last_run_did_not_succeed_fails_the_command(topo_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  status: str) -> None:
    monkeypatch.setattr(backup.job_report, "read_dc", reader([result("archive", 0, "ok"),
                                                              result("archive", 1, status)]))
    out = CliRunner().invoke(cli, ["jobs", "-t", str(topo_path)])
    assert out.exit_code == 1, out.output
    assert "PROBLEM dc1/archive: its last run did not succeed" in out.output
    assert "dc1: history, newest first" in out.output and "dc2: no jobs declared" in out.output


def test_results_of_undeclared_jobs_are_shown_but_do_not_fail(topo_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup.job_report, "read_dc", reader([result("old-job", 0, "failed")]))
    out = CliRunner().invoke(cli, ["jobs", "dc1", "-t", str(topo_path), "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [d["name"] for d in data["datacenters"]] == ["dc1"]
    assert data["datacenters"][0]["history"][0]["job"] == "old-job"


def test_an_unreadable_dcs_fails_the_command(topo_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup.job_report, "read_dc", reader([], error="etcd of dc1 does not answer"))
    out = CliRunner().invoke(cli, ["jobs", "dc1", "-t", str(topo_path)])
    assert out.exit_code == 1 and "cannot read the job history: etcd of dc1 does not answer" in out.output
