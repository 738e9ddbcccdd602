"""The lab is secured by default: each component refuses a client without the right credential, and
answers the one with it (so every refusal below is proven to come from a live, reachable component).

etcd (each DC's DCS and the federation store) needs a client certificate of the lab CA; Patroni's REST
API serves https only and wants its credentials for a change; PostgreSQL takes TLS connections only;
ZooKeeper lets only fedctl's digest identity into fedctl's znodes (and leaves Patroni's open to Patroni);
the agents, pgBackRest's TLS servers and HAProxy are covered by their own tests."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import psycopg
import pytest

from federation.dcs.zookeeper import ZooKeeperAuth
from federation.http_deadline import exchange
from federation.patroni_api import PatroniAPIError, PatroniUnreachable, get_config, patch_config
from tests.integration.labkit import LabHandle, eventually


def _etcd_status(host: str, port: int, context: ssl.SSLContext | None) -> int:
    status, _ = exchange(host, port, "POST", "/v3/maintenance/status", body=b"{}", timeout=3, tls=context)
    return status


def _refused_plain(host: str, port: int) -> bool:
    """Plain http to a TLS port: Go's TLS server answers 400 ("an HTTP request to an HTTPS server") or hangs up."""
    from http.client import HTTPException

    try:
        return _etcd_status(host, port, None) == 400
    except (OSError, HTTPException):
        return True


def test_etcd_wants_a_client_certificate_of_the_lab_ca(clean_two_dc: LabHandle) -> None:
    topo = clean_two_dc.topo
    assert topo.etcd_tls is not None and topo.federation_store is not None
    client = topo.etcd_tls.client()
    servers = [(a.host, a.port) for dc in topo.datacenters if dc.dcs.kind == "etcd3" for a in dc.dcs.hosts]
    servers += [(h.host, h.port) for h in topo.federation_store.hosts]
    anonymous = ssl.create_default_context(cafile=topo.etcd_tls.ca_file)  # verifies the server, no certificate
    for host, port in servers:
        assert _etcd_status(host, port, client.context()) == 200, f"etcd {host}:{port} answers fedctl"
        with pytest.raises(OSError):  # ssl.SSLError is one: the server wants a certificate we do not show
            _etcd_status(host, port, anonymous)
        assert _refused_plain(host, port), f"etcd {host}:{port} answered plain http"


def test_patroni_serves_https_only_and_wants_its_credentials_for_a_change(clean_two_dc: LabHandle) -> None:
    lab = clean_two_dc
    leader = lab.leader_of(lab.dc("dc1"))
    config = get_config(leader)  # https, verified against the lab CA
    assert "ttl" in config
    with pytest.raises(PatroniUnreachable):
        get_config(f"http://{leader.api}")
    anonymous = leader.model_copy()
    anonymous._api_security = lab.topo.patroni_api.model_copy(update={"authentication": None})  # type: ignore[union-attr]
    with pytest.raises(PatroniAPIError) as refused:
        patch_config(anonymous, {"ttl": config["ttl"]})
    assert refused.value.status == 401
    assert patch_config(leader, {"ttl": config["ttl"]})["ttl"] == config["ttl"]


