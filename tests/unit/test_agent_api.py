"""The agent API against hostile clients: half-open connections, trickling requests, foreign addresses and
failing handlers never starve HAProxy's check or leak internals (the review held 300 threads for 11 s)."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from agent.api import REQUEST_TIMEOUT, ApiServer, serve
from agent.daemon import Agent

HOST = "127.0.31.251"


class View:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def health(self) -> tuple[bool, str]:
        return True, "fine"

    def status(self) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("password=hunter2 in a traceback")
        return {"ok": True}

    def metrics_text(self) -> bytes:
        return b"# nothing\n"


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = serve(View(), HOST, 0)
    yield server
    server.shutdown()
    server.server_close()


def get(server: ApiServer, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with socket.create_connection((HOST, server.server_address[1]), timeout=timeout) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_three_hundred_half_open_connections_do_not_delay_the_check(api: ApiServer) -> None:
    port = api.server_address[1]
    idle = [socket.create_connection((HOST, port), timeout=5) for _ in range(300)]
    try:
        started = time.monotonic()
        code, body = get(api, "/health")
        assert code == 200 and json.loads(body)["healthy"] is True
        assert time.monotonic() - started < 0.5, "the check waited behind idle connections"
        # ...and the server closes them itself once REQUEST_TIMEOUT has passed without a request.
        idle[0].settimeout(REQUEST_TIMEOUT + 2)
        started = time.monotonic()
        assert idle[0].recv(1) == b""
        assert time.monotonic() - started < REQUEST_TIMEOUT + 1
    finally:
        for conn in idle:
            conn.close()


def test_a_trickling_request_is_cut_off(api: ApiServer) -> None:
    with socket.create_connection((HOST, api.server_address[1]), timeout=REQUEST_TIMEOUT + 3) as conn:
        started = time.monotonic()
        closed = False
        for byte in b"GET /status HTTP/1.1\r\nHost: agent\r\n\r\n":
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            if time.monotonic() - started > REQUEST_TIMEOUT + 0.5:
                break
        answer = b"" if closed else conn.recv(1024)
    assert answer == b"", "a request that never arrives whole gets no answer"
    assert time.monotonic() - started < REQUEST_TIMEOUT + 1.5


def test_an_oversized_request_head_is_dropped(api: ApiServer) -> None:
    with socket.create_connection((HOST, api.server_address[1]), timeout=5) as conn:
        try:
            conn.sendall(b"GET /health HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        except OSError:
            pass
        assert conn.recv(1024) == b""
    assert get(api, "/health")[0] == 200, "and the server still answers"


def test_a_failing_handler_answers_500_without_its_exception_text() -> None:
    server = serve(View(fail=True), HOST, 0)
    try:
        code, body = get(server, "/status")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 500 and b"hunter2" not in body and b"RuntimeError" not in body
    assert b"internal error" in body


def test_the_allowlist_closes_other_addresses_and_serves_its_own() -> None:
    outside = serve(View(), HOST, 0, allow=[ipaddress.ip_network("10.99.0.0/16")])
    inside = serve(View(), HOST, 0, allow=[ipaddress.ip_network("127.0.0.0/8")])
    try:
        with pytest.raises((ValueError, IndexError, ConnectionResetError)):
            get(outside, "/health")  # closed without a status line
        assert get(inside, "/health")[0] == 200
    finally:
        for server in (outside, inside):
            server.shutdown()
            server.server_close()


def test_a_burst_of_status_requests_costs_one_scan() -> None:
    scans = []

    def observe() -> dict[str, Any]:
        scans.append(time.monotonic())
        time.sleep(0.3)
        return {"scan": len(scans)}

    agent = SimpleNamespace(_status_lock=threading.Lock(), _status_cache=None, _observe_for_status=observe)
    answers: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: answers.append(Agent.status(agent))) for _ in range(10)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(answers) == 10 and len(scans) == 1 and all(a == {"scan": 1} for a in answers)
