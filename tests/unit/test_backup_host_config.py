"""The repository-host layout: its topology rules, the two rendered configs, and who serves a backup."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from backup import host_layout
from backup.host_config import PgHost, member_config, repo_host_config
from federation.cli import cli
from federation.errors import BadInput, TopologyError
from federation.topology import Topology, parse_topology

TOPOLOGY = Path(__file__).parents[1] / "integration" / "topologies" / "two-dc.yaml"
TLS = {"ca_file": "/etc/pgbackrest/tls/ca.crt", "cert_file": "/etc/pgbackrest/tls/{host}.crt",
       "key_file": "/etc/pgbackrest/tls/{host}.key"}


def topology(**pgbackrest: Any) -> Topology:
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["pgbackrest"] = {"stanza": "fed", "repo_path": "/var/lib/pgbackrest", **pgbackrest}
    return parse_topology(data, str(TOPOLOGY))


@pytest.fixture
def topo() -> Topology:
    return topology(repo_host={"address": "127.0.0.1", "tls_port": 18432}, tls=TLS,
                    options={"repo1-retention-full": 2})


def hosts(topo: Topology, *, standby_healthy: bool = True) -> list[PgHost]:
    n1, n2 = topo.dc("dc1").members
    return [PgHost(n1, "/data/n1", "/run/n1", True), PgHost(n2, "/data/n2", None, False, healthy=standby_healthy)]


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_a_repo_host_needs_tls_and_tls_needs_a_repo_host() -> None:
    with pytest.raises(TopologyError) as caught:
        topology(repo_host={"address": "10.0.9.10"})
    assert "a repo_host needs a tls section" in str(caught.value)
    with pytest.raises(TopologyError, match="tls is used only with a repo_host"):
        topology(tls=TLS)


def test_relative_certificate_paths_and_owned_options_are_refused() -> None:
    with pytest.raises(TopologyError, match="must be an absolute path"):
        topology(repo_host={"address": "10.0.9.10"}, tls={**TLS, "ca_file": "ca.crt"})
    with pytest.raises(TopologyError, match="backup-standby are rendered by fedctl"):
        topology(repo_host={"address": "10.0.9.10"}, tls=TLS, options={"backup-standby": "y"})
    with pytest.raises(TopologyError, match="also a member's name"):
        topology(repo_host={"address": "10.0.9.10", "name": "n1"}, tls=TLS)


def test_the_repo_host_backs_up_the_primary_dc_leader_first_from_a_standby(topo: Topology) -> None:
    text = repo_host_config(topo, topo.pgbackrest, hosts(topo))  # type: ignore[arg-type]
    got = lines(text)
    assert "backup-standby=y" in got and "repo1-retention-full=2" in got
    assert got.index("pg1-host=" + topo.dc("dc1").members[0].host) < got.index(
        "pg2-host=" + topo.dc("dc1").members[1].host)
    assert "pg1-host-type=tls" in got and "pg1-host-port=8432" in got and "pg1-path=/data/n1" in got
    assert "pg1-socket-path=/run/n1" in got and not any(line.startswith("pg2-socket-path") for line in got)
    assert "pg1-host-cert-file=/etc/pgbackrest/tls/repo.crt" in got
    # Every member of every DC may push WAL: each is authorised by its certificate's common name.
    assert {line for line in got if line.startswith("tls-server-auth=")} == {
        f"tls-server-auth={m.name}=fed" for _dc, m in topo.members()}
    assert "tls-server-address=127.0.0.1" in got and "tls-server-port=18432" in got


def test_without_a_healthy_standby_the_backup_reads_from_the_primary(topo: Topology) -> None:
    got = lines(repo_host_config(topo, topo.pgbackrest, hosts(topo, standby_healthy=False)))  # type: ignore[arg-type]
    assert "backup-standby=n" in got and not any(line.startswith("pg2-") for line in got)
    with pytest.raises(BadInput, match="no healthy primary"):
        repo_host_config(topo, topo.pgbackrest, hosts(topo)[1:])  # type: ignore[arg-type]


def test_a_member_reaches_the_repository_over_tls_and_only_the_repo_host_may_use_its_server(
        topo: Topology) -> None:
    member = topo.dc("dc2").members[0]
    got = lines(member_config(topo, topo.pgbackrest, member, "/data/n3", "/run/n3"))  # type: ignore[arg-type]
    assert "repo1-host=127.0.0.1" in got and "repo1-host-type=tls" in got and "repo1-host-port=18432" in got
    assert f"repo1-host-cert-file=/etc/pgbackrest/tls/{member.name}.crt" in got
    assert f"tls-server-address={member.host}" in got and "tls-server-auth=repo=fed" in got
    assert "pg1-path=/data/n3" in got and "repo1-path=/var/lib/pgbackrest" in got  # the path on the repo host


def test_pgbackrest_itself_knows_every_option_rendered(topo: Topology, tmp_path: Path) -> None:
    """pgBackRest only warns about an unknown option in a config file: a misspelt one would be ignored."""
    repo = tmp_path / "repo"
    local = topology(repo_host={"address": "127.0.0.1", "tls_port": 18432}, tls=TLS)
    local = local.model_copy(update={"pgbackrest": local.pgbackrest.model_copy(  # type: ignore[union-attr]
        update={"repo_path": str(repo)})})
    for name, text in (("repo.conf", repo_host_config(local, local.pgbackrest, hosts(local))),  # type: ignore[arg-type]
                       ("member.conf", member_config(local, local.pgbackrest, local.dc("dc1").members[0],  # type: ignore[arg-type]
                                                     "/data/n1", "/run/n1"))):
        path = tmp_path / name
        path.write_text(text)
        done = subprocess.run(["pgbackrest", f"--config={path}", "--stanza=fed", "--io-timeout=1",
                               f"--log-path={tmp_path}", f"--lock-path={tmp_path}", "info"],
                              capture_output=True, text=True, timeout=60)
        assert "invalid option" not in done.stdout + done.stderr, f"{name}: {done.stdout}{done.stderr}"
        assert done.stdout or done.stderr, "pgbackrest said nothing: it did not read the file"


def test_a_standby_whose_tls_server_is_down_is_left_out_and_said(topo: Topology,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    n1, n2 = topo.dc("dc1").members
    monkeypatch.setattr(host_layout, "patroni_state", lambda m, timeout: {
        "role": "primary" if m.name == n1.name else "replica", "state": "running" if m.name == n1.name
        else "streaming"})
    monkeypatch.setattr(host_layout, "data_location", lambda topo, m: (f"/data/{m.name}", None))
    monkeypatch.setattr(host_layout, "tls_server_answers", lambda m, port, timeout=1.0: m.name == n1.name)
    _dc, looks = host_layout.backup_hosts(topo, topo.dc("dc1"))
    by_name = {look.member.name: look for look in looks}
    assert by_name[n1.name].host is not None and by_name[n1.name].host.healthy  # type: ignore[union-attr]
    assert by_name[n2.name].why_left_out == f"its pgbackrest server ({n2.host}:8432) does not answer"
    text = repo_host_config(topo, topo.pgbackrest, [look.host for look in looks if look.host])  # type: ignore[arg-type]
    assert "backup-standby=n" in lines(text)


def test_backup_config_without_a_repo_host_says_what_to_add(tmp_path: Path) -> None:
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["pgbackrest"] = {"stanza": "fed", "repo_path": "/var/lib/pgbackrest"}
    path = tmp_path / "no-repo-host.yaml"
    path.write_text(yaml.safe_dump(data))
    out = CliRunner().invoke(cli, ["backup-config", "--member", "n1", "-t", str(path)])
    assert out.exit_code == 2, out.output
    assert "has no pgbackrest.repo_host" in out.output and "docs/backups.md" in out.output


def test_the_restore_config_holds_the_repository_and_no_pg_host(topo: Topology) -> None:
    from backup.host_config import restore_config

    got = lines(restore_config(topo.pgbackrest))  # type: ignore[arg-type]
    assert "repo1-path=/var/lib/pgbackrest" in got and "[fed]" in got
    assert not any(line.startswith(("pg1-", "repo1-host", "tls-server")) for line in got)


def test_postgresql_binaries_are_found_by_the_stanzas_version(tmp_path: Path) -> None:
    from backup.pg_bin import bin_dir_for
    from federation.errors import OperationFailed

    (tmp_path / "16" / "bin").mkdir(parents=True)
    (tmp_path / "16" / "bin" / "postgres").write_text("")
    patterns = (str(tmp_path / "{version}" / "bin"),)
    assert bin_dir_for("16", patterns) == tmp_path / "16" / "bin"
    with pytest.raises(OperationFailed, match="no PostgreSQL 15 binaries on this host") as caught:
        bin_dir_for("15", patterns)
    assert caught.value.hint is not None and "postgresql-15" in caught.value.hint
    assert bin_dir_for("15").name == "bin"  # this machine's own PostgreSQL 15 (the lab's)


def test_pgbackrest_reaches_each_member_on_its_own_postgres_port() -> None:
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["pgbackrest"] = {"stanza": "fed", "repo_path": "/var/lib/pgbackrest", "tls": TLS,
                          "repo_host": {"address": "127.0.0.1", "tls_port": 18432}}
    data["datacenters"][0]["members"][1]["port"] = 5433
    topo = parse_topology(data, str(TOPOLOGY))
    n1, n2 = topo.dc("dc1").members
    assert n1.port != n2.port
    got = lines(repo_host_config(topo, topo.pgbackrest, hosts(topo)))  # type: ignore[arg-type]
    assert f"pg1-port={n1.port}" in got and f"pg2-port={n2.port}" in got
    own = lines(member_config(topo, topo.pgbackrest, n2, "/data/n2", None))  # type: ignore[arg-type]
    assert f"pg1-port={n2.port}" in own
