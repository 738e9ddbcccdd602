"""etcd v3 backend, spoken through etcd's JSON gateway with `etcd3gw` (see docs/dcs.md for why).

The version of a key is its `mod_revision`. Compare-and-set writes are etcd transactions:
create-if-absent compares `create_revision == 0`, replace compares `mod_revision == version`.
Several hosts are tried in turn (the last one that answered first); only when every host fails is a
`DCSError` raised, naming the hosts, the DC and the reason.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from federation.dcs.base import DCS, Versioned
from federation.errors import DCSError

if TYPE_CHECKING:
    from etcd3gw.client import Etcd3Client

T = TypeVar("T")

DEFAULT_TIMEOUT = 2.0


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


def _versioned(kv: dict[str, Any]) -> Versioned:
    return Versioned(key=_unb64(kv.get("key")), value=_unb64(kv.get("value")),
                     version=int(kv.get("mod_revision", 0)))


class EtcdDCS(DCS):
    """A DC's etcd v3 cluster. `hosts` are (host, port) pairs; `label` (the DC name) goes into errors."""

    kind = "etcd3"

    def __init__(self, hosts: Sequence[tuple[str, int]], *, label: str = "", timeout: float = DEFAULT_TIMEOUT,
                 protocol: str = "http") -> None:
        if not hosts:
            raise ValueError("EtcdDCS needs at least one host")
        import requests
        from etcd3gw.client import Etcd3Client

        self.hosts = [(h, int(p)) for h, p in hosts]
        self.label = label
        self.timeout = timeout
        self._session = requests.Session()
        # Never route DCS traffic through an HTTP proxy from the environment.
        self._session.trust_env = False
        # api_path is fixed: etcd >= 3.4 serves /v3/, and discovering it would cost a round trip per host.
        self._clients = [Etcd3Client(host=h, port=p, protocol=protocol, timeout=timeout, api_path="/v3/",
                                     session=self._session) for h, p in self.hosts]
        self._preferred = 0

    def describe(self) -> str:
        where = ", ".join(f"{h}:{p}" for h, p in self.hosts)
        return f"etcd at {where}" + (f" ({self.label})" if self.label else "")

    def _call(self, what: str, op: Callable[[Etcd3Client], T]) -> T:
        import requests
        from etcd3gw import exceptions as etcd_exc

        order = [self._preferred, *(i for i in range(len(self._clients)) if i != self._preferred)]
        failures: list[str] = []
        unreachable = True
        for i in order:
            host, port = self.hosts[i]
            try:
                result = op(self._clients[i])
            except (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError) as exc:
                failures.append(f"{host}:{port}: {short_reason(exc.detail_text or str(exc), self.timeout)}")
            except etcd_exc.Etcd3Exception as exc:
                unreachable = False
                failures.append(f"{host}:{port}: {type(exc).__name__} {short_reason(exc.detail_text or '', 0)}")
            except (requests.RequestException, ValueError) as exc:
                unreachable = False
                failures.append(f"{host}:{port}: {short_reason(str(exc), self.timeout)}")
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

    def _range(self, client: Etcd3Client, key: str, range_end: bytes | None = None) -> list[Versioned]:
        payload: dict[str, Any] = {"key": _b64(key)}
        if range_end is not None:
            payload["range_end"] = _b64(range_end)
        result = client.post(client.get_url("/kv/range"), json=payload)
        return [_versioned(kv) for kv in result.get("kvs", [])]

    def get(self, key: str) -> Versioned | None:
        found = self._call(f"read {key}", lambda c: self._range(c, key))
        return found[0] if found else None

    def get_prefix(self, prefix: str) -> dict[str, Versioned]:
        found = self._call(f"read {prefix}", lambda c: self._range(c, prefix, prefix_range_end(prefix)))
        return {v.key: v for v in found}

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
        self._session.close()
