"""The agent's read-only HTTP API on the standard library: /health, /status, /metrics, /primary.

Health answers by status code (200 or 503), as Patroni's health endpoints do, so a load balancer or
systemd watchdog script needs nothing but the code. /primary is HAProxy's read-write check
(agent/primary_check.py). Nothing here changes state: there is no POST.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST

from agent.lease_guard import LeaseGuard
from agent.primary_check import PrimaryCheck
from agent.settings import AgentSettings

log = logging.getLogger("agent.api")


class AgentView(Protocol):
    def health(self) -> tuple[bool, str]: ...

    def status(self) -> dict[str, Any]: ...

    def metrics_text(self) -> bytes: ...


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "fedctl-agent"
    protocol_version = "HTTP/1.1"

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away first (HAProxy health checks do): nothing to report

    def _json(self, code: int, data: Any) -> None:
        self._send(code, (json.dumps(data, indent=2) + "\n").encode(), "application/json")

    def do_GET(self) -> None:
        view = self.server.view
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            if path == "/health":
                ok, reason = view.health()
                self._json(200 if ok else 503, {"healthy": ok, "reason": reason})
            elif path == "/status":
                self._json(200, view.status())
            elif path == "/metrics":
                self._send(200, view.metrics_text(), CONTENT_TYPE_LATEST)
            elif path == "/primary" and self.server.primary is not None:
                verdict = self.server.primary.answer()
                self._json(200 if verdict.ok else 503, {"primary": verdict.ok, "reason": verdict.reason,
                                                        "epoch": verdict.epoch})
            else:
                self._json(404, {"error": f"no such endpoint {path}; try /health, /status, /metrics or /primary"})
        except Exception as exc:  # one failing request must not take the API down
            log.exception("GET %s failed", path)
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], view: AgentView) -> None:
        self.view = view
        settings = getattr(view, "settings", None)  # the real agent has them; test doubles may not
        guard = getattr(view, "guard", None)
        fenced = guard.fence_reason if isinstance(guard, LeaseGuard) else None
        self.primary = PrimaryCheck(settings, fenced=fenced) if isinstance(settings, AgentSettings) else None
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the listen address's name (socket.getfqdn), which on a host whose
        # resolver does not answer blocks start-up for 10 s or more; the API needs no name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def server_close(self) -> None:
        if self.primary is not None:
            self.primary.stop()
        super().server_close()


def serve(view: AgentView, host: str, port: int) -> ThreadingHTTPServer:
    """Start the API in a daemon thread; call `.shutdown()` and `.server_close()` to stop it."""
    server = _Server((host, port), view)
    threading.Thread(target=server.serve_forever, name="agent-api", daemon=True).start()
    return server
