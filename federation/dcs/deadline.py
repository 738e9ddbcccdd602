"""DCS adapters bound to one overall deadline: each request waits only for what is left of it.

The plain adapters give every request the same timeout, so an operation of several requests can take
several timeouts. The federation store promises one deadline per operation ("within 4 s, or an error"),
so its connections shrink each request's timeout to the time left and fail at once when none is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from federation.dcs.base import DCS
from federation.dcs.etcd3 import EtcdDCS
from federation.dcs.zookeeper import SESSION_TIMEOUT, ZooKeeperAuth, ZooKeeperDCS
from federation.tls_files import ClientTLS

MIN_WAIT = 0.05


class DeadlineEtcd(EtcdDCS):
    def __init__(self, hosts: Sequence[tuple[str, int]], *, label: str, deadline_at: float,
                 clock: Callable[[], float] = time.monotonic, tls: ClientTLS | None = None) -> None:
        super().__init__(hosts, label=label, timeout=max(MIN_WAIT, deadline_at - clock()), tls=tls)
        self._deadline_at = deadline_at
        self._clock = clock

    def _exchange(self, index: int, path: str, payload: dict[str, Any]) -> tuple[int, bytes]:
        left = self._deadline_at - self._clock()
        if left <= 0:
            raise TimeoutError("the operation's deadline has passed")
        self.timeout = max(MIN_WAIT, left)
        conn = self._connections.get(index)
        if conn is not None and conn.sock is not None:
            conn.sock.settimeout(self.timeout)
        return super()._exchange(index, path, payload)


class DeadlineZooKeeper(ZooKeeperDCS):
    def __init__(self, hosts: Sequence[tuple[str, int]], *, label: str, deadline_at: float,
                 session_timeout: float = SESSION_TIMEOUT, clock: Callable[[], float] = time.monotonic,
                 auth: ZooKeeperAuth | None = None) -> None:
        self._deadline_at = deadline_at
        self._clock = clock
        super().__init__(hosts, label=label, timeout=max(MIN_WAIT, deadline_at - clock()),
                         session_timeout=session_timeout, auth=auth)

    def _wait(self, what: str, async_result: Any) -> Any:
        self.timeout = max(MIN_WAIT, self._deadline_at - self._clock())
        return super()._wait(what, async_result)


def open_with_deadline(kind: str, hosts: Sequence[tuple[str, int]], *, label: str, deadline_at: float,
                       session_timeout: float | None = None, tls: ClientTLS | None = None,
                       zookeeper_auth: ZooKeeperAuth | None = None) -> DCS:
    if kind == "etcd3":
        return DeadlineEtcd(hosts, label=label, deadline_at=deadline_at, tls=tls)
    return DeadlineZooKeeper(hosts, label=label, deadline_at=deadline_at,
                             session_timeout=session_timeout or SESSION_TIMEOUT, auth=zookeeper_auth)
