"""The agent's `GET /`: the HTML view, text/html, computed at most once per PAGE_MAX_AGE for a burst of browsers."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

from agent.api import serve
from agent.daemon import Agent
from federation.status_html import render_html
from federation.status_view_inputs import LagHistory, RecentJobs
from tests.unit.status_views import two_dc

HOST = "127.0.31.252"


class PageView:
    def health(self) -> tuple[bool, str]:
        return True, "fine"

    def page_html(self) -> str:
        return render_html(two_dc(primary="dc2", standby="dc1"), [], RecentJobs(), {"dc1": [1, 2, 3]})


def _get(port: int, path: str) -> tuple[str, bytes]:
    with socket.create_connection((HOST, port), timeout=5) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def test_get_slash_serves_the_html_view() -> None:
    server = serve(PageView(), HOST, 0)  # type: ignore[arg-type]
    try:
        head, body = _get(server.server_address[1], "/")
    finally:
        server.shutdown()
        server.server_close()
    assert head.startswith("HTTP/1.1 200 ")
    assert "Content-Type: text/html; charset=utf-8" in head.split("\r\n")
    assert b'data-dc="dc2" data-role="primary"' in body and b'data-points="3"' in body


def test_a_burst_of_page_requests_costs_one_scan() -> None:
    scans: list[float] = []

    def render() -> str:
        scans.append(time.monotonic())
        time.sleep(0.3)
        return f"page {len(scans)}"

    agent = SimpleNamespace(_page_lock=threading.Lock(), _page_cache=None, _render_page=render)
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(Agent.page_html(agent))) for _ in range(8)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == ["page 1"] * 8 and len(scans) == 1


def test_the_page_samples_the_dcs_the_active_agent_does_not(monkeypatch: Any) -> None:
    from federation.status_page import PageData

    status = two_dc(primary="dc1", standby="dc2")
    monkeypatch.setattr("federation.status_page.observe_for_page", lambda topo, **kw: PageData(status, RecentJobs()))
    agent: Any = SimpleNamespace(_known=None, lag_history=LagHistory(),
                                 settings=SimpleNamespace(topo=None, dc=SimpleNamespace(name="dc2")),
                                 keeper=SimpleNamespace(active=True))
    Agent._render_page(agent)
    assert agent.lag_history.samples() == {}, "dc2's own active agent samples dc2 every cycle"
    agent.keeper.active = False
    page = Agent._render_page(agent)
    assert agent.lag_history.samples() == {"dc2": [2048]} and 'data-points="1"' in page
