"""The etcd and ZooKeeper adapters against real servers started on 127.0.40.x for this module.

Every scenario runs on both backends: the DCS interface promises the same behaviour, so one test
body checks both. Compare-and-set races use real threads against the real server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.dcs.base import DCS
from federation.dcs.etcd3 import EtcdDCS
from federation.dcs.patroni_keys import read_cluster
from federation.dcs.zookeeper import ZooKeeperDCS
from federation.errors import DCSError
from tests.integration.dcs_servers import ServerHandle, free_port, start_etcd, start_zookeeper

pytestmark = pytest.mark.integration

ETCD_HOST = "127.0.40.1"
ZK_HOST = "127.0.40.2"
DEAD_HOST = "127.0.40.9"


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with start_etcd(tmp_path_factory.mktemp("etcd"), ETCD_HOST, free_port(ETCD_HOST)) as server:
        yield server


@pytest.fixture(scope="module")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with start_zookeeper(tmp_path_factory.mktemp("zk"), ZK_HOST, free_port(ZK_HOST)) as server:
        yield server


def _open(kind: str, server: ServerHandle) -> DCS:
    if kind == "etcd3":
        return EtcdDCS([(server.host, server.port)], label="dcT")
    return ZooKeeperDCS([(server.host, server.port)], label="dcT")


@pytest.fixture(params=["etcd3", "zookeeper"])
def dcs(request: pytest.FixtureRequest) -> Iterator[DCS]:
    server = request.getfixturevalue("etcd_server" if request.param == "etcd3" else "zk_server")
    with _open(request.param, server) as opened:
        yield opened


@pytest.fixture
def base(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to the test, so tests sharing one server do not see each other's keys."""
    return f"/t/{request.node.name.replace('[', '_').replace(']', '')}/"


def test_a_missing_key_reads_as_none(dcs: DCS, base: str) -> None:
    assert dcs.get(base + "absent") is None
    assert dcs.get_prefix(base) == {}


def test_create_writes_only_when_the_key_is_absent(dcs: DCS, base: str) -> None:
    assert dcs.create(base + "k", "first") is True
    assert dcs.create(base + "k", "second") is False
    got = dcs.get(base + "k")
    assert got is not None and got.value == "first" and got.key == base + "k"


def test_replace_succeeds_only_at_the_version_read(dcs: DCS, base: str) -> None:
    dcs.create(base + "k", "v1")
    read = dcs.get(base + "k")
    assert read is not None
    assert dcs.replace(base + "k", "v2", read.version) is True
    assert dcs.replace(base + "k", "v3", read.version) is False, "a stale version must lose"
    now = dcs.get(base + "k")
    assert now is not None and now.value == "v2" and now.version != read.version
    assert dcs.replace(base + "never-created", "x", read.version) is False


def test_put_overwrites_and_bumps_the_version(dcs: DCS, base: str) -> None:
    dcs.put(base + "deep/er/k", "one")
    first = dcs.get(base + "deep/er/k")
    dcs.put(base + "deep/er/k", "two")
    second = dcs.get(base + "deep/er/k")
    assert first is not None and second is not None
    assert second.value == "two" and second.version != first.version


def test_delete_honours_the_version(dcs: DCS, base: str) -> None:
    dcs.create(base + "k", "v")
    read = dcs.get(base + "k")
    assert read is not None
    dcs.put(base + "k", "moved on")
    assert dcs.delete(base + "k", read.version) is False
    assert dcs.get(base + "k") is not None
    current = dcs.get(base + "k")
    assert current is not None and dcs.delete(base + "k", current.version) is True
    assert dcs.get(base + "k") is None
    assert dcs.delete(base + "k") is False


def test_get_prefix_is_recursive_and_respects_the_boundary(dcs: DCS, base: str) -> None:
    dcs.put(base + "c1/leader", "n1")
    dcs.put(base + "c1/members/n1", "{}")
    dcs.put(base + "c1/members/n2", "{}")
    dcs.put(base + "c10/leader", "other cluster")
    found = dcs.get_prefix(base + "c1/")
    assert sorted(found) == [base + "c1/leader", base + "c1/members/n1", base + "c1/members/n2"]
    assert found[base + "c1/leader"].value == "n1"
    assert sorted(dcs.get_prefix(base + "c1/mem")) == [base + "c1/members/n1", base + "c1/members/n2"]


def test_non_ascii_values_round_trip(dcs: DCS, base: str) -> None:
    dcs.put(base + "k", '{"note": "réplica ✓"}')
    got = dcs.get(base + "k")
    assert got is not None and json.loads(got.value) == {"note": "réplica ✓"}


@pytest.mark.parametrize("kind", ["etcd3", "zookeeper"])
def test_two_writers_racing_to_create_exactly_one_wins(kind: str, request: pytest.FixtureRequest,
                                                       base: str) -> None:
    server = request.getfixturevalue("etcd_server" if kind == "etcd3" else "zk_server")
    writers = 8
    for round_no in range(10):
        key = f"{base}race-{round_no}"
        barrier = threading.Barrier(writers)
        results: dict[int, bool] = {}

        def write(i: int, key: str = key, barrier: threading.Barrier = barrier,
                  results: dict[int, bool] = results) -> None:
            with _open(kind, server) as own:  # one connection per writer, as with two operators
                barrier.wait()
                results[i] = own.create(key, f"writer-{i}")

        threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        winners = [i for i, won in results.items() if won]
        assert len(results) == writers
        assert len(winners) == 1, f"round {round_no}: winners {winners}"
        with _open(kind, server) as check:
            stored = check.get(key)
        assert stored is not None and stored.value == f"writer-{winners[0]}"


