"""`fedctl entrypoint follow`: keeps a PgBouncer and/or an HAProxy in front of the federation current.

PgBouncer has no health checks, so something must tell it where the primary is. Every `interval`
seconds the follower reads the federation record from every DC's DCS (highest epoch wins, never going
backwards: agent.observe.merge_record) and asks the Patroni REST API of each member of the record's
primary DC for its role. The target is the one member that is Patroni's primary AND in that DC. When
the target changes, the `[databases]` include file is rewritten atomically and PgBouncer RELOADed
through its admin console: client connections stay open, and their next transaction goes to the new
host (pool_mode = transaction).

HAProxy follows the primary by itself (GET /primary checks); the follower only re-renders its
configuration when the topology file changes (agent/haproxy_sync.py).

Each phase has its own try/except: an unreachable DCS, Patroni or PgBouncer is logged, never fatal.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from agent import pgbouncer_admin
from agent.haproxy_sync import HAProxySync, TopologyWatch, atomic_write, reload_topology
from agent.observe import KnownRecord, merge_record
from federation import patroni_api
from federation.entrypoints import render_pgbouncer
from federation.errors import FedError
from federation.state import FederationState, read_copies
from federation.topology import Member, Topology

log = logging.getLogger("agent.entrypoint")
PRIMARY_ROLES = ("primary", "master")
DEFAULT_INTERVAL = 0.5
DCS_TIMEOUT = 1.0
PATRONI_TIMEOUT = 0.5


@dataclass(frozen=True)
class Target:
    """Where PgBouncer points: a member of the record's primary DC, or nowhere (`member` None)."""

    epoch: int
    primary_dc: str
    member: Member | None
    reason: str

    @property
    def where(self) -> tuple[str, int] | None:
        return (self.member.host, self.member.port) if self.member else None

    def describe(self) -> str:
        return f"{self.primary_dc}/{self.member.name}" if self.member else "nothing"


def choose_target(topo: Topology, record: FederationState, roles: Mapping[str, str | None],
                  current: Target | None) -> Target:
    """Pure: the member PgBouncer should point at. `roles` holds the Patroni role of each member of the
    record's primary DC (None when it did not answer); `current` is where it points now."""
    epoch, dc_name = record.epoch, record.primary_dc
    dc = next((d for d in topo.datacenters if d.name == dc_name), None)
    if dc is None:
        return Target(epoch, dc_name, None, f"epoch {epoch} names {dc_name}, which the topology does not list")
    primaries = [m for m in dc.members if roles.get(m.name) in PRIMARY_ROLES]
    if len(primaries) == 1:
        return Target(epoch, dc_name, primaries[0], f"Patroni primary of {dc_name}, the primary DC of epoch {epoch}")
    # No single writable leader in the primary DC (a switchover between demote and promote, a Patroni
    # failover inside the DC, a DC that lost power). Inside the primary DC we keep the old target: the
    # DC will elect a leader we then follow within one interval, and the old one may be it again, so
    # clients lose nothing by waiting there. A target in any other DC is dropped at once (the database is
    # disabled): that DC was demoted (it refuses writes anyway) or replaced (its old leader may still
    # accept writes: that is the fence). A disabled database fails a client's connection at once, so it
    # retries and reaches the new leader the moment we write it, which is as short an outage as PgBouncer
    # allows; PAUSE would hold clients instead, but it waits for every in-flight transaction, which on a
    # dead DC can take a TCP timeout.
    found = "two Patroni primaries" if primaries else "no writable leader"
    kept = current is not None and current.member is not None and current.primary_dc == dc_name
    if kept and current is not None and (not primaries or current.member in primaries):
        return Target(epoch, dc_name, current.member, f"{dc_name} has {found} yet: keeping its old leader")
    return Target(epoch, dc_name, None, f"epoch {epoch} names {dc_name}, which has {found} yet")


def primary_dc_roles(topo: Topology, record: FederationState, timeout: float = PATRONI_TIMEOUT
                     ) -> dict[str, str | None]:
    """GET /patroni on every member of the record's primary DC, in parallel; None for those not answering."""
    dc = next((d for d in topo.datacenters if d.name == record.primary_dc), None)
    if dc is None:
        return {}

    def role(member: Member) -> str | None:
        try:
            value = patroni_api.get_patroni(member, timeout=timeout).get("role")
        except FedError:
            return None
        return value if isinstance(value, str) else None

    with ThreadPoolExecutor(max_workers=len(dc.members), thread_name_prefix="follow-patroni") as pool:
        return dict(zip([m.name for m in dc.members], pool.map(role, dc.members), strict=True))


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
        text = render_pgbouncer(topo, record, target.member, self.dbnames, followed=True, why_none=target.reason)
        try:
            same = self.databases.read_text() == text
        except OSError:
            same = False
        if not same:
            atomic_write(self.databases, text)
            self._reload_pending = True
        self.retry()

    def retry(self) -> None:
        if self._reload_pending:
            self._reload(self.admin, self.password())
            self._reload_pending = False


class EntrypointFollower:
    def __init__(self, topo: Topology, watch: TopologyWatch, *, pgbouncer: PgBouncerTarget | None = None,
                 haproxy: HAProxySync | None = None, interval: float = DEFAULT_INTERVAL) -> None:
        self.topo = topo
        self.watch = watch
        self.pgbouncer = pgbouncer
        self.haproxy = haproxy
        self.interval = interval
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
        while not self._stop.is_set():
            self.cycle()
            self._stop.wait(self.interval)
        log.info("entrypoint follower stopped")

    def cycle(self) -> None:
        if self.watch.changed():
            self.topo = reload_topology(self.watch, self.topo)
            self._guarded("haproxy", self.sync_haproxy)
        elif "haproxy" in self._failing:
            self._guarded("haproxy", self.sync_haproxy)
        if self.pgbouncer is not None:
            self._guarded("pgbouncer", self.follow_primary)

    def sync_haproxy(self) -> None:
        if self.haproxy is not None and self.haproxy.sync(self.topo):
            log.info("HAProxy configuration %s rewritten for the new topology and reloaded", self.haproxy.config)

    def read_record(self) -> FederationState | None:
        copies = read_copies(self.topo, None, DCS_TIMEOUT)
        if any(c.reachable for c in copies):
            self._known = merge_record(self.topo, copies, self._known)
        return self._known.state if self._known else None

    def follow_primary(self) -> None:
        assert self.pgbouncer is not None
        record = self.read_record()
        if record is None:
            raise FedError("no DC's DCS answers: the federation record is unknown; PgBouncer left as it is")
        target = choose_target(self.topo, record, primary_dc_roles(self.topo, record), self.target)
        if self.target is not None and target.where == self.target.where:
            self.pgbouncer.retry()
            return
        self.pgbouncer.apply(self.topo, record, target)
        self.target = target
        if target.member is not None:
            log.info("pointing PgBouncer at %s (epoch %d)", target.describe(), target.epoch)
        else:
            log.warning("PgBouncer points at nothing: %s (clients are refused until it has a leader)",
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
                   interval: float = DEFAULT_INTERVAL) -> EntrypointFollower:
    """The follower for the command line's options; BadInput unless at least one complete part is given."""
    from agent.haproxy_sync import HAProxyReloader
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
    return EntrypointFollower(topo, TopologyWatch(Path(topology_path)), pgbouncer=pgbouncer, haproxy=haproxy,
                              interval=interval)
