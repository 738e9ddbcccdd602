"""HTTP exchanges with one overall deadline, whatever the peer does.

A socket timeout bounds each read, not the exchange: a peer that trickles one byte every half second keeps
http.client reading for as long as it likes. `hard_deadline` arms a deadline (on the process's one watchdog
thread, federation.deadline_watchdog) that shuts the connection's socket down when it passes, so a blocked
read returns at once, and then reports a timeout even if the bytes read so far looked like an answer.
`exchange` is one request on a fresh connection (no proxies from the environment, ever: http.client has
none); Patroni's REST client, the gate and the federation store's quorum probe use it, and the etcd adapter
wraps its kept-alive connections in `hard_deadline`.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.client import HTTPConnection, HTTPException, HTTPSConnection

from federation.deadline_watchdog import WATCHDOG


class DeadlineExceeded(TimeoutError):
    """The peer did not complete its answer within the exchange's deadline."""


@contextmanager
def hard_deadline(conn: HTTPConnection, seconds: float) -> Iterator[None]:
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    token = WATCHDOG.arm(seconds, fire)
    try:
        yield
    except (OSError, HTTPException) as exc:
        if fired.is_set():
            raise DeadlineExceeded(f"no complete answer within {seconds:g} s") from None
        raise exc
    finally:
        WATCHDOG.cancel(token)
    if fired.is_set():
        raise DeadlineExceeded(f"no complete answer within {seconds:g} s")


def exchange(host: str, port: int, method: str, path: str, *, body: bytes | None = None,
             headers: Mapping[str, str] | None = None, timeout: float,
             tls: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """One request; (status, body). OSError or HTTPException when the peer fails, DeadlineExceeded after
    `timeout` seconds in all, connection included."""
    timeout = max(0.05, timeout)
    conn: HTTPConnection = (HTTPSConnection(host, port, timeout=timeout, context=tls) if tls is not None
                            else HTTPConnection(host, port, timeout=timeout))
    try:
        with hard_deadline(conn, timeout):
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            return response.status, response.read()
    finally:
        conn.close()
