"""The reads behind `fedctl status`: etcd range reads on the standard library, one DCS connection per DC."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import federation.dcs
import federation.observe
from federation.dcs.base import DCS, Versioned
from federation.dcs.etcd3 import EtcdDCS
from federation.errors import DCSError
from federation.observe import ApiRead, observe_federation
from federation.state import FederationState
from tests.unit.test_observe import make_topology


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Gateway(BaseHTTPRequestHandler):
    """A fake etcd JSON gateway: `/v3/kv/range` over a dict; `status` forces an HTTP status."""

    protocol_version = "HTTP/1.1"
    keys: dict[str, str] = {}
    status = 200
    close_after_reply = False
    requests: list[str] = []

    def _range(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = base64.b64decode(payload["key"]).decode()
        end = base64.b64decode(payload["range_end"]).decode() if "range_end" in payload else None
        kvs = [{"key": _b64(k), "value": _b64(v), "mod_revision": "7"} for k, v in sorted(self.keys.items())
               if (k == key if end is None else key <= k < end)]
        return {"kvs": kvs} if kvs else {}

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(self.path)
        if self.path == "/v3/kv/txn":
            answer = {"succeeded": True, "responses": [{"response_range": self._range(op["request_range"])}
                                                       for op in payload["success"]]}
        else:
            answer = self._range(payload)
        body = json.dumps(answer if self.status == 200 else {"error": "boom"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        # Like a server whose idle timeout fired: drop the connection without announcing it.
        self.close_connection = self.close_after_reply

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, int]]:
    handler = type("G", (Gateway,), {"keys": {"/fed/dc1/leader": "n1", "/fed/dc1/members/n1": "{}",
                                               "/fed/dc10/leader": "x"}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_prefix_and_key_reads_over_the_standard_library(gateway: tuple[str, int]) -> None:
    with EtcdDCS([gateway], label="dc1") as dcs:
        found = dcs.get_prefix("/fed/dc1/")
        assert sorted(found) == ["/fed/dc1/leader", "/fed/dc1/members/n1"]
        assert found["/fed/dc1/leader"] == Versioned("/fed/dc1/leader", "n1", 7)
        assert dcs.get("/fed/dc1/leader") == Versioned("/fed/dc1/leader", "n1", 7)
        assert dcs.get("/fed/none") is None


def test_a_prefix_and_keys_come_in_one_transaction(gateway: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Gateway, "requests", [])
    with EtcdDCS([gateway], label="dc1") as dcs:
        found = dcs.read_many(["/fed/dc1/"], ["/fed/dc10/leader", "/fed/none"])
    assert sorted(found) == ["/fed/dc1/leader", "/fed/dc1/members/n1", "/fed/dc10/leader"]
    assert found["/fed/dc10/leader"] == Versioned("/fed/dc10/leader", "x", 7)
    assert Gateway.requests == ["/v3/kv/txn"], "one round trip"


def test_a_connection_the_server_dropped_is_opened_again(gateway: tuple[str, int],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Gateway, "close_after_reply", True)
    with EtcdDCS([gateway], label="dc1") as dcs:
        for _ in range(3):
            assert dcs.get("/fed/dc1/leader") is not None


@pytest.mark.parametrize(("status", "wording"), [(503, "is unreachable"), (500, "failed to read /fed/dc1/leader")])
def test_http_errors_become_dcs_errors(gateway: tuple[str, int], monkeypatch: pytest.MonkeyPatch,
                                       status: int, wording: str) -> None:
    monkeypatch.setattr(Gateway, "status", status)
    with pytest.raises(DCSError, match=wording), EtcdDCS([gateway], label="dc1") as dcs:
        dcs.get("/fed/dc1/leader")


def test_reads_import_neither_requests_nor_etcd3gw(gateway: tuple[str, int]) -> None:
    code = ("import sys; from federation.dcs.etcd3 import EtcdDCS; "
            f"EtcdDCS([{gateway!r}]).get_prefix('/fed/dc1/'); "
            "print(sorted(m for m in ('requests', 'etcd3gw', 'urllib3') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


class MemoryDCS(DCS):
    """A DCS in memory that counts how often each DC is connected to."""

    kind = "memory"
    data: dict[str, dict[str, str]] = {}
    opened: list[str] = []

    def __init__(self, dc: str) -> None:
        self.dc = dc
        self.opened.append(dc)
        if dc not in self.data:
            raise DCSError(f"memory DCS of {dc} is unreachable: connection refused")

    def get(self, key: str) -> Versioned | None:
        value = self.data[self.dc].get(key)
        return None if value is None else Versioned(key, value, 3)

    def get_prefix(self, prefix: str) -> dict[str, Versioned]:
        return {k: Versioned(k, v, 3) for k, v in self.data[self.dc].items() if k.startswith(prefix)}

    def create(self, key: str, value: str) -> bool:
        raise AssertionError("status never writes")

    replace = put = delete = create  # type: ignore[assignment]

    def close(self) -> None:
        pass


def test_status_reads_every_dcs_copy_of_the_record_over_the_one_connection_per_dc(
        monkeypatch: pytest.MonkeyPatch) -> None:
    topo = make_topology(3)
    record = FederationState(federation="unit", epoch=4, primary_dc="dc1", upstreams={"dc2": "dc1", "dc3": "dc2"})
    state_key = "/fed/_fedctl/unit/state"
    monkeypatch.setattr(MemoryDCS, "opened", [])
    monkeypatch.setattr(MemoryDCS, "data", {
        "dc1": {"/fed/dc1/leader": "n1", state_key: record.model_dump_json()},
        "dc2": {"/fed/dc2/leader": "n3", state_key: record.model_copy(update={"epoch": 3}).model_dump_json()}})
    monkeypatch.setattr(federation.dcs, "connect", lambda dc, timeout=None: MemoryDCS(dc.name))
    monkeypatch.setattr(federation.observe, "_read_api", lambda target, timeout: ApiRead(error="not asked"))
    status = observe_federation(topo, timeout=0.2)
    assert sorted(MemoryDCS.opened) == ["dc1", "dc2", "dc3"], "one connection per DC for both reads"
    summary = status.extra["federation_record"]
    assert summary["epoch"] == 4
    assert summary["copies"] == {"dc1": 4, "dc2": 3, "dc3": "unreachable"}
    assert not status.dc("dc3").reachable and "connection refused" in (status.dc("dc3").error or "")
