"""A hostile peer for deadline tests: accepts connections, then sends its answer one byte at a time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + b" " * 100000


@contextmanager
def trickling_peer(host: str = "127.0.40.9", every: float = 0.1) -> Iterator[tuple[str, int]]:
    """(host, port) of a listener that reads a little of each request and answers a byte per `every` s."""
    listener = socket.socket()
    listener.bind((host, 0))
    listener.listen(64)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1.0)
            try:
                conn.recv(65536)
                for byte in ANSWER:
                    if stop.wait(every):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield host, listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def took(fn: object, *args: object, **kwargs: object) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        fn(*args, **kwargs)  # type: ignore[operator]
    except BaseException as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None
