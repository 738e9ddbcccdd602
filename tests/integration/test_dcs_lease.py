"""Leader leases on real etcd and ZooKeeper servers (127.0.31.90 / 127.0.32.90, this module's own).

Scenarios: exactly one of several candidates holds the key; the holder renews; a holder that stops
renewing (a crash) loses the key within about one TTL and another candidate takes it; a clean release
hands the key over at once; an unreachable DCS raises DCSError.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.dcs.etcd3 import EtcdDCS
from federation.dcs.lease import EtcdLease, LeaderLease, ZooKeeperLease
from federation.errors import DCSError
from tests.integration.dcs_servers import ServerHandle, free_port, start_etcd, start_zookeeper

pytestmark = pytest.mark.integration

ETCD_HOST = "127.0.31.90"
ZK_HOST = "127.0.32.90"
TTL = 4  # the test ZooKeeper runs tickTime=2000, so its shortest session is 4 s


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with start_etcd(tmp_path_factory.mktemp("etcd"), ETCD_HOST, free_port(ETCD_HOST)) as server:
        yield server


@pytest.fixture(scope="module")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with start_zookeeper(tmp_path_factory.mktemp("zk"), ZK_HOST, free_port(ZK_HOST)) as server:
        yield server


def _lease(kind: str, server: ServerHandle, key: str, identity: str) -> LeaderLease:
    hosts = [(server.host, server.port)]
    if kind == "etcd3":
        return EtcdLease(EtcdDCS(hosts, label="dcT"), key, identity, TTL)
    return ZooKeeperLease(hosts, key, identity, TTL, label="dcT")


@pytest.fixture(params=["etcd3", "zookeeper"])
def kind_server(request: pytest.FixtureRequest) -> tuple[str, ServerHandle]:
    return request.param, request.getfixturevalue("etcd_server" if request.param == "etcd3" else "zk_server")


def _key(request: pytest.FixtureRequest) -> str:
    return f"/t/{request.node.name.replace('[', '_').replace(']', '')}/leader"


def test_one_holder_renews_and_a_clean_release_hands_over_at_once(
        kind_server: tuple[str, ServerHandle], request: pytest.FixtureRequest) -> None:
    kind, server = kind_server
    key = _key(request)
    a, b = _lease(kind, server, key, "dc1/a"), _lease(kind, server, key, "dc1/b")
    try:
        assert a.step() is True
        assert b.step() is False
        for _ in range(3):  # renewals past one TTL keep the key
            time.sleep(TTL / 2)
            assert a.step() is True
            assert b.step() is False
        assert a.holder() == "dc1/a" and b.holder() == "dc1/a"
        a.release()
        assert b.step() is True
        assert a.step() is False
        assert a.holder() == "dc1/b"
    finally:
        a.close()
        b.close()


HOLDER_SCRIPT = """
import sys, time
from tests.integration.test_dcs_lease import _lease, ServerHandle
kind, host, port, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
lease = _lease(kind, ServerHandle(kind, host, port, None, None), key, "dc1/crashing")
while True:
    print("held" if lease.step() else "not held", flush=True)
    time.sleep(0.5)
"""


def test_a_holder_that_crashes_loses_the_key_within_the_ttl(
        kind_server: tuple[str, ServerHandle], request: pytest.FixtureRequest) -> None:
    kind, server = kind_server
    key = _key(request)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, kind, server.host, str(server.port), key],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    b = _lease(kind, server, key, "dc1/b")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert b.step() is False
        holder.send_signal(signal.SIGKILL)  # no release, no session close: a crash
        holder.wait(5)
        killed = time.monotonic()
        while not b.step():
            assert time.monotonic() - killed < TTL + 3, "the key outlived its crashed holder by more than the TTL"
            time.sleep(0.2)
        print(f"{kind}: taken over {time.monotonic() - killed:.2f} s after the holder was killed (TTL {TTL} s)")
        assert b.holder() == "dc1/b"
    finally:
        if holder.poll() is None:
            holder.kill()
        b.close()


def test_a_restarted_candidate_takes_its_own_stale_key_over_at_once(
        kind_server: tuple[str, ServerHandle], request: pytest.FixtureRequest) -> None:
    kind, server = kind_server
    key = _key(request)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, kind, server.host, str(server.port), key],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    other = _lease(kind, server, key, "dc1/other")
    again = _lease(kind, server, key, "dc1/crashing")  # the same member's agent, restarted
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGKILL)
        holder.wait(5)
        assert other.step() is False  # someone else's stale key: wait for its TTL
        assert again.step() is True
        assert other.step() is False and other.last_holder == "dc1/crashing"
        assert again.step() is True  # and it renews normally afterwards
    finally:
        if holder.poll() is None:
            holder.kill()
        other.close()
        again.close()


def test_an_unreachable_dcs_raises_dcs_error(kind_server: tuple[str, ServerHandle]) -> None:
    kind, _server = kind_server
    dead = ServerHandle(kind, ETCD_HOST if kind == "etcd3" else ZK_HOST, free_port(ETCD_HOST), None,  # type: ignore[arg-type]
                        None)  # type: ignore[arg-type]
    lease = _lease(kind, dead, "/t/dead/leader", "dc1/a")
    try:
        with pytest.raises(DCSError):
            lease.step()
    finally:
        lease.close()
