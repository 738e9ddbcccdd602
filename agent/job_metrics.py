"""Prometheus metrics of scheduled jobs, registered in the agent's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from backup.jobs import Job, JobResult

STATUSES = ("ok", "failed", "skipped", "overrun", "missed", "crashed")


class JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        self.last_ok = Gauge("fedctl_job_last_success",
                             "1 when the job's last result was ok or skipped, 0 when it failed, crashed, overran or "
                             "was missed.", ["job", "kind"], registry=r)
        self.last_seconds = Gauge("fedctl_job_last_duration_seconds", "Duration of the job's last run that started.",
                                  ["job", "kind"], registry=r)
        self.last_time = Gauge("fedctl_job_last_run_timestamp_seconds", "Unix time the job's last result was recorded.",
                               ["job", "kind"], registry=r)
        self.runs = Counter("fedctl_job_runs", "Job results by status.", ["job", "kind", "status"], registry=r)
        self.overruns = Counter("fedctl_job_overruns",
                                "Fire times that found the job's previous run still going (the run was not started).",
                                ["job", "kind"], registry=r)

    def declare(self, jobs: list[Job]) -> None:
        """Create every series up front so a job that never ran shows zeros rather than nothing."""
        for job in jobs:
            self.overruns.labels(job.name, job.kind.value)
            for status in STATUSES:
                self.runs.labels(job.name, job.kind.value, status)

    def observe(self, result: JobResult, *, ran: bool, at: float) -> None:
        labels = (result.job, result.kind.value)
        self.last_ok.labels(*labels).set(1 if result.ok else 0)
        self.last_time.labels(*labels).set(at)
        self.runs.labels(*labels, result.status).inc()
        if ran:
            self.last_seconds.labels(*labels).set(result.seconds)
        if result.status == "overrun":
            self.overruns.labels(*labels).inc()
