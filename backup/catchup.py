"""Can a member rebuilt from the newest backup catch up afterwards?

A delta restore puts the member back at the backup's start; it must then replay every WAL segment since.
With a restore_command it reads them from the repository. Without one (Patroni removes pgBackRest's
restore_command from postgresql.auto.conf and writes only its own recovery settings) it can only stream
them from its upstream, which has them only while they are still in its pg_wal. If not, the member would
wait forever: "requested WAL segment ... has already been removed".
"""

from __future__ import annotations

from backup.cluster import find_leader, sql
from backup.info import read_info
from backup.runner import stanza_host
from backup.wal import Segment
from federation.errors import OperationFailed, OperationRefused
from federation.patroni_api import patroni_state
from federation.patroni_dynamic import ARCHIVE_GET
from federation.topology import Datacenter, Member, Topology


def _show_restore_command(topo: Topology, member: Member) -> str:
    return str(sql(topo, member, "SHOW restore_command")[0][0] or "")


def replica_restore_command(topo: Topology, dc: Datacenter, member: Member) -> str:
    """The restore_command the member will run as a replica after the rebuild ('' when none)."""
    role = (patroni_state(member, timeout=2.0) or {}).get("role")
    if role == "standby_leader":
        # Another member takes the lock while it is rebuilt, so it comes back as their replica.
        others = [m for m in dc.members if m != member and (patroni_state(m) or {}).get("role") == "replica"]
        if others:
            return _show_restore_command(topo, others[0])
    return _show_restore_command(topo, member)


def catch_up_problem(topo: Topology, dc: Datacenter, member: Member) -> str | None:
    """Why `member` could not catch up after a rebuild from the newest backup; None when it can."""
    if replica_restore_command(topo, dc, member):
        return None
    host = stanza_host(topo, dc)
    info = read_info(host, host.env["PGBACKREST_STANZA"]).require_ok()
    newest = info.backups[-1]
    if not newest.archive.start:
        return None
    start = Segment.from_name(newest.archive.start)
    upstream = find_leader(dc).member
    if upstream == member:
        others = [m for m in dc.members if m != member]
        if not others:  # it stays the standby leader, which reads standby_cluster.restore_command
            return None
        upstream = others[0]  # takes the lock while the member is rebuilt
    rows = sql(topo, upstream, r"SELECT min(name) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'")
    oldest = rows[0][0] if rows else None
    if oldest is None or Segment.from_name(oldest).segno <= start.segno:
        return None
    return (f"{member.name} has no restore_command: after restoring {newest.label} it must replay WAL from "
            f"{start.name}, but {upstream.name} keeps WAL only from {oldest}, so it would wait forever")


def require_catch_up(topo: Topology, dc: Datacenter, member: Member) -> None:
    try:
        problem = catch_up_problem(topo, dc, member)
    except OperationFailed as exc:
        raise OperationRefused(f"cannot tell whether {member.name} could catch up after a rebuild: {exc.message}",
                               hint=exc.hint) from None
    if problem:
        raise OperationRefused(problem, hint=f"give {dc.name}'s members a restore_command (`patronictl edit-config`: "
                                             f"postgresql.recovery_conf.restore_command: {ARCHIVE_GET}), or take "
                                             f"a new backup first (`fedctl backup <primary DC>`)")
