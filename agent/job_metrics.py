"""Prometheus metrics of scheduled jobs, registered in the agent's own registry.

Every series carries the job's `dc`: the backup-host agent runs the jobs of several DCs in one registry, and
two DCs may name a job alike. A DC agent's series carry its own DC (fedctl_agent_info says it too).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from backup.jobs import Job, JobResult

STATUSES = ("ok", "failed", "skipped", "overrun", "missed", "crashed")
LABELS = ["dc", "job", "kind"]


class JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        self.last_ok = Gauge("fedctl_job_last_success",
                             "1 when the job's last result was ok or skipped, 0 when it failed, crashed, overran or "
                             "was missed.", LABELS, registry=r)
        self.last_seconds = Gauge("fedctl_job_last_duration_seconds", "Duration of the job's last run that started.",
                                  LABELS, registry=r)
        self.last_time = Gauge("fedctl_job_last_run_timestamp_seconds", "Unix time the job's last result was recorded.",
                               LABELS, registry=r)
        self.runs = Counter("fedctl_job_runs", "Job results by status.", [*LABELS, "status"], registry=r)
        self.overruns = Counter("fedctl_job_overruns",
                                "Fire times that found the job's previous run still going (the run was not started).",
                                LABELS, registry=r)

    def declare(self, dc: str, jobs: list[Job]) -> None:
        """Create every series up front so a job that never ran shows zeros rather than nothing."""
        for job in jobs:
            self.overruns.labels(dc, job.name, job.kind.value)
            for status in STATUSES:
                self.runs.labels(dc, job.name, job.kind.value, status)

    def observe(self, result: JobResult, *, ran: bool, at: float) -> None:
        labels = (result.dc, result.job, result.kind.value)
        self.last_ok.labels(*labels).set(1 if result.ok else 0)
        self.last_time.labels(*labels).set(at)
        self.runs.labels(*labels, result.status).inc()
        if ran:
            self.last_seconds.labels(*labels).set(result.seconds)
        if result.status == "overrun":
            self.overruns.labels(*labels).inc()
