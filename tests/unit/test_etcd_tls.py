"""etcd over TLS with client certificates, as etcd's --client-cert-auth serves it: the adapter's reads and
the gate present the topology's client certificate and verify the server; without one they are refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.dcs.etcd3 import EtcdDCS
from federation.errors import DCSError
from federation.gate_core import read_copy
from federation.tls_files import ClientTLS
from tests.unit.test_patroni_api_security import make_ca, openssl
from tests.unit.tls_servers import JsonHandler, https_server

HOST = "127.0.40.41"
RECORD = json.dumps({"epoch": 7, "primary_dc": "dc1"})


def issue(d: Path, ca: Path, ca_key: Path, name: str, san: str | None) -> tuple[Path, Path]:
    key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt"
    openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout",
            str(key), "-out", str(csr), "-subj", f"/CN={name}")
    (d / f"{name}.ext").write_text(f"subjectAltName=IP:{san}\n" if san else "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days",
            "1", "-out", str(cert), "-extfile", str(d / f"{name}.ext"))
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("etcd-tls")
    ca, ca_key = make_ca(d, "ca")
    server, server_key = issue(d, ca, ca_key, "etcd", HOST)
    client, client_key = issue(d, ca, ca_key, "fedctl", None)
    return {"ca": ca, "server": server, "server_key": server_key, "client": client, "client_key": client_key}


class Etcd(JsonHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kv = {"key": base64.b64encode(b"/fed/x").decode(), "value": base64.b64encode(RECORD.encode()).decode(),
              "mod_revision": "5"}
        self.answer(200, {"header": {"revision": "5"}, "kvs": [kv], "count": "1"})


@pytest.fixture(scope="module")
def port(pki: dict[str, Path]) -> Iterator[int]:
    # etcd's --client-cert-auth: only clients with a certificate of the CA.
    with https_server(HOST, Etcd, pki["server"], pki["server_key"], client_ca=pki["ca"]) as served:
        yield served


def test_the_adapter_reads_with_the_client_certificate_and_is_refused_without(port: int,
                                                                              pki: dict[str, Path]) -> None:
    tls = ClientTLS(str(pki["ca"]), str(pki["client"]), str(pki["client_key"]))
    got = EtcdDCS([(HOST, port)], label="dc1", timeout=2, tls=tls).get("/fed/x")
    assert got is not None and json.loads(got.value)["epoch"] == 7
    with pytest.raises(DCSError):
        EtcdDCS([(HOST, port)], label="dc1", timeout=2).get("/fed/x")  # plain http to a TLS port


def test_the_gate_reads_a_copy_with_the_client_certificate(port: int, pki: dict[str, Path]) -> None:
    peer = {"dc": "dc1", "kind": "etcd3", "hosts": [f"{HOST}:{port}"], "key": "/fed/x"}
    tls = ClientTLS(str(pki["ca"]), str(pki["client"]), str(pki["client_key"]))
    assert read_copy(peer, timeout=2, tls=tls).epoch == 7
    assert read_copy(peer, timeout=2).reachable is False


def test_the_adapter_writes_with_the_client_certificate(port: int, pki: dict[str, Path]) -> None:
    """Writes go through etcd3gw on a session of ours: the certificate must be on that session (etcd3gw ignores
    its own ca_cert/cert arguments when given a session, which once failed every write of the lab)."""
    tls = ClientTLS(str(pki["ca"]), str(pki["client"]), str(pki["client_key"]))
    EtcdDCS([(HOST, port)], label="dc1", timeout=2, tls=tls).put("/fed/x", RECORD)
    with pytest.raises(DCSError):
        EtcdDCS([(HOST, port)], label="dc1", timeout=2, tls=ClientTLS(str(pki["ca"]), "", "")).put("/fed/x", RECORD)
