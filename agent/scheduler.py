"""The agent's job scheduler: the DC's `jobs:` on their cron, run by the active agent only.

The daemon calls `start()` when its agent wins the DC's lease and `shutdown()` when it loses it (or exits).
Every run takes the job's run claim in the DC's DCS (agent/job_claim.py), calls `run_job`, releases the
claim and appends the result to the DC's history (`JobStore`), so a run still going on the old agent
during a lease hand-over is never started a second time by the new one.

Results beyond run_job's ok/failed/skipped: `overrun` (the fire time came while the previous run of the
job was still going: apscheduler's max_instances=1 refused it), `missed` (the scheduler woke up more
than the grace time late), `crashed` (the runner itself raised; the summary is the traceback's last line).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from prometheus_client import CollectorRegistry

from agent.events import NO_EVENTS, EventSink
from agent.job_claim import RunClaim
from agent.job_metrics import JobMetrics
from backup.jobs import Job, JobResult, JobStore, Status, claim_key, run_job
from federation.dcs import connect
from federation.dcs.base import DCS
from federation.errors import BadInput, DCSError
from federation.topology import Datacenter, Topology

log = logging.getLogger("agent.jobs")
MISFIRE_GRACE_SECONDS = 60


class Runner(Protocol):
    def __call__(self, topo: Topology, dc: Datacenter, job: Job, *, clock: Callable[[], datetime]) -> JobResult: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class JobScheduler:
    def __init__(self, topo: Topology, dc_name: str, identity: str, *, registry: CollectorRegistry | None = None,
                 open_dcs: Callable[[], AbstractContextManager[DCS]] | None = None, runner: Runner = run_job,
                 clock: Callable[[], datetime] = _utcnow,
                 trigger: Callable[[Job], BaseTrigger] = lambda job: job.trigger(),
                 misfire_grace: int = MISFIRE_GRACE_SECONDS, events: EventSink = NO_EVENTS,
                 metrics: JobMetrics | None = None) -> None:
        self.topo = topo
        self._events = events
        self.dc = topo.dc(dc_name)
        self.identity = identity
        self.jobs = {job.name: job for job in self.dc.jobs}
        # `metrics`: one JobMetrics shared by several schedulers (the backup host's, one per DC).
        self.metrics = metrics or JobMetrics(registry or CollectorRegistry())
        self.metrics.declare(self.dc.name, list(self.jobs.values()))
        self._open_dcs = open_dcs or (lambda: connect(self.dc))
        self._runner = runner
        self._clock = clock
        self._trigger = trigger
        self._grace = misfire_grace
        self._lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None
        self._running: dict[str, datetime] = {}  # job name -> start of this agent's run in progress

    # ---- lifecycle (called by the daemon from the lease thread)
    @property
    def running(self) -> bool:
        return self._scheduler is not None

    def start(self) -> None:
        """Schedule every job of the DC; does nothing when already started or when the DC has no jobs."""
        with self._lock:
            if self._scheduler is not None or not self.jobs:
                return
            # A new BackgroundScheduler each time: a shut-down one's thread pool cannot be restarted.
            scheduler = BackgroundScheduler(
                timezone=UTC, executors={"default": ThreadPoolExecutor(len(self.jobs))},
                job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": self._grace})
            scheduler.add_listener(self._on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
            for job in self.jobs.values():
                scheduler.add_job(self._fire, self._trigger(job), args=[job.name], id=job.name,
                                  name=f"{job.kind.value} {job.name}")
            scheduler.start()
            self._scheduler = scheduler
        log.info("job scheduler started for %s: %s", self.dc.name,
                 ", ".join(f"{j.name} ({j.cron})" for j in self.jobs.values()))

    def shutdown(self) -> None:
        """Stop firing jobs. A run in progress goes on to its end, then releases its claim and records."""
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=False)
            log.info("job scheduler of %s stopped", self.dc.name)

    def alive(self) -> bool:
        """True while started and apscheduler's thread still runs (it fires the jobs)."""
        with self._lock:
            scheduler = self._scheduler
        thread = getattr(scheduler, "_thread", None)  # apscheduler 3's BackgroundScheduler keeps it there
        return scheduler is not None and scheduler.running and isinstance(thread, threading.Thread) and \
            thread.is_alive()

    def next_run_times(self) -> dict[str, datetime | None]:
        with self._lock:
            scheduler = self._scheduler
            jobs = scheduler.get_jobs() if scheduler is not None else []
        return {job.id: job.next_run_time for job in jobs}

    # ---- one run
    def job(self, name: str) -> Job:
        try:
            return self.jobs[name]
        except KeyError:
            raise BadInput(f"{self.dc.name} has no job {name!r}",
                           hint=f"its jobs: {', '.join(self.jobs) or 'none declared'}") from None

    def run_now(self, name: str) -> JobResult:
        """Run the job now in this thread, under its run claim; the result is recorded and returned."""
        job = self.job(name)
        now = self._clock()
        claim = RunClaim(claim_key(self.dc.dcs.namespace, self.topo.federation, self.dc.name, job.name),
                         self.identity)
        try:
            with self._open_dcs() as dcs:
                holder = claim.acquire(dcs, now, job.timeout_seconds)
        except DCSError as exc:
            result = self._result(job, now, "failed", f"not run: cannot take its run claim: {exc.message}")
            self.metrics.observe(result, ran=False, at=time.time())
            log.warning("job %s: %s", job.name, result.summary)
            return result
        if holder is not None:
            since = f" since {holder.started.isoformat(timespec='seconds')}" if holder.started else ""
            result = self._result(job, now, "skipped", f"skipped: already running on {holder.identity}{since}")
            self._finish(result, ran=False)
            return result
        self._running[job.name] = now
        try:
            outcome = self._execute(job)
        except BaseException:  # e.g. KeyboardInterrupt: give the claim back, there is no result to record
            self._running.pop(job.name, None)
            self._finish(None, ran=True, claim=claim)
            raise
        self._running.pop(job.name, None)
        self._finish(outcome, ran=True, claim=claim)
        return outcome

    def _execute(self, job: Job) -> JobResult:
        started_at, started = self._clock(), time.monotonic()
        try:
            return self._runner(self.topo, self.dc, job, clock=self._clock)
        except Exception:
            last = traceback.format_exc().strip().splitlines()[-1]
            log.error("job %s in %s crashed, please report it as a BUG:\n%s", job.name, self.dc.name,
                      traceback.format_exc())
            return self._result(job, started_at, "crashed", f"crashed: {last}", time.monotonic() - started)

    def _result(self, job: Job, at: datetime, status: Status, summary: str, seconds: float = 0.0) -> JobResult:
        return JobResult(job=job.name, kind=job.kind, dc=self.dc.name, started=at.isoformat(timespec="seconds"),
                         seconds=round(seconds, 3), status=status, summary=summary)

    def _finish(self, result: JobResult | None, *, ran: bool, claim: RunClaim | None = None) -> None:
        if result is not None:
            self.metrics.observe(result, ran=ran, at=time.time())
            log.log(logging.INFO if result.ok else logging.WARNING, "job %s: %s: %s", result.job, result.status,
                    result.summary)
            self._events.emit("job", f"job {result.job} ({result.kind.value}) {result.status} after "
                                     f"{result.seconds:.1f} s: {result.summary}", name=result.job,
                              job_kind=result.kind.value, outcome=result.status, seconds=result.seconds,
                              started=result.started)
        try:
            with self._open_dcs() as dcs:
                if claim is not None:
                    claim.release(dcs)
                if result is not None:
                    JobStore(dcs, self.dc.dcs.namespace, self.topo.federation).record(result)
        except DCSError as exc:
            log.warning("job %s: could not record the result or release the run claim (it goes stale after the "
                        "job's timeout): %s", result.job if result else "?", exc.message)

    # ---- apscheduler callbacks (scheduler and pool threads)
    def _fire(self, name: str) -> None:
        try:
            self.run_now(name)
        except Exception:  # never let a bug stop the schedule; apscheduler would only log it
            log.exception("job %s: unexpected error around the run (please report it as a BUG)", name)

    def _on_event(self, event: JobEvent) -> None:
        job = self.jobs.get(event.job_id)
        if job is None:
            return
        if event.code == EVENT_JOB_MAX_INSTANCES:
            fire: datetime = event.scheduled_run_times[-1]  # type: ignore[attr-defined]
            since = self._running.get(job.name)
            started = f" (started {since.isoformat(timespec='seconds')})" if since else ""
            result = self._result(job, fire, "overrun", f"overrun: the previous run{started} was still going at "
                                  f"the fire time {_hhmmss(fire)}; this run was not started")
        else:
            fire = event.scheduled_run_time  # type: ignore[attr-defined]
            result = self._result(job, fire, "missed", f"missed: the scheduler woke up more than {self._grace} s "
                                  f"after the fire time {_hhmmss(fire)} (agent overloaded or paused?)")
        try:
            self._finish(result, ran=False)
        except Exception:
            log.exception("job %s: could not record a %s result (please report it as a BUG)", job.name, result.status)


def _hhmmss(at: Any) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds") if isinstance(at, datetime) else str(at)