@pytest.mark.parametrize("kind", ["etcd3", "zookeeper"])
def test_two_writers_racing_to_replace_exactly_one_wins(kind: str, request: pytest.FixtureRequest,
                                                        base: str) -> None:
    server = request.getfixturevalue("etcd_server" if kind == "etcd3" else "zk_server")
    key = base + "epoch"
    with _open(kind, server) as setup:
        setup.create(key, "0")
    for round_no in range(10):
        with _open(kind, server) as reader:
            read = reader.get(key)
        assert read is not None
        barrier = threading.Barrier(2)
        results: dict[str, bool] = {}

        def write(name: str, version: int = read.version, barrier: threading.Barrier = barrier,
                  results: dict[str, bool] = results, value: str = f"{round_no + 1} by ") -> None:
            with _open(kind, server) as own:
                barrier.wait()
                results[name] = own.replace(key, value + name, version)

        threads = [threading.Thread(target=write, args=(name,)) for name in ("alice", "bob")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results.values()) == [False, True], f"round {round_no}: {results}"
        winner = next(name for name, won in results.items() if won)
        with _open(kind, server) as check:
            stored = check.get(key)
        assert stored is not None and stored.value == f"{round_no + 1} by {winner}"


def test_read_cluster_parses_patroni_keys_written_to_a_real_dcs(dcs: DCS, base: str) -> None:
    from federation.topology import Datacenter

    dc = Datacenter.model_validate({
        "name": "dct", "role": "primary", "scope": "c1", "dcs": {"etcd3": {"hosts": ["127.0.40.1:1"]},
                                                                  "namespace": base},
        "members": [{"name": "n1", "host": "127.0.40.11", "api": "127.0.40.11:8008"}]})
    dcs.put(base + "c1/leader", "n1")
    dcs.put(base + "c1/config", json.dumps({"ttl": 20, "standby_cluster": {"host": "10.0.0.1", "port": 5432}}))
    dcs.put(base + "c1/members/n1", json.dumps({"role": "standby_leader", "state": "running",
                                                 "conn_url": "postgres://127.0.40.11:5432/postgres",
                                                 "xlog_location": 50331808, "timeline": 3}))
    dcs.put(base + "c1/members/n2", "{not json")
    dcs.put(base + "c1/history", json.dumps([[1, 50331808, "no recovery target specified", "2025-01-01"]]))
    view = read_cluster(dcs, dc)
    assert view.leader == "n1"
    assert view.standby_cluster == {"host": "10.0.0.1", "port": 5432}
    assert view.members["n1"].role == "standby_leader" and view.members["n1"].xlog_location == 50331808
    assert view.members["n1"].host == "127.0.40.11" and view.members["n1"].port == 5432
    assert view.members["n2"].role is None, "bad JSON reads as an empty member, not an error"
    assert [(h.timeline, h.lsn) for h in view.history] == [(1, 50331808)]


def test_unreachable_etcd_fails_fast_with_a_clear_error() -> None:
    dead = [(DEAD_HOST, free_port(DEAD_HOST)), (DEAD_HOST, free_port(DEAD_HOST))]
    started = time.monotonic()
    with pytest.raises(DCSError) as raised, EtcdDCS(dead, label="dc9") as dcs:
        dcs.get_prefix("/fed/dc9/")
    assert time.monotonic() - started < 1.0
    message = str(raised.value)
    assert message.startswith(f"etcd at {dead[0][0]}:{dead[0][1]}, ") and "(dc9) is unreachable" in message
    assert "connection refused" in message and "hint:" in message


def test_unreachable_zookeeper_fails_fast_with_a_clear_error() -> None:
    started = time.monotonic()
    with pytest.raises(DCSError, match=r"ZooKeeper at 127\.0\.40\.9:\d+ \(dc9\) is unreachable"):
        ZooKeeperDCS([(DEAD_HOST, free_port(DEAD_HOST))], label="dc9")
    assert time.monotonic() - started < 1.0


def test_etcd_falls_over_to_a_host_that_answers(etcd_server: ServerHandle, base: str) -> None:
    hosts = [(DEAD_HOST, free_port(DEAD_HOST)), (etcd_server.host, etcd_server.port)]
    with EtcdDCS(hosts, label="dcT") as dcs:
        dcs.put(base + "k", "v")
        got = dcs.get(base + "k")
    assert got is not None and got.value == "v"


def test_a_dcs_that_dies_mid_session_raises_dcs_error(tmp_path: Path) -> None:
    etcd = start_etcd(tmp_path / "etcd", ETCD_HOST, free_port(ETCD_HOST))
    zk = start_zookeeper(tmp_path / "zk", ZK_HOST, free_port(ZK_HOST))
    try:
        with EtcdDCS([(etcd.host, etcd.port)], label="dcE") as e_dcs, \
                ZooKeeperDCS([(zk.host, zk.port)], label="dcZ") as z_dcs:
            e_dcs.put("/x/k", "v")
            z_dcs.put("/x/k", "v")
            etcd.kill()
            zk.kill()
            for dcs in (e_dcs, z_dcs):
                started = time.monotonic()
                with pytest.raises(DCSError, match=r"\((dcE|dcZ)\)"):
                    dcs.get("/x/k")
                assert time.monotonic() - started < 4.0
    finally:
        etcd.stop()
        zk.stop()
