"""Patroni's key layout in the DCS and a read-only, leniently parsed view of one Patroni cluster.

Patroni keeps each cluster under `<namespace><scope>/` on both etcd and ZooKeeper:
`leader` (the lock holder's name), `members/<name>` (JSON the member refreshes every loop),
`config` (the dynamic configuration, JSON), `status` (leader optime and slot positions, JSON),
`history` (timeline switches, JSON list), `initialize` (the system identifier), `sync` (sync standbys).
Values are parsed leniently: a key holding bad JSON reads as empty data, never as an exception, because
status output must survive a half-written or foreign cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from federation.dcs.base import DCS, Versioned
from federation.lsn import lsn_or_none

if TYPE_CHECKING:
    from federation.topology import Datacenter


def cluster_prefix(dc: Datacenter) -> str:
    """'/fed/dc1/': the DCS prefix of the DC's Patroni cluster."""
    return f"{dc.dcs.namespace}{dc.patroni_scope}/"


def leader_key(dc: Datacenter) -> str:
    return cluster_prefix(dc) + "leader"


def members_prefix(dc: Datacenter) -> str:
    return cluster_prefix(dc) + "members/"


def member_key(dc: Datacenter, name: str) -> str:
    return members_prefix(dc) + name


def config_key(dc: Datacenter) -> str:
    return cluster_prefix(dc) + "config"


def status_key(dc: Datacenter) -> str:
    return cluster_prefix(dc) + "status"


def history_key(dc: Datacenter) -> str:
    return cluster_prefix(dc) + "history"


def initialize_key(dc: Datacenter) -> str:
    return cluster_prefix(dc) + "initialize"


def sync_key(dc: Datacenter) -> str:
    return cluster_prefix(dc) + "sync"


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class DCSMember:
    """One `members/<name>` key: what the member last wrote about itself (refreshed every loop_wait)."""

    name: str
    role: str | None = None
    state: str | None = None
    api_url: str | None = None
    conn_url: str | None = None
    timeline: int | None = None
    xlog_location: int | None = None
    replay_lsn: int | None = None
    receive_lsn: int | None = None
    replication_state: str | None = None
    version: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str | None:
        return urlsplit(self.conn_url).hostname if self.conn_url else None

    @property
    def port(self) -> int | None:
        if not self.conn_url:
            return None
        try:
            return urlsplit(self.conn_url).port
        except ValueError:
            return None

    @classmethod
    def from_json(cls, name: str, text: str | None) -> DCSMember:
        data = _json(text)
        if not isinstance(data, dict):
            return cls(name=name)
        tags = data.get("tags")
        return cls(
            name=name,
            role=_str(data.get("role")),
            state=_str(data.get("state")),
            api_url=_str(data.get("api_url")),
            conn_url=_str(data.get("conn_url")),
            timeline=_int(data.get("timeline")),
            xlog_location=lsn_or_none(data.get("xlog_location")),
            replay_lsn=lsn_or_none(data.get("replay_lsn")),
            receive_lsn=lsn_or_none(data.get("receive_lsn")),
            replication_state=_str(data.get("replication_state")),
            version=_str(data.get("version")),
            tags=tags if isinstance(tags, dict) else {},
        )


@dataclass(frozen=True)
class HistoryEntry:
    """One timeline switch: timeline `timeline` ended at `lsn` (the new timeline starts there)."""

    timeline: int
    lsn: int
    reason: str = ""
    timestamp: str | None = None
    new_leader: str | None = None


def parse_history(text: str | None) -> list[HistoryEntry]:
    data = _json(text)
    entries: list[HistoryEntry] = []
    if not isinstance(data, list):
        return entries
    for line in data:
        if not isinstance(line, list) or len(line) < 2:
            continue
        timeline, lsn = _int(line[0]), lsn_or_none(line[1])
        if timeline is None or lsn is None:
            continue
        entries.append(HistoryEntry(
            timeline=timeline, lsn=lsn,
            reason=line[2] if len(line) > 2 and isinstance(line[2], str) else "",
            timestamp=_str(line[3]) if len(line) > 3 else None,
            new_leader=_str(line[4]) if len(line) > 4 else None))
    return entries