def test_postgresql_takes_tls_connections_only(clean_two_dc: LabHandle) -> None:
    lab = clean_two_dc
    leader = lab.leader_of(lab.dc("dc1"))
    password = lab.topo.credentials.superuser.password.resolve()
    common = {"host": leader.host, "port": leader.port, "user": lab.topo.credentials.superuser.username,
              "password": password, "dbname": "postgres", "connect_timeout": 3}
    with psycopg.connect(**common, **lab.topo.ssl_params()) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba.conf entry|SSL off"):
        psycopg.connect(**common, sslmode="disable")
    walsenders = lab.sql(leader, "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                                 "WHERE a.backend_type = 'walsender'")
    assert walsenders and all(row[0] is True for row in walsenders), "replication runs over TLS too"


def test_the_gate_reads_etcd_with_the_client_certificate(clean_two_dc: LabHandle, tmp_path: Path) -> None:
    from federation.gate import gate_config
    from federation.gate_core import run

    config = gate_config(clean_two_dc.topo, "dc2")
    assert set(config["etcd_tls"]) == {"ca_file", "cert_file", "key_file"}
    decision = run(config)
    assert not decision.allowed and "dc1" in decision.reason, decision  # it read the record: dc1 is primary
    json.dumps(config)  # the gate's file holds paths, never a secret


def _kazoo(hosts: str, auth: list[tuple[str, str]] | None) -> Any:
    from kazoo.client import KazooClient

    client = KazooClient(hosts=hosts, timeout=10, auth_data=auth, connection_retry={"max_tries": 3})
    client.start(timeout=10)
    return client


@pytest.mark.parametrize("two_dc_lab", ["mixed"], indirect=True)
def test_zookeeper_lets_only_fedctls_identity_into_its_znodes(clean_two_dc: LabHandle, tmp_path: Path) -> None:
    from kazoo.exceptions import NoAuthError

    from agent.settings import lease_key
    from federation.field_rules import host_port
    from federation.gate import gate_config
    from federation.gate_core import run
    from federation.state import state_key

    lab = clean_two_dc
    topo = lab.topo
    dc = next(d for d in topo.datacenters if d.dcs.kind == "zookeeper")
    auth = dc.zookeeper_auth
    assert auth is not None, "the mixed lab sets zookeeper_auth"
    hosts = ",".join(host_port(a.host, a.port) for a in dc.dcs.hosts)
    record = "/" + state_key(topo, dc).strip("/")
    lease = "/" + lease_key(topo, dc).strip("/")
    patroni_config = f"{dc.dcs.namespace}{dc.scope or dc.name}/config"
    eventually(f"{dc.name}'s agent holds its lease", lambda: _exists(hosts, lease), timeout=30)
    fedctl = _kazoo(hosts, auth.auth_data())
    anonymous = _kazoo(hosts, None)
    wrong = _kazoo(hosts, ZooKeeperAuth(auth.username, auth.password + "-wrong").auth_data())
    try:
        data, _ = fedctl.get(record)
        assert json.loads(data)["primary_dc"] == "dc1"
        for path in (record, lease, dc.fedctl_prefix):
            acls, _ = fedctl.get_acls(path)
            assert {a.id.scheme for a in acls} == {"digest"}, f"{path}: {acls}"
            for who, client in (("an anonymous client", anonymous), ("a wrong password", wrong)):
                assert client.exists(path) is not None, f"{who} cannot even see {path}: the test proves nothing"
                with pytest.raises(NoAuthError):
                    client.get(path)
                with pytest.raises(NoAuthError):
                    client.set(path, b"{}")
        # Patroni's own znodes stay Patroni's to read and write: fedctl never locked them.
        config, _ = anonymous.get(patroni_config)
        assert "ttl" in json.loads(config)
        assert {a.id.scheme for a in anonymous.get_acls(dc.dcs.namespace.rstrip("/"))[0]} == {"world"}
    finally:
        for client in (fedctl, anonymous, wrong):
            client.stop()
            client.close()
    decision = run(gate_config(topo, "dc2"))  # the gate reads dc2's copy with the identity from its file
    assert not decision.allowed and "dc1" in decision.reason, decision
    bad = tmp_path / "wrong-password"
    bad.write_text("not-the-password\n")
    config = gate_config(topo, "dc2")
    config["zookeeper_auth"]["password"] = {"file": str(bad)}
    config["fencing"] = "permissive"
    with pytest.raises(Exception, match="refused to let the gate read"):
        run(config)  # a refusal is not an unreachable peer: the gate cannot decide, so it refuses


def _exists(hosts: str, path: str) -> bool:
    client = _kazoo(hosts, None)
    try:
        return client.exists(path) is not None
    finally:
        client.stop()
        client.close()


def test_the_agents_serve_https_only_to_clients_of_the_lab_ca(clean_two_dc: LabHandle) -> None:
    from agent.settings import default_listen
    from tests.integration.labkit import agent_get

    topo = clean_two_dc.topo
    assert topo.agent_tls is not None
    anonymous = ssl.create_default_context(cafile=topo.agent_tls.ca_file)  # verifies the agent, no certificate
    for _dc, member in topo.members():
        listen = default_listen(member)
        assert agent_get(member, "/health")[0] in (200, 503), f"{member.name}'s agent answers its client"
        with pytest.raises(OSError):  # the handshake fails, or the agent hangs up: no answer either way
            exchange(listen.host, listen.port, "GET", "/health", timeout=3, tls=anonymous)
        with pytest.raises(OSError):
            exchange(listen.host, listen.port, "GET", "/health", timeout=3)  # plain http
