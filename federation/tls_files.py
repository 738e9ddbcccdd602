"""TLS material named by path (a CA, and a client certificate with its key) and the SSL contexts made of it.

A context is loaded once per version of its files, so certificates replaced on disk (rotated, or a lab
rebuilt in the same process) are used from the next connection on. Used by every etcd client: the DCS
adapter, the lease, the federation store's probe and the gate.
"""

from __future__ import annotations

import functools
import os
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class ClientTLS:
    ca_file: str  # verifies the servers
    cert_file: str  # this client's certificate (the servers require one)
    key_file: str

    def context(self) -> ssl.SSLContext:
        versions = tuple(os.stat(p).st_mtime_ns for p in (self.ca_file, self.cert_file, self.key_file))
        return _context(self, versions)


@functools.lru_cache(maxsize=32)
def _context(tls: ClientTLS, _versions: tuple[int, ...]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca_file)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    return context
