"""The agent's job scheduler: run claims, results in the DC's DCS, metrics, overruns and crashes.

An in-memory DCS stands in for etcd and a runner function for run_job; the overrun test uses a real
apscheduler with a sub-second interval trigger instead of the job's cron.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from agent.scheduler import JobScheduler
from backup.jobs import Job, JobResult, JobStore, claim_key
from federation.dcs.base import DCS
from federation.errors import BadInput, DCSError
from federation.topology import Datacenter, Topology, load_topology
from tests.unit.test_backup_jobs import TOPOLOGY, MemoryDCS

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
KEY = claim_key("/fed/", "test-backup", "dc1", "archive")


@pytest.fixture
def topo(tmp_path: Path) -> Topology:
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["datacenters"][0]["jobs"] = [{"name": "archive", "kind": "check_archive", "cron": "*/10 * * * *"},
                                      {"name": "nightly", "kind": "full_backup", "cron": "0 2 * * *",
                                       "timeout": 600}]
    path = tmp_path / "topo.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_topology(path)


class Runs:
    """A run_job substitute: returns `status`, or waits on `release` first when `block` is set."""

    def __init__(self, status: str = "ok", block: bool = False) -> None:
        self.status = status
        self.calls: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not block:
            self.release.set()

    def __call__(self, topo: Topology, dc: Datacenter, job: Job, *, clock: Callable[[], datetime]) -> JobResult:
        self.calls.append(job.name)
        self.entered.set()
        self.release.wait(10)
        return JobResult(job=job.name, kind=job.kind, dc=dc.name, started=clock().isoformat(), seconds=2.5,
                         status=self.status, summary=f"{self.status} run")  # type: ignore[arg-type]


def scheduler(topo: Topology, dcs: DCS, runner: Callable[..., JobResult], identity: str = "dc1/n1",
              **kw: object) -> JobScheduler:
    @contextmanager
    def open_dcs() -> Iterator[DCS]:
        yield dcs

    return JobScheduler(topo, "dc1", identity, open_dcs=open_dcs, runner=runner, clock=lambda: NOON,
                        registry=CollectorRegistry(), **kw)  # type: ignore[arg-type]


def history(dcs: DCS) -> list[tuple[str, str, str]]:
    return [(r.job, r.status, r.summary) for r in JobStore(dcs, "/fed/", "test-backup").history("dc1")]


def sample(s: JobScheduler, name: str, **labels: str) -> float | None:
    """A series of the scheduler's DC (every job series carries its `dc`)."""
    return s.metrics.registry.get_sample_value(name, {"dc": s.dc.name, **labels})


def test_a_run_is_recorded_in_the_dcs_and_its_claim_removed(topo: Topology) -> None:
    dcs, runs = MemoryDCS(), Runs()
    s = scheduler(topo, dcs, runs)
    got = s.run_now("archive")
    assert (got.status, runs.calls) == ("ok", ["archive"])
    assert history(dcs) == [("archive", "ok", "ok run")]
    assert KEY not in dcs.data
    labels = {"job": "archive", "kind": "check_archive"}
    assert sample(s, "fedctl_job_last_success", **labels) == 1
    assert sample(s, "fedctl_job_last_duration_seconds", **labels) == 2.5
    assert sample(s, "fedctl_job_runs_total", status="ok", **labels) == 1
    assert sample(s, "fedctl_job_runs_total", status="failed", **labels) == 0
    assert sample(s, "fedctl_job_runs_total", status="ok", job="nightly", kind="full_backup") == 0


def test_a_failed_run_sets_last_success_to_zero(topo: Topology) -> None:
    dcs = MemoryDCS()
    s = scheduler(topo, dcs, Runs("failed"))
    assert s.run_now("archive").status == "failed"
    assert sample(s, "fedctl_job_last_success", job="archive", kind="check_archive") == 0


def test_a_job_claimed_by_another_agent_is_skipped_and_not_run(topo: Topology) -> None:
    dcs, runs = MemoryDCS(), Runs()
    dcs.create(KEY, json.dumps({"identity": "dc1/n2", "started": (NOON - timedelta(minutes=5)).isoformat()}))
    got = scheduler(topo, dcs, runs).run_now("archive")
    assert got.status == "skipped" and got.summary.startswith("skipped: already running on dc1/n2 since")
    assert runs.calls == []
    assert json.loads(dcs.data[KEY].value)["identity"] == "dc1/n2"  # the other agent's claim is left alone
    assert history(dcs)[-1][:2] == ("archive", "skipped")


@pytest.mark.parametrize("claim", [
    json.dumps({"identity": "dc1/n2", "started": (NOON - timedelta(minutes=16)).isoformat()}),  # timeout 15 min
    "garbage",
])
def test_a_stale_or_unreadable_claim_is_taken_over(topo: Topology, claim: str) -> None:
    dcs, runs = MemoryDCS(), Runs()
    dcs.create(KEY, claim)
    assert scheduler(topo, dcs, runs).run_now("archive").status == "ok"
    assert runs.calls == ["archive"] and KEY not in dcs.data


