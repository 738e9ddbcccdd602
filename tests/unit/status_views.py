"""Hand-built FederationStatus values for the HTML view's tests (renderer and headless browser)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from federation.status_model import DCStatus, FederationStatus, MemberStatus
from federation.status_view_inputs import JobRun, PastOperation, RecentJobs

OBSERVED_AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def members(dc: str, standby: bool, count: int = 2) -> tuple[MemberStatus, ...]:
    leader = MemberStatus(name=f"{dc}-n1", host="127.0.0.1", port=5432, role="standby_leader" if standby else "leader",
                          state="streaming" if standby else "running", timeline=3, lsn=0x3000060, reachable=True,
                          source="api", lag_bytes=0)
    replicas = tuple(MemberStatus(name=f"{dc}-n{i}", host="127.0.0.1", port=5431 + i, role="replica",
                                  state="streaming", sync="async", timeline=3, lsn=0x3000000, lag_bytes=96,
                                  reachable=True, source="api") for i in range(2, count + 1))
    return (leader, *replicas)


def dc(name: str, upstream: str | None = None, **fields: Any) -> DCStatus:
    standby = upstream is not None
    defaults: dict[str, Any] = {
        "scope": f"pg-{name}", "role": "standby" if standby else "primary", "upstream": upstream, "reachable": True,
        "leader": f"{name}-n1", "timeline": 3, "members": members(name, standby),
        "lag_bytes": 2048 if standby else None, "lag_seconds": 0.4 if standby else None,
        "standby_cluster": "127.0.0.1:5432" if standby else None}
    return DCStatus(name=name, **{**defaults, **fields})


def federation(*dcs: DCStatus, problems: tuple[str, ...] = (), extra: dict[str, Any] | None = None,
               name: str = "lab") -> FederationStatus:
    primary = next((d.name for d in dcs if d.role == "primary"), None)
    return FederationStatus(federation=name, primary_dc=primary, datacenters=dcs, problems=problems,
                            observed_at=OBSERVED_AT, duration_s=0.05, extra=extra or {})


def two_dc(primary: str = "dc1", standby: str = "dc2") -> FederationStatus:
    """Listed in topology order (dc1 first) whichever of the two is primary."""
    boxes = {primary: dc(primary), standby: dc(standby, upstream=primary)}
    return federation(*(boxes[n] for n in sorted(boxes)))


def three_dc_cascade() -> FederationStatus:
    """dc3 cascades from dc2, which replicates from dc1; listed cascade first to show the order is by upstream."""
    return federation(dc("dc3", upstream="dc2"), dc("dc2", upstream="dc1"), dc("dc1"))


PENDING_RECORD: dict[str, Any] = {
    "epoch": 7, "primary_dc": "dc1", "upstreams": {"dc1": None, "dc2": "dc1"},
    "operation": {"kind": "switchover-dc", "source": "dc1", "target": "dc2", "step": "demote-source",
                  "started": "2026-03-01T11:59:58+00:00", "plan": ["precheck", "fence-writes", "demote-source",
                                                                   "promote-target", "repoint"]},
    "copies": {"dc1": 7, "dc2": 7}, "last_operation": None,
    "history": [{"epoch": 6, "time": "2026-03-01T10:00:00+00:00", "operation": "switchover-dc", "source": "dc2",
                 "target": "dc1", "outcome": "done", "seconds": 12.5}]}

STORE_WITH_LEASE: dict[str, Any] = {
    "members_answering": 3, "members": 3, "quorum": True, "record_epoch": 7, "primary_dc": "dc1",
    "lease": {"holder": "dc1", "agent": "dc1/dc1-n1", "seconds_left": 8.0}, "error": None}

JOBS = RecentJobs(runs=(JobRun(dc="dc1", job="nightly-backup", kind="backup", started="2026-03-01T02:00:00+00:00",
                               status="ok", seconds=42.0, summary="full backup 20260301-020000F"),
                        JobRun(dc="dc2", job="verify", kind="verify-restore", started="2026-03-01T01:00:00+00:00",
                               status="failed", seconds=3.0, summary="restore failed")),
                  unread=("dc3: no answer within 2 s",))

HISTORY = [PastOperation(epoch=6, time="2026-03-01T10:00:00+00:00", operation="switchover-dc", source="dc2",
                         target="dc1", outcome="done", seconds=12.5)]
