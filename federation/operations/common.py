"""What every cross-DC operation needs: finding a DC's leader, SQL on a member, polling, re-pointing DCs."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

from federation import patroni_api
from federation.errors import FedError, OperationFailed, OperationRefused
from federation.follow_mode import FollowMode, follow_mode
from federation.lsn import format_lsn, parse_lsn
from federation.patroni_api import NodeStatus
from federation.patroni_dynamic import role_patch
from federation.topology import Datacenter, Member, Topology

T = TypeVar("T")


@dataclass(frozen=True)
class DCLook:
    """One DC as its members' REST APIs show it right now."""

    dc: Datacenter
    statuses: dict[str, NodeStatus | None]

    @property
    def leader(self) -> Member | None:
        for member in self.dc.members:
            status = self.statuses.get(member.name)
            if status is not None and status.role in patroni_api.LEADER_ROLES:
                return member
        return None

    @property
    def leader_status(self) -> NodeStatus | None:
        leader = self.leader
        return self.statuses.get(leader.name) if leader else None

    @property
    def is_primary(self) -> bool:
        status = self.leader_status
        return status is not None and status.role in patroni_api.PRIMARY_ROLES

    @property
    def answering(self) -> bool:
        return any(s is not None for s in self.statuses.values())


def look_at(dc: Datacenter, timeout: float = 1.5) -> DCLook:
    def one(member: Member) -> NodeStatus | None:
        try:
            return NodeStatus.from_json(patroni_api.get_patroni(member, timeout=timeout))
        except FedError:
            return None

    with ThreadPoolExecutor(max_workers=len(dc.members)) as pool:
        statuses = dict(zip([m.name for m in dc.members], pool.map(one, dc.members), strict=True))
    return DCLook(dc, statuses)


def look_at_all(topo: Topology) -> dict[str, DCLook]:
    with ThreadPoolExecutor(max_workers=len(topo.datacenters)) as pool:
        looks = list(pool.map(look_at, topo.datacenters))
    return {look.dc.name: look for look in looks}


def require_leader(look: DCLook, what: str) -> Member:
    leader = look.leader
    if leader is None:
        down = [n for n, s in look.statuses.items() if s is None]
        detail = f"members not answering: {', '.join(down)}" if down else "no member holds the leader lock"
        raise OperationRefused(f"{look.dc.name} has no leader ({detail}); {what}")
    return leader


def connect(topo: Topology, member: Member, timeout: int = 2) -> psycopg.Connection[Any]:
    return psycopg.connect(host=member.host, port=member.port, dbname="postgres",
                           user=topo.credentials.superuser.username,
                           password=topo.credentials.superuser.password.resolve(),
                           connect_timeout=timeout, autocommit=True, application_name="fedctl",
                           **topo.ssl_params())


def sql_row(topo: Topology, member: Member, query: str, params: Any = None) -> tuple[Any, ...] | None:
    with connect(topo, member) as conn:
        return conn.execute(query, params).fetchone()


class SqlSession:
    """One connection to a member, reused across queries and re-opened after an error.

    For polls: a new connection per probe costs a SCRAM handshake on both ends, CPU that the promotion or
    restart being waited for would rather have. A session opened on a standby stays open through its
    promotion, so one session can watch a member become writable.
    """

    def __init__(self, topo: Topology, member: Member) -> None:
        self.topo = topo
        self.member = member
        self._conn: psycopg.Connection[Any] | None = None

    def row(self, query: str, params: Any = None) -> tuple[Any, ...] | None:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.topo, self.member)
        try:
            return self._conn.execute(query, params).fetchone()
        except psycopg.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SqlSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _row(topo: Topology, member: Member, session: SqlSession | None, query: str,
         params: Any = None) -> tuple[Any, ...] | None:
    return session.row(query, params) if session is not None else sql_row(topo, member, query, params)


def poll(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T:
    """Call `probe` until it returns a value; errors and None mean "not yet". Fails naming `what`."""
    deadline = time.monotonic() + timeout
    last: str = "no answer yet"
    while True:
        try:
            value = probe()
            if value is not None:
                return value
        except (FedError, psycopg.Error, OSError) as exc:
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if time.monotonic() >= deadline:
            raise OperationFailed(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")
        time.sleep(interval)


def replay_lsn(topo: Topology, member: Member, session: SqlSession | None = None) -> int | None:
    row = _row(topo, member, session, "SELECT pg_last_wal_replay_lsn()::text")
    return parse_lsn(row[0]) if row and row[0] else None


def writable(topo: Topology, member: Member, session: SqlSession | None = None) -> bool | None:
    row = _row(topo, member, session, "SELECT NOT pg_is_in_recovery()")
    return True if row and row[0] else None


def current_timeline(topo: Topology, member: Member, session: SqlSession | None = None) -> int:
    # After a promotion pg_control_checkpoint() lags until the next checkpoint; the WAL file name does not.
    row = _row(topo, member, session, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")
    assert row is not None
    return int(row[0], 16)


def switch_point(topo: Topology, member: Member, timeline: int, session: SqlSession | None = None) -> int | None:
    """Where `timeline` began, from its history file on `member` (None when there is no such file)."""
    name = f"pg_wal/{timeline:08X}.history"
    try:
        row = _row(topo, member, session, "SELECT pg_read_file(%s)", (name,))
    except psycopg.Error:
        return None
    if not row or not row[0]:
        return None
    lines = [ln.split() for ln in str(row[0]).splitlines() if ln.strip() and not ln.startswith("#")]
    return parse_lsn(lines[-1][1]) if lines else None


PATCH_TIMEOUTS = (2.0, 5.0)
CONFLICT_ATTEMPTS = 3


def apply_role(topo: Topology, dc: Datacenter, leader: Member, upstreams: Mapping[str, str | None]) -> dict[str, Any]:
    """PATCH the DC's leader so its standby_cluster and federation slots match `upstreams`. A PATCH that lost a
    race (HTTP 409: the DC's agent applied the record at the same moment) is compared and sent again."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return _apply_role_once(topo, dc, leader, upstreams)
        except patroni_api.ConfigConflict:
            if attempt == CONFLICT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _apply_role_once(topo: Topology, dc: Datacenter, leader: Member, upstreams: Mapping[str, str | None]
                     ) -> dict[str, Any]:
    config = patroni_api.get_config(leader)
    patch = role_patch(topo, dc, upstreams, config, upstream_leader=upstream_leader(topo, dc, upstreams))
    if config.get("standby_cluster") == patch.get("standby_cluster") and "slots" not in patch:
        return {}
    # PATCH /config merges the same values again, so one that got no answer in time is sent once more with a
    # longer wait: on a loaded host Patroni's REST API can take over 2 s, and the operation would stop there.
    for attempt, timeout in enumerate(PATCH_TIMEOUTS, start=1):
        try:
            return patroni_api.patch_config(leader, patch, timeout=timeout)
        except patroni_api.PatroniUnreachable:
            if attempt == len(PATCH_TIMEOUTS):
                raise
    raise AssertionError("unreachable")


def upstream_leader(topo: Topology, dc: Datacenter, upstreams: Mapping[str, str | None]) -> Member | None:
    """The upstream DC's leader, when `dc` streams from that one member (follow_mode): a cascade, or an
    upstream whose members use different ports. None when it follows every member, or no leader is seen."""
    upstream = upstreams.get(dc.name)
    if upstream is None or follow_mode(topo.dc(upstream), upstreams) is FollowMode.EVERY_MEMBER:
        return None
    return look_at(topo.dc(upstream)).leader


def lsn_text(value: int | None) -> str | None:
    return format_lsn(value) if value is not None else None
