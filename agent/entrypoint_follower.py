"""`fedctl entrypoint follow`: keeps a PgBouncer and/or an HAProxy in front of the federation current.

PgBouncer has no health checks, so something must tell it where the primary is. Every `interval`
seconds the follower reads the federation record from every DC's DCS (highest epoch wins, never going
backwards: agent.observe.refresh_record) and asks the Patroni REST API of each member of the record's
primary DC for its role. The target is the one member that is Patroni's primary AND in that DC (while
there is none, another member of that DC: see choose_target). When the target changes, the
`[databases]` include file is rewritten atomically and PgBouncer RELOADed through its admin console:
client connections stay open, and their next transaction goes to the new host (pool_mode = transaction).

HAProxy follows the primary by itself (GET /primary checks); the follower only re-renders its
configuration when the topology file changes (agent/haproxy_sync.py).

Each phase has its own try/except: an unreachable DCS, Patroni or PgBouncer is logged, never fatal.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent import pgbouncer_admin
from agent.entrypoint_pause import PauseHolder, PausePeek
from agent.haproxy_sync import HAProxySync, TopologyWatch, reload_topology, write_if_changed
from agent.observe import KnownRecord, refresh_record
from federation import patroni_api
from federation.entrypoints import render_pgbouncer
from federation.errors import FedError
from federation.state import FederationState
from federation.topology import Member, Topology

log = logging.getLogger("agent.entrypoint")
DEFAULT_INTERVAL = 0.5
DCS_TIMEOUT = 1.0
PATRONI_TIMEOUT = 0.5
PEEK_INTERVAL = 0.05


@dataclass(frozen=True)
class Target:
    """Where PgBouncer points: always a member of the record's primary DC (None only when the topology
    does not list that DC), and whether it is that DC's writable primary yet."""

    epoch: int
    primary_dc: str
    member: Member | None
    writable: bool
    reason: str
    parked: bool = False  # no leader could be told apart: any member of the DC, to keep clients inside it

    @property
    def where(self) -> tuple[str, int] | None:
        return (self.member.host, self.member.port) if self.member else None

    def describe(self) -> str:
        return f"{self.primary_dc}/{self.member.name}" if self.member else "nothing"


def choose_target(topo: Topology, record: FederationState, roles: Mapping[str, str | None],
                  current: Target | None, dcs_leader: str | None = None) -> Target:
    """Pure: the member PgBouncer should point at. `roles` holds the Patroni role of each member of the
    record's primary DC (None when it did not answer); `current` is where it points now; `dcs_leader`, the
    holder of the DC's Patroni leader key, when the caller read it."""
    epoch, dc_name = record.epoch, record.primary_dc
    dc = next((d for d in topo.datacenters if d.name == dc_name), None)
    if dc is None:
        return Target(epoch, dc_name, None, False, f"epoch {epoch} names {dc_name}, which the topology does not list")
    primaries = [m for m in dc.members if roles.get(m.name) in patroni_api.PRIMARY_ROLES]
    if len(primaries) == 1:
        return Target(epoch, dc_name, primaries[0], True, f"Patroni primary of {dc_name}, the primary DC")
    # No single writable leader in the primary DC: a switchover between the epoch raise and the
    # promotion, promote-dc before its promotion, a Patroni failover inside the DC. PgBouncer still points
    # into the primary DC, never elsewhere: another DC was demoted (it refuses writes) or replaced (its old
    # leader may still accept them: that is the fence). Inside the DC we keep the old target if it is
    # there (a failover elects a leader we follow within one interval, and it may be the old one), else
    # the DC's standby leader, which is about to be promoted: clients fail read-only until it is, and then
    # write at once, on server connections PgBouncer already holds, without waiting for our next look and
    # a RELOAD. That is the shortest outage PgBouncer allows. Disabling the database instead (dropping
    # it from the file) would add that wait, and PgBouncer 1.18 crashes when a RELOAD drops a database
    # while clients are logging in to it; PAUSE would wait for in-flight transactions on a dying DC.
    found = "two Patroni primaries" if primaries else "no writable leader"
    kept = current.member if current is not None else None
    if kept is not None and kept in dc.members and (not primaries or kept in primaries):
        return Target(epoch, dc_name, kept, False, f"{dc_name} has {found} yet: keeping {kept.name}")
    standby_leaders = [m for m in dc.members if roles.get(m.name) == "standby_leader"]
    if standby_leaders:
        return Target(epoch, dc_name, standby_leaders[0], False,
                      f"{dc_name} has {found} yet: its standby leader {standby_leaders[0].name} is promoted next")
    # A leader in the middle of its promotion can be too busy to answer its REST API in time: the holder
    # of the leader key is the one that will take writes.
    holder = next((m for m in dc.members if m.name == dcs_leader and m not in primaries), None)
    if holder is not None:
        return Target(epoch, dc_name, holder, False, f"{dc_name} has {found} yet: {holder.name} holds its "
                      "leader key")
    others = [m for m in dc.members if m not in primaries]
    answering = [m for m in others if roles.get(m.name) is not None]
    member = (answering or others or dc.members)[0]
    return Target(epoch, dc_name, member, False, f"{dc_name} has {found} and no standby leader: parked on "
                  f"{member.name} so that no client reaches another DC", parked=True)


