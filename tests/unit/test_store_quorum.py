"""Probing store members one by one: what counts as serving, and the no-quorum sentence."""

from __future__ import annotations

import base64
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from federation.store import FederationStore, NoQuorum
from federation.store_config import StoreConfig, StoreHost
from federation.store_quorum import MemberProbe, QuorumView, probe_etcd, probe_members, probe_zookeeper
from tests.unit.tls_servers import JsonHandler, http_server


@contextmanager
def zookeeper_like(answer: bytes) -> Iterator[StoreHost]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(16)
            self.request.sendall(answer)

    server = socketserver.TCPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield StoreHost(address=f"127.0.0.1:{server.server_address[1]}", site="dc2")
    finally:
        server.shutdown()
        server.server_close()


def test_an_etcd_member_serves_only_with_a_leader() -> None:
    with etcd_member("1", "77", 0) as host:
        assert probe_etcd(host, 1.0).serving
    with etcd_member("1", "0", 0) as host:
        probe = probe_etcd(host, 1.0)
        assert not probe.serving and "no leader" in probe.reason


@pytest.mark.parametrize(("answer", "serving", "fragment"), [
    (b"Zookeeper version: 3.8\nMode: follower\n", True, "serving"),
    (b"This ZooKeeper instance is not currently serving requests\n", False, "not serving"),
    (b"srvr is not executed because it is not in the whitelist.\n", True, "srvr not allowed"),
])
def test_a_zookeeper_member_serves_when_srvr_reports_a_mode(answer: bytes, serving: bool, fragment: str) -> None:
    with zookeeper_like(answer) as host:
        probe = probe_zookeeper(host, 1.0)
    assert probe.serving is serving and fragment in probe.reason


def test_a_member_nobody_listens_on_does_not_answer() -> None:
    with zookeeper_like(b"") as host:
        pass  # closed again: its port refuses now
    view = probe_members("etcd3", [host], 0.5)
    assert not view.has_majority and view.probes[0].reason == "connection refused"


def test_the_no_quorum_error_counts_members_and_says_nothing_changed() -> None:
    hosts = [StoreHost(address=f"10.0.0.{i}:2379", site=s) for i, s in enumerate(["dc1", "dc2", "witness"], 1)]
    view = QuorumView((MemberProbe(hosts[0], True, "serving"), MemberProbe(hosts[1], False, "no answer within 0.5 s"),
                       MemberProbe(hosts[2], False, "connection refused")))
    error = NoQuorum(view)
    assert error.message.startswith("the federation store has no quorum from here: 1 of 3 members answer "
                                    "(a majority is 2): 10.0.0.1:2379 (dc1): serving; 10.0.0.2:2379 (dc2): no answer")
    assert error.hint is not None and "nothing was changed" in error.hint
    assert QuorumView((*view.probes[:1], MemberProbe(hosts[1], True, "serving"), *view.probes[2:])).has_majority


def test_one_serving_member_reaches_the_majority_through_its_leader() -> None:
    hosts = [StoreHost(address=f"10.0.0.{i}:2379", site=s) for i, s in enumerate(["dc1", "dc2", "witness"], 1)]
    cut_from_dc2 = QuorumView((MemberProbe(hosts[0], False, "answers, but has no leader (cut off from its peers)"),
                               MemberProbe(hosts[1], False, "no answer within 0.5 s"),
                               MemberProbe(hosts[2], True, "serving")))
    assert cut_from_dc2.has_majority, "the witness follows dc2's leader and forwards to it"
    alone = QuorumView((cut_from_dc2.probes[0], cut_from_dc2.probes[1],
                        MemberProbe(hosts[2], False, "connection refused")))
    assert not alone.has_majority


@contextmanager
def etcd_member(member_id: str, leader: str | Callable[[], str], applied: int, *,
                hangs_on_reads: bool = False) -> Iterator[StoreHost]:
    """A stand-in etcd member: its status (`leader` may be asked anew at each probe), and a record under every
    key unless its reads hang (a member that serves but has not caught up)."""
    release = threading.Event()

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/v3/maintenance/status":
                self.answer(200, {"header": {"member_id": member_id},
                                  "leader": leader() if callable(leader) else leader,
                                  "raftAppliedIndex": str(applied)})
            elif hangs_on_reads:
                release.wait(10)
            else:
                self.answer(200, {"kvs": [{"key": "", "value": base64.b64encode(b"{}").decode(),
                                           "mod_revision": "7"}]})

    with http_server(Handler) as port:
        try:
            yield StoreHost(address=f"127.0.0.1:{port}", site=f"site{member_id}")
        finally:
            release.set()  # a hanging read ends before the server does


def test_the_leader_serves_first_then_the_member_that_applied_most() -> None:
    with etcd_member("1", "3", 90) as behind, etcd_member("2", "3", 120) as ahead, \
            etcd_member("3", "3", 100) as leader:
        view = probe_members("etcd3", [behind, ahead, leader], 1.0)
    assert [p.leads for p in view.probes] == [False, False, True]
    assert view.serving == [leader, ahead, behind]


