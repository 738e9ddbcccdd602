"""`fedctl-gate` against real etcd and ZooKeeper: the exit code Patroni sees for each federation record."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.dcs.etcd3 import EtcdDCS
from federation.dcs.zookeeper import ZooKeeperDCS
from tests.integration.dcs_servers import ServerHandle, free_port, start_etcd, start_zookeeper

GATE = str(Path(sys.executable).parent / "fedctl-gate")
KEY = "/fed/_fedctl/gatetest/state"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    with start_etcd(tmp_path_factory.mktemp("etcd"), "127.0.40.3", free_port("127.0.40.3")) as etcd, \
            start_zookeeper(tmp_path_factory.mktemp("zk"), "127.0.40.4", free_port("127.0.40.4")) as zk:
        yield etcd, zk


def put(server: ServerHandle, kind: str, epoch: int, primary: str) -> None:
    dcs = (EtcdDCS if kind == "etcd3" else ZooKeeperDCS)([(server.host, server.port)], label=kind)
    with dcs:
        dcs.put(KEY, json.dumps({"epoch": epoch, "primary_dc": primary}))


def run_gate(tmp_path: Path, servers: tuple[ServerHandle, ServerHandle], dc: str, fencing: str = "permissive",
             dead_peer: bool = False) -> subprocess.CompletedProcess[str]:
    etcd, zk = servers
    dc1_hosts = ["127.0.40.9:1"] if dead_peer else [f"{etcd.host}:{etcd.port}"]
    config = {"federation": "gatetest", "dc": dc, "fencing": fencing, "initial_primary": "dc1",
              "datacenters": [{"dc": "dc1", "kind": "etcd3", "hosts": dc1_hosts, "key": KEY},
                              {"dc": "dc2", "kind": "zookeeper", "hosts": [f"{zk.host}:{zk.port}"], "key": KEY}]}
    path = tmp_path / "gate.json"
    path.write_text(json.dumps(config))
    return subprocess.run([GATE, str(path)], capture_output=True, text=True, timeout=30)


def test_returning_dc_is_refused_by_a_newer_epoch_in_another_dcs_kind(tmp_path, servers) -> None:  # type: ignore[no-untyped-def]
    etcd, zk = servers
    put(etcd, "etcd3", 1, "dc1")
    put(zk, "zookeeper", 2, "dc2")
    refused = run_gate(tmp_path, servers, "dc1")
    assert refused.returncode == 1 and "epoch 2" in refused.stderr
    allowed = run_gate(tmp_path, servers, "dc2")
    assert allowed.returncode == 0, allowed.stderr


def test_dead_peer_allows_when_permissive_refuses_when_strict(tmp_path, servers) -> None:  # type: ignore[no-untyped-def]
    _etcd, zk = servers
    put(zk, "zookeeper", 5, "dc2")
    assert run_gate(tmp_path, servers, "dc2", dead_peer=True).returncode == 0
    strict = run_gate(tmp_path, servers, "dc2", fencing="strict", dead_peer=True)
    assert strict.returncode == 1 and "strict" in strict.stderr


def test_broken_gate_file_refuses(tmp_path: Path) -> None:
    path = tmp_path / "gate.json"
    path.write_text("{not json")
    done = subprocess.run([GATE, str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "could not decide" in done.stderr
