"""ZooKeeper backend on kazoo.

A key is a znode path and its version is the znode's data version. `create` fails on NodeExists,
`replace` on BadVersion: both return False, as the DCS interface asks. Every call waits at most
`timeout` seconds, so a dead or partitioned ensemble becomes a quick `DCSError`, never a hang.
ZooKeeper has parent znodes where etcd has none: `get_prefix` skips a znode that has children and
no data (a "directory"), so both backends return the same keys for Patroni's layout.

With `auth` (the topology's zookeeper_auth) the session authenticates with ZooKeeper's digest scheme,
and every znode it creates below `private_prefix` (fedctl's own keys: the record copy, samples, the
agent lease, the fence marker; the whole federation store) gets an ACL that gives that identity alone
every permission. Patroni's znodes are created world-open: Patroni can set only x509 ACLs
(`zookeeper.set_acls`), and fedctl must not lock Patroni out of a config key it writes for it.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from federation.dcs.base import DCS, Versioned
from federation.errors import DCSError
from federation.field_rules import host_port

DEFAULT_TIMEOUT = 2.5
# ZooKeeper refuses sessions shorter than 2 x tickTime (4 s with the default tickTime of 2 s).
SESSION_TIMEOUT = 10.0

_UNREACHABLE_HINT = ("check that ZooKeeper runs there (echo srvr | nc HOST PORT) and this host can reach it, "
                     "or fix the DC's dcs.zookeeper.hosts in the topology")

_kazoo_log = logging.getLogger("federation.dcs.kazoo")
# Without this, kazoo's reconnect warnings would reach stderr through logging's last-resort handler.
_kazoo_log.addHandler(logging.NullHandler())


def _kazoo() -> Any:
    """kazoo, imported on first use (it costs ~80 ms of start-up); it ships no type information."""
    import kazoo.client  # type: ignore[import-untyped]
    import kazoo.exceptions  # type: ignore[import-untyped]
    import kazoo.handlers.threading  # type: ignore[import-untyped]

    return kazoo


class _Secret(Protocol):
    def resolve(self) -> str: ...


class _Credential(Protocol):
    """The topology's Credential (a username and a secret reference), without importing the topology."""

    @property
    def username(self) -> str: ...

    @property
    def password(self) -> _Secret: ...


@dataclass(frozen=True)
class ZooKeeperAuth:
    """A digest identity: who fedctl's sessions are, and the only one its znodes let in."""

    username: str
    password: str

    @classmethod
    def of(cls, credential: _Credential | None) -> ZooKeeperAuth | None:
        """The identity of the topology's zookeeper_auth, its password read now (None without one)."""
        return None if credential is None else cls(credential.username, credential.password.resolve())

    def auth_data(self) -> list[tuple[str, str]]:
        return [("digest", f"{self.username}:{self.password}")]

    def acl(self) -> list[Any]:
        from kazoo.security import make_digest_acl  # type: ignore[import-untyped]

        return [make_digest_acl(self.username, self.password, all=True)]

    def __repr__(self) -> str:
        return f"ZooKeeperAuth(username={self.username!r}, password=***)"


def private_acl(acl: list[Any] | None, private: str, path: str) -> list[Any] | None:
    """The ACL of a znode created at `path`: `acl` inside `private` (a prefix), else None (world-open)."""
    if acl is None:
        return None
    inside = private == "/" or path == private or path.startswith(private + "/")
    return acl if inside else None


def create_znode(zk: Any, wait: Callable[[Any], Any], path: str, data: bytes,
                 acl_for: Callable[[str], list[Any] | None], *, ephemeral: bool = False) -> None:
    """Create `path`, and its missing parents first, each with its own ACL: kazoo's makepath would give a
    parent outside fedctl's prefix (Patroni's namespace) the leaf's private ACL."""
    try:
        wait(zk.create_async(path, data, acl=acl_for(path), ephemeral=ephemeral))
        return
    except _kazoo().exceptions.NoNodeError:
        pass
    ensure_parents(zk, wait, path, acl_for)
    wait(zk.create_async(path, data, acl=acl_for(path), ephemeral=ephemeral))


