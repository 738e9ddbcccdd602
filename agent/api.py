"""The agent's read-only HTTP API: / (the federation as an HTML page), /health, /status, /metrics, /primary,
/gate, /controldata, /events.

Health answers by status code (200 or 503), as Patroni's health endpoints do, so a load balancer or
systemd watchdog script needs nothing but the code. /primary is HAProxy's read-write check
(agent/primary_check.py). /gate says whether the member's Patroni config runs the promotion gate
(agent/gate_report.py). /controldata is its member's pg_control, with where its WAL ends after a clean
shutdown (agent/control_report.py; switchover-dc's demotion token). /events?since=ISO lists the agent's
events log (agent/events.py), oldest first.
Nothing here changes state: there is no POST. The backup-host agent (agent/backup_host.py) is served by the
same server; what it has not (/, /gate, /primary, /controldata) answers 404.

The server is built so that no client can starve HAProxy's check. Connections are handled by one asyncio
loop, so an idle or half-open connection costs a socket, not a thread; a request head must arrive whole
within REQUEST_TIMEOUT and fit in MAX_HEAD bytes, beyond MAX_CONNECTIONS new connections are closed at
once, and one request is served per connection. The answers are computed in small thread pools, the
checks (/health, /primary, and /gate, a cached file read) apart from the reports (/status, /metrics),
each within ANSWER_TIMEOUT. An optional allowlist closes connections from other addresses. A failing
handler answers 500 with no exception text (that goes to the agent's log).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST

from agent.control_report import ControlUnknown
from agent.lease_guard import LeaseGuard
from agent.primary_check import PrimaryCheck
from agent.settings import AgentSettings
from federation.events_read import parse_time
from federation.topology import AgentTLS

log = logging.getLogger("agent.api")

REQUEST_TIMEOUT = 2.0  # for the whole request head; HAProxy and Prometheus send theirs at once
ANSWER_TIMEOUT = 5.0
MAX_HEAD = 8192
MAX_CONNECTIONS = 512  # beyond it new connections are closed until idle ones time out: --allow is the flood guard
CHECK_WORKERS = 2
REPORT_WORKERS = 2
# Cheap answers, never queued behind a slow /status (fedctl status and the operations ask /gate with a short deadline).
CHECK_PATHS = frozenset({"/health", "/primary", "/gate", "/controldata"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NotServed(Exception):
    """Raised by a view for an endpoint it has not (the backup-host agent has no /gate): 404, with the message."""


class AgentView(Protocol):
    def health(self) -> tuple[bool, str]: ...

    def status(self) -> dict[str, Any]: ...

    def gate(self) -> dict[str, Any]: ...

    def control_data(self) -> dict[str, Any]:
        """The member's pg_control (agent/control_report.py); ControlUnknown when it cannot be read."""

    def metrics_text(self) -> bytes: ...

    def recent_events(self, since: datetime | None) -> list[dict[str, Any]]: ...

    def page_html(self) -> str: ...


@dataclass(frozen=True)
class Answer:
    code: int
    body: bytes
    content_type: str = "application/json"


def _json(code: int, data: Any) -> Answer:
    return Answer(code, (json.dumps(data, indent=2) + "\n").encode())


def route(view: AgentView, primary: PrimaryCheck | None, method: str, path: str) -> Answer:
    """The answer to one request (pure routing; runs in a worker thread)."""
    if method not in ("GET", "HEAD"):
        return _json(501, {"error": f"{method} is not served: this API only reads"})
    path, _, query = path.partition("?")
    path = path.rstrip("/") or "/"
    try:
        if path == "/":
            return Answer(200, view.page_html().encode(), "text/html; charset=utf-8")
        if path == "/health":
            ok, reason = view.health()
            return _json(200 if ok else 503, {"healthy": ok, "reason": reason})
        if path == "/status":
            return _json(200, view.status())
        if path == "/gate":
            return _json(200, view.gate())
        if path == "/controldata":
            try:
                return _json(200, view.control_data())
            except ControlUnknown as exc:
                return _json(503, {"error": str(exc)})
        if path == "/metrics":
            return Answer(200, view.metrics_text(), CONTENT_TYPE_LATEST)
        if path == "/events":
            return _events(view, query)
        if path == "/primary" and primary is not None:
            verdict = primary.answer()
            code = 200 if verdict.ok else 404 if verdict.draining else 503
            return _json(code, {"primary": verdict.ok, "reason": verdict.reason, "epoch": verdict.epoch,
                                "draining": verdict.draining})
        return _json(404, {"error": f"no such endpoint {path}; try /, /health, /status, /metrics, /primary, "
                                    "/gate, /controldata or /events"})
    except NotServed as exc:
        return _json(404, {"error": str(exc)})
    except Exception:  # one failing request must not take the API down, nor show its internals
        log.exception("GET %s failed", path)
        return _json(500, {"error": "internal error; the agent's log has the details"})


