"""The gate with a federation store: the store's record and lease decide; without an answer, the copies."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from federation.gate import gate_config
from federation.gate_core import CopyView, decide_with_store
from federation.gate_store import StoreView, keys, read_store
from federation.store import FederationStore
from tests.unit.test_promote_lease import topo  # noqa: F401  (fixture)
from tests.unit.tls_servers import JsonHandler, http_server

COPIES = [CopyView("dc1", 3, "dc1", True), CopyView("dc2", 3, "dc1", True)]
UNREACHABLE = [CopyView("dc1", 3, "dc1", True), CopyView("dc2", None, None, False)]


def store(epoch: int | None, primary: str | None, holder: str | None) -> StoreView:
    return StoreView(True, epoch=epoch, primary_dc=primary, lease_holder=holder)


@pytest.mark.parametrize("holder", ["dc1", None])
def test_the_record_naming_us_with_our_lease_or_none_allows(holder: str | None) -> None:
    decision = decide_with_store("dc1", True, "dc1", UNREACHABLE, store(5, "dc1", holder))
    assert decision.allowed, decision.reason
    assert "federation store's record (epoch 5)" in decision.reason


def test_a_lease_held_by_another_dc_refuses() -> None:
    decision = decide_with_store("dc1", False, "dc1", COPIES, store(5, "dc1", "dc2"))
    assert not decision.allowed and "lease is held by dc2" in decision.reason


def test_a_record_naming_another_dc_refuses_even_when_the_copies_name_us() -> None:
    decision = decide_with_store("dc1", False, "dc1", COPIES, store(6, "dc2", None))
    assert not decision.allowed and "names dc2" in decision.reason and "rejoin-dc dc1" in decision.reason


@pytest.mark.parametrize(("strict", "allowed"), [(False, True), (True, False)])
def test_store_unreachable_falls_back_to_the_copies_and_the_policy(strict: bool, allowed: bool) -> None:
    down = StoreView(False, "the federation store has no quorum from here: 1 of 3 members answer")
    decision = decide_with_store("dc1", strict, "dc1", UNREACHABLE, down)
    assert decision.allowed is allowed
    assert "did not decide: the federation store has no quorum from here" in decision.reason
    assert ("fencing: strict did" if strict else "fencing: permissive did") in decision.reason


def test_a_store_without_a_record_falls_back_to_the_copies() -> None:
    decision = decide_with_store("dc2", False, "dc1", COPIES, StoreView(True, "the store holds no record yet"))
    assert not decision.allowed and "held by dc1" in decision.reason


def test_without_a_store_the_decision_is_todays() -> None:
    decision = decide_with_store("dc1", False, "dc1", COPIES, None)
    assert decision.allowed and "did not decide" not in decision.reason


class FakeEtcd(JsonHandler):
    data: dict[str, str] = {}
    leader = "8e9e05c52164694d"
    member_id = leader  # this stand-in leads

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path == "/v3/maintenance/status":
            answer: dict[str, Any] = {"leader": self.leader, "header": {"member_id": self.member_id}}
        else:
            key = base64.b64decode(body["key"]).decode()
            value = self.data.get(key)
            answer = {"kvs": [{"value": base64.b64encode(value.encode()).decode()}]} if value else {}
        self.answer(200, answer)


class HangingFollower(FakeEtcd):
    """A member just back from a cut: it follows the leader but holds reads while it catches up."""

    member_id = "91bc3c398fb3c146"

    def do_POST(self) -> None:
        if self.path != "/v3/maintenance/status":
            time.sleep(3)
        super().do_POST()


@pytest.fixture
def etcd() -> Iterator[str]:
    with http_server(FakeEtcd) as port:
        yield f"127.0.0.1:{port}"


def closed_port() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEtcd)
    port = server.server_address[1]
    server.server_close()
    return f"127.0.0.1:{port}"


def config(hosts: list[str]) -> dict[str, Any]:
    return {"kind": "etcd3", "hosts": hosts, "namespace": "/fedctl/", "federation": "lab"}


def test_the_gate_reads_record_and_lease_from_a_member_of_the_majority(etcd: str) -> None:
    record_key, lease_key = keys(config([etcd]))
    FakeEtcd.data = {record_key: json.dumps({"epoch": 7, "primary_dc": "dc2"}),
                     lease_key: json.dumps({"holder": "dc2", "agent": "dc2/n3"})}
    view = read_store(config([etcd, etcd, closed_port()]))
    assert view == StoreView(True, epoch=7, primary_dc="dc2", lease_holder="dc2")


def test_the_gate_reads_from_the_leader_before_a_follower_that_hangs(etcd: str) -> None:
    record_key, _lease_key = keys(config([etcd]))
    FakeEtcd.data = {record_key: json.dumps({"epoch": 8, "primary_dc": "dc1"})}
    with http_server(HangingFollower) as follower:
        started = time.monotonic()
        view = read_store(config([f"127.0.0.1:{follower}", etcd, closed_port()]), deadline=1.0)
    assert view == StoreView(True, epoch=8, primary_dc="dc1", lease_holder=None)
    assert time.monotonic() - started < 1.0


def test_one_of_three_members_is_no_quorum_and_is_answered_within_the_deadline(etcd: str) -> None:
    started = time.monotonic()
    view = read_store(config([etcd, closed_port(), closed_port()]), deadline=0.6)
    assert not view.answered and "1 of 3 members answer" in view.why
    assert time.monotonic() - started < 1.0


def test_a_zookeeper_store_is_left_to_the_copies() -> None:
    assert not read_store({"kind": "zookeeper", "hosts": ["127.0.0.1:1"]}).answered


def test_gate_config_names_the_store_and_its_keys_match_the_store(topo: Any) -> None:  # noqa: F811
    rendered = gate_config(topo, "dc1")["store"]
    assert rendered["kind"] == "etcd3" and rendered["namespace"] == "/fedctl/"
    assert rendered["federation"] == topo.federation and len(rendered["hosts"]) == 3
    real = FederationStore(topo.federation_store, topo.federation)
    assert keys(rendered) == (real.record_key, real.lease_key)