def dcs_leader_of(topo: Topology, record: FederationState) -> str | None:
    """The member holding the record's primary DC's Patroni leader key; None when its DCS does not answer."""
    from federation.dcs import connect
    from federation.dcs.patroni_keys import read_cluster

    dc = next((d for d in topo.datacenters if d.name == record.primary_dc), None)
    if dc is None:
        return None
    try:
        with connect(dc, timeout=DCS_TIMEOUT) as dcs:
            return read_cluster(dcs, dc).leader
    except FedError:
        return None


def primary_dc_roles(topo: Topology, record: FederationState, timeout: float = PATRONI_TIMEOUT
                     ) -> dict[str, str | None]:
    """The Patroni role of every member of the record's primary DC, as every operation looks at a DC
    (operations.common.look_at: all members at once); None for those not answering."""
    from federation.operations.common import look_at

    dc = next((d for d in topo.datacenters if d.name == record.primary_dc), None)
    if dc is None:
        return {}
    return {name: status.role if status is not None else None
            for name, status in look_at(dc, timeout=timeout).statuses.items()}


class PgBouncerTarget:
    """The PgBouncer half: the databases include file and the admin console that RELOADs it."""

    def __init__(self, databases: Path, admin: str, dbnames: Sequence[str],
                 password: Callable[[], str | None], reload: Callable[[str, str | None], None] | None = None) -> None:
        self.databases = databases
        self.admin = admin
        self.dbnames = list(dbnames)
        self.password = password
        self._reload = reload or pgbouncer_admin.reload
        self._reload_pending = False

    def apply(self, topo: Topology, record: FederationState, target: Target) -> None:
        """Write the file for `target` (when its text changed) and RELOAD; raises FedError when PgBouncer
        did not take it (retried by `retry`)."""
        if target.member is None:
            raise FedError(f"{target.reason}; PgBouncer left as it is (fix the topology)")
        text = render_pgbouncer(topo, record, target.member, self.dbnames, followed=True)
        if write_if_changed(self.databases, text):
            self._reload_pending = True
        self.retry()

    def retry(self) -> None:
        if self._reload_pending:
            self._reload(self.admin, self.password())
            self._reload_pending = False


