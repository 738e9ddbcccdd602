"""Stand-ins for what `fedctl status` reads, for benchmarks: each DC's etcd, each member's Patroni REST API and
fedctl agent, and the federation store, all plain-http servers on 127.0.200.x-127.0.203.x in one asyncio
loop (a background thread).

Each stand-in answers exactly what status asks, with the shapes the real servers use: the etcd v3 JSON
gateway's `POST /v3/kv/range` and read-only `/v3/kv/txn` (keys base64, a prefix read by `range_end`),
`/v3/maintenance/status` and `/v3/kv/lease/timetolive`; Patroni's `GET /patroni` (and `/cluster`, `/config`,
`/history`); the agent's `GET /gate`. The data is a healthy federation: dc1 primary, every other DC a
standby cluster of dc1, each DC's record copy and the store's record at epoch 1, the primary-DC lease held
by dc1. `fedctl status` on a topology `topology_yaml()` writes therefore exits 0, which the benchmark checks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[str, str, bytes], tuple[int, Any]]

NAMESPACE = "/fed/"
STORE_NAMESPACE = "/fedctl/"
ETCD_PORT = 22379
PATRONI_PORT = 28008
AGENT_PORT = PATRONI_PORT + 100  # federation.topology.AGENT_PORT_OFFSET
LSN = 0x3000060
LEASE_ID = 7587883110462015000


def federation_name(size: int) -> str:
    return f"bench-status-{size}"


def dc_name(index: int) -> str:
    return f"dc{index + 1}"


def etcd_host(dc: int) -> str:
    return f"127.0.200.{dc + 1}"


def member_host(dc: int, member: int, members_per_dc: int) -> str:
    number = dc * members_per_dc + member + 1
    assert number < 255, "at most 254 members"
    return f"127.0.201.{number}"


def store_host(index: int) -> str:
    return f"127.0.203.{index + 1}"


def member_name(dc: int, member: int) -> str:
    return f"{dc_name(dc)}_n{member + 1}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class EtcdKeys:
    """One etcd's keyspace: key -> value, every key at one revision; `lease_of` attaches keys to leases."""

    values: dict[str, str] = field(default_factory=dict)
    lease_of: dict[str, int] = field(default_factory=dict)
    revision: int = 42

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        request = json.loads(body or b"{}")
        if path == "/v3/kv/range":
            return 200, self._range(request)
        if path == "/v3/kv/txn":  # read-only transactions: range requests only
            responses = [{"response_range": self._range(op["request_range"])} for op in request.get("success", [])]
            return 200, {"header": {"revision": str(self.revision)}, "succeeded": True, "responses": responses}
        if path == "/v3/maintenance/status":
            return 200, {"header": {"member_id": "1"}, "leader": "1", "raftAppliedIndex": str(self.revision)}
        if path == "/v3/kv/lease/timetolive":
            return 200, {"ID": str(request.get("ID")), "TTL": "9", "grantedTTL": "10"}
        return 404, {"error": f"no {path} in this stand-in"}

    def _range(self, request: dict[str, Any]) -> dict[str, Any]:
        key = base64.b64decode(request.get("key", "")).decode()
        end = base64.b64decode(request["range_end"]).decode() if "range_end" in request else None
        chosen = sorted(k for k in self.values if (k == key if end is None else key <= k < end))
        kvs = [{"key": _b64(k), "value": _b64(self.values[k]), "create_revision": "2",
                "mod_revision": str(self.revision), "version": "1",
                **({"lease": str(self.lease_of[k])} if k in self.lease_of else {})} for k in chosen]
        header = {"revision": str(self.revision)}
        return {"header": header, "kvs": kvs, "count": str(len(kvs))} if kvs else {"header": header}


