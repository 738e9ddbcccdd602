"""The agent of the repository host (`fedctl agent run --backup-host`): it runs every DC's scheduled jobs.

In pgBackRest's repository-host layout the backups, their checks and restore verification run where the
repository is, so the jobs run there too and the DC agents leave them alone. Each run still takes the job's
run claim in its DC's DCS and records its result there, as the DC agents did: `fedctl jobs` shows them the
same way, and a second backup host (a standby one) never runs a job twice.

It serves the DC agents' read-only API (agent/api.py) on repo_host.address:agent_port: /health (its job
schedulers run and every DC's DCS it needs answers), /metrics (every DC's fedctl_job_* with their `dc`,
agent/backup_host_metrics.py), /events (its `job` events) and /status (its jobs and DCSs). It has no
/gate, no /primary and no HTML view (GET /): they answer 404.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.backup_host_metrics import BackupHostMetrics
from agent.backup_host_settings import BackupHostSettings
from agent.dcs_watch import PROBE_SECONDS, DcsWatch
from agent.events import EventLog
from agent.scheduler import JobScheduler, Runner
from backup.jobs import JobStore, run_job
from federation.dcs import connect
from federation.dcs.base import DCS
from federation.errors import FedError
from federation.topology import Datacenter, Topology

log = logging.getLogger("agent.backup_host")

OpenDCS = Callable[[Datacenter], AbstractContextManager[DCS]]
STALE_PROBES = 3  # /health says 503 once a DC's DCS has not answered this many probes in a row


def jobs_on_repo_host(topo: Topology) -> bool:
    """True when the jobs belong to the repository host's agent (the repository-host layout)."""
    sections = [topo.pgbackrest, *(dc.pgbackrest for dc in topo.datacenters)]
    return any(s is not None and s.repo_host is not None for s in sections)


def read_job_key(topo: Topology, dc: Datacenter, open_dcs: OpenDCS) -> Callable[[], None]:
    """The DCS watch's probe of `dc`: read the key this agent records the DC's job results in."""

    def probe() -> None:
        with open_dcs(dc) as dcs:
            dcs.get(JobStore(dcs, dc.dcs.namespace, topo.federation).key(dc.name))

    return probe


class BackupHostAgent:
    def __init__(self, settings: BackupHostSettings, events: EventLog | None = None, *, runner: Runner = run_job,
                 open_dcs: OpenDCS = connect, probe_every: float = PROBE_SECONDS) -> None:
        self.settings = s = settings
        self.topo, self.identity = s.topo, s.identity
        self.metrics = BackupHostMetrics(s.topo.federation, s.identity)
        # Its events log holds the `job` events, each with the job's DC.
        self.events = events or EventLog(Path(s.events_file) if s.events_file else None, dc="-",
                                         member=s.identity, on_error=self.metrics.event_write_errors.inc)
        with_jobs = [dc for dc in s.topo.datacenters if dc.jobs]
        self.schedulers = [
            JobScheduler(s.topo, dc.name, f"{s.identity}/{dc.name}", events=self.events.for_dc(dc.name),
                         metrics=self.metrics.jobs, runner=runner, open_dcs=functools.partial(open_dcs, dc))
            for dc in with_jobs]
        self.watch = DcsWatch({dc.name: read_job_key(s.topo, dc, open_dcs) for dc in with_jobs}, every=probe_every)
        self.stale_after = STALE_PROBES * probe_every
        for dc in with_jobs:
            self.metrics.watch_dcs(dc.name, functools.partial(self.watch.answered_within, dc.name, self.stale_after))
        self._started = threading.Event()
        self._stop = threading.Event()

    # ---- lifecycle
    def run(self) -> None:
        """Serve the API and run the jobs until stop() (or SIGTERM/SIGINT in the main thread)."""
        from agent.api import serve, server_context

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        listen, tls = self.settings.listen, self.topo.agent_tls
        try:
            context = server_context(tls, self.settings.certificate_name) if tls is not None else None
            server = serve(self, listen.host, listen.port, allow=self.settings.api_allow, tls=context)
        except OSError as exc:
            raise FedError(f"the backup-host agent cannot listen on {listen}: {exc.strerror or exc}",
                           hint="is another one already running there? pass --listen HOST:PORT, or set "
                                "pgbackrest.repo_host.agent_port (for a TLS file: agent_api.tls, whose {host} "
                                f"is {self.settings.certificate_name!r} here)") from None
        self.watch.start()
        for scheduler in self.schedulers:
            scheduler.start()
        self._started.set()
        jobs = sum(len(s.jobs) for s in self.schedulers)
        log.info("backup-host agent %s started: %d job(s) of %d DC(s), API on %s://%s", self.identity, jobs,
                 len(self.schedulers), "https" if context else "http", listen)
        try:
            self._stop.wait()
        finally:
            for scheduler in self.schedulers:
                scheduler.shutdown()
            self.watch.stop()
            server.shutdown()
            server.server_close()
            self.events.close()
            log.info("backup-host agent %s stopped", self.identity)

    def stop(self) -> None:
        self._stop.set()

    # ---- the API's view (called from API threads)
    def health(self) -> tuple[bool, str]:
        if not self._started.is_set() or self._stop.is_set():
            return False, "the backup-host agent is not running"
        stopped = [s.dc.name for s in self.schedulers if not s.alive()]
        if stopped:
            return False, f"the job scheduler of {', '.join(stopped)} is not running"
        silent = self.watch.silent(self.stale_after)
        if silent:
            return False, "; ".join(f"the DCS of {dc} does not answer: {why}" for dc, why in silent.items())
        if not self.schedulers:
            return True, "no DC declares jobs: nothing to run"
        jobs = sum(len(s.jobs) for s in self.schedulers)
        return True, f"running {jobs} job(s) of {len(self.schedulers)} DC(s); every DC's DCS answers"

    def status(self) -> dict[str, Any]:
        ok, reason = self.health()
        return {"backup_host": {"federation": self.topo.federation, "member": self.identity,
                                "healthy": ok, "reason": reason,
                                "datacenters": [self._dc_status(s) for s in self.schedulers]}}

    def _dc_status(self, scheduler: JobScheduler) -> dict[str, Any]:
        name = scheduler.dc.name
        seen = self.watch.sighting(name)
        next_runs = scheduler.next_run_times()
        return {"name": name, "dcs_answers": self.watch.answered_within(name, self.stale_after),
                "dcs_error": seen.error, "scheduler_running": scheduler.alive(),
                "jobs": [{"name": job.name, "kind": job.kind.value, "cron": job.cron,
                          "next_run": _iso(next_runs.get(job.name))} for job in scheduler.jobs.values()]}

    def gate(self) -> dict[str, Any]:
        from agent.api import NotServed

        raise NotServed("the backup-host agent has no promotion gate: each member's agent reports its own "
                        "(GET /gate there)")

    def control_data(self) -> dict[str, Any]:
        from agent.api import NotServed

        raise NotServed("the backup-host agent runs no PostgreSQL: ask a member's agent for its GET /controldata")

    def page_html(self) -> str:
        from agent.api import NotServed

        raise NotServed("the backup-host agent has no HTML view of the federation: open a DC agent's GET /")

    def recent_events(self, since: datetime | None) -> list[dict[str, Any]]:
        return self.events.read(since)

    def metrics_text(self) -> bytes:
        return self.metrics.text()


def _iso(at: datetime | None) -> str | None:
    return at.isoformat(timespec="seconds") if at is not None else None