class EntrypointFollower:
    def __init__(self, topo: Topology, watch: TopologyWatch, *, pgbouncer: PgBouncerTarget | None = None,
                 haproxy: HAProxySync | None = None, interval: float = DEFAULT_INTERVAL,
                 pause: PauseHolder | None = None) -> None:
        self.topo = topo
        self.watch = watch
        self.pgbouncer = pgbouncer
        self.haproxy = haproxy
        self.interval = interval
        self.pause = pause
        self.target: Target | None = None
        self._known: KnownRecord | None = None
        self._failing: dict[str, str] = {}
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Follow until stop() (or SIGTERM/SIGINT when run in the main thread)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        parts = [p for p, on in (("PgBouncer", self.pgbouncer), ("HAProxy", self.haproxy)) if on is not None]
        log.info("entrypoint follower started for federation %s (%s), every %s s", self.topo.federation,
                 " and ".join(parts), self.interval)
        self._guarded("haproxy", self.sync_haproxy)
        try:
            while not self._stop.is_set():
                self.cycle()
                self._wait_for_next_cycle()
        finally:
            if self.pause is not None:
                self.pause.release()
        log.info("entrypoint follower stopped")

    def _wait_for_next_cycle(self) -> None:
        """Sleep until the next cycle; with a pause holder, peek at the store every PEEK_INTERVAL and look at
        once when a switchover asks to pause, and again as soon as PgBouncer answered the PAUSE (the
        switchover's demotion waits for this follower to say so)."""
        if self.pause is None:
            self._stop.wait(self.interval)
            return
        until = time.monotonic() + self.pause.interval(self.interval)
        while not self._stop.is_set() and (left := until - time.monotonic()) > 0:
            if (self._stop.wait(min(self.pause.wake_interval(PEEK_INTERVAL), left)) or self.pause.answered()
                    or self.pause.asked()):
                return

    def cycle(self) -> None:
        if self.watch.changed():
            self.topo = reload_topology(self.watch, self.topo)
            self._guarded("haproxy", self.sync_haproxy)
        elif "haproxy" in self._failing:
            self._guarded("haproxy", self.sync_haproxy)
        if self.pgbouncer is not None:
            self._guarded("pgbouncer", self.follow_primary)
        if self.pause is not None:
            self._guarded("pause", self.step_pause)

    def step_pause(self) -> None:
        assert self.pause is not None
        target = self.target
        self.pause.step(target.epoch if target else None, target.describe() if target else None,
                        bool(target and target.writable))

    def sync_haproxy(self) -> None:
        if self.haproxy is not None and self.haproxy.sync(self.topo):
            log.info("HAProxy configuration %s rewritten for the new topology and reloaded", self.haproxy.config)

    def read_record(self) -> FederationState | None:
        self._known = refresh_record(self.topo, self._known, DCS_TIMEOUT)
        return self._known.state if self._known else None

    def follow_primary(self) -> None:
        assert self.pgbouncer is not None
        record = self.read_record()
        if record is None:
            raise FedError("no DC's DCS answers: the federation record is unknown; PgBouncer left as it is")
        roles = primary_dc_roles(self.topo, record)
        target = choose_target(self.topo, record, roles, self.target)
        if target.parked:
            target = choose_target(self.topo, record, roles, self.target, dcs_leader_of(self.topo, record))
        previous = self.target
        if previous is not None and target.where == previous.where:
            self.pgbouncer.retry()
            self.target = target
            if target.writable and not previous.writable:
                log.info("PgBouncer's target %s is writable now (epoch %d)", target.describe(), target.epoch)
            return
        self.pgbouncer.apply(self.topo, record, target)
        self.target = target
        if target.writable:
            log.info("pointing PgBouncer at %s (epoch %d)", target.describe(), target.epoch)
        else:
            log.warning("pointing PgBouncer at %s (epoch %d), not writable yet: %s", target.describe(), target.epoch,
                        target.reason)

    def _guarded(self, phase: str, step: Callable[[], None]) -> None:
        """Run one phase; log a failure once (and its recovery), never let it stop the loop."""
        try:
            step()
        except FedError as exc:
            if self._failing.get(phase) != exc.message:
                log.warning("%s: %s", phase, exc.message)
            self._failing[phase] = exc.message
            return
        except Exception:
            log.exception("%s failed (please report it as a BUG)", phase)
            self._failing[phase] = "bug"
            return
        if self._failing.pop(phase, None) is not None:
            log.info("%s: working again", phase)