def _events(view: AgentView, query: str) -> Answer:
    values = parse_qs(query).get("since")
    since = None
    if values:
        # An unescaped "+00:00" arrives as " 00:00" (a "+" in a query string is a space).
        since = parse_time(values[-1].replace(" ", "+"))
        if since is None:
            return _json(400, {"error": f"since={values[-1]!r} is not an ISO 8601 time such as "
                                         "2026-01-01T12:00:00.000+00:00"})
    return _json(200, view.recent_events(since))


class ApiServer:
    """The running API: `server_address`, `shutdown()` and `server_close()` as the old HTTPServer had."""

    def __init__(self, view: AgentView, host: str, port: int, *, allow: Sequence[Network] = (),
                 tls: ssl.SSLContext | None = None) -> None:
        self.view = view
        settings = getattr(view, "settings", None)  # the real agent has them; test doubles may not
        guard = getattr(view, "guard", None)
        fenced = guard.fence_reason if isinstance(guard, LeaseGuard) else None
        self.primary = PrimaryCheck(settings, fenced=fenced) if isinstance(settings, AgentSettings) else None
        self.allow = tuple(allow)
        self._checks = ThreadPoolExecutor(CHECK_WORKERS, thread_name_prefix="agent-api-check")
        self._reports = ThreadPoolExecutor(REPORT_WORKERS, thread_name_prefix="agent-api-report")
        self._loop = asyncio.new_event_loop()
        self._open = 0
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, host, port, backlog=MAX_CONNECTIONS, limit=MAX_HEAD, ssl=tls,
                                 ssl_handshake_timeout=REQUEST_TIMEOUT if tls is not None else None))
        self.server_address = self._server.sockets[0].getsockname()
        self._thread = threading.Thread(target=self._loop.run_forever, name="agent-api", daemon=True)
        self._thread.start()

    def _allowed(self, peer: Any) -> bool:
        if not self.allow:
            return True
        try:
            address = ipaddress.ip_address(peer[0])
        except (ValueError, TypeError, IndexError):
            return False
        return any(address in net for net in self.allow)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        try:
            if self._open > MAX_CONNECTIONS or not self._allowed(writer.get_extra_info("peername")):
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return  # slow, silent, oversized or gone: the connection is closed, nothing answered
            await self._answer(head, writer)
        finally:
            self._open -= 1
            writer.close()

    async def _answer(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            answer = _json(400, {"error": "not an HTTP request"})
            method = "GET"
        else:
            method, path = parts[0], parts[1]
            pool = self._checks if path.split("?", 1)[0].rstrip("/") in CHECK_PATHS else self._reports
            work = self._loop.run_in_executor(pool, route, self.view, self.primary, method, path)
            try:
                answer = await asyncio.wait_for(work, ANSWER_TIMEOUT)
            except TimeoutError:
                answer = _json(503, {"error": f"no answer within {ANSWER_TIMEOUT:g} s; try again"})
        reason = HTTPStatus(answer.code).phrase
        headers = (f"HTTP/1.1 {answer.code} {reason}\r\nServer: fedctl-agent\r\nContent-Type: "
                   f"{answer.content_type}\r\nContent-Length: {len(answer.body)}\r\nCache-Control: no-store\r\n"
                   "Connection: close\r\n\r\n").encode()
        try:
            writer.write(headers if method == "HEAD" else headers + answer.body)
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except (TimeoutError, ConnectionError):
            pass  # the client went away first (HAProxy health checks do): nothing to report

    def shutdown(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def server_close(self) -> None:
        if self.primary is not None:
            self.primary.stop()
        self._checks.shutdown(wait=False, cancel_futures=True)
        self._reports.shutdown(wait=False, cancel_futures=True)
        if not self._loop.is_running():
            self._loop.close()


def serve(view: AgentView, host: str, port: int, *, allow: Sequence[Network] = (),
          tls: ssl.SSLContext | None = None) -> ApiServer:
    """Start the API in a daemon thread; call `.shutdown()` and `.server_close()` to stop it. With `tls`
    (server_context) it speaks https only and takes only clients with a certificate of the topology's CA."""
    return ApiServer(view, host, port, allow=allow, tls=tls)


def server_context(tls: AgentTLS, member: str) -> ssl.SSLContext:
    """The agent's https: the member's certificate, and a client certificate of `tls.ca_file` required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.server_cert(member), tls.server_key(member))
    context.load_verify_locations(tls.ca_file)
    context.verify_mode = ssl.CERT_REQUIRED
    return context