class StandInFederation:
    """The stand-ins of `dcs` DCs of `members_per_dc` members each, and of a three-member federation store.

    They serve one federation per size in `sizes` (`bench-status-N`, the first N DCs), each with its own record,
    so that the topologies of every size can be timed in turn against the same servers."""

    def __init__(self, dcs: int, members_per_dc: int = 3, sizes: tuple[int, ...] = ()) -> None:
        self.dcs = dcs
        self.members_per_dc = members_per_dc
        self.sizes = tuple(sorted(set(sizes) | {dcs}))
        self.handlers: dict[tuple[str, int], Handler] = {}
        for dc in range(dcs):
            self.handlers[(etcd_host(dc), ETCD_PORT)] = self._dc_etcd(dc).handle
            for m in range(members_per_dc):
                host = member_host(dc, m, members_per_dc)
                self.handlers[(host, PATRONI_PORT)] = self._patroni(dc, m)
                self.handlers[(host, AGENT_PORT)] = self._agent(dc, m)
        store = EtcdKeys()
        for size in self.sizes:
            lease_key = f"{STORE_NAMESPACE}{federation_name(size)}/primary_lease"
            store.values[f"{STORE_NAMESPACE}{federation_name(size)}/record"] = self.record(size)
            store.values[lease_key] = json.dumps({"holder": dc_name(0), "agent": f"{member_name(0, 0)}-agent",
                                                  "renewals": 3})
            store.lease_of[lease_key] = LEASE_ID
        for i in range(3):
            self.handlers[(store_host(i), ETCD_PORT)] = store.handle

    @staticmethod
    def record(size: int) -> str:
        """The federation record of the `size`-DC federation, epoch 1, as every copy and the store hold it."""
        return json.dumps({
            "federation": federation_name(size), "epoch": 1, "primary_dc": dc_name(0),
            "upstreams": {dc_name(i): None if i == 0 else dc_name(0) for i in range(size)},
            "operation": None, "history": [], "updated": "2025-01-01T00:00:00.000+00:00"})

    def _member_key(self, dc: int, m: int) -> dict[str, Any]:
        host = member_host(dc, m, self.members_per_dc)
        role = ("primary" if dc == 0 else "standby_leader") if m == 0 else "replica"
        data: dict[str, Any] = {"conn_url": f"postgres://{host}:25432/postgres",
                                "api_url": f"http://{host}:{PATRONI_PORT}/patroni", "state": "running",
                                "role": role, "version": "4.1.0", "timeline": 1}
        if role == "primary":
            data["xlog_location"] = LSN
        else:
            data.update(replication_state="streaming", receive_lsn=LSN, replay_lsn=LSN)
        return data

    def _dc_etcd(self, dc: int) -> EtcdKeys:
        prefix = f"{NAMESPACE}{dc_name(dc)}/"
        config: dict[str, Any] = {"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "postgresql": {}}
        if dc > 0:
            config["standby_cluster"] = {"host": member_host(0, 0, self.members_per_dc), "port": 25432}
        values = {prefix + "leader": member_name(dc, 0), prefix + "config": json.dumps(config),
                  prefix + "initialize": "7400000000000000001",
                  prefix + "status": json.dumps({"optime": LSN, "slots": {}}),
                  prefix + "history": "[]"}
        for size in self.sizes:
            if dc < size:
                values[f"{NAMESPACE}_fedctl/{federation_name(size)}/state"] = self.record(size)
        for m in range(self.members_per_dc):
            values[prefix + "members/" + member_name(dc, m)] = json.dumps(self._member_key(dc, m))
        return EtcdKeys(values)

    def _patroni(self, dc: int, m: int) -> Handler:
        key = self._member_key(dc, m)
        node: dict[str, Any] = {"state": "running", "role": key["role"], "timeline": 1, "server_version": 170000,
                                "database_system_identifier": "7400000000000000001",
                                "patroni": {"version": "4.1.0", "scope": dc_name(dc), "name": member_name(dc, m)}}
        if key["role"] == "primary":
            node["xlog"] = {"location": LSN}
        else:
            node["replication_state"] = "streaming"
            node["xlog"] = {"received_location": LSN, "replayed_location": LSN, "paused": False,
                            "replayed_timestamp": "2025-01-01 00:00:00.000000+00:00"}
        answers: dict[str, Any] = {"/patroni": node, "/config": {"ttl": 30}, "/history": [],
                                   "/cluster": {"members": [{"name": member_name(dc, i), "role": "replica"}
                                                            for i in range(self.members_per_dc)]}}

        def handle(method: str, path: str, body: bytes) -> tuple[int, Any]:
            return (200, answers[path]) if method == "GET" and path in answers else (404, {"error": path})

        return handle

    @staticmethod
    def _agent(dc: int, m: int) -> Handler:
        answer = {"dc": dc_name(dc), "member": member_name(dc, m),
                  "gate": {"state": "installed", "reason": "pre_promote runs the federation's gate",
                           "config_path": "/etc/patroni/patroni.yml", "pre_promote": "fedctl-gate ...",
                           "line": "pre_promote: fedctl-gate ..."}}

        def handle(method: str, path: str, body: bytes) -> tuple[int, Any]:
            return (200, answer) if method == "GET" and path == "/gate" else (404, {"error": path})

        return handle

    def topology_yaml(self, size: int, scratch: str) -> str:
        """The topology of the first `size` DCs (plain http everywhere, which is all status needs of them)."""
        assert size in self.sizes
        lines = [f"federation: {federation_name(size)}", "credentials:"]
        lines += [f"  {who}: {{username: {who}, password: {{file: {scratch}/no-secret}}}}"
                  for who in ("superuser", "replication", "rewind")]
        lines += ["pgbackrest: {stanza: fed, repo_path: " + scratch + "/repo}", "federation_store:", "  etcd3:",
                  "    hosts:"]
        lines += [f'      - {{address: "{store_host(i)}:{ETCD_PORT}", site: {site}}}'
                  for i, site in enumerate([dc_name(0), dc_name(1), "witness"])]
        lines.append("datacenters:")
        for dc in range(size):
            lines += [f"  - name: {dc_name(dc)}", f"    role: {'primary' if dc == 0 else 'standby'}"]
            if dc > 0:
                lines.append(f"    upstream: {dc_name(0)}")
            lines += [f'    dcs: {{etcd3: {{hosts: ["{etcd_host(dc)}:{ETCD_PORT}"]}}, namespace: {NAMESPACE}}}',
                      "    members:"]
            for m in range(self.members_per_dc):
                host = member_host(dc, m, self.members_per_dc)
                lines.append(f'      - {{name: {member_name(dc, m)}, host: {host}, port: 25432, '
                             f'api: "{host}:{PATRONI_PORT}"}}')
        return "\n".join(lines) + "\n"


async def _serve_connection(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 with keep-alive, as much of it as http.client speaks to these servers."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _version = request_line.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, answer = handler(method, path, body)
            payload = json.dumps(answer).encode()
            writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\nContent-Type: "
                         f"application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


class StandInServers:
    """Serves `federation`'s stand-ins in an asyncio loop on a background thread, as a context manager."""

    def __init__(self, federation: StandInFederation) -> None:
        self.federation = federation
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="stand-ins", daemon=True)
        self._servers: list[asyncio.Server] = []

    async def _start(self) -> None:
        for (host, port), handler in self.federation.handlers.items():
            def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: Handler = handler) -> Any:
                return _serve_connection(h, r, w)

            self._servers.append(await asyncio.start_server(serve, host, port, backlog=128, reuse_address=True))

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()

    def __enter__(self) -> StandInServers:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
