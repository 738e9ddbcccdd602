"""The per-DC agent: a lease thread, an HTTP API thread, and the reconcile loop in the main thread.

Every `interval` seconds (and at once when it becomes active) the active agent runs one cycle:
observe -> record -> decide -> act -> sample -> metrics. Each phase has its own try/except and
counts its failures in `fedctl_agent_loop_errors_total{phase}`: a broken phase never stops the loop.
Standby agents (no lease) only serve the API. SIGTERM/SIGINT stop the loop and release the lease.
With a federation store, every agent also runs the lease guard (agent/lease_guard.py) in threads of
its own: it keeps or watches the primary-DC lease and fences the DC when it lapses.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from agent import act
from agent.background import Background, Finished
from agent.backup_host import jobs_on_repo_host
from agent.control_report import control_answer
from agent.decide import Action, Decision, Observation, cross_dc_lag, decide, record_to_copy, upstream_sample
from agent.events import EventLog
from agent.gate_report import GateReport
from agent.guard_wiring import open_guard
from agent.leadership import LeaseKeeper
from agent.lease_guard import NOT_INITIALISED
from agent.metrics import AgentMetrics
from agent.observe import KnownRecord, observe
from agent.scheduler import JobScheduler
from agent.settings import AgentSettings
from federation.dcs.lease import open_lease
from federation.errors import FedError
from federation.status_view_inputs import LagHistory
from federation.topology import Topology

log = logging.getLogger("agent")
T = TypeVar("T")
FENCE_RETRY_SECONDS = 30.0
STATUS_MAX_AGE = 2.0  # /status serves a scan of the federation at most this old
PAGE_MAX_AGE = 2.0  # GET / (the HTML view) likewise: a browser reloading it every 5 s costs one scan per reload
PAGE_TIMEOUT = 1.5  # the page's scan deadline, well within the API's ANSWER_TIMEOUT


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        s = settings
        self.metrics = AgentMetrics(s.topo.federation, s.dc.name, s.member.name)
        self.events = EventLog(Path(s.events_file) if s.events_file else None, dc=s.dc.name, member=s.member.name,
                               on_error=self.metrics.event_write_errors.inc)
        self.jobs = JobScheduler(s.topo, s.dc.name, s.identity, registry=self.metrics.registry, events=self.events)
        # In the repository-host layout the repository host's agent runs the jobs (agent/backup_host.py).
        self._runs_jobs = not jobs_on_repo_host(s.topo)
        self.keeper = LeaseKeeper(open_lease(s.dc, s.lease_key, s.identity, ttl=s.lease_ttl),
                                  on_change=self._lease_changed,
                                  on_error=lambda _exc: self.metrics.errors.labels("lease").inc(),
                                  events=self.events)
        # Read at scrape time, so /metrics never lags behind the lease thread.
        self.metrics.active.set_function(lambda: 1 if self.keeper.active else 0)
        self.metrics.dcs_up.set_function(lambda: 1 if self.keeper.dcs_answered_within(s.lease_ttl) else 0)
        # Every agent, active or not, reports its own member's promotion gate.
        self.gate_report = GateReport(s)
        self.metrics.gate_installed.set_function(self.gate_report.metric)
        # Only with a federation store: every agent, active or not, guards the primary-DC lease.
        self.guard = open_guard(s, lambda: self.keeper.active, on_fence=self.metrics.self_fences.inc,
                                events=self.events)
        if self.guard is not None:
            guard = self.guard
            self.metrics.lease_held.set_function(lambda: 1 if guard.held() else 0)
            self.metrics.fenced.set_function(lambda: 1 if guard.fenced() else 0)
            self.metrics.lease_sighting_age.set_function(guard.sighting_age)
        self.background = Background()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._known: KnownRecord | None = None
        self._behind_cycles = 0
        self._fence_not_before = 0.0
        self._replaced_since: float | None = None
        self.last_sentence = "starting"
        self.last_cycle_at: datetime | None = None
        self._loop_thread: threading.Thread | None = None
        self._status_lock = threading.Lock()
        self._status_cache: tuple[float, dict[str, Any]] | None = None
        # Cross-DC lag samples for the HTML view's sparklines: the own DC's from every cycle (an active agent's),
        # every other standby DC's from each scan the page makes.
        self.lag_history = LagHistory()
        self._page_lock = threading.Lock()
        self._page_cache: tuple[float, str] | None = None

    # ---- lifecycle
    def run(self) -> None:
        """Serve the API, keep the lease, reconcile until stop() (or SIGTERM/SIGINT in the main thread)."""
        from agent.api import serve, server_context

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        self._loop_thread = threading.current_thread()
        listen = self.settings.listen
        tls = self.settings.topo.agent_tls
        try:
            context = server_context(tls, self.settings.member.name) if tls is not None else None
            server = serve(self, listen.host, listen.port, allow=self.settings.api_allow, tls=context)
        except OSError as exc:
            raise FedError(f"the agent cannot listen on {listen}: {exc.strerror or exc}",
                           hint="is another agent already running there? pass --listen HOST:PORT "
                                "(or, for a TLS file, check agent_api.tls in the topology)") from None
        log.info("agent %s started: API on %s://%s, lease %s (TTL %s s), cycle every %s s", self.settings.identity,
                 "https" if context else "http", listen, self.settings.lease_key, self.settings.lease_ttl,
                 self.settings.interval)
        self.gate_report.check()  # logs the verdict once at start, and again whenever it changes
        self.keeper.start()
        if self.guard is not None:
            self.guard.start()
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                if self.keeper.active:
                    self.cycle()
                else:
                    error = self.keeper.dcs_error
                    self._say_once(f"not active: own DCS unreachable ({error}); changing nothing" if error else
                                   f"standby agent: {self.keeper.holder or 'nobody'} holds the lease")
                self._wake.wait(max(0.0, self.settings.interval - (time.monotonic() - started)))
                self._wake.clear()
        finally:
            self.background.wait(timeout=30)
            self.jobs.shutdown()
            if self.guard is not None:
                self.guard.stop()
            self.keeper.stop()
            server.shutdown()
            server.server_close()
            self.events.close()
            log.info("agent %s stopped", self.settings.identity)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _lease_changed(self, active: bool) -> None:
        try:
            if active and self._runs_jobs:
                self.jobs.start()
            else:
                self.jobs.shutdown()
        except Exception:  # called from the lease thread, which must never die
            log.exception("could not %s the job scheduler (please report it as a BUG)", "start" if active else "stop")
        self._wake.set()

    def _say_once(self, sentence: str) -> None:
        if sentence != self.last_sentence:
            log.info("%s", sentence)
        self.last_sentence = sentence

    # ---- one reconcile cycle
    def _phase(self, name: str, fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return fn(*args)
        except FedError as exc:
            log.warning("phase %s failed: %s", name, exc.message)
        except Exception:
            log.exception("unexpected error in phase %s (please report it as a BUG); the loop goes on", name)
        self.metrics.errors.labels(name).inc()
        return None

    def cycle(self) -> str:
        started = time.monotonic()
        s = self.settings
        observed = self._phase("observe", observe, s.topo, s.dc, self._known)
        if observed is None:
            sentence = "observation failed (see above): changing nothing this cycle"
        else:
            obs, self._known = observed
            obs = self._with_guard(obs)
            if self._replaced_since is not None:
                obs = replace(obs, fence_waited=time.monotonic() - self._replaced_since)
            self._phase("record", self._sync_record, obs)
            decision = self._phase("decide", decide, s.topo, obs)
            if decision is not None:
                replaced = decision.replaced and decision.action is not Action.FENCE
                self._replaced_since = (self._replaced_since or time.monotonic()) if replaced else None
            sentence = decision.sentence if decision else "no decision (see above): changing nothing this cycle"
            if decision is not None:
                sentence = self._carry_out(obs, decision, started)
            self._phase("sample", self._sample, obs)
            self._phase("metrics", self._update_metrics, obs)
        self.metrics.cycles.inc()
        self.metrics.cycle_seconds.set(time.monotonic() - started)
        self.last_sentence = sentence
        self.last_cycle_at = datetime.now(UTC)
        log.info("%s", sentence)
        return sentence

    def _with_guard(self, obs: Observation) -> Observation:
        """The store's record when it answers (the cached copies otherwise) and the guard's fence."""
        if self.guard is None:
            return obs
        if self.guard.not_initialised():
            return replace(obs, hold=NOT_INITIALISED)
        record = self.guard.store_record()
        if record is not None:
            obs = replace(obs, record=record, record_written=True)
        return replace(obs, self_fenced=self.guard.self_fenced())

    def _carry_out(self, obs: Observation, decision: Decision, observed_at: float) -> str:
        if decision.action not in (Action.REPOINT, Action.FENCE):
            return decision.sentence
        if not self.keeper.active:
            return f"lease lost before acting; not doing: {decision.sentence}"
        if decision.action is Action.FENCE:
            return self._fence_in_background(obs, decision, observed_at)
        log.info("%s", decision.sentence)
        outcome = self._phase("act", act.carry_out, self.settings.topo, self.settings.dc, obs, decision)
        if outcome is None:
            return f"FAILED: {decision.sentence}"
        self.metrics.actions.labels(decision.action.value).inc()
        if outcome != act.ALREADY_AS_WANTED:
            self.events.emit("repoint", f"{outcome}: {decision.sentence}",
                             **repoint_details(self.settings.topo, obs, decision))
        return f"done ({outcome}): {decision.sentence}"

    def _fence_in_background(self, obs: Observation, decision: Decision, observed_at: float) -> str:
        """A rejoin takes seconds to minutes (pg_rewind, a reinitialise): it runs in its own thread, and the
        cycles meanwhile keep observing, sampling and answering /status. A look taken while the last rejoin
        still ran is not acted on: it may show that rejoin's own operation as pending, and carrying it
        through again would start a new rejoin, and so on."""
        running = self.background.running()
        if running is not None:
            return f"{decision.sentence} -- {running[0]} running for {running[1]:.0f} s"
        if self.background.ended_after(observed_at):
            return f"{decision.sentence} -- not acted on: the look began before the last rejoin-dc ended; looking again"
        wait = self._fence_not_before - time.monotonic()
        if wait > 0:
            return f"{decision.sentence} -- last attempt failed, retrying in {wait:.0f} s"
        log.info("%s", decision.sentence)

        def done(finished: Finished) -> None:
            if finished.error is not None:
                self.metrics.errors.labels("act").inc()
                self._fence_not_before = time.monotonic() + FENCE_RETRY_SECONDS
                log.warning("FAILED after %.1f s: %s (%s)", finished.seconds, decision.sentence, finished.error)
                return
            if finished.outcome == act.NOTHING_PENDING:
                log.info("%s: %s", finished.name, finished.outcome)
            else:
                self.metrics.actions.labels(decision.action.value).inc()
                self.metrics.fencing.inc()
                log.info("done (%s): %s", finished.outcome, decision.sentence)
                record = obs.record
                self.events.emit("fence_replaced", f"demoted {obs.dc}: {finished.outcome}",
                                 decision=decision.sentence, epoch=record.epoch if record else None,
                                 upstream=record.upstream_of(obs.dc) if record else None,
                                 seconds=round(finished.seconds, 1))
            self._wake.set()

        name = f"rejoin-dc {self.settings.dc.name}"
        self.background.try_run(name, lambda: act.carry_out(self.settings.topo, self.settings.dc, obs, decision),
                                done)
        return f"started {name} in the background: {decision.sentence}"

    def _sync_record(self, obs: Observation) -> None:
        behind = obs.record is not None and obs.own_epoch is not None and obs.own_epoch < obs.record.epoch
        behind = behind or (obs.record is not None and obs.record_written and obs.own_epoch is None)
        self._behind_cycles = self._behind_cycles + 1 if behind else 0
        newer = record_to_copy(obs, self._behind_cycles)
        if newer is not None and act.write_own_copy(self.settings.topo, self.settings.dc, newer):
            log.info("copied federation record epoch %s (primary DC %s) into %s's DCS (it held %s)", newer.epoch,
                     newer.primary_dc, obs.dc, obs.own_epoch if obs.own_epoch is not None else "none")
            self._behind_cycles = 0

    def _sample(self, obs: Observation) -> None:
        sample = upstream_sample(obs, self.settings.identity, datetime.now(UTC))
        if sample is not None and obs.own_dcs_error is None:
            act.store(self.settings.topo, self.settings.dc, sample)
            self.metrics.sampled()

    def _update_metrics(self, obs: Observation) -> None:
        m = self.metrics
        if obs.record is not None:
            m.epoch.set(obs.record.epoch)
        own = obs.own
        role = "unknown"
        if own is not None and own.leader_status is not None:
            role = "primary" if own.is_primary else "standby"
        m.set_role(role)
        lag_bytes, lag_seconds = cross_dc_lag(obs, datetime.now(UTC))
        m.set_lag(lag_bytes, lag_seconds)
        if role == "standby":
            self.lag_history.add(self.settings.dc.name, lag_bytes)
        m.upstream_up.set(1 if obs.upstream is not None and obs.upstream.answering else 0)
        m.peers_unreachable.set(len(obs.unreachable_peers))

    # ---- the API's view (called from API threads)
    def health(self) -> tuple[bool, str]:
        running = self._loop_thread is not None and self._loop_thread.is_alive() and not self._stop.is_set()
        if not running:
            return False, "the agent is not running"
        if not self.keeper.dcs_answered_within(self.settings.lease_ttl):
            return False, f"own DCS does not answer: {self.keeper.dcs_error or 'no answer yet'}"
        role = "active" if self.keeper.active else f"standby agent ({self.keeper.holder or 'nobody'} is active)"
        return True, f"{role}; own DCS answers"

    def status(self) -> dict[str, Any]:
        """The federation as seen at most STATUS_MAX_AGE seconds ago: requests arriving together share one
        scan of every DC (one at a time), so a burst of /status costs what one does."""
        with self._status_lock:
            now = time.monotonic()
            if self._status_cache is None or now - self._status_cache[0] > STATUS_MAX_AGE:
                self._status_cache = (time.monotonic(), self._observe_for_status())
            return self._status_cache[1]

    def _observe_for_status(self) -> dict[str, Any]:
        from federation.observe import observe_federation

        known = self._known
        upstreams = {k: v for k, v in known.state.upstreams.items() if v is not None} if known else None
        data = observe_federation(self.settings.topo, upstream_of=upstreams).to_json_dict()
        own = self.settings.dc.name
        data["datacenters"].sort(key=lambda d: d["name"] != own)
        data["agent"] = {
            "dc": own, "member": self.settings.member.name, "active": self.keeper.active,
            "lease_holder": self.keeper.holder, "epoch": known.state.epoch if known else None,
            "last_sentence": self.last_sentence,
            "last_cycle_at": self.last_cycle_at.isoformat() if self.last_cycle_at else None,
            "background": self.background.status(),
        }
        if self.guard is not None:
            data["agent"]["primary_lease"] = self.guard.status()
        return data

    def page_html(self) -> str:
        """The HTML view (federation/status_html.py) of a scan at most PAGE_MAX_AGE seconds old."""
        with self._page_lock:
            now = time.monotonic()
            if self._page_cache is None or now - self._page_cache[0] > PAGE_MAX_AGE:
                self._page_cache = (time.monotonic(), self._render_page())
            return self._page_cache[1]

    def _render_page(self) -> str:
        from federation.status_page import observe_for_page, page_html

        known = self._known
        upstreams = {k: v for k, v in known.state.upstreams.items() if v is not None} if known else None
        data = observe_for_page(self.settings.topo, timeout=PAGE_TIMEOUT, upstream_of=upstreams)
        # An active agent samples its own DC every cycle; the page adds the DCs it does not sample.
        self.lag_history.add_status(data.status, skip=(self.settings.dc.name,) if self.keeper.active else ())
        return page_html(data, self.lag_history)

    def gate(self) -> dict[str, Any]:
        return self.gate_report.answer()

    def control_data(self) -> dict[str, Any]:
        return control_answer(self.settings)

    def recent_events(self, since: datetime | None) -> list[dict[str, Any]]:
        return self.events.read(since)

    def metrics_text(self) -> bytes:
        return self.metrics.text()


def repoint_details(topo: Topology, obs: Observation, decision: Decision) -> dict[str, Any]:
    """What a re-point changed: the DC streamed from before (`from`, by its standby_cluster hosts; the fence's
    127.0.0.1 is none) and the upstream DC now (`to`), with both host lists. A primary DC's slot patch has
    no upstream."""
    before = (obs.config or {}).get("standby_cluster")
    after = decision.patch.get("standby_cluster")
    before_hosts = before.get("host") if isinstance(before, Mapping) else None
    record = obs.record
    return {"from": _dc_of_hosts(topo, before_hosts), "to": record.upstream_of(obs.dc) if record else None,
            "from_hosts": before_hosts, "to_hosts": after.get("host") if isinstance(after, Mapping) else None,
            "slots": sorted(decision.patch.get("slots") or {}) or None, "epoch": record.epoch if record else None}


def _dc_of_hosts(topo: Topology, hosts: object) -> str | None:
    if not isinstance(hosts, str):
        return None
    listed = {h.strip() for h in hosts.split(",")}
    return next((dc.name for dc in topo.datacenters if listed & {m.host for m in dc.members}), None)
