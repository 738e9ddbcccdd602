"""Patroni's REST API as a hardened cluster serves it: https with the members' certificates signed by the
topology's CA, basic auth on the unsafe endpoints. fedctl verifies the server and authenticates by itself."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.patroni_api import PatroniAPIError, PatroniUnreachable, get_patroni, patch_config
from federation.topology import Topology, parse_topology
from tests.unit.tls_servers import JsonHandler, https_server

HOST = "127.0.40.31"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}")
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    ca, ca_key = make_ca(d, "ca")
    other_ca, _ = make_ca(d, "other-ca")
    (d / "ext").write_text(f"subjectAltName=IP:{HOST}\n")
    openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout",
            str(d / "n1.key"), "-out", str(d / "n1.csr"), "-subj", "/CN=n1")
    openssl("x509", "-req", "-in", str(d / "n1.csr"), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "1", "-out", str(d / "n1.crt"), "-extfile", str(d / "ext"))
    return {"ca": ca, "other_ca": other_ca, "cert": d / "n1.crt", "key": d / "n1.key"}


class Patroni(JsonHandler):
    """Patroni's rule: GET is open, PATCH needs the restapi.authentication credentials."""

    def do_GET(self) -> None:
        self.answer(200, {"role": "primary", "state": "running"})

    def do_PATCH(self) -> None:
        expected = "Basic " + base64.b64encode(b"patroni:api-secret").decode()
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.headers.get("Authorization") != expected:
            self.answer(401, {"error": "no auth header received"})
        else:
            self.answer(200, {"ttl": 30})


@pytest.fixture(scope="module")
def https_port(certs: dict[str, Path]) -> Iterator[int]:
    with https_server(HOST, Patroni, certs["cert"], certs["key"]) as port:
        yield port


def topology(port: int, ca: Path, *, auth: bool = True) -> Topology:
    member = {"name": "n1", "host": HOST, "port": 5432, "api": f"{HOST}:{port}"}
    api: dict[str, Any] = {"tls": {"ca_file": str(ca)}}
    if auth:
        api["authentication"] = {"username": "patroni", "password": {"value": "api-secret"}}
    return parse_topology({
        "federation": "secure",
        "credentials": {r: {"username": r, "password": {"value": "x"}} for r in ("superuser", "replication", "rewind")},
        "pgbackrest": {"repo_path": "/var/lib/pgbackrest"},
        "patroni_api": api,
        "datacenters": [{"name": "dc1", "role": "primary", "dcs": {"etcd3": {"hosts": ["127.0.40.32:2379"]}},
                         "members": [member]}]})


def test_the_members_certificate_is_verified_against_the_topologys_ca(https_port: int,
                                                                     certs: dict[str, Path]) -> None:
    member = topology(https_port, certs["ca"]).datacenters[0].members[0]
    assert member.api_url.startswith("https://")
    assert get_patroni(member)["role"] == "primary"
    impostor = topology(https_port, certs["other_ca"]).datacenters[0].members[0]
    with pytest.raises(PatroniUnreachable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        get_patroni(impostor)


def test_unsafe_requests_carry_the_restapi_credentials(https_port: int, certs: dict[str, Path]) -> None:
    member = topology(https_port, certs["ca"]).datacenters[0].members[0]
    assert patch_config(member, {"ttl": 30}) == {"ttl": 30}
    anonymous = topology(https_port, certs["ca"], auth=False).datacenters[0].members[0]
    with pytest.raises(PatroniAPIError) as refused:
        patch_config(anonymous, {"ttl": 30})
    assert refused.value.status == 401, "the server did answer, and refused the request without credentials"


def test_plain_http_is_refused_when_the_topology_says_https(certs: dict[str, Path]) -> None:
    topo = topology(8008, certs["ca"])
    member = topo.datacenters[0].members[0]
    with pytest.raises(PatroniUnreachable, match="is plain http"):
        get_patroni(f"http://{member.api}", security=topo.patroni_api)


def test_a_secret_is_never_in_the_message(https_port: int, certs: dict[str, Path]) -> None:
    anonymous = topology(https_port, certs["ca"], auth=False).datacenters[0].members[0]
    with pytest.raises(PatroniAPIError) as refused:
        patch_config(anonymous, {"ttl": 30})
    assert "api-secret" not in str(refused.value)
