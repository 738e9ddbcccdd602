"""Scheduled job model, one job run's outcome, and the bounded DCS-backed result history (in-memory DCS)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from backup.jobs import HISTORY_LIMIT, Job, JobKind, JobList, JobResult, JobStore, bounded, run_job
from federation.dcs.base import DCS, Versioned
from federation.errors import DCSError, OperationFailed, OperationRefused
from federation.topology import Topology, load_topology

TOPOLOGY = Path(__file__).parents[1] / "integration" / "topologies" / "backup-two-dc.yaml"


class MemoryDCS(DCS):
    """A dict with versions, compare-and-set like etcd's mod_revision."""

    kind = "memory"

    def __init__(self) -> None:
        self.data: dict[str, Versioned] = {}
        self.revision = 0
        self.before_replace: list[str] = []  # keys another writer changes just before our next replace

    def _write(self, key: str, value: str) -> None:
        self.revision += 1
        self.data[key] = Versioned(key, value, self.revision)

    def get(self, key: str) -> Versioned | None:
        return self.data.get(key)

    def get_prefix(self, prefix: str) -> dict[str, Versioned]:
        return {k: v for k, v in self.data.items() if k.startswith(prefix)}

    def create(self, key: str, value: str) -> bool:
        if key in self.data:
            return False
        self._write(key, value)
        return True

    def replace(self, key: str, value: str, version: int) -> bool:
        if self.before_replace:
            other = self.before_replace.pop()
            self._write(other, self.data[other].value)
        if key not in self.data or self.data[key].version != version:
            return False
        self._write(key, value)
        return True

    def put(self, key: str, value: str) -> None:
        self._write(key, value)

    def delete(self, key: str, version: int | None = None) -> bool:
        if key not in self.data or (version is not None and self.data[key].version != version):
            return False
        del self.data[key]
        return True

    def close(self) -> None:
        pass


def result(n: int, dc: str = "dc1", status: str = "ok") -> JobResult:
    return JobResult(job=f"job{n}", kind=JobKind.CHECK_ARCHIVE, dc=dc, started=f"2026-01-01T00:00:{n % 60:02d}+00:00",
                     seconds=1.0, status=status, summary=f"run {n}")  # type: ignore[arg-type]


def test_job_model_accepts_kinds_and_cron() -> None:
    job = Job.model_validate({"name": "nightly", "kind": "full_backup", "cron": "0 2 * * *"})
    assert job.kind is JobKind.FULL_BACKUP
    fire = job.trigger().get_next_fire_time(None, datetime(2026, 1, 1, 3, 0, tzinfo=UTC))
    assert fire == datetime(2026, 1, 2, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(("data", "fragment"), [
    ({"name": "x", "kind": "full_backup", "cron": "61 * * * *"}, "not a cron expression"),
    ({"name": "x", "kind": "full_backup", "cron": "* * *"}, "not a cron expression"),
    ({"name": "x", "kind": "snapshot", "cron": "0 2 * * *"}, "full_backup"),
    ({"name": "Bad Name", "kind": "full_backup", "cron": "0 2 * * *"}, "pattern"),
    ({"name": "x", "kind": "full_backup", "cron": "0 2 * * *", "extra": 1}, "Extra inputs"),
])
def test_job_model_refuses_bad_jobs(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Job.model_validate(data)


def test_job_names_are_unique_within_a_dc() -> None:
    class Holder(BaseModel):
        jobs: JobList

    with pytest.raises(ValidationError, match="used twice in this datacenter: a"):
        Holder.model_validate({"jobs": [{"name": "a", "kind": "full_backup", "cron": "0 2 * * *"},
                                        {"name": "a", "kind": "check_archive", "cron": "*/5 * * * *"}]})


def test_bounded_history_keeps_the_newest() -> None:
    history: list[JobResult] = []
    for n in range(5):
        history = bounded(history, result(n), limit=3)
    assert [r.job for r in history] == ["job2", "job3", "job4"]


def test_store_records_and_reads_back_per_dc() -> None:
    dcs = MemoryDCS()
    store = JobStore(dcs, "/fed", "test-backup")
    store.record(result(1))
    store.record(result(2, status="failed"))
    store.record(result(3, dc="dc2"))
    assert [(r.job, r.ok) for r in store.history("dc1")] == [("job1", True), ("job2", False)]
    assert [r.job for r in store.history("dc2")] == ["job3"]
    assert store.history("dc3") == []
    assert "/fed/_fedctl/test-backup/jobs/dc1" in dcs.data


def test_store_bounds_its_history() -> None:
    store = JobStore(MemoryDCS(), "/fed/", "f")
    for n in range(HISTORY_LIMIT + 7):
        store.record(result(n))
    history = store.history("dc1")
    assert len(history) == HISTORY_LIMIT and history[-1].job == f"job{HISTORY_LIMIT + 6}"


def test_store_keeps_a_concurrent_writers_entry() -> None:
    dcs = MemoryDCS()
    store = JobStore(dcs, "/fed/", "f")
    store.record(result(1))
    other = JobStore(dcs, "/fed/", "f")
    dcs.before_replace.append(store.key("dc1"))  # someone rewrites the key between our read and our write
    store.record(result(2))
    other.record(result(3))
    assert [r.job for r in store.history("dc1")] == ["job1", "job2", "job3"]


def test_store_gives_up_after_repeated_races() -> None:
    dcs = MemoryDCS()
    store = JobStore(dcs, "/fed/", "f")
    store.record(result(1))
    dcs.before_replace.extend([store.key("dc1")] * 10)
    with pytest.raises(DCSError, match="kept changing"):
        store.record(result(2))


def test_store_skips_entries_that_do_not_parse() -> None:
    dcs = MemoryDCS()
    store = JobStore(dcs, "/fed/", "f")
    dcs.put(store.key("dc1"), json.dumps([{"job": "broken"}, result(1).model_dump(mode="json")]))
    assert [r.job for r in store.history("dc1")] == ["job1"]
    dcs.put(store.key("dc1"), "not json")
    assert store.history("dc1") == []


@pytest.fixture
def topo() -> Topology:
    return load_topology(TOPOLOGY)


def at_noon() -> datetime:
    return datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_backup_job_in_a_standby_dc_is_skipped(topo: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    import backup.take

    def refuse(*_args: object, **_kw: object) -> None:
        raise OperationRefused("datacenter dc2 is a standby DC")

    monkeypatch.setattr(backup.take, "take_backup", refuse)
    job = Job(name="nightly", kind=JobKind.FULL_BACKUP, cron="0 2 * * *")
    got = run_job(topo, "dc2", job, clock=at_noon)
    assert (got.status, got.ok, got.dc, got.started) == ("skipped", True, "dc2", "2026-01-01T12:00:00+00:00")
    assert "standby DC" in got.summary


def test_failed_and_crashing_jobs_become_failed_results(topo: Topology, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    import backup.archive_check

    def fail(*_args: object, **_kw: object) -> None:
        raise OperationFailed("datacenter dc1 has no leader right now")

    monkeypatch.setattr(backup.archive_check, "check_archive", fail)
    job = Job(name="archive", kind=JobKind.CHECK_ARCHIVE, cron="*/5 * * * *")
    got = run_job(topo, topo.dc("dc1"), job)
    assert got.status == "failed" and "no leader" in got.summary

    def crash(*_args: object, **_kw: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(backup.archive_check, "check_archive", crash)
    with caplog.at_level(logging.ERROR):
        got = run_job(topo, "dc1", job)
    assert got.status == "failed" and "KeyError" in got.summary
    assert "please report it as a BUG" in caplog.text
