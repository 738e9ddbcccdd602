"""The REST client against a stdlib HTTP server standing in for Patroni (pure client logic)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from federation.patroni_api import (
    ConfigConflict,
    NodeStatus,
    PatroniAPIError,
    PatroniUnreachable,
    base_url,
    get_cluster,
    get_history,
    get_patroni,
    patch_config,
    post_action,
)
from federation.topology import Member

HOST = "127.0.40.3"

# GET /patroni as Patroni 4.1.5 answered in the lab.
STANDBY_LEADER = {
    "state": "running", "postmaster_start_time": "2026-11-25 18:26:28.126584+00:00", "role": "standby_leader",
    "server_version": 150018, "xlog": {"received_location": 100663736, "replayed_location": 100663736,
                                       "replayed_timestamp": "2026-11-25 18:20:01.5+00:00", "paused": False},
    "timeline": 2, "replication_state": "streaming", "dcs_last_seen": 1795631226,
    "database_system_identifier": "7712177166817056537",
    "patroni": {"version": "4.1.5", "scope": "dc1", "name": "n1"}}
PRIMARY = {"state": "running", "role": "primary", "server_version": 150018, "xlog": {"location": 100663736},
           "timeline": 2, "patroni": {"version": "4.1.5", "scope": "dc2", "name": "n4"}}


class FakePatroni(BaseHTTPRequestHandler):
    routes: dict[tuple[str, str], tuple[int, Any]] = {}
    seen: list[tuple[str, str, Any, str | None]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append((self.command, self.path, body, self.headers.get("Authorization")))
        status, payload = self.routes.get((self.command, self.path), (404, {"error": "no route"}))
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_PATCH = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer((HOST, 0), FakePatroni)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fake(server: str) -> str:
    FakePatroni.routes = {}
    FakePatroni.seen = []
    return server


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def test_base_url_accepts_members_urls_and_host_port() -> None:
    member = Member(name="n1", host="127.0.1.11", api="127.0.1.11:8008")  # type: ignore[arg-type]
    assert base_url(member) == "http://127.0.1.11:8008"
    assert base_url("http://127.0.1.11:8008/patroni") == "http://127.0.1.11:8008"
    assert base_url("127.0.1.11:8008") == "http://127.0.1.11:8008"
    assert base_url("https://db1.example.com:8008/") == "https://db1.example.com:8008"


def test_get_patroni_returns_the_members_json(fake: str) -> None:
    FakePatroni.routes[("GET", "/patroni")] = (200, STANDBY_LEADER)
    assert get_patroni(fake + "/patroni") == STANDBY_LEADER
    FakePatroni.routes[("GET", "/cluster")] = (200, {"members": [{"name": "n1"}], "scope": "dc1"})
    assert get_cluster(fake)["scope"] == "dc1"
    FakePatroni.routes[("GET", "/history")] = (200, [[1, 100, "r", "t", "n1"]])
    assert get_history(fake) == [[1, 100, "r", "t", "n1"]]


def test_environment_proxies_are_not_used(fake: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.40.9:1")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.40.9:1")
    FakePatroni.routes[("GET", "/patroni")] = (200, PRIMARY)
    assert get_patroni(fake)["role"] == "primary"


def test_patch_config_sends_the_patch_and_returns_the_new_config(fake: str) -> None:
    FakePatroni.routes[("PATCH", "/config")] = (200, {"ttl": 20})
    assert patch_config(fake, {"standby_cluster": None}, auth=("admin", "s3cret")) == {"ttl": 20}
    method, path, body, authorization = FakePatroni.seen[-1]
    assert (method, path, body) == ("PATCH", "/config", {"standby_cluster": None})
    assert authorization == "Basic YWRtaW46czNjcmV0"


def test_a_lost_config_race_is_a_clear_conflict(fake: str) -> None:
    FakePatroni.routes[("PATCH", "/config")] = (409, b"")
    with pytest.raises(ConfigConflict) as raised:
        patch_config(fake, {"ttl": 30})
    assert raised.value.status == 409
    assert "changed between its read and its write" in str(raised.value) and "retry" in str(raised.value)


def test_http_errors_name_the_request_and_the_status(fake: str) -> None:
    FakePatroni.routes[("PATCH", "/config")] = (401, b"no auth header received")
    with pytest.raises(PatroniAPIError, match=r"PATCH /config on .* was refused: HTTP 401") as raised:
        patch_config(fake, {"ttl": 30})
    assert "restapi.authentication" in str(raised.value)
    with pytest.raises(PatroniAPIError, match=r"GET /cluster on .* failed: HTTP 404"):
        get_cluster(fake)


def test_an_answer_that_is_not_json_is_reported(fake: str) -> None:
    FakePatroni.routes[("GET", "/patroni")] = (200, b"<html>hello</html>")
    with pytest.raises(PatroniUnreachable, match="did not return JSON"):
        get_patroni(fake)


def test_a_dead_member_is_unreachable_at_once_and_named() -> None:
    member = Member(name="n7", host=HOST, api=f"{HOST}:{_closed_port()}")  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(PatroniUnreachable, match=r"REST API of n7 \(http://127\.0\.40\.3:\d+\) is unreachable: "
                                                 r"connection refused"):
        get_patroni(member)
    assert time.monotonic() - started < 0.5


def test_a_silent_member_times_out() -> None:
    with socket.socket() as listener:  # accepts the connection, never answers
        listener.bind((HOST, 0))
        listener.listen()
        started = time.monotonic()
        with pytest.raises(PatroniUnreachable, match=r"answer within 0.3 s"):
            get_patroni(f"{HOST}:{listener.getsockname()[1]}", timeout=0.3)
        assert time.monotonic() - started < 1.0


def test_a_member_that_trickles_its_answer_is_cut_off_at_the_deadline() -> None:
    from tests.unit.trickler import took, trickling_peer

    with trickling_peer(HOST) as (host, port):
        seconds, error = took(get_patroni, f"{host}:{port}", timeout=0.5)
    assert isinstance(error, PatroniUnreachable) and "no complete answer within 0.5 s" in error.message, error
    assert seconds < 0.9, f"a per-read timeout would let it run on; it took {seconds:.2f} s"


def test_a_redirect_is_refused_not_followed() -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(PatroniUnreachable, match=r"redirect .*never follows one"):
            get_patroni(f"{HOST}:{server.server_address[1]}", timeout=1.0)
    finally:
        server.shutdown()
        server.server_close()


def test_node_status_of_a_standby_leader() -> None:
    node = NodeStatus.from_json(STANDBY_LEADER)
    assert (node.role, node.state, node.timeline, node.replication_state) == ("standby_leader", "running", 2,
                                                                               "streaming")
    assert node.wal_lsn is None and node.replayed_lsn == 100663736 and node.lsn == 100663736
    assert node.replayed_at == datetime(2026, 11, 25, 18, 20, 1, 500000, tzinfo=UTC)
    assert (node.scope, node.name, node.system_id) == ("dc1", "n1", "7712177166817056537")


def test_node_status_of_a_primary_uses_the_flushed_position() -> None:
    node = NodeStatus.from_json(PRIMARY)
    assert node.lsn == node.wal_lsn == 100663736 and node.replayed_at is None


def test_node_status_is_lenient() -> None:
    assert NodeStatus.from_json(None) == NodeStatus()
    odd = NodeStatus.from_json({"state": "stopped", "role": "replica", "xlog": "nope", "timeline": "2",
                                "sync_standby": True, "xlog_replayed_timestamp": 5})
    assert odd.state == "stopped" and odd.timeline is None and odd.lsn is None and odd.sync_standby
    assert NodeStatus.from_json({"pause": True}).maintenance and not odd.maintenance
    naive = NodeStatus.from_json({"xlog": {"replayed_timestamp": "2026-11-25 18:20:01"}})
    assert naive.replayed_at is None


def test_actions_answered_in_plain_text_are_returned_as_text(fake: str) -> None:
    FakePatroni.routes[("POST", "/reinitialize")] = (200, b"reinitialize started")
    assert post_action(fake, "/reinitialize", {"force": True}) == "reinitialize started"
    assert FakePatroni.seen[-1][:3] == ("POST", "/reinitialize", {"force": True})
    FakePatroni.routes[("POST", "/switchover")] = (412, b"candidate name does not match")
    with pytest.raises(PatroniAPIError, match=r"POST /switchover on .* failed: HTTP 412") as raised:
        post_action(fake, "/switchover", {"leader": "n3", "candidate": "n9"})
    assert raised.value.body == "candidate name does not match"