def test_a_read_moves_on_from_a_member_that_serves_but_hangs() -> None:
    """After a heal, a member that was cut off reports a leader at once and still holds a linearizable read
    until it has caught up: the read goes to the next member in time instead of failing at the deadline."""
    with etcd_member("1", "2", 100, hangs_on_reads=True) as hanging, etcd_member("2", "2", 100) as leader:
        config = StoreConfig.model_validate({"etcd3": {"hosts": [{"address": h.address, "site": h.site}
                                                                 for h in (hanging, leader)]}})
        store = FederationStore(config, "fed", deadline=4.0)
        # the leader ranks first; make the hanging member come first to see the move on
        store.quorum = lambda: QuorumView((MemberProbe(hanging, True, "serving"),  # type: ignore[method-assign]
                                           MemberProbe(leader, True, "serving")))
        started = time.monotonic()
        found = store.read_record()
        took = time.monotonic() - started
    assert found is not None and found.version == 7
    assert 1.4 < took < 3.9, f"the hanging member had part of the deadline, not all of it: {took:.2f} s"


def _store_of(*hosts: StoreHost, deadline: float = 4.0) -> FederationStore:
    config = StoreConfig.model_validate({"etcd3": {"hosts": [{"address": h.address, "site": h.site} for h in hosts]}})
    return FederationStore(config, "fed", deadline=deadline)


def test_a_read_waits_while_the_majority_of_the_store_elects_a_leader() -> None:
    """Right after a cut takes the etcd leader away, the other members answer without a leader until they
    have elected one (~1-2 s): a command run then waits for the election instead of being told it stands on
    the wrong side of a cut."""
    elected_at = time.monotonic() + 0.8

    def leader() -> str:
        return "2" if time.monotonic() >= elected_at else "0"

    with zookeeper_like(b"") as gone:
        pass
    with etcd_member("1", leader, 100) as one, etcd_member("2", leader, 100) as two:
        found = _store_of(one, two, gone).read_record()
        took_until = time.monotonic()
    assert found is not None and found.version == 7
    assert took_until >= elected_at, "it read only once the election was over"


def test_a_minority_without_a_leader_is_refused_at_once() -> None:
    """From the cut-off side the members that answer are a minority: no election can end there, and the
    refusal must not wait for the deadline (the agent behind a cut fences on time)."""
    with zookeeper_like(b"") as gone_a, zookeeper_like(b"") as gone_b:
        pass  # closed again: their ports refuse now
    with etcd_member("1", "0", 100) as alone:
        store = _store_of(alone, gone_a, gone_b)
        started = time.monotonic()
        with pytest.raises(NoQuorum) as refused:
            store.read_record()
        took = time.monotonic() - started
    assert "0 of 3 members answer" in refused.value.message and "has no leader" in refused.value.message
    assert refused.value.hint is not None and "from this side of a cut" in refused.value.hint
    assert took < 1.5, f"refused after {took:.2f} s"


def test_a_majority_that_never_elects_is_refused_at_the_deadline() -> None:
    """It waits for an election while the deadline leaves time for one more probe and the request after it."""
    with zookeeper_like(b"") as gone:
        pass
    with etcd_member("1", "0", 100) as one, etcd_member("2", "0", 100) as two:
        store = _store_of(one, two, gone, deadline=3.0)
        started = time.monotonic()
        with pytest.raises(NoQuorum) as refused:
            store.read_record()
        took = time.monotonic() - started
    assert 1.8 < took < 3.5, f"refused after {took:.2f} s"
    assert refused.value.hint is not None and "elected no leader" in refused.value.hint


def test_an_operations_store_reuses_a_found_majority_for_a_moment_and_never_a_refusal() -> None:
    """One operation's commits follow each other within a second: a probe that found the majority stands
    for `quorum_reuse` seconds. A probe that found none is never reused, and a store without reuse (what a
    lease renewal has) probes before every call."""
    probes: list[str] = []
    leads = {"now": "1"}

    def leader() -> str:
        probes.append(leads["now"])
        return leads["now"]

    now = [time.monotonic()]  # moved by hand; request deadlines still count from it
    with zookeeper_like(b"") as gone_a, zookeeper_like(b"") as gone_b:
        pass  # closed again: their ports refuse now
    with etcd_member("1", leader, 100) as one:
        config = StoreConfig.model_validate({"etcd3": {"hosts": [{"address": h.address, "site": h.site}
                                                                 for h in (one, gone_a, gone_b)]}})
        store = FederationStore(config, "fed", quorum_reuse=1.0, clock=lambda: now[0])
        assert store.read_record() is not None and store.read_record() is not None
        assert len(probes) == 1
        now[0] += 1.5
        store.read_record()
        assert len(probes) == 2, "probed again once the moment was over"
        leads["now"] = "0"
        now[0] += 1.5
        for _ in range(2):
            with pytest.raises(NoQuorum):
                store.read_record()
        assert len(probes) == 4, "a refusal is not reused: every call probes again"
        leads["now"] = "1"
        plain = FederationStore(config, "fed", clock=lambda: now[0])
        plain.read_record()
        plain.read_record()
        assert len(probes) == 6
