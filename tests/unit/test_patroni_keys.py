from __future__ import annotations

import json

from federation.dcs.base import Versioned
from federation.dcs.patroni_keys import (
    DCSMember,
    cluster_prefix,
    config_key,
    leader_key,
    member_key,
    parse_cluster,
    parse_history,
)
from federation.topology import Datacenter

DC2 = Datacenter.model_validate({
    "name": "dc2", "role": "standby", "upstream": "dc1", "dcs": {"etcd3": {"hosts": ["127.0.2.1:2379"]},
                                                                "namespace": "/fed/"},
    "members": [{"name": "n3", "host": "127.0.2.11", "api": "127.0.2.11:8008"}]})

# Keys as Patroni 4.1.5 wrote them in the lab (etcdctl get --prefix /fed/dc2/).
LAB_KEYS = {
    "/fed/dc2/config": '{"ttl":20,"loop_wait":2,"synchronous_mode":false,"standby_cluster":{"host":"127.0.1.11,'
                       '127.0.1.12","port":5432,"primary_slot_name":"fed_dc2"},"slots":{"fed_dc1":{"type":"physical"}}}',
    "/fed/dc2/history": '[[1,100663456,"no recovery target specified","2026-11-25T18:26:30.001365+00:00","n4"]]',
    "/fed/dc2/initialize": "7712177166817056537",
    "/fed/dc2/leader": "n4",
    "/fed/dc2/members/n3": '{"conn_url":"postgres://127.0.2.11:5432/postgres","api_url":"http://127.0.2.11:8008/'
                           'patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":100663736,'
                           '"replay_lsn":100663736,"receive_lsn":100663736,"replication_state":"streaming",'
                           '"timeline":2}',
    "/fed/dc2/members/n4": '{"conn_url":"postgres://127.0.2.12:5432/postgres","api_url":"http://127.0.2.12:8008/'
                           'patroni","state":"running","role":"standby_leader","version":"4.1.5",'
                           '"xlog_location":100663736,"timeline":2}',
    "/fed/dc2/status": '{"optime":100663736,"slots":{"n3":100663736,"fed_dc1":100663736},"retain_slots":["n3","n4"]}',
}


def _items(keys: dict[str, str]) -> dict[str, Versioned]:
    return {k: Versioned(k, v, i + 10) for i, (k, v) in enumerate(keys.items())}


def test_key_layout_follows_patroni() -> None:
    assert cluster_prefix(DC2) == "/fed/dc2/"
    assert leader_key(DC2) == "/fed/dc2/leader"
    assert member_key(DC2, "n3") == "/fed/dc2/members/n3"
    assert config_key(DC2) == "/fed/dc2/config"
    scoped = DC2.model_copy(update={"scope": "pg-east"})
    assert cluster_prefix(scoped) == "/fed/pg-east/"


def test_parse_cluster_reads_every_key_patroni_writes() -> None:
    view = parse_cluster("/fed/dc2/", _items(LAB_KEYS))
    assert view.leader == "n4"
    assert view.initialize == "7712177166817056537" and view.initialized
    assert view.standby_cluster is not None and view.standby_cluster["primary_slot_name"] == "fed_dc2"
    assert view.config_version == 10
    assert list(view.members) == ["n3", "n4"]
    n3 = view.members["n3"]
    assert (n3.role, n3.state, n3.replication_state, n3.timeline) == ("replica", "running", "streaming", 2)
    assert (n3.host, n3.port, n3.replay_lsn) == ("127.0.2.11", 5432, 100663736)
    assert view.status.optime == 100663736 and view.status.slots["fed_dc1"] == 100663736
    assert view.status.retain_slots == ("n3", "n4")
    assert [(h.timeline, h.lsn, h.new_leader) for h in view.history] == [(1, 100663456, "n4")]
    assert view.sync_mode == "async"


def test_bad_json_reads_as_empty_data_never_as_an_error() -> None:
    broken = {"/fed/dc2/config": "{oops", "/fed/dc2/members/n3": "[1,2]", "/fed/dc2/members/n4": "",
              "/fed/dc2/status": "null", "/fed/dc2/history": '{"not": "a list"}', "/fed/dc2/sync": "7",
              "/fed/dc2/leader": "  "}
    view = parse_cluster("/fed/dc2/", _items(broken))
    assert view.config == {} and view.standby_cluster is None
    assert view.members["n3"] == DCSMember(name="n3")
    assert view.members["n4"] == DCSMember(name="n4")
    assert view.status.optime is None and view.history == [] and view.sync.members == ()
    assert view.leader is None


def test_keys_of_other_clusters_and_nested_keys_are_not_members() -> None:
    keys = {"/fed/dc2/members/n3": "{}", "/fed/dc2/members/n3/extra": "{}", "/fed/dc20/members/x": "{}"}
    assert list(parse_cluster("/fed/dc2/", _items(keys)).members) == ["n3"]


def test_empty_cluster_is_not_initialized() -> None:
    view = parse_cluster("/fed/dc2/", {})
    assert not view.initialized and view.leader is None and view.members == {}


def test_sync_key_and_quorum_mode() -> None:
    keys = {"/fed/dc1/config": json.dumps({"synchronous_mode": "quorum"}),
            "/fed/dc1/sync": json.dumps({"leader": "n1", "sync_standby": "n2,n3", "quorum": 1})}
    view = parse_cluster("/fed/dc1/", _items(keys))
    assert view.sync.members == ("n2", "n3") and view.sync.quorum == 1 and view.sync_mode == "quorum"


def test_member_with_a_wrong_field_type_keeps_the_good_fields() -> None:
    member = DCSMember.from_json("n1", json.dumps({"role": 5, "state": "running", "timeline": "3",
                                                   "xlog_location": "0/3000060", "conn_url": "postgres://h:bad/x"}))
    assert member.role is None and member.state == "running" and member.timeline == 3
    assert member.xlog_location == 0x3000060
    assert member.port is None


def test_history_skips_malformed_lines() -> None:
    text = json.dumps([[1, 100, "r"], ["x", 5], [2], [3, "0/200", 7, None, "n9"]])
    assert [(h.timeline, h.lsn, h.reason, h.new_leader) for h in parse_history(text)] == [
        (1, 100, "r", None), (3, 0x200, "", "n9")]