def build_follower(topology_path: str, *, pgbouncer_databases: str | None = None, pgbouncer_admin: str | None = None,
                   dbnames: Sequence[str] = ("*",), haproxy_config: str | None = None,
                   haproxy_pidfile: str | None = None, haproxy_stats_socket: str | None = None,
                   read_write_bind: str | None = None, read_only_bind: str | None = None,
                   interval: float = DEFAULT_INTERVAL, follower_id: str | None = None) -> EntrypointFollower:
    """The follower for the command line's options; BadInput unless at least one complete part is given."""
    from agent.haproxy_sync import HAProxyReloader
    from federation.entrypoint_registry import check_follower_id
    from federation.entrypoints import default_binds, render_haproxy
    from federation.errors import BadInput
    from federation.topology import load_topology

    if not pgbouncer_databases and not haproxy_config:
        raise BadInput("nothing to follow: give --pgbouncer-databases FILE (with --pgbouncer-admin) and/or "
                       "--haproxy-config FILE (with --haproxy-pidfile)")
    if bool(pgbouncer_databases) != bool(pgbouncer_admin):
        raise BadInput("--pgbouncer-databases and --pgbouncer-admin go together: the follower RELOADs PgBouncer "
                       "through its admin console after rewriting the file")
    if bool(haproxy_config) != bool(haproxy_pidfile):
        raise BadInput("--haproxy-config and --haproxy-pidfile go together: the follower reloads HAProxy with "
                       "SIGUSR2 to the master pid after rewriting the configuration")
    if follower_id is not None:
        check_follower_id(follower_id)
    topo = load_topology(topology_path)
    pgbouncer = None
    if pgbouncer_databases and pgbouncer_admin:
        secret = topo.credentials.superuser.password

        def password() -> str | None:
            return secret.resolve()

        pgbouncer = PgBouncerTarget(Path(pgbouncer_databases), pgbouncer_admin, dbnames, password)
    haproxy = None
    if haproxy_config and haproxy_pidfile:
        def render(t: Topology) -> str:
            binds = default_binds(t)
            return render_haproxy(t, read_write_bind=read_write_bind or binds.read_write,
                                  read_only_bind=read_only_bind or binds.read_only, stats_socket=haproxy_stats_socket)

        haproxy = HAProxySync(Path(haproxy_config), render, HAProxyReloader(Path(haproxy_pidfile)))
    pause = pause_holder(topo, pgbouncer, follower_id) if pgbouncer is not None else None
    return EntrypointFollower(topo, TopologyWatch(Path(topology_path)), pgbouncer=pgbouncer, haproxy=haproxy,
                              interval=interval, pause=pause)


def pause_holder(topo: Topology, pgbouncer: PgBouncerTarget, follower_id: str | None) -> PauseHolder | None:
    """The switchover pause needs the federation store (where followers register and switchover-dc asks them
    to pause); without one the follower only follows."""
    import socket

    from federation.entrypoint_registry import check_follower_id
    from federation.store import FederationStore

    if topo.federation_store is None:
        log.warning("no federation_store in the topology: switchover-dc cannot pause this PgBouncer, so its "
                    "clients see errors while the primary DC changes")
        return None
    name = pgbouncer_admin.describe(pgbouncer.admin).removeprefix("PgBouncer admin console ")
    admin, password = pgbouncer.admin, pgbouncer.password
    # The pause keys inform and decide nothing: a probe that found the majority serves the acknowledgement
    # written right after the peek saw the request.
    store = FederationStore(topo.federation_store, topo.federation, deadline=DCS_TIMEOUT, quorum_reuse=1.0)
    chosen = check_follower_id(follower_id or f"{socket.gethostname()}:{name}")
    return PauseHolder(store, chosen, name, peek=PausePeek(store),
                       pause=lambda: pgbouncer_admin.PendingPause(admin, password()),
                       resume=lambda: pgbouncer_admin.resume(admin, password()),
                       blockers=lambda: pgbouncer_admin.clients_in_transaction(admin, password()))