@dataclass(frozen=True)
class ClusterStatusKey:
    """The `status` key: the leader's last WAL position (optime) and the slot positions it reported."""

    optime: int | None = None
    slots: dict[str, int] = field(default_factory=dict)
    retain_slots: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, text: str | None) -> ClusterStatusKey:
        data = _json(text)
        if not isinstance(data, dict):
            # Patroni before 2.1 wrote a bare number to `optime/leader`.
            return cls(optime=_int(data))
        slots_raw = data.get("slots")
        slots = {k: v for k, v in (slots_raw.items() if isinstance(slots_raw, dict) else [])
                 if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)}
        retain = data.get("retain_slots")
        return cls(optime=_int(data.get("optime")), slots=slots,
                   retain_slots=tuple(s for s in retain if isinstance(s, str)) if isinstance(retain, list) else ())


@dataclass(frozen=True)
class SyncKey:
    """The `sync` key: which members Patroni currently counts as synchronous (or quorum) standbys."""

    leader: str | None = None
    members: tuple[str, ...] = ()
    quorum: int | None = None

    @classmethod
    def from_json(cls, text: str | None) -> SyncKey:
        data = _json(text)
        if not isinstance(data, dict):
            return cls()
        standby = data.get("sync_standby")
        names = tuple(n.strip() for n in standby.split(",") if n.strip()) if isinstance(standby, str) else ()
        return cls(leader=_str(data.get("leader")), members=names, quorum=_int(data.get("quorum")))


@dataclass(frozen=True)
class PatroniClusterView:
    """A snapshot of one Patroni cluster as stored in its DCS. Every field may be empty."""

    prefix: str
    leader: str | None = None
    members: dict[str, DCSMember] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    config_version: int | None = None
    status: ClusterStatusKey = field(default_factory=ClusterStatusKey)
    history: list[HistoryEntry] = field(default_factory=list)
    initialize: str | None = None
    sync: SyncKey = field(default_factory=SyncKey)

    @property
    def initialized(self) -> bool:
        return self.initialize is not None

    @property
    def standby_cluster(self) -> dict[str, Any] | None:
        """The `standby_cluster` section of the dynamic config, None when the cluster is not a standby."""
        section = self.config.get("standby_cluster")
        return section if isinstance(section, dict) and section else None

    @property
    def sync_mode(self) -> str:
        """'quorum', 'sync' or 'async', from `synchronous_mode` in the dynamic config."""
        mode = self.config.get("synchronous_mode")
        if mode == "quorum":
            return "quorum"
        return "sync" if mode is True or mode == "on" else "async"


def parse_cluster(prefix: str, items: Mapping[str, Versioned]) -> PatroniClusterView:
    """Build the view from the keys below `prefix` (as returned by `DCS.get_prefix`). Pure."""

    def value(name: str) -> Versioned | None:
        return items.get(prefix + name)

    members: dict[str, DCSMember] = {}
    member_root = prefix + "members/"
    for key, item in items.items():
        if key.startswith(member_root) and "/" not in key[len(member_root):] and key != member_root:
            name = key[len(member_root):]
            members[name] = DCSMember.from_json(name, item.value)

    config = value("config")
    config_data = _json(config.value) if config else None
    leader = value("leader")
    status = value("status") or value("optime/leader")
    initialize = value("initialize")
    sync = value("sync")
    history = value("history")
    return PatroniClusterView(
        prefix=prefix,
        leader=(leader.value.strip() or None) if leader else None,
        members=dict(sorted(members.items())),
        config=config_data if isinstance(config_data, dict) else {},
        config_version=config.version if config else None,
        status=ClusterStatusKey.from_json(status.value if status else None),
        history=parse_history(history.value if history else None),
        initialize=(initialize.value.strip() or None) if initialize else None,
        sync=SyncKey.from_json(sync.value if sync else None),
    )


def read_cluster(dcs: DCS, dc: Datacenter) -> PatroniClusterView:
    """Read the DC's whole Patroni cluster with one prefix read. Raises DCSError when the DCS is down."""
    prefix = cluster_prefix(dc)
    return parse_cluster(prefix, dcs.get_prefix(prefix))
