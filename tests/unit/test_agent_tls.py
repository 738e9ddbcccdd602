"""The agent API over https with client certificates (topology agent_api.tls): a client of the CA is
answered, one without a certificate, with another CA's, or speaking plain http is not; a client that
connects and never shakes hands is dropped without delaying the others."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.api import REQUEST_TIMEOUT, ApiServer, serve, server_context
from federation.topology import AgentTLS
from tests.unit.test_agent_api import View
from tests.unit.test_etcd_tls import issue
from tests.unit.test_patroni_api_security import make_ca

HOST = "127.0.31.252"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("agent-tls")
    ca, ca_key = make_ca(d, "ca")
    other, other_key = make_ca(d, "other")
    server, server_key = issue(d, ca, ca_key, "n1", HOST)
    client, client_key = issue(d, ca, ca_key, "haproxy", None)
    stranger, stranger_key = issue(d, other, other_key, "stranger", None)
    return {"ca": ca, "server": d / "{host}.crt", "server_key": d / "{host}.key", "client": client,
            "client_key": client_key, "stranger": stranger, "stranger_key": stranger_key,
            "n1": server, "n1_key": server_key}


@pytest.fixture(scope="module")
def agent_tls(tls: dict[str, Path]) -> AgentTLS:
    return AgentTLS(ca_file=str(tls["ca"]), cert_file=str(tls["server"]), key_file=str(tls["server_key"]),
                    client_cert_file=str(tls["client"]), client_key_file=str(tls["client_key"]))


@pytest.fixture
def api(agent_tls: AgentTLS) -> Iterator[ApiServer]:
    server = serve(View(), HOST, 0, tls=server_context(agent_tls, "n1"))
    yield server
    server.shutdown()
    server.server_close()


def https_get(server: ApiServer, path: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    with socket.create_connection((HOST, server.server_address[1]), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=HOST) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    if not data:
        raise ConnectionError("the agent hung up without an answer")
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def client_context(tls: dict[str, Path], cert: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls["ca"]))
    if cert is not None:
        context.load_cert_chain(str(tls[cert]), str(tls[f"{cert}_key"]))
    return context


def test_a_client_of_the_ca_is_answered_over_https(api: ApiServer, agent_tls: AgentTLS) -> None:
    code, body = https_get(api, "/health", agent_tls.client().context())
    assert code == 200 and b"fine" in body


@pytest.mark.parametrize("cert", [None, "stranger"], ids=["no certificate", "another CA's certificate"])
def test_a_client_without_a_certificate_of_the_ca_is_refused(api: ApiServer, tls: dict[str, Path],
                                                             agent_tls: AgentTLS, cert: str | None) -> None:
    assert https_get(api, "/health", agent_tls.client().context())[0] == 200  # it answers: the refusal is real
    # TLS 1.3 finishes the client's side of the handshake first: the refusal is an alert, or a hang-up.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(api, "/health", client_context(tls, cert))


def test_plain_http_gets_no_answer(api: ApiServer) -> None:
    with socket.create_connection((HOST, api.server_address[1]), timeout=5) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: agent\r\n\r\n")
        try:
            data = conn.recv(65536)
        except ConnectionError:
            data = b""
    assert b"200" not in data and b"fine" not in data


def test_connections_that_never_shake_hands_do_not_delay_a_check(api: ApiServer, agent_tls: AgentTLS) -> None:
    idle = [socket.create_connection((HOST, api.server_address[1]), timeout=5) for _ in range(100)]
    try:
        started = time.monotonic()
        assert https_get(api, "/health", agent_tls.client().context())[0] == 200
        assert time.monotonic() - started < 1.0
        time.sleep(REQUEST_TIMEOUT + 1.0)
        idle[0].settimeout(2)
        assert idle[0].recv(1) == b"", "a connection that never shook hands was kept past the handshake timeout"
    finally:
        for conn in idle:
            conn.close()