def ensure_parents(zk: Any, wait: Callable[[Any], Any], path: str,
                   acl_for: Callable[[str], list[Any] | None]) -> None:
    """Create the missing parents of `path` (no data), each with the ACL its own path calls for."""
    errors = _kazoo().exceptions
    parts = path.strip("/").split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        parent = "/" + "/".join(parts[:depth])
        try:
            wait(zk.create_async(parent, b"", acl=acl_for(parent)))
        except errors.NodeExistsError:
            pass


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


class ZooKeeperDCS(DCS):
    """A DC's ZooKeeper ensemble. Connects at construction; raises DCSError when no server answers."""

    kind = "zookeeper"

    def __init__(self, hosts: Sequence[tuple[str, int]], *, label: str = "",
                 timeout: float = DEFAULT_TIMEOUT, session_timeout: float = SESSION_TIMEOUT,
                 auth: ZooKeeperAuth | None = None, private_prefix: str = "/") -> None:
        if not hosts:
            raise ValueError("ZooKeeperDCS needs at least one host")

        self.hosts = [(h, int(p)) for h, p in hosts]
        self.label = label
        self.timeout = timeout
        self._acl = auth.acl() if auth is not None else None
        self._private = "/" + private_prefix.strip("/")
        self._probe()
        kz = _kazoo()
        self._zk: Any = kz.client.KazooClient(
            hosts=",".join(host_port(h, p) for h, p in self.hosts), timeout=session_timeout,
            connection_retry={"max_tries": -1, "max_delay": 1.0}, logger=_kazoo_log,
            auth_data=auth.auth_data() if auth is not None else None)
        try:
            self._zk.start(timeout=timeout)
        except kz.handlers.threading.KazooTimeoutError:
            raise DCSError(f"{self.describe()} is unreachable: no session within {timeout:g} s",
                           hint=_UNREACHABLE_HINT) from None

    def _probe(self) -> None:
        """Fail at once when no host accepts TCP: kazoo would retry refused connections until its timeout."""
        reasons = []
        for host, port in self.hosts:
            try:
                with socket.create_connection((host, port), timeout=self.timeout / len(self.hosts)):
                    return
            except OSError as exc:
                reasons.append(f"{host}:{port}: {exc.strerror or 'no answer'}".lower())
        detail = "; ".join(reasons) if len(reasons) > 1 else reasons[0].split(": ", 1)[1]
        raise DCSError(f"{self.describe()} is unreachable: {detail}", hint=_UNREACHABLE_HINT)

    def describe(self) -> str:
        where = ", ".join(f"{h}:{p}" for h, p in self.hosts)
        return f"ZooKeeper at {where}" + (f" ({self.label})" if self.label else "")

    def _wait(self, what: str, async_result: Any) -> Any:
        """Wait for one kazoo async call; ZooKeeper's own errors pass through, the rest become DCSError."""
        kz = _kazoo()
        try:
            return async_result.get(timeout=self.timeout)
        except kz.handlers.threading.KazooTimeoutError:
            raise DCSError(f"{self.describe()} did not answer within {self.timeout:g} s to {what}",
                           hint="check the ensemble's health (echo srvr | nc HOST PORT)") from None
        except (kz.exceptions.ConnectionLoss, kz.exceptions.SessionExpiredError) as exc:
            raise DCSError(f"{self.describe()} lost the connection during {what}: {type(exc).__name__}",
                           hint="check the ensemble's health (echo srvr | nc HOST PORT)") from None
        except (kz.exceptions.NoAuthError, kz.exceptions.AuthFailedError) as exc:
            raise DCSError(f"{self.describe()} refused to {what}: {type(exc).__name__} (the znode's ACL does not "
                           "let this identity in)",
                           hint="set zookeeper_auth in the topology to the digest identity fedctl's znodes were "
                                "created with") from None

    @staticmethod
    def _path(key: str) -> str:
        return "/" + key.strip("/")

    def _create(self, what: str, path: str, data: bytes) -> None:
        create_znode(self._zk, lambda call: self._wait(what, call), path, data, self.acl_for)

    def acl_for(self, path: str) -> list[Any] | None:
        """The ACL a znode created at `path` gets (None: world-open)."""
        return private_acl(self._acl, self._private, path)

    def ensure_parents(self, what: str, path: str) -> None:
        ensure_parents(self._zk, lambda call: self._wait(what, call), path, self.acl_for)

    def get(self, key: str) -> Versioned | None:
        errors = _kazoo().exceptions
        try:
            data, stat = self._wait(f"read {key}", self._zk.get_async(self._path(key)))
        except errors.NoNodeError:
            return None
        return Versioned(key=key, value=_decode(data), version=stat.version)

    def get_prefix(self, prefix: str) -> dict[str, Versioned]:
        errors = _kazoo().exceptions
        # A prefix that does not end in '/' can match siblings ('/a/b' matches '/a/bc'): start at the parent.
        root = self._path(prefix) if prefix.endswith("/") else self._path(prefix.rsplit("/", 1)[0] or "/")
        found: dict[str, Versioned] = {}
        level = [root]
        # Breadth-first, one batch of asynchronous calls per tree level: a few round trips in all.
        while level:
            calls = [(p, self._zk.get_async(p), self._zk.get_children_async(p)) for p in level]
            next_level: list[str] = []
            for path, data_call, children_call in calls:
                try:
                    data, stat = self._wait(f"read {path}", data_call)
                    children = self._wait(f"list {path}", children_call)
                except errors.NoNodeError:
                    continue  # deleted while we walked, or the prefix does not exist
                if path != root and path.startswith(prefix) and (data or not children):
                    found[path] = Versioned(key=path, value=_decode(data), version=stat.version)
                base = "" if path == "/" else path
                next_level.extend(f"{base}/{c}" for c in children
                                  if f"{base}/{c}".startswith(prefix) or prefix.startswith(f"{base}/{c}"))
            level = next_level
        return dict(sorted(found.items()))

    def create(self, key: str, value: str) -> bool:
        errors = _kazoo().exceptions
        try:
            self._create(f"create {key}", self._path(key), value.encode())
        except errors.NodeExistsError:
            return False
        return True

    def replace(self, key: str, value: str, version: int) -> bool:
        errors = _kazoo().exceptions
        try:
            self._wait(f"replace {key}", self._zk.set_async(self._path(key), value.encode(), version=version))
        except (errors.BadVersionError, errors.NoNodeError):
            return False
        return True

    def put(self, key: str, value: str) -> None:
        errors = _kazoo().exceptions
        for _ in range(3):
            try:
                self._wait(f"write {key}", self._zk.set_async(self._path(key), value.encode()))
                return
            except errors.NoNodeError:
                pass
            try:
                self._create(f"write {key}", self._path(key), value.encode())
                return
            except errors.NodeExistsError:
                continue  # created by someone else between our set and create: set again
        raise DCSError(f"{self.describe()}: could not write {key}: it kept being created and deleted concurrently")

    def delete(self, key: str, version: int | None = None) -> bool:
        errors = _kazoo().exceptions
        try:
            self._wait(f"delete {key}",
                       self._zk.delete_async(self._path(key), version=-1 if version is None else version))
        except (errors.NoNodeError, errors.BadVersionError):
            return False
        except errors.NotEmptyError:
            raise DCSError(f"{self.describe()}: cannot delete {key}: it has child keys",
                           hint="delete the keys below it first") from None
        return True

    @property
    def session_id(self) -> int | None:
        """This connection's ZooKeeper session (the owner of the ephemeral nodes it creates)."""
        client_id = self._zk.client_id
        return int(client_id[0]) if client_id else None

    def owner_of(self, key: str) -> int | None:
        """The session owning the ephemeral node `key` (None when absent or not ephemeral)."""
        errors = _kazoo().exceptions
        try:
            stat = self._wait(f"read {key}", self._zk.exists_async(self._path(key)))
        except errors.NoNodeError:
            return None
        return int(stat.ephemeralOwner) or None if stat is not None else None

    def sync(self, key: str) -> None:
        """Make the next read of `key` see every write committed before this call (ZooKeeper reads are
        served by whichever server this session talks to, which may lag the leader)."""
        self._wait(f"sync {key}", self._zk.sync_async(self._path(key)))

    def close(self) -> None:
        try:
            self._zk.stop()
        finally:
            self._zk.close()
