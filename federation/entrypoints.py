"""Client entrypoints that follow the primary DC: HAProxy, libpq and PgBouncer configuration, rendered.

Read-write: one HAProxy backend lists every member of every DC; each is checked with `GET /primary`
on its fedctl agent (agent/primary_check.py), which passes only on the member that is Patroni's
primary AND belongs to the primary DC of the newest federation epoch. A fenced DC's old leader that
still believes it is primary therefore never receives a connection.

Read-only: Patroni's own `/replica` check (optionally `?lag=...`) on each member's REST port, either
every DC's replicas or only `local_dc`'s.

PgBouncer: a `[databases]` section naming the primary DC's leader; `fedctl entrypoint follow`
(agent/entrypoint_follower.py) keeps it current and RELOADs PgBouncer.

Default binds (nothing is added to the topology): 127.0.0.1:P for read-write, 127.0.0.1:P+1 for
read-only and 127.0.0.1:P+2 for PgBouncer, where P = 15000 + 3 * (crc32(federation name) mod 2500), so
every lab of one machine gets its own three ports without configuration (a clash between two names is
possible: pass explicit binds).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from agent.settings import default_listen
from federation.field_rules import host_port
from federation.state import FederationState
from federation.topology import Datacenter, Member, Topology

PORT_BASE = 15000
PORT_SLOTS = 2500
# fastinter: once a check failed, the next one follows 100 ms later, so a server that is really down is out
# within inter + fastinter, while one failed check alone (a slow TLS handshake) still takes nobody out.
CHECK_INTERVAL = 0.25
CHECK_TIMING = f"inter {int(CHECK_INTERVAL * 1000)} fastinter 100 fall 2 rise 1"
# How long after a primary's agent stopped answering 200 every HAProxy has taken it out of the read-write
# backend: its next check (within inter) plus that check's own round trip. switchover-dc promotes the target
# no sooner, so no HAProxy ever has two read-write servers at once.
DRAIN_SECONDS = CHECK_INTERVAL + 0.2


@dataclass(frozen=True)
class Binds:
    read_write: str
    read_only: str
    pgbouncer: str


def default_binds(topo: Topology, host: str = "127.0.0.1") -> Binds:
    port = PORT_BASE + 3 * (zlib.crc32(topo.federation.encode()) % PORT_SLOTS)
    return Binds(host_port(host, port), host_port(host, port + 1), host_port(host, port + 2))


def _server_name(dc: Datacenter, member: Member) -> str:
    return f"{dc.name}_{member.name}"


def render_haproxy(topo: Topology, *, read_write_bind: str, read_only_bind: str, local_dc: str | None = None,
                   replica_lag: str | None = None, stats_socket: str | None = None) -> str:
    """An haproxy.cfg with a read-write frontend that follows the primary DC and a read-only one."""
    if local_dc is not None:
        topo.dc(local_dc)  # an unknown DC is a BadInput naming the known ones
    replica_check = "/replica" + (f"?lag={replica_lag}" if replica_lag else "")
    lines = ["# Rendered by `fedctl entrypoint haproxy` for federation " + topo.federation + ".",
             "global", "    maxconn 1000"]
    if stats_socket:
        lines.append(f"    stats socket {stats_socket} mode 600 level admin")
    lines += ["", "defaults", "    mode tcp", "    retries 2", "    timeout connect 2s",
              "    timeout client 30m", "    timeout server 30m",
              # A check over TLS to a Python server (the agent, Patroni) on a loaded host took 1.1-1.4 s in the
              # lab: with 1 s the read-write backend flapped to "no server available" mid-switchover.
              "    timeout check 3s", "",
              "frontend fed_read_write", f"    bind {read_write_bind}", "    default_backend fed_primary", "",
              "# Only the member that is Patroni's primary in the primary DC of the newest epoch passes.",
              "backend fed_primary", "    option httpchk GET /primary",
              # A primary whose PostgreSQL is shutting down answers 404: no new connections from the next check on.
              "    http-check disable-on-404", "    http-check expect status 200",
              f"    default-server {CHECK_TIMING} on-marked-down shutdown-sessions"]
    # The agents' /primary over https when they serve it, verified against its CA, with HAProxy's certificate.
    agent_tls = topo.agent_tls
    agent_check = (f" check-ssl verify required ca-file {agent_tls.ca_file} crt {agent_tls.client_cert_file}"
                   if agent_tls is not None else "")
    for dc, member in topo.members():
        agent = default_listen(member)
        lines.append(f"    server {_server_name(dc, member)} {host_port(member.host, member.port)} "
                     f"check port {agent.port}{agent_check}")
    lines += ["", "frontend fed_read_only", f"    bind {read_only_bind}", "    default_backend fed_replicas", "",
              "backend fed_replicas", "    balance roundrobin", f"    option httpchk GET {replica_check}",
              "    http-check expect status 200",
              f"    default-server {CHECK_TIMING} on-marked-down shutdown-sessions"]
    # Patroni's /replica check over https when the members' REST API serves it, verified against its CA.
    tls = topo.patroni_api.tls if topo.patroni_api is not None else None
    check_tls = f" check-ssl verify required ca-file {tls.ca_file}" if tls is not None else ""
    for dc, member in topo.members():
        if local_dc is None or dc.name == local_dc:
            lines.append(f"    server {_server_name(dc, member)} {host_port(member.host, member.port)} "
                         f"check port {member.api.port}{check_tls}")
    return "\n".join(lines) + "\n"


def render_libpq(topo: Topology, dbname: str = "postgres") -> str:
    """A multi-host libpq URI over every member; libpq keeps the first that accepts writes.

    No password: set PGPASSWORD or a PGPASSFILE entry per host."""
    hosts = ",".join(host_port(m.host, m.port) for _, m in topo.members())
    user = topo.credentials.superuser.username
    tls = "".join(f"&{k}={v}" for k, v in topo.ssl_params().items()) if topo.postgres_tls is not None else ""
    return f"postgresql://{user}@{hosts}/{dbname}?target_session_attrs=read-write&connect_timeout=2{tls}"


def render_pgbouncer(topo: Topology, record: FederationState, leader: Member,
                     dbname: str | Sequence[str] = "*", *, followed: bool = False) -> str:
    """A PgBouncer [databases] section pointing at the current primary DC's leader.

    `followed` says the file is kept current by `fedctl entrypoint follow` rather than being a snapshot
    to re-render by hand."""
    names = [dbname] if isinstance(dbname, str) else list(dbname)
    lines = [f"; Rendered by `fedctl entrypoint {'follow' if followed else 'pgbouncer'}` for federation "
             f"{topo.federation}: epoch {record.epoch}, primary DC {record.primary_dc}, leader {leader.name}.",
             "; Kept current by the entrypoint follower: do not edit." if followed
             else "; Re-render and RELOAD after every switchover-dc / promote-dc.",
             "[databases]"]
    lines += [f"{name} = host={leader.host} port={leader.port}" for name in names]
    return "\n".join(lines) + "\n"
