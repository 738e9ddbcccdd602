"""The agent of the repository host (`fedctl agent run --backup-host`): it runs every DC's scheduled jobs.

In pgBackRest's repository-host layout the backups, their checks and restore verification run where the
repository is, so the jobs run there too and the DC agents leave them alone. Each run still takes the job's
run claim in its DC's DCS and records its result there, as the DC agents did: `fedctl jobs` shows them the
same way, and a second backup host (a standby one) never runs a job twice.
"""

from __future__ import annotations

import logging
import signal
import threading

from agent.events import EventLog
from agent.scheduler import JobScheduler
from federation.topology import Topology

log = logging.getLogger("agent.backup_host")


def jobs_on_repo_host(topo: Topology) -> bool:
    """True when the jobs belong to the repository host's agent (the repository-host layout)."""
    sections = [topo.pgbackrest, *(dc.pgbackrest for dc in topo.datacenters)]
    return any(s is not None and s.repo_host is not None for s in sections)


class BackupHostAgent:
    def __init__(self, topo: Topology, identity: str, events: EventLog | None = None) -> None:
        self.topo = topo
        self.identity = identity
        # Its events log holds the `job` events, each with the job's DC (it serves no API: see docs/events.md).
        self.events = events or EventLog(None, dc="-", member=identity)
        self.schedulers = [JobScheduler(topo, dc.name, f"{identity}/{dc.name}", events=self.events.for_dc(dc.name))
                           for dc in topo.datacenters if dc.jobs]
        self._stop = threading.Event()

    def run(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        for scheduler in self.schedulers:
            scheduler.start()
        jobs = sum(len(s.jobs) for s in self.schedulers)
        log.info("backup-host agent %s started: %d job(s) of %d DC(s)", self.identity, jobs, len(self.schedulers))
        try:
            self._stop.wait()
        finally:
            for scheduler in self.schedulers:
                scheduler.shutdown()
            self.events.close()
            log.info("backup-host agent %s stopped", self.identity)

    def stop(self) -> None:
        self._stop.set()
