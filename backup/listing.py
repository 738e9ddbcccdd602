"""`fedctl backups`: the shared stanza's backup sets as rows (label, type, times, WAL range, sizes, errors)."""

from __future__ import annotations

from typing import Any

from backup.cluster import find_leader, primary_dc
from backup.info import StanzaInfo, read_info
from backup.runner import stanza_host
from federation.topology import Topology


def list_backups(topo: Topology, dc_name: str | None = None) -> StanzaInfo:
    """The stanza's backups, read through the given DC's leader (any DC: the stanza is shared)."""
    leader = find_leader(topo.dc(dc_name)) if dc_name else primary_dc(topo)
    host = stanza_host(topo, leader.dc)
    repo = topo.pgbackrest_for(leader.dc)
    assert repo is not None
    return read_info(host, repo.stanza).require_ok(allow_no_backups=True)


def backup_rows(info: StanzaInfo) -> list[list[Any]]:
    """Rows for `fedctl backups`: label, type, start, stop, WAL start, WAL stop, size, repo size, error."""
    rows = []
    for b in info.backups:
        rows.append([b.label, b.type, b.started.strftime("%Y-%m-%d %H:%M:%S"), b.stopped.strftime("%Y-%m-%d %H:%M:%S"),
                     b.archive.start, b.archive.stop, _size(b.info.size), _size(b.info.repository.size),
                     "yes" if b.error else "no"])
    return rows


def backup_dicts(info: StanzaInfo) -> list[dict[str, Any]]:
    """The same sets for JSON/YAML: raw byte counts and ISO times."""
    return [{"label": b.label, "type": b.type, "prior": b.prior, "start": b.started.isoformat(),
             "stop": b.stopped.isoformat(), "wal_start": b.archive.start, "wal_stop": b.archive.stop,
             "lsn_start": b.lsn.start, "lsn_stop": b.lsn.stop, "db_size": b.info.size, "db_delta": b.info.delta,
             "repo_size": b.info.repository.size, "repo_delta": b.info.repository.delta, "error": bool(b.error)}
            for b in info.backups]


BACKUP_COLUMNS = ["Label", "Type", "Start (UTC)", "Stop (UTC)", "WAL start", "WAL stop", "DB size", "Repo size",
                  "Error"]


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
