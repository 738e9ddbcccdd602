"""The lab is secured by default: each component refuses a client without the right credential, and
answers the one with it (so every refusal below is proven to come from a live, reachable component).

etcd (each DC's DCS and the federation store) needs a client certificate of the lab CA; Patroni's REST
API serves https only and wants its credentials for a change; PostgreSQL takes TLS connections only;
the agents, pgBackRest's TLS servers and HAProxy are covered by their own tests."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import psycopg
import pytest

from federation.http_deadline import exchange
from federation.patroni_api import PatroniAPIError, PatroniUnreachable, get_config, patch_config
from tests.integration.labkit import LabHandle


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
