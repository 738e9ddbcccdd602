"""Stand-ins for the servers fedctl talks to (Patroni's REST API, etcd's gateway) in unit tests: a
JSON-answering handler, and an http or https server on a thread (https optionally requiring a client
certificate)."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    def answer(self, code: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> Iterator[int]:
    """Serve `handler` over plain http on `host`, one thread a request. Yields the port."""
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    with _serving(server) as port:
        yield port


@contextmanager
def https_server(host: str, handler: type[BaseHTTPRequestHandler], cert: Path, key: Path, *,
                 client_ca: Path | None = None) -> Iterator[int]:
    """Serve `handler` over https on `host`; with `client_ca`, only clients with a certificate it signed
    (etcd's --client-cert-auth). Yields the port."""
    server = ThreadingHTTPServer((host, 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with _serving(server) as port:
        yield port


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[int]:
    """Run `server` in a thread until the block ends, then shut it down and close its socket."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
