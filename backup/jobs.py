"""Scheduled backup jobs: one run of a job, and a bounded result history in the DCS. What a DC declares
(`jobs:` in the topology) is federation.job_spec's.

The agent owns the schedule (apscheduler, one `Job.trigger()` per job) and calls `run_job(topo, dc, job)`;
everything here is usable without it. A backup job in a DC that is a standby now is skipped, not failed:
backups follow the primary role, so every DC can carry the same jobs and only the primary's run.

Results go to `<namespace>_fedctl/<federation>/jobs/<dc>` in the DC's own DCS: one JSON list, newest last,
at most `HISTORY_LIMIT` entries, written with compare-and-set so two writers never lose each other's entry.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from federation.dcs.base import DCS
from federation.errors import DCSError, FedError, OperationRefused
from federation.job_spec import DEFAULT_TIMEOUTS, Job, JobKind, JobList

__all__ = ["DEFAULT_TIMEOUTS", "HISTORY_LIMIT", "Job", "JobKind", "JobList", "JobResult", "JobStore", "Status",
           "bounded", "claim_key", "run_job"]

if TYPE_CHECKING:
    from federation.topology import Datacenter, Topology

log = logging.getLogger(__name__)

HISTORY_LIMIT = 50
CAS_ATTEMPTS = 5

Status = Literal["ok", "failed", "skipped", "overrun", "missed", "crashed"]
"""`overrun`, `missed` and `crashed` come from the agent's scheduler (agent/scheduler.py), never from run_job."""


class JobResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    job: str
    kind: JobKind
    dc: str
    started: str  # ISO 8601, UTC
    seconds: float
    status: Status
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")


def bounded(history: list[JobResult], result: JobResult, limit: int = HISTORY_LIMIT) -> list[JobResult]:
    """`history` with `result` appended, keeping the newest `limit` entries."""
    return [*history, result][-limit:] if limit > 0 else []


def _execute(topo: Topology, dc: Datacenter, job: Job) -> tuple[Literal["ok", "failed"], str, dict[str, Any]]:
    # Imported here: these modules need the topology, which imports this module for `Job`.
    if job.kind in (JobKind.FULL_BACKUP, JobKind.DIFF_BACKUP):
        from backup.take import take_backup

        outcome = take_backup(topo, dc.name, "full" if job.kind is JobKind.FULL_BACKUP else "diff")
        return "ok", f"backup {outcome.backup.label} in {outcome.seconds:.1f} s", outcome.to_json_dict()
    if job.kind is JobKind.VERIFY_RESTORE:
        from backup.verify import verify_restore

        report = verify_restore(topo, dc.name)
        bad = [f.check for f in report.findings if not f.ok]
        summary = f"{report.label}: RTO {report.rto_seconds:.1f} s" + (f", failed: {', '.join(bad)}" if bad else "")
        return ("ok" if report.ok else "failed"), summary, report.to_json_dict()
    from backup.archive_check import check_archive

    archive = check_archive(topo, dc.name)
    bad = [f.message for f in archive.findings if not f.ok]
    return ("ok" if archive.ok else "failed"), "; ".join(bad) or "archive complete", archive.to_json_dict()


def run_job(topo: Topology, dc: Datacenter | str, job: Job, *,
            clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> JobResult:
    """Run one job now and return its result; never raises for a failed job (the scheduler lives on)."""
    dc_obj = topo.dc(dc) if isinstance(dc, str) else dc
    started_at = clock()
    started = time.monotonic()
    details: dict[str, Any] = {}
    status: Literal["ok", "failed", "skipped"]
    try:
        status, summary, details = _execute(topo, dc_obj, job)
    except OperationRefused as exc:
        if job.kind in (JobKind.FULL_BACKUP, JobKind.DIFF_BACKUP):
            status, summary = "skipped", f"skipped: {exc.message}"
        else:
            status, summary = "failed", str(exc)
    except FedError as exc:
        status, summary = "failed", str(exc)
    except Exception as exc:  # a job's bug must not kill the scheduler; logged with its traceback
        log.error("job %s (%s) in %s raised an unexpected error, please report it as a BUG:\n%s", job.name,
                  job.kind.value, dc_obj.name, traceback.format_exc())
        status, summary = "failed", f"unexpected error: {type(exc).__name__}: {exc}"
    return JobResult(job=job.name, kind=job.kind, dc=dc_obj.name, started=started_at.isoformat(timespec="seconds"),
                     seconds=round(time.monotonic() - started, 3), status=status, summary=summary, details=details)


class JobStore:
    """Job results of DCs, kept in a DCS (usually each DC's own) as a bounded list per DC."""

    def __init__(self, dcs: DCS, namespace: str, federation: str, limit: int = HISTORY_LIMIT) -> None:
        self.dcs = dcs
        self.prefix = f"{namespace if namespace.endswith('/') else namespace + '/'}_fedctl/{federation}/jobs/"
        self.limit = limit

    def key(self, dc: str) -> str:
        return self.prefix + dc

    def history(self, dc: str) -> list[JobResult]:
        """Results of `dc`, oldest first; entries that do not parse are left out."""
        found = self.dcs.get(self.key(dc))
        return _parse(found.value) if found else []

    def record(self, result: JobResult) -> None:
        """Append `result` to its DC's history (compare-and-set, retried on a lost race)."""
        key = self.key(result.dc)
        for _ in range(CAS_ATTEMPTS):
            found = self.dcs.get(key)
            history = _parse(found.value) if found else []
            payload = json.dumps([r.model_dump(mode="json") for r in bounded(history, result, self.limit)])
            if self.dcs.create(key, payload) if found is None else self.dcs.replace(key, payload, found.version):
                return
        raise DCSError(f"could not record job {result.job} of {result.dc}: {key} kept changing under us "
                       f"({CAS_ATTEMPTS} attempts)", hint="another writer is busy on that key; retry later")


def _parse(raw: str) -> list[JobResult]:
    try:
        items = json.loads(raw)
    except ValueError:
        return []
    out = []
    for item in items if isinstance(items, list) else []:
        try:
            out.append(JobResult.model_validate(item))
        except ValidationError:
            continue
    return out


def claim_key(namespace: str, federation: str, dc: str, job: str) -> str:
    """Where the agent running a job keeps its run claim, so two agents never run one job twice."""
    ns = namespace if namespace.endswith("/") else namespace + "/"
    return f"{ns}_fedctl/{federation}/jobs/{dc}/{job}/running"
