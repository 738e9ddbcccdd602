"""etcd v3 backend, spoken through etcd's JSON gateway with `etcd3gw` (see docs/dcs.md for why).

The version of a key is its `mod_revision`. Compare-and-set writes are etcd transactions:
create-if-absent compares `create_revision == 0`, replace compares `mod_revision == version`.
Reads (`get`, `get_prefix`; `read_many`: several in one read-only transaction) POST to `/v3/kv/range`
(`/v3/kv/txn`) with the standard library's http.client instead:
read-only callers such as `fedctl status` then never import requests and etcd3gw (~0.1-0.15 s of start-up,
more than the reads themselves take). Writes, transactions and leases still go through etcd3gw.
Several hosts are tried in turn (the last one that answered first); only when every host fails is a
`DCSError` raised, naming the hosts, the DC and the reason.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from federation.dcs.base import DCS, Versioned
from federation.errors import DCSError
from federation.http_deadline import hard_deadline
from federation.tls_files import ClientTLS

if TYPE_CHECKING:
    from http.client import HTTPConnection

    import requests
    from etcd3gw.client import Etcd3Client

T = TypeVar("T")

DEFAULT_TIMEOUT = 2.0
# The statuses etcd3gw reads as "this host did not answer" (ConnectionFailedError, ConnectionTimeoutError).
UNREACHABLE_STATUSES = frozenset({408, 503, 504})


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _unb64(data: str | None) -> str:
    return base64.b64decode(data or "").decode("utf-8", errors="replace")


def prefix_range_end(prefix: str) -> bytes:
    """The first key after every key starting with `prefix` (etcd's range_end for a prefix read)."""
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return b"\0"  # the whole keyspace
    raw[-1] += 1
    return bytes(raw)


def short_reason(text: str, timeout: float) -> str:
    """Reduce a requests/urllib3 error text to the part a human needs."""
    if "timed out" in text.lower():
        return f"no answer within {timeout:g} s"
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if found:
        return found.group(1).strip().lower()
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


class HostFailed(Exception):
    """One host's failure, already worded; `unreachable` when the host did not answer at all."""

    def __init__(self, reason: str, *, unreachable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


def _versioned(kv: dict[str, Any]) -> Versioned:
    return Versioned(key=_unb64(kv.get("key")), value=_unb64(kv.get("value")),
                     version=int(kv.get("mod_revision", 0)))


class EtcdDCS(DCS):
    """A DC's etcd v3 cluster. `hosts` are (host, port) pairs; `label` (the DC name) goes into errors."""

    kind = "etcd3"

    def __init__(self, hosts: Sequence[tuple[str, int]], *, label: str = "", timeout: float = DEFAULT_TIMEOUT,
                 tls: ClientTLS | None = None) -> None:
        if not hosts:
            raise ValueError("EtcdDCS needs at least one host")
        self.hosts = [(h, int(p)) for h, p in hosts]
        self.label = label
        self.timeout = timeout
        self.tls = tls  # https, the servers verified against its CA, its client certificate presented
        self.protocol = "https" if tls is not None else "http"
        self._preferred = 0
        # One kept-alive connection per host for reads; the lock keeps one request/response on it at a time.
        self._connections: dict[int, HTTPConnection] = {}
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._clients: list[Etcd3Client] = []

    def _etcd3gw_client(self, index: int) -> Etcd3Client:
        """The etcd3gw client of host `index`; requests and etcd3gw are imported on the first write."""
        if not self._clients:
            import requests
            from etcd3gw.client import Etcd3Client

            self._session = requests.Session()
            # Never route DCS traffic through an HTTP proxy from the environment.
            self._session.trust_env = False
            tls = self.tls
            if tls is not None:
                # On the session itself: etcd3gw ignores its ca_cert/cert arguments when given a session.
                self._session.verify = tls.ca_file
                self._session.cert = (tls.cert_file, tls.key_file)
            # api_path is fixed: etcd >= 3.4 serves /v3/, and discovering it would cost a round trip per host.
            self._clients = [Etcd3Client(host=h, port=p, protocol=self.protocol, timeout=self.timeout,
                                         api_path="/v3/", session=self._session) for h, p in self.hosts]
        return self._clients[index]

    def describe(self) -> str:
        where = ", ".join(f"{h}:{p}" for h, p in self.hosts)
        return f"etcd at {where}" + (f" ({self.label})" if self.label else "")

    def _call(self, what: str, op: Callable[[Etcd3Client], T]) -> T:
        """Run an etcd3gw call against each host in turn until one answers."""
        return self._each_host(what, lambda i: self._via_etcd3gw(i, op))

    def _via_etcd3gw(self, index: int, op: Callable[[Etcd3Client], T]) -> T:
        import requests
        from etcd3gw import exceptions as etcd_exc

        try:
            return op(self._etcd3gw_client(index))
        except (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError) as exc:
            raise HostFailed(short_reason(exc.detail_text or str(exc), self.timeout), unreachable=True) from None
        except etcd_exc.Etcd3Exception as exc:
            raise HostFailed(f"{type(exc).__name__} {short_reason(exc.detail_text or '', 0)}",
                             unreachable=False) from None
        except (requests.RequestException, ValueError) as exc:
            raise HostFailed(short_reason(str(exc), self.timeout), unreachable=False) from None

    def _gateway_post(self, index: int, path: str, payload: dict[str, Any]) -> Any:
        """POST `payload` to `/v3<path>` on host `index` with http.client; the decoded JSON answer."""
        import http.client

        with self._lock:
            reused = index in self._connections
            try:
                status, raw = self._exchange(index, path, payload)
            except (OSError, http.client.HTTPException) as exc:
                self._drop(index)
                if not reused or isinstance(exc, TimeoutError):
                    raise HostFailed(short_reason(str(exc) or type(exc).__name__, self.timeout),
                                     unreachable=True) from None
                # The server closed the kept-alive connection since our last request: once more on a new one.
                try:
                    status, raw = self._exchange(index, path, payload)
                except (OSError, http.client.HTTPException) as again:
                    self._drop(index)
                    raise HostFailed(short_reason(str(again) or type(again).__name__, self.timeout),
                                     unreachable=True) from None
        text = raw.decode("utf-8", errors="replace")
        if status != 200:
            raise HostFailed(f"HTTP {status} {short_reason(text, 0)}".rstrip(),
                             unreachable=status in UNREACHABLE_STATUSES)
        try:
            return json.loads(text)
        except ValueError:
            raise HostFailed(f"not JSON: {short_reason(text, 0)}", unreachable=False) from None

    def _exchange(self, index: int, path: str, payload: dict[str, Any]) -> tuple[int, bytes]:
        import http.client

        conn = self._connections.get(index)
        if conn is None:
            host, port = self.hosts[index]
            if self.tls is not None:
                conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self.tls.context())
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            self._connections[index] = conn
        with hard_deadline(conn, self.timeout):  # a trickling member must not outlast the timeout
            conn.request("POST", f"/v3{path}", body=json.dumps(payload).encode(),
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()

    def _drop(self, index: int) -> None:
        conn = self._connections.pop(index, None)
        if conn is not None:
            conn.close()

    def _each_host(self, what: str, attempt: Callable[[int], T]) -> T:
        order = [self._preferred, *(i for i in range(len(self.hosts)) if i != self._preferred)]
        failures: list[str] = []
        unreachable = True
        for i in order:
            host, port = self.hosts[i]
            try:
                result = attempt(i)
            except HostFailed as exc:
                unreachable = unreachable and exc.unreachable
                failures.append(f"{host}:{port}: {exc.reason}")
            else:
                self._preferred = i
                return result
        reasons = "; ".join(failures) if len(failures) > 1 else failures[0].split(": ", 1)[1]
        if unreachable:
            raise DCSError(f"{self.describe()} is unreachable: {reasons}",
                           hint="check that etcd runs there and this host can reach it "
                                "(for the lab: fedctl lab up), or fix the DC's dcs.etcd3.hosts in the topology")
        raise DCSError(f"{self.describe()} failed to {what}: {reasons}",
                       hint="check etcd's health (etcdctl endpoint health) and its log")

    def _range(self, what: str, key: str, range_end: bytes | None = None) -> list[Versioned]:
        payload: dict[str, Any] = {"key": _b64(key)}
        if range_end is not None:
            payload["range_end"] = _b64(range_end)
        result = self._each_host(what, lambda i: self._gateway_post(i, "/kv/range", payload))
        kvs = result.get("kvs") if isinstance(result, dict) else None
        return [_versioned(kv) for kv in kvs or []]

    def get(self, key: str) -> Versioned | None:
        found = self._range(f"read {key}", key)
        return found[0] if found else None

    def get_prefix(self, prefix: str) -> dict[str, Versioned]:
        found = self._range(f"read {prefix}", prefix, prefix_range_end(prefix))
        return {v.key: v for v in found}

    def read_many(self, prefixes: Sequence[str], keys: Sequence[str]) -> dict[str, Versioned]:
        """One read-only transaction of range requests: one round trip, one snapshot (one revision)."""
        ranges = [{"request_range": {"key": _b64(p), "range_end": _b64(prefix_range_end(p))}} for p in prefixes]
        ranges += [{"request_range": {"key": _b64(k)}} for k in keys]
        what = f"read {', '.join([*prefixes, *keys])}"
        result = self.post(what, "/kv/txn", {"compare": [], "success": ranges, "failure": []})
        found: dict[str, Versioned] = {}
        for response in result.get("responses") or []:
            kvs = response.get("response_range", {}).get("kvs") if isinstance(response, dict) else None
            found.update((v.key, v) for v in map(_versioned, kvs or []))
        return found

    def post(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST `payload` to the gateway's `/v3<path>` (a transaction, a lease call), host by host."""
        result = self._each_host(what, lambda i: self._gateway_post(i, path, payload))
        return dict(result) if isinstance(result, dict) else {}

    def _txn(self, client: Etcd3Client, compare: dict[str, Any], success: dict[str, Any]) -> dict[str, Any]:
        return dict(client.transaction({"compare": [compare], "success": [success], "failure": []}))

    def create(self, key: str, value: str) -> bool:
        compare = {"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}
        put = {"request_put": {"key": _b64(key), "value": _b64(value)}}
        return bool(self._call(f"create {key}", lambda c: self._txn(c, compare, put)).get("succeeded", False))

    def replace(self, key: str, value: str, version: int) -> bool:
        compare = {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": version}
        put = {"request_put": {"key": _b64(key), "value": _b64(value)}}
        return bool(self._call(f"replace {key}", lambda c: self._txn(c, compare, put)).get("succeeded", False))

    def put(self, key: str, value: str) -> None:
        payload = {"key": _b64(key), "value": _b64(value)}
        self._call(f"write {key}", lambda c: c.post(c.get_url("/kv/put"), json=payload))

    def delete(self, key: str, version: int | None = None) -> bool:
        if version is None:
            result = self._call(f"delete {key}",
                                lambda c: c.post(c.get_url("/kv/deleterange"), json={"key": _b64(key)}))
            return int(result.get("deleted", 0)) > 0
        compare = {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": version}
        delete = {"request_delete_range": {"key": _b64(key)}}
        result = self._call(f"delete {key}", lambda c: self._txn(c, compare, delete))
        if not result.get("succeeded", False):
            return False
        responses = result.get("responses") or [{}]
        return int(responses[0].get("response_delete_range", {}).get("deleted", 0)) > 0

    def close(self) -> None:
        with self._lock:
            for index in list(self._connections):
                self._drop(index)
        if self._session is not None:
            self._session.close()
