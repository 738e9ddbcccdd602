"""What the repository host's config must say right now: the primary DC's members, where their data is,
which of them can serve a backup. Asks Patroni (role, state), PostgreSQL (data_directory, the socket) and
each member's `pgbackrest server` port (a TCP connect): a standby whose TLS server is down is left out, and
the backup falls back to another standby or to the primary, saying so."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from backup.cluster import primary_dc, sql
from backup.host_config import PgHost, require_repo_host
from federation.errors import FedError
from federation.patroni_api import PRIMARY_ROLES, patroni_state
from federation.pgbackrest_layout import PgBackRestConfig, member_tls_port
from federation.topology import Datacenter, Member, Topology

TLS_PROBE_TIMEOUT = 1.0
STREAMING_STATES = ("streaming", "running")


@dataclass(frozen=True)
class HostLook:
    host: PgHost | None  # None: the member could not be asked at all
    member: Member
    why_left_out: str | None = None


def tls_server_answers(member: Member, port: int, timeout: float = TLS_PROBE_TIMEOUT) -> bool:
    try:
        with socket.create_connection((member.host, port), timeout=timeout):
            return True
    except OSError:
        return False


def data_location(topo: Topology, member: Member) -> tuple[str, str | None]:
    """(data_directory, first unix socket directory) as the member's PostgreSQL reports them."""
    row = sql(topo, member, "SELECT current_setting('data_directory'), current_setting('unix_socket_directories')")[0]
    sockets = [d.strip() for d in str(row[1] or "").split(",") if d.strip()]
    return str(row[0]), sockets[0] if sockets else None


def look_at_member(topo: Topology, section: PgBackRestConfig, member: Member) -> HostLook:
    state = patroni_state(member, timeout=2.0) or {}
    role, pg_state = state.get("role"), state.get("state")
    if not state:
        return HostLook(None, member, "its Patroni REST API does not answer")
    try:
        data_dir, socket_dir = data_location(topo, member)
    except FedError as exc:
        return HostLook(None, member, exc.message)
    primary = role in PRIMARY_ROLES
    port = member_tls_port(section, member.pgbackrest_port)
    answers = tls_server_answers(member, port)
    why = None
    if not answers:
        why = f"its pgbackrest server ({member.host}:{port}) does not answer"
    elif not primary and pg_state not in STREAMING_STATES:
        why = f"it is {pg_state or 'in an unknown state'}"
    return HostLook(PgHost(member, data_dir, socket_dir, primary, healthy=why is None), member, why)


def backup_hosts(topo: Topology, dc: Datacenter | None = None) -> tuple[Datacenter, list[HostLook]]:
    """Every member of the DC that is primary now (or `dc`), looked at in parallel."""
    dc = dc or primary_dc(topo).dc
    section, _repo = require_repo_host(topo.pgbackrest_for(dc), f"datacenter {dc.name}")
    with ThreadPoolExecutor(max_workers=len(dc.members)) as pool:
        looks = list(pool.map(lambda m: look_at_member(topo, section, m), dc.members))
    return dc, looks
