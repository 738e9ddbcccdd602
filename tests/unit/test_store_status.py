"""`fedctl status` with a federation store: quorum from here, record epoch, lease holder and time left."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
import yaml

import federation.store
from federation import observe
from federation.cli.status import format_status
from federation.dcs.etcd3 import EtcdDCS, _b64
from federation.state import StateCopy
from federation.store import FederationStore, LeaseView
from federation.store_config import StoreHost
from federation.store_quorum import MemberProbe, QuorumView
from federation.store_status import StoreRead, store_line, store_summary
from federation.topology import parse_topology
from tests.unit.test_record_store import STORE, TOPOLOGY
from tests.unit.test_status_cli import fake_status

HOSTS = [StoreHost(address=f"127.0.9.{i}:23901", site=s) for i, s in enumerate(["dc1", "dc2", "witness"], 1)]


def quorum(serving: int) -> QuorumView:
    return QuorumView(tuple(MemberProbe(h, i < serving, "serving" if i < serving else "no answer within 0.5 s")
                            for i, h in enumerate(HOSTS)))


def test_a_healthy_store_line_shows_quorum_epoch_and_lease() -> None:
    data, problems = store_summary(StoreRead(quorum(3), 4, "dc1", True, LeaseView("dc1", "dc1/n1", 8.0, 2, 9)))
    assert problems == []
    assert data == {"members_answering": 3, "members": 3, "quorum": True, "record_epoch": 4, "primary_dc": "dc1",
                    "lease": {"holder": "dc1", "agent": "dc1/n1", "seconds_left": 8.0}, "error": None,
                    "entrypoint_followers": None}
    assert store_line(data) == ("Federation store: 3 of 3 members answer; record epoch 4 (primary DC dc1); "
                                "lease held by dc1, 8 s left")


def test_no_quorum_is_a_problem_naming_the_count() -> None:
    data, problems = store_summary(StoreRead(quorum(0)))
    assert problems[0].startswith("the federation store has no quorum from here: 0 of 3 members answer")
    assert "127.0.9.2:23901 (dc2): no answer within 0.5 s" in problems[0]
    assert store_line(data) == "Federation store: 0 of 3 members answer (no quorum from here)"


def test_a_primary_dc_without_a_live_lease_is_a_problem() -> None:
    data, problems = store_summary(StoreRead(quorum(2), 4, "dc1", True, LeaseView(None)))
    assert problems == ["the primary DC dc1 holds no live lease in the federation store: its agents fence it "
                        "(is its active agent running and reaching the store?)"]
    assert store_line(data).endswith("; lease: nobody holds it")


def test_a_lease_held_by_another_dc_than_the_record_names_is_a_problem() -> None:
    _data, problems = store_summary(StoreRead(quorum(3), 4, "dc1", True, LeaseView("dc2", "dc2/n3", None, 1)))
    assert problems == ["the primary-DC lease is held by dc2, but the store's record names dc1"]


def test_an_uninitialised_store_says_store_init() -> None:
    data, problems = store_summary(StoreRead(quorum(3), lease=LeaseView(None)))
    assert "fedctl store init" in problems[0] and store_line(data).endswith("; no record yet")


def test_table_and_json_carry_the_store() -> None:
    data, _ = store_summary(StoreRead(quorum(3), 4, "dc1", True, LeaseView("dc1", "dc1/n1", 8.0, 2, 9)))
    status = replace(fake_status(), extra={"federation_store": data})
    assert "Federation store: 3 of 3 members answer; record epoch 4" in format_status(status, "table")
    assert json.loads(format_status(status, "json"))["federation_store"]["lease"]["holder"] == "dc1"


def test_observe_reads_the_store_alongside_the_dcs(monkeypatch: pytest.MonkeyPatch) -> None:
    topo = parse_topology({**yaml.safe_load(TOPOLOGY.read_text()), "federation_store": STORE}, str(TOPOLOGY))

    def slow_store(topo: Any, timeout: float) -> tuple[dict[str, Any], list[str], None]:
        time.sleep(0.3)
        return {"members_answering": 1, "members": 3, "quorum": False}, ["the federation store has no quorum"], None

    monkeypatch.setattr(observe, "_read_dcs", lambda topo, dc, timeout: (time.sleep(0.3), (
        observe.DCSRead(error="down"), StateCopy(dc.name, None, None, error="down")))[1])
    monkeypatch.setattr(observe, "_read_api", lambda target, timeout: (time.sleep(0.3), observe.ApiRead(error="x"))[1])
    monkeypatch.setattr(observe, "_read_store", slow_store)
    started = time.monotonic()
    status = observe.observe_federation(topo, timeout=0.5)
    assert time.monotonic() - started < 0.9  # in parallel, not one after the other
    assert status.extra["federation_store"]["quorum"] is False
    assert "the federation store has no quorum" in status.problems


class TxnEtcd(EtcdDCS):
    """An etcd member that answers the status read's transaction and the lease's TTL, and counts the requests."""

    posted: list[str] = []

    def post(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.posted.append(path)
        if path == "/kv/lease/timetolive":
            return {"TTL": "6"}
        kvs = [{"key": _b64("/fedctl/unit/record"), "value": _b64('{"epoch": 3}'), "mod_revision": "11"},
               {"key": _b64("/fedctl/unit/primary_lease"), "value": _b64('{"holder": "dc1", "agent": "dc1/n1"}'),
                "mod_revision": "12", "lease": "99"}]
        return {"succeeded": True, "responses": [{"response_range": {"kvs": [kv]}} for kv in kvs]}


def test_status_reads_record_and_lease_in_one_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    topo = parse_topology({**yaml.safe_load(TOPOLOGY.read_text()), "federation_store": STORE}, str(TOPOLOGY))
    assert topo.federation_store is not None
    store = FederationStore(topo.federation_store, "unit")
    monkeypatch.setattr(TxnEtcd, "posted", [])
    monkeypatch.setattr(federation.store, "open_member", lambda kind, host, **kw: TxnEtcd([(host.host, host.port)]))
    record, lease = store.read_record_and_lease(quorum(2))
    assert record is not None and record.value == '{"epoch": 3}' and record.version == 11
    assert lease == LeaseView("dc1", "dc1/n1", 6.0, 12, 99)
    assert TxnEtcd.posted == ["/kv/txn", "/kv/lease/timetolive"], "no probe, and each key read once"


class TxnEtcdWithFollower(TxnEtcd):
    """As TxnEtcd, with one entrypoint follower registered (answered by the transaction's prefix range)."""

    def post(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = super().post(what, path, payload)
        if path == "/kv/txn":
            follower = '{"id": "app1", "pgbouncer": "10.0.0.1:6432", "heartbeat": 1.0}'
            kv = {"key": _b64("/fedctl/unit/entrypoints/app1"), "value": _b64(follower), "mod_revision": "13"}
            answer["responses"].append({"response_range": {"kvs": [kv]}})
        return answer


def test_status_reads_the_followers_in_the_same_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    from federation.entrypoint_registry import followers_prefix, parse_followers

    topo = parse_topology({**yaml.safe_load(TOPOLOGY.read_text()), "federation_store": STORE}, str(TOPOLOGY))
    assert topo.federation_store is not None
    store = FederationStore(topo.federation_store, "unit")
    monkeypatch.setattr(TxnEtcd, "posted", [])
    monkeypatch.setattr(federation.store, "open_member",
                        lambda kind, host, **kw: TxnEtcdWithFollower([(host.host, host.port)]))
    record, lease, under = store.read_for_status(quorum(2), followers_prefix(store))
    assert record is not None and lease.holder == "dc1"
    assert [f.id for f in parse_followers(under)] == ["app1"]
    assert TxnEtcd.posted == ["/kv/txn", "/kv/lease/timetolive"], "no probe and no request of their own"


def test_followers_are_listed_and_a_silent_or_held_up_one_is_a_problem() -> None:
    from federation.entrypoint_registry import FollowerReport, FollowerState
    from federation.store_status import followers_lines

    now = 1_000_000.0
    followers = (FollowerReport(id="app1", pgbouncer="10.0.0.1:6432", target="dc1/n1", writable=True, epoch=4,
                                last_operation="op1", last_hold=2.5, heartbeat=now - 1),
                 FollowerReport(id="app2", pgbouncer="10.0.0.2:6432", heartbeat=now - 60),
                 FollowerReport(id="app3", pgbouncer="10.0.0.3:6432", state=FollowerState.PAUSING, operation="op2",
                                blocking=("app@10.0.0.9:5000 since 12:00:00",), paused_at=now - 3, heartbeat=now))
    read = StoreRead(quorum(3), 4, "dc1", True, LeaseView("dc1", "dc1/n1", 8.0, 2, 9), followers=followers)
    data, problems = store_summary(read, now=now)
    assert [f["id"] for f in data["entrypoint_followers"]] == ["app1", "app2", "app3"]
    assert [f["live"] for f in data["entrypoint_followers"]] == [True, False, True]
    lines = followers_lines(data)
    assert ("app1 (10.0.0.1:6432): following, pointing at dc1/n1; the last switchover held transactions "
            "2.50 s") in lines[0]
    assert "last heard 60 s ago" in lines[1]
    assert problems == [
        "entrypoint follower app2 has not reported for 60 s: switchover-dc cannot pause its PgBouncer; is `fedctl "
        "entrypoint follow` running there? (a follower stopped for good removes its registration when it exits)",
        "entrypoint follower app3: PAUSE waits for app@10.0.0.9:5000 since 12:00:00"]
