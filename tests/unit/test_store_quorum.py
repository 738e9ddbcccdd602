"""Probing store members one by one: what counts as serving, and the no-quorum sentence."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from federation.store import NoQuorum
from federation.store_config import StoreHost
from federation.store_quorum import MemberProbe, QuorumView, probe_etcd, probe_members, probe_zookeeper


@contextmanager
def etcd_like(leader: str) -> Iterator[StoreHost]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.dumps({"header": {"member_id": "1"}, "leader": leader}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield StoreHost(address=f"127.0.0.1:{server.server_address[1]}", site="dc1")
    finally:
        server.shutdown()
        server.server_close()


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
    with etcd_like("77") as host:
        assert probe_etcd(host, 1.0).serving
    with etcd_like("0") as host:
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
