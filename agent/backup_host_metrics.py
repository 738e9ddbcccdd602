"""The backup-host agent's Prometheus metrics, in a registry of its own.

fedctl_backup_host_info{federation,member} says who it is (it has no DC of its own: the alert rules join it
on the target, as they join fedctl_agent_info for the DC agents), the fedctl_job_* series of every DC's
jobs carry their `dc` (agent/job_metrics.py), and fedctl_backup_host_dcs_up{dc} says whether each DC's DCS,
where the runs take their claims and record their results, answers.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from agent.job_metrics import JobMetrics


class BackupHostMetrics:
    def __init__(self, federation: str, member: str) -> None:
        self.registry = r = CollectorRegistry()
        info = Gauge("fedctl_backup_host_info", "Constant 1, labelled with who this backup-host agent is.",
                     ["federation", "member"], registry=r)
        info.labels(federation, member).set(1)
        self.dcs_up = Gauge("fedctl_backup_host_dcs_up", "1 when the DC's DCS answered the backup-host agent "
                            "recently (its job runs take their claims and record their results there).", ["dc"],
                            registry=r)
        self.event_write_errors = Counter("fedctl_agent_event_write_errors", "Events this agent could not write "
                                          "to its events log (agent/events.py): each one is missing from fedctl "
                                          "events.", registry=r)
        self.jobs = JobMetrics(r)

    def watch_dcs(self, dc: str, up: Callable[[], bool]) -> None:
        """Read `up` at scrape time, so /metrics never lags behind the DCS watch."""
        self.dcs_up.labels(dc).set_function(lambda: 1 if up() else 0)

    def text(self) -> bytes:
        return generate_latest(self.registry)
