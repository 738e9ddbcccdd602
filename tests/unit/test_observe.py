"""Role, health and lag derivation from fake DCS and REST answers (`assemble` is pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from federation.dcs.base import Versioned
from federation.dcs.patroni_keys import parse_cluster
from federation.observe import ApiRead, DCSRead, assemble, dc_role, member_role
from federation.patroni_api import NodeStatus
from federation.topology import Topology, parse_topology

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
SECRET = {"file": "/nonexistent"}


def make_topology(dcs: int = 2) -> Topology:
    datacenters: list[dict[str, Any]] = []
    for i in range(1, dcs + 1):
        dc: dict[str, Any] = {
            "name": f"dc{i}", "role": "primary" if i == 1 else "standby",
            "dcs": {"etcd3": {"hosts": [f"127.0.4{i}.1:2379"]}, "namespace": "/fed/"},
            "members": [{"name": f"n{2 * i - 1}", "host": f"127.0.4{i}.11", "api": f"127.0.4{i}.11:8008"},
                        {"name": f"n{2 * i}", "host": f"127.0.4{i}.12", "api": f"127.0.4{i}.12:8008"}]}
        if i > 1:
            dc["upstream"] = f"dc{i - 1}"
        datacenters.append(dc)
    return parse_topology({
        "federation": "unit", "pgbackrest": {"repo_path": "/tmp/repo"},
        "credentials": {k: {"username": k, "password": SECRET} for k in ("superuser", "replication", "rewind")},
        "datacenters": datacenters})


def view(dc: str, leader: str | None, members: dict[str, dict[str, Any]],
         standby_of: str | None = None, sync: dict[str, Any] | None = None, **config: Any) -> DCSRead:
    prefix = f"/fed/{dc}/"
    standby_section = {"standby_cluster": {"host": standby_of, "port": 5432}} if standby_of else {}
    keys = {prefix + "sync": json.dumps(sync or {}), prefix + "initialize": "7712177166817056537",
            prefix + "config": json.dumps({"ttl": 20, **standby_section, **config})}
    if leader:
        keys[prefix + "leader"] = leader
    for name, data in members.items():
        keys[prefix + "members/" + name] = json.dumps(data)
    return DCSRead(view=parse_cluster(prefix, {k: Versioned(k, v, 1) for k, v in keys.items()}))


def primary(lsn: int, tl: int = 1) -> ApiRead:
    return ApiRead(node=NodeStatus(state="running", role="primary", timeline=tl, wal_lsn=lsn))


def standby(lsn: int, role: str = "replica", tl: int = 1, state: str = "streaming",
            replayed_at: datetime | None = None, sync_standby: bool = False,
            quorum_standby: bool = False) -> ApiRead:
    return ApiRead(node=NodeStatus(state="running", role=role, timeline=tl, replayed_lsn=lsn, received_lsn=lsn,
                                   replication_state=state, replayed_at=replayed_at, sync_standby=sync_standby,
                                   quorum_standby=quorum_standby))


def down(reason: str = "connection refused") -> ApiRead:
    return ApiRead(error=reason)


def healthy_reads(dc1_lsn: int = 5000, dc2_lsn: int = 5000, replayed_at: datetime | None = None) -> tuple[
        dict[str, DCSRead], dict[str, dict[str, ApiRead]]]:
    dcs = {"dc1": view("dc1", "n1", {"n1": {"role": "primary"}, "n2": {"role": "replica"}}),
           "dc2": view("dc2", "n3", {"n3": {"role": "standby_leader"}, "n4": {"role": "replica"}},
                       standby_of="127.0.41.11")}
    api = {"dc1": {"n1": primary(dc1_lsn), "n2": standby(dc1_lsn - 100)},
           "dc2": {"n3": standby(dc2_lsn, role="standby_leader", replayed_at=replayed_at), "n4": standby(dc2_lsn)}}
    return dcs, api


def test_a_healthy_federation() -> None:
    dcs, api = healthy_reads()
    status = assemble(make_topology(), dcs, api, now=NOW)
    assert status.healthy and status.primary_dc == "dc1" and status.problems == ()
    dc1, dc2 = status.datacenters
    assert (dc1.role, dc1.upstream, dc1.leader, dc1.timeline, dc1.lag_bytes) == ("primary", None, "n1", 1, None)
    assert (dc2.role, dc2.upstream, dc2.leader, dc2.lag_bytes, dc2.lag_seconds) == ("standby", "dc1", "n3", 0, 0.0)
    assert [(m.name, m.role, m.state, m.sync, m.lag_bytes) for m in dc1.members] == [
        ("n1", "leader", "running", None, 0), ("n2", "replica", "streaming", "async", 100)]
    assert [(m.name, m.role) for m in dc2.members] == [("n3", "standby_leader"), ("n4", "replica")]
    assert dc2.standby_cluster == "127.0.41.11:5432"


def test_cross_dc_lag_in_bytes_and_seconds_since_the_last_replayed_transaction() -> None:
    dcs, api = healthy_reads(dc1_lsn=9000, dc2_lsn=5000, replayed_at=NOW - timedelta(seconds=7.5))
    dc2 = assemble(make_topology(), dcs, api, now=NOW).dc("dc2")
    assert dc2 is not None and dc2.lag_bytes == 4000 and dc2.lag_seconds == pytest.approx(7.5)


def test_lag_seconds_is_unknown_without_a_replayed_transaction_and_never_negative() -> None:
    dcs, api = healthy_reads(dc1_lsn=9000, dc2_lsn=5000, replayed_at=None)
    dc2 = assemble(make_topology(), dcs, api, now=NOW).dc("dc2")
    assert dc2 is not None and dc2.lag_bytes == 4000 and dc2.lag_seconds is None
    # A standby sampled a moment after its upstream may look ahead: that is no lag, not negative lag.
    dcs, api = healthy_reads(dc1_lsn=5000, dc2_lsn=5100, replayed_at=NOW + timedelta(seconds=1))
    dc2 = assemble(make_topology(), dcs, api, now=NOW).dc("dc2")
    assert dc2 is not None and dc2.lag_bytes == 0 and dc2.lag_seconds == 0.0


def test_cascading_standby_measures_lag_against_its_own_upstream() -> None:
    dcs, api = healthy_reads(dc1_lsn=9000, dc2_lsn=8000, replayed_at=NOW - timedelta(seconds=1))
    dcs["dc3"] = view("dc3", "n5", {"n5": {"role": "standby_leader"}}, standby_of="127.0.42.11")
    api["dc3"] = {"n5": standby(7000, role="standby_leader", replayed_at=NOW - timedelta(seconds=2)),
                  "n6": standby(7000)}
    dc3 = assemble(make_topology(3), dcs, api, now=NOW).dc("dc3")
    assert dc3 is not None and dc3.upstream == "dc2" and dc3.lag_bytes == 1000
    assert dc3.lag_seconds == pytest.approx(2.0)


def test_unreachable_dcs_is_reported_and_members_still_shown() -> None:
    dcs, api = healthy_reads()
    dcs["dc2"] = DCSRead(error="etcd at 127.0.42.1:2379 (dc2) is unreachable: connection refused")
    status = assemble(make_topology(), dcs, api, now=NOW)
    dc2 = status.dc("dc2")
    assert dc2 is not None and not dc2.reachable and dc2.error is not None and "unreachable" in dc2.error
    # Without the DCS, the member that says it leads is taken as the leader, and its role sets the DC role.
    assert dc2.leader == "n3" and dc2.role == "standby" and dc2.lag_bytes == 0
    assert not status.healthy
    assert any(p.startswith("dc2: DCS unreachable") for p in status.all_problems())


def test_a_member_whose_api_is_down_falls_back_to_its_dcs_key() -> None:
    dcs, api = healthy_reads()
    dcs["dc1"] = view("dc1", "n1", {"n1": {"role": "primary"},
                                    "n2": {"role": "replica", "state": "running", "replication_state": "streaming",
                                           "xlog_location": 4000, "timeline": 1}})
    api["dc1"]["n2"] = down()
    n2 = assemble(make_topology(), dcs, api, now=NOW).datacenters[0].members[1]
    assert (n2.reachable, n2.source, n2.state, n2.lsn, n2.lag_bytes) == (False, "dcs", "streaming", 4000, 1000)
    assert n2.error == "connection refused"


def test_a_member_known_nowhere_is_unreachable() -> None:
    dcs, api = healthy_reads()
    dcs["dc1"] = view("dc1", "n1", {"n1": {"role": "primary"}})
    api["dc1"]["n2"] = down("no answer within 2 s")
    status = assemble(make_topology(), dcs, api, now=NOW)
    n2 = status.datacenters[0].members[1]
    assert (n2.reachable, n2.source, n2.state, n2.role) == (False, "none", "unreachable", "unknown")
    assert "dc1: n2: REST API unreachable (no answer within 2 s)" in status.all_problems()


def test_a_dc_with_no_leader_is_unhealthy() -> None:
    dcs, api = healthy_reads()
    dcs["dc2"] = view("dc2", None, {"n3": {"role": "replica"}}, standby_of="127.0.41.11")
    api["dc2"] = {"n3": standby(5000), "n4": standby(5000)}
    status = assemble(make_topology(), dcs, api, now=NOW)
    assert "dc2: no leader: no member holds the leader key" in status.all_problems()
    assert status.dc("dc2").lag_bytes is None  # type: ignore[union-attr]


def test_two_primary_dcs_are_a_split_brain() -> None:
    dcs, api = healthy_reads()
    dcs["dc2"] = view("dc2", "n3", {"n3": {"role": "primary"}})
    api["dc2"]["n3"] = primary(7000, tl=2)
    status = assemble(make_topology(), dcs, api, now=NOW)
    assert status.problems == ("split brain: dc1 and dc2 are all primary DCs",)
    assert status.dc("dc2").upstream is None  # type: ignore[union-attr]


def test_no_primary_dc() -> None:
    dcs, api = healthy_reads()
    dcs["dc1"] = view("dc1", "n1", {}, standby_of="127.0.42.11")
    api["dc1"]["n1"] = standby(5000, role="standby_leader")
    status = assemble(make_topology(), dcs, api, now=NOW)
    assert status.primary_dc is None and "no primary DC: no datacenter accepts writes" in status.problems
    # dc1 has no upstream in the topology: the DC its standby_cluster points at is taken.
    assert status.dc("dc1").upstream == "dc2"  # type: ignore[union-attr]


def test_promotion_and_demotion_in_progress_are_flagged() -> None:
    dcs, api = healthy_reads()
    dcs["dc2"] = view("dc2", "n3", {"n3": {"role": "standby_leader"}})  # standby_cluster removed...
    status = assemble(make_topology(), dcs, api, now=NOW)  # ...but n3 has not promoted yet
    assert any("leader n3 is standby_leader although the config has no standby_cluster" in p
               for p in status.all_problems())
    dcs, api = healthy_reads()
    dcs["dc1"] = view("dc1", "n1", {"n1": {"role": "primary"}}, standby_of="127.0.42.11")
    status = assemble(make_topology(), dcs, api, now=NOW)
    assert any("leader n1 is still primary although the config has standby_cluster" in p
               for p in status.all_problems())


def test_a_second_primary_inside_a_dc_is_flagged() -> None:
    dcs, api = healthy_reads()
    api["dc1"]["n2"] = primary(5000)
    status = assemble(make_topology(), dcs, api, now=NOW)
    assert status.datacenters[0].members[1].role == "primary"
    assert "dc1: n2 runs as primary but n1 holds the leader key" in status.all_problems()


def test_unhealthy_member_states() -> None:
    dcs, api = healthy_reads()
    api["dc2"]["n3"] = standby(5000, role="standby_leader", state="in archive recovery")
    api["dc2"]["n4"] = ApiRead(node=NodeStatus(state="starting", role="replica"))
    problems = assemble(make_topology(), dcs, api, now=NOW).all_problems()
    assert "dc2: n3 is in archive recovery" in problems and "dc2: n4 is starting" in problems


def test_maintenance_mode_is_shown_but_is_not_a_problem() -> None:
    dcs, api = healthy_reads()
    dcs["dc2"] = view("dc2", "n3", {"n3": {"role": "standby_leader"}}, standby_of="127.0.41.11", pause=True)
    status = assemble(make_topology(), dcs, api, now=NOW)
    assert status.dc("dc2").maintenance and not status.dc("dc1").maintenance  # type: ignore[union-attr]
    assert status.healthy
    dcs, api = healthy_reads()
    api["dc1"]["n1"] = ApiRead(node=NodeStatus(state="running", role="primary", wal_lsn=5000, maintenance=True))
    assert assemble(make_topology(), dcs, api, now=NOW).dc("dc1").maintenance  # type: ignore[union-attr]


def test_sync_and_quorum_standbys() -> None:
    dcs, api = healthy_reads()
    api["dc1"]["n2"] = standby(5000, sync_standby=True)
    assert assemble(make_topology(), dcs, api, now=NOW).datacenters[0].members[1].sync == "sync"
    api["dc1"]["n2"] = standby(5000, quorum_standby=True)
    assert assemble(make_topology(), dcs, api, now=NOW).datacenters[0].members[1].sync == "quorum"
    # REST down: the DCS sync key and synchronous_mode decide.
    dcs["dc1"] = view("dc1", "n1", {"n1": {"role": "primary"}, "n2": {"role": "replica"}},
                      sync={"leader": "n1", "sync_standby": "n2"}, synchronous_mode=True)
    api["dc1"]["n2"] = down()
    assert assemble(make_topology(), dcs, api, now=NOW).datacenters[0].members[1].sync == "sync"


def test_members_in_the_dcs_but_not_in_the_topology_are_shown_and_flagged() -> None:
    dcs, api = healthy_reads()
    dcs["dc1"] = view("dc1", "n1", {"n1": {"role": "primary"}, "n2": {"role": "replica"},
                                    "n9": {"role": "replica", "conn_url": "postgres://127.0.41.19:5432/postgres",
                                           "api_url": "http://127.0.41.19:8008/patroni"}})
    api["dc1"]["n9"] = standby(5000)
    status = assemble(make_topology(), dcs, api, now=NOW)
    n9 = status.datacenters[0].member("n9")
    assert n9 is not None and not n9.in_topology and n9.host == "127.0.41.19" and n9.reachable
    assert "dc1: n9 is registered in the DCS but is not in the topology" in status.all_problems()


def test_upstream_override_and_mismatch_with_standby_cluster() -> None:
    dcs, api = healthy_reads()
    dcs["dc3"] = view("dc3", "n5", {"n5": {"role": "standby_leader"}}, standby_of="127.0.41.11")
    api["dc3"] = {"n5": standby(5000, role="standby_leader"), "n6": standby(5000)}
    status = assemble(make_topology(3), dcs, api, now=NOW)
    assert any("standby_cluster points at 127.0.41.11:5432 in dc1, but the upstream should be dc2" in p
               for p in status.all_problems())
    status = assemble(make_topology(3), dcs, api, now=NOW, upstream_of={"dc3": "dc1"})
    assert status.dc("dc3").upstream == "dc1" and status.healthy  # type: ignore[union-attr]


@pytest.mark.parametrize(("node_role", "is_leader", "dc", "expected"), [
    ("primary", True, "primary", "leader"), ("master", True, "primary", "leader"),
    ("primary", False, "primary", "primary"), ("standby_leader", True, "standby", "standby_leader"),
    ("replica", True, "standby", "standby_leader"), ("replica", False, "standby", "replica"),
    (None, False, "unknown", "unknown"), ("uninitialized", False, "primary", "uninitialized")])
def test_member_role(node_role: str | None, is_leader: bool, dc: str, expected: str) -> None:
    assert member_role(node_role, is_leader, dc) == expected


def test_dc_role_prefers_the_dcs_config_over_the_leaders_role() -> None:
    standby_view = view("dc2", "n3", {}, standby_of="h").view
    primary_view = view("dc1", "n1", {}).view
    assert dc_role(standby_view, "primary") == "standby"
    assert dc_role(primary_view, "standby_leader") == "primary"
    assert dc_role(None, "standby_leader") == "standby"
    assert dc_role(None, "master") == "primary"
    assert dc_role(None, None) == "unknown"


def test_json_shape_is_stable() -> None:
    dcs, api = healthy_reads(dc1_lsn=0x3000060)
    data = assemble(make_topology(), dcs, api, now=NOW, duration_s=0.0421).to_json_dict()
    assert list(data) == ["federation", "primary_dc", "healthy", "problems", "observed_at", "duration_s",
                          "datacenters"]
    assert data["observed_at"] == "2026-01-01T12:00:00+00:00" and data["duration_s"] == 0.042
    dc = data["datacenters"][0]
    assert list(dc) == ["name", "scope", "role", "upstream", "reachable", "error", "leader", "timeline",
                        "lag_bytes", "lag_seconds", "standby_cluster", "maintenance", "problems", "members"]
    member = dc["members"][0]
    assert list(member) == ["name", "host", "port", "api_url", "role", "state", "sync", "timeline", "lsn",
                            "lsn_int", "lag_bytes", "reachable", "error", "source", "agent", "agent_error", "gate"]
    assert (member["lsn"], member["lsn_int"], member["api_url"]) == ("0/3000060", 0x3000060,
                                                                     "http://127.0.41.11:8008")
    json.dumps(data)  # serialisable as is