def test_the_job_timeout_decides_when_a_claim_is_stale(topo: Topology) -> None:
    dcs, runs = MemoryDCS(), Runs()
    key = claim_key("/fed/", "test-backup", "dc1", "nightly")  # timeout: 600 in the topology
    dcs.create(key, json.dumps({"identity": "dc1/n2", "started": (NOON - timedelta(minutes=9)).isoformat()}))
    assert scheduler(topo, dcs, runs).run_now("nightly").status == "skipped"
    dcs.put(key, json.dumps({"identity": "dc1/n2", "started": (NOON - timedelta(minutes=11)).isoformat()}))
    assert scheduler(topo, dcs, runs).run_now("nightly").status == "ok"


def test_two_agents_racing_on_one_job_run_it_once(topo: Topology) -> None:
    dcs, runs = MemoryDCS(), Runs(block=True)
    first, second = scheduler(topo, dcs, runs, "dc1/n1"), scheduler(topo, dcs, runs, "dc1/n2")
    results: list[JobResult] = []
    thread = threading.Thread(target=lambda: results.append(first.run_now("archive")))
    thread.start()
    assert runs.entered.wait(5)
    other = second.run_now("archive")
    runs.release.set()
    thread.join(5)
    assert runs.calls == ["archive"]
    assert (results[0].status, other.status) == ("ok", "skipped")
    assert "already running on dc1/n1" in other.summary
    assert [h[1] for h in history(dcs)] == ["skipped", "ok"]
    assert KEY not in dcs.data


def test_a_crashing_runner_is_recorded_as_crashed_with_the_last_traceback_line(topo: Topology) -> None:
    dcs = MemoryDCS()

    def crash(*_args: object, **_kw: object) -> JobResult:
        raise KeyError("boom")

    s = scheduler(topo, dcs, crash)
    got = s.run_now("archive")
    assert (got.status, got.summary) == ("crashed", "crashed: KeyError: 'boom'")
    assert history(dcs) == [("archive", "crashed", "crashed: KeyError: 'boom'")]
    assert KEY not in dcs.data
    assert sample(s, "fedctl_job_last_success", job="archive", kind="check_archive") == 0


def test_an_unreachable_dcs_means_the_job_is_not_run(topo: Topology) -> None:
    runs = Runs()

    def down() -> DCS:
        raise DCSError("etcd of dc1 does not answer")

    s = JobScheduler(topo, "dc1", "dc1/n1", open_dcs=down, runner=runs, registry=CollectorRegistry())
    got = s.run_now("archive")
    assert got.status == "failed" and "cannot take its run claim: etcd of dc1 does not answer" in got.summary
    assert runs.calls == []


def test_an_unknown_job_is_bad_input(topo: Topology) -> None:
    with pytest.raises(BadInput, match="dc1 has no job 'nope'"):
        scheduler(topo, MemoryDCS(), Runs()).run_now("nope")


def test_a_fire_time_during_a_run_is_recorded_as_an_overrun(topo: Topology) -> None:
    dcs, runs = MemoryDCS(), Runs(block=True)
    s = scheduler(topo, dcs, runs, trigger=lambda job: IntervalTrigger(seconds=0.3) if job.name == "archive"
                  else job.trigger())
    s.start()
    try:
        assert runs.entered.wait(5)
        deadline = time.monotonic() + 5
        while not any(h[1] == "overrun" for h in history(dcs)) and time.monotonic() < deadline:
            time.sleep(0.05)
        calls_while_blocked = list(runs.calls)
        runs.release.set()
    finally:
        s.shutdown()
    overrun = next(h for h in history(dcs) if h[1] == "overrun")
    assert "the previous run (started 2026-01-01T12:00:00+00:00) was still going" in overrun[2]
    assert calls_while_blocked == ["archive"]  # max_instances=1: the fire time did not start a second run
    assert sample(s, "fedctl_job_overruns_total", job="archive", kind="check_archive")


def test_start_and_shutdown_follow_the_lease(topo: Topology) -> None:
    s = scheduler(topo, MemoryDCS(), Runs())
    s.start()
    s.start()  # winning the lease twice does not schedule twice
    assert s.running
    times = s.next_run_times()
    assert set(times) == {"archive", "nightly"} and all(t is not None for t in times.values())
    s.shutdown()
    assert not s.running and s.next_run_times() == {}
    s.start()  # the lease won again: a new scheduler
    assert s.running
    s.shutdown()
    s.shutdown()


def test_a_dc_without_jobs_starts_nothing(topo: Topology) -> None:
    s = JobScheduler(topo, "dc2", "dc2/n3", registry=CollectorRegistry())
    s.start()
    assert not s.running
