"""fedctl's ZooKeeper identity: which znodes get its digest ACL, what the gate's config carries (a reference,
never the password) and how the gate reads it. The lab test (tests/integration/test_secured_lab.py) shows a
real ZooKeeper refusing everyone else."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.dcs.zookeeper import ZooKeeperAuth, private_acl
from federation.errors import BadInput
from federation.gate import gate_config
from federation.gate_core import zookeeper_auth_data
from federation.topology import Topology, load_topology

MIXED = Path(__file__).resolve().parents[1] / "integration" / "topologies" / "mixed.yaml"


@pytest.fixture
def topo() -> Topology:
    return load_topology(MIXED)


def test_only_znodes_below_fedctls_prefix_get_the_private_acl() -> None:
    acl = ZooKeeperAuth("fedctl", "s3cret").acl()
    assert [a.id.scheme for a in acl] == ["digest"] and acl[0].id.id.startswith("fedctl:")
    assert acl[0].perms == 31  # every permission (kazoo's Permissions.ALL)
    prefix = "/service/_fedctl"
    assert private_acl(acl, prefix, "/service/_fedctl") is acl
    assert private_acl(acl, prefix, "/service/_fedctl/fed/state") is acl
    # Patroni's namespace and keys, and a sibling that only shares the prefix's spelling, stay world-open.
    for path in ("/service", "/service/dc2/config", "/service/_fedctlx/a"):
        assert private_acl(acl, prefix, path) is None, path
    assert private_acl(acl, "/", "/fedctl/anything") is acl  # the federation store: all of it is fedctl's
    assert private_acl(None, prefix, "/service/_fedctl/fed/state") is None  # no zookeeper_auth: open


def test_the_identity_never_prints_its_password() -> None:
    auth = ZooKeeperAuth("fedctl", "s3cret")
    assert "s3cret" not in repr(auth) and "s3cret" not in str(auth)


def test_the_zookeeper_dc_gets_the_identity_and_the_etcd_dc_does_not(topo: Topology) -> None:
    assert topo.zookeeper_auth is not None
    zk = next(dc for dc in topo.datacenters if dc.dcs.kind == "zookeeper")
    etcd = next(dc for dc in topo.datacenters if dc.dcs.kind == "etcd3")
    assert etcd.zookeeper_auth is None
    assert zk.fedctl_prefix == f"{zk.dcs.namespace}_fedctl"


def test_the_gate_config_names_where_the_password_is_never_the_password(topo: Topology, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = gate_config(topo, "dc1")
    assert config["zookeeper_auth"] == {"username": "fedctl",
                                        "password": {"file": topo.zookeeper_auth.password.file}}  # type: ignore[union-attr]
    secret = tmp_path / "zk"
    secret.write_text("from-a-file\n")
    assert zookeeper_auth_data({"username": "u", "password": {"file": str(secret)}}) == [("digest", "u:from-a-file")]
    monkeypatch.setenv("FEDCTL_TEST_ZK", "from-the-env")
    assert zookeeper_auth_data({"username": "u", "password": {"env": "FEDCTL_TEST_ZK"}}) == [("digest",
                                                                                              "u:from-the-env")]
    assert zookeeper_auth_data(None) is None


def test_an_inline_zookeeper_password_cannot_reach_the_gate(topo: Topology) -> None:
    from federation.secret_ref import SecretRef

    assert topo.zookeeper_auth is not None
    inline = topo.zookeeper_auth.model_copy(update={"password": SecretRef(value="inline-secret")})
    with pytest.raises(BadInput, match="given inline") as refused:
        gate_config(topo.model_copy(update={"zookeeper_auth": inline}), "dc1")
    assert "inline-secret" not in str(refused.value) and "{file: PATH}" in (refused.value.hint or "")
