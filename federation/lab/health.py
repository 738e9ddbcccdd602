"""Polling lab members until they are what we want: a writable primary, a standby leader, streaming replicas."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg

from federation.errors import LabError
from federation.patroni_api import patroni_state
from federation.topology import Datacenter, Member, Topology


def member_state(member: Member, timeout: float = 1.0) -> dict[str, Any] | None:
    """Patroni's GET /patroni for a member, or None while its REST API does not answer."""
    return patroni_state(member, timeout=timeout)


def connect(topo: Topology, member: Member, password: str, dbname: str = "postgres",
            timeout: int = 2) -> psycopg.Connection[Any]:
    return psycopg.connect(host=member.host, port=member.port, user=topo.credentials.superuser.username,
                           **topo.ssl_params(),
                           password=password, dbname=dbname, connect_timeout=timeout, autocommit=True)


def sql_ready(topo: Topology, member: Member, password: str, want_primary: bool) -> bool:
    try:
        with connect(topo, member, password) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] is (not want_primary)


def dc_ready(topo: Topology, dc: Datacenter, password: str, primary: bool) -> str | None:
    """None when the DC is healthy (leader serving SQL, every replica streaming), else what is missing."""
    leader_role = "primary" if primary else "standby_leader"
    states = {m.name: member_state(m) for m in dc.members}
    leaders = [m for m in dc.members if (states[m.name] or {}).get("role") == leader_role]
    if not leaders:
        return f"no {leader_role} yet"
    leader = leaders[0]
    if not primary and (states[leader.name] or {}).get("replication_state") != "streaming":
        return f"standby leader {leader.name} is not streaming from its upstream yet"
    if not sql_ready(topo, leader, password, want_primary=primary):
        return f"{leader.name} does not accept SQL yet"
    for m in dc.members:
        if m is leader:
            continue
        st = states[m.name] or {}
        if st.get("role") != "replica" or st.get("replication_state") != "streaming":
            return f"replica {m.name} is not streaming yet (role={st.get('role')}, state={st.get('state')})"
    return None


def wait_until(what: str, check: Callable[[], str | None], timeout: float, interval: float = 0.2,
               on_fail: Callable[[], str] | None = None) -> None:
    """Poll `check` (None means done) until `timeout`; fail with the last reason it gave."""
    deadline = time.monotonic() + timeout
    reason = "not checked"
    while time.monotonic() < deadline:
        result = check()
        if result is None:
            return
        reason = result
        time.sleep(interval)
    extra = f"\n{on_fail()}" if on_fail else ""
    raise LabError(f"timed out after {timeout:.0f} s waiting for {what}: {reason}{extra}")
