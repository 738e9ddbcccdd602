"""Entrypoint rendering and the /primary verdict: pure functions on the entry lab's topology."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agent.primary_check import primary_verdict
from federation.entrypoints import default_binds, render_haproxy, render_libpq, render_pgbouncer
from federation.errors import BadInput
from federation.state import FederationState
from federation.topology import Topology, load_topology, parse_topology

TOPOLOGY = Path(__file__).parents[1] / "integration" / "topologies" / "entry-two-dc.yaml"


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load_topology(TOPOLOGY)


def record(epoch: int, primary: str) -> FederationState:
    return FederationState(federation="test-entry", epoch=epoch, primary_dc=primary,
                           upstreams={"dc1": None, "dc2": "dc1"})


def _backend(cfg: str, name: str) -> list[str]:
    block = cfg.split(f"backend {name}\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


def test_the_read_write_backend_checks_every_member_on_its_agent_primary_endpoint(topo: Topology) -> None:
    cfg = render_haproxy(topo, read_write_bind="127.0.0.1:7000", read_only_bind="127.0.0.1:7001")
    backend = _backend(cfg, "fed_primary")
    assert "option httpchk GET /primary" in backend and "http-check expect status 200" in backend
    assert "http-check disable-on-404" in backend  # a draining primary (404) is out at the next check
    assert "default-server inter 250 fastinter 100 fall 2 rise 1 on-marked-down shutdown-sessions" in backend
    servers = [line for line in backend if line.startswith("server ")]
    tls = topo.agent_tls
    assert tls is not None, "the entry topology's agents serve https"
    check = f" check-ssl verify required ca-file {tls.ca_file} crt {tls.client_cert_file}"
    assert servers == [f"server {dc.name}_{m.name} {m.host}:5432 check port 8108{check}" for dc, m in topo.members()]
    assert "bind 127.0.0.1:7000" in cfg and "bind 127.0.0.1:7001" in cfg
    plain = render_haproxy(topo.model_copy(update={"agent_api": None}), read_write_bind="127.0.0.1:7000",
                           read_only_bind="127.0.0.1:7001")
    assert "crt " not in plain and "check port 8108\n" in plain  # agents on plain http: a plain check


def test_the_read_only_backend_uses_patroni_replica_check_and_can_stay_in_one_dc(topo: Topology) -> None:
    cfg = render_haproxy(topo, read_write_bind="127.0.0.1:7000", read_only_bind="127.0.0.1:7001",
                         local_dc="dc2", replica_lag="16MB")
    backend = _backend(cfg, "fed_replicas")
    assert "option httpchk GET /replica?lag=16MB" in backend
    assert topo.patroni_api is not None and topo.patroni_api.tls is not None
    tls = f" check-ssl verify required ca-file {topo.patroni_api.tls.ca_file}"  # Patroni's API serves https
    assert [line for line in backend if line.startswith("server ")] == [
        f"server dc2_n3 127.0.52.11:5432 check port 8008{tls}", f"server dc2_n4 127.0.52.12:5432 check port 8008{tls}"]
    with pytest.raises(BadInput):
        render_haproxy(topo, read_write_bind="a:1", read_only_bind="a:2", local_dc="dc9")


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_rendered_configuration(topo: Topology, tmp_path: Path) -> None:
    from federation.topology import AgentApi, AgentTLS, PatroniApi, ServerTLS

    ca = tmp_path / "ca.crt"  # haproxy -c loads the check's CA file
    subprocess.run(["openssl", "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-keyout", str(tmp_path / "ca.key"), "-out", str(ca),
                    "-days", "1", "-subj", "/CN=test-ca"], check=True, capture_output=True)
    # HAProxy's client certificate towards the agents: certificate and key in one file, as the lab writes it.
    key, csr, crt, pem = (tmp_path / f"client.{ext}" for ext in ("key", "csr", "crt", "pem"))
    subprocess.run(["openssl", "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-keyout", str(key), "-out", str(csr), "-subj", "/CN=haproxy"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(tmp_path / "ca.key"),
                    "-CAcreateserial", "-days", "1", "-out", str(crt)], check=True, capture_output=True)
    pem.write_text(crt.read_text() + key.read_text())
    agent = AgentApi(tls=AgentTLS(ca_file=str(ca), cert_file=str(tmp_path / "{host}.crt"),
                                  key_file=str(tmp_path / "{host}.key"), client_cert_file=str(pem),
                                  client_key_file=str(key)))
    topo = topo.model_copy(update={"patroni_api": PatroniApi(tls=ServerTLS(ca_file=str(ca))), "agent_api": agent})
    binds = default_binds(topo)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_haproxy(topo, read_write_bind=binds.read_write, read_only_bind=binds.read_only))
    assert f"check-ssl verify required ca-file {ca}" in cfg.read_text()
    assert f"check-ssl verify required ca-file {ca} crt {pem}" in cfg.read_text()
    done = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_default_binds_are_three_stable_adjacent_ports_per_federation(topo: Topology) -> None:
    binds = default_binds(topo)
    rw_port, ro_port, pgb_port = (int(b.rsplit(":", 1)[1]) for b in (binds.read_write, binds.read_only,
                                                                     binds.pgbouncer))
    assert ro_port == rw_port + 1 and pgb_port == rw_port + 2
    assert rw_port >= 15000 and pgb_port < 15000 + 3 * 2500 and (rw_port - 15000) % 3 == 0
    assert default_binds(topo) == binds
    other = topo.model_copy(update={"federation": "another"})
    assert default_binds(other) != binds


def test_libpq_lists_every_member_read_write_without_a_password(topo: Topology) -> None:
    uri = render_libpq(topo)
    assert topo.postgres_tls is not None
    assert uri == ("postgresql://postgres@127.0.51.11:5432,127.0.51.12:5432,127.0.52.11:5432,127.0.52.12:5432"
                   "/postgres?target_session_attrs=read-write&connect_timeout=2&sslmode=verify-full"
                   f"&sslrootcert={topo.postgres_tls.ca_file}")


def test_pgbouncer_points_at_the_primary_dc_leader(topo: Topology) -> None:
    out = render_pgbouncer(topo, record(3, "dc2"), topo.dc("dc2").member("n4"))
    assert "[databases]\n* = host=127.0.52.12 port=5432\n" in out and "epoch 3" in out


def test_pgbouncer_for_the_follower_lists_each_database(topo: Topology) -> None:
    out = render_pgbouncer(topo, record(3, "dc2"), topo.dc("dc2").member("n3"), ["app", "postgres"], followed=True)
    assert out.endswith("[databases]\napp = host=127.0.52.11 port=5432\npostgres = host=127.0.52.11 port=5432\n")
    assert "do not edit" in out


@pytest.mark.parametrize(("dc", "role", "rec", "ok"), [
    ("dc1", "primary", record(0, "dc1"), True),
    ("dc1", "master", record(0, "dc1"), True),
    ("dc1", "replica", record(0, "dc1"), False),
    ("dc2", "standby_leader", record(0, "dc1"), False),
    # A fenced DC whose old leader still believes it is primary: the epoch names another DC.
    ("dc1", "primary", record(4, "dc2"), False),
    ("dc1", "primary", None, False),
    ("dc1", None, record(0, "dc1"), False),
])
def test_primary_passes_only_for_patroni_primary_of_the_record_primary_dc(
        dc: str, role: str | None, rec: FederationState | None, ok: bool) -> None:
    verdict = primary_verdict(dc, "n1", role, rec, "running")
    assert verdict.ok is ok and not verdict.draining
    if rec is not None and role == "primary" and not ok:
        assert "fenced" in verdict.reason


@pytest.mark.parametrize("state", ["stopping", "stopped", "restarting", "crashed"])
def test_a_primary_whose_postgres_patroni_is_stopping_drains(state: str) -> None:
    # Patroni keeps reporting role primary until the postmaster exited (a demote-cluster, a restart).
    verdict = primary_verdict("dc1", "n1", "primary", record(0, "dc1"), state)
    assert not verdict.ok and verdict.draining and state in verdict.reason


@pytest.mark.parametrize("state", [None, "running", "unknown"])
def test_a_running_primary_or_one_patroni_could_not_query_once_is_not_drained(state: str | None) -> None:
    assert primary_verdict("dc1", "n1", "primary", record(0, "dc1"), state).ok


def test_a_fenced_dc_stays_fenced_rather_than_draining_while_it_stops() -> None:
    verdict = primary_verdict("dc1", "n1", "primary", record(4, "dc2"), "stopping")
    assert not verdict.ok and not verdict.draining and "fenced" in verdict.reason


def test_every_entrypoint_reaches_each_member_on_its_own_port() -> None:
    data = yaml.safe_load(TOPOLOGY.read_text())
    for dc in data["datacenters"]:
        for i, member in enumerate(dc["members"]):
            member["port"] = 6000 + i
    topo = parse_topology(data, str(TOPOLOGY))
    addresses = [f"{m.host}:{m.port}" for _dc, m in topo.members()]
    assert len({m.port for _dc, m in topo.members()}) > 1
    cfg = render_haproxy(topo, read_write_bind="127.0.0.1:7000", read_only_bind="127.0.0.1:7001")
    for backend in ("fed_primary", "fed_replicas"):
        servers = [line.split()[2] for line in _backend(cfg, backend) if line.startswith("server ")]
        assert servers == addresses, backend
    assert render_libpq(topo).split("@", 1)[1].split("/", 1)[0] == ",".join(addresses)
    leader = topo.dc("dc2").members[1]
    assert f"* = host={leader.host} port={leader.port}" in render_pgbouncer(topo, record(3, "dc2"), leader)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_members_on_ipv6_addresses_get_bracketed_haproxy_servers_that_haproxy_parses(tmp_path: Path) -> None:
    data = yaml.safe_load(TOPOLOGY.read_text())
    data.pop("agent_api", None)  # plain checks: this test is about addresses, the TLS one above about files
    data.pop("patroni_api", None)
    for d, dc in enumerate(data["datacenters"], start=1):
        for i, member in enumerate(dc["members"], start=1):
            member["host"] = f"fd00:{d}::{i}"
    topo = parse_topology(data, str(TOPOLOGY))
    rendered = render_haproxy(topo, read_write_bind="[::1]:7000", read_only_bind="[::1]:7001")
    for backend in ("fed_primary", "fed_replicas"):
        servers = [line.split()[2] for line in _backend(rendered, backend) if line.startswith("server ")]
        assert servers == [f"[{m.host}]:{m.port}" for _dc, m in topo.members()], backend
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(rendered)
    done = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
