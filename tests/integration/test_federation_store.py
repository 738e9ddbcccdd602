"""The federation store on a real 3-member etcd cluster (127.0.9.1-3, ports 239xx) and a real ZooKeeper.

Scenarios: of two operators committing on the same base exactly one wins; with 2 of 3 members stopped a
commit is refused with the quorum error within the deadline and writes nothing; the primary-DC lease
expires one TTL after its last renewal and a revocation ends it at once; the lease and a promotion's
commit exclude each other. No lab is started: the DCs' own DCS addresses point at nothing, so the
record's per-DC copies are simply not written (they are caches).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation import state
from federation.errors import OperationRefused
from federation.store import DEFAULT_DEADLINE, FederationStore, NoQuorum
from federation.store_config import StoreConfig
from federation.topology import Topology, parse_topology
from tests.integration.dcs_servers import (
    EtcdCluster,
    ServerHandle,
    start_etcd_cluster,
    start_zookeeper,
    start_zookeeper_ensemble,
)

pytestmark = pytest.mark.integration

HOSTS = ["127.0.9.1", "127.0.9.2", "127.0.9.3"]
SITES = ["dc1", "dc2", "witness"]
TTL = 4  # ZooKeeper's shortest session with tickTime=2000
REPO = Path(__file__).resolve().parents[2]


def store_section(kind: str, addresses: list[str]) -> dict[str, Any]:
    return {kind: {"hosts": [{"address": a, "site": s} for a, s in zip(addresses, SITES, strict=False)]},
            "lease_ttl": TTL, "fencing_margin": 1}


def plain_lab_topology() -> dict[str, Any]:
    """The lab's two-DC topology without its client TLS: the store servers these tests start speak plain
    etcd and ZooKeeper (TLS and auth towards a store are the secured lab's tests)."""
    data = yaml.safe_load((REPO / "topologies" / "lab-two-dc.yaml").read_text())
    for section in ("etcd_tls", "zookeeper_auth"):
        data.pop(section, None)
    return dict(data)


def topology(section: dict[str, Any]) -> Topology:
    """The lab's two-DC topology with this store, and DC DCS addresses where nothing listens."""
    data = plain_lab_topology()
    for i, dc in enumerate(data["datacenters"]):
        dc["dcs"] = {"etcd3": {"hosts": [f"127.0.9.{21 + i}:23980"]}, "namespace": "/fed/"}
    return parse_topology({**data, "federation_store": section}, "store-test")


def until(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:g} s")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with start_etcd_cluster(tmp_path_factory.mktemp("store"), HOSTS, 23901, 23902) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with start_zookeeper(tmp_path_factory.mktemp("zkstore"), "127.0.9.4", 23960) as server:
        yield server


@pytest.fixture(params=["etcd3", "zookeeper"])
def section(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "etcd3":
        cluster: EtcdCluster = request.getfixturevalue("etcd")
        return store_section("etcd3", cluster.addresses)
    server: ServerHandle = request.getfixturevalue("zookeeper")
    return store_section("zookeeper", [server.address])


def fresh_store(section: dict[str, Any], request: pytest.FixtureRequest) -> tuple[FederationStore, Topology]:
    """A store with a namespace of this test's own, initialised with the topology's epoch-0 record."""
    name = request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
    topo = topology({**section, "namespace": f"/t_{name}/"})
    assert topo.federation_store is not None
    store = FederationStore(topo.federation_store, topo.federation)
    assert store.commit_record(state.initial_state(topo).model_dump_json(), None)
    return store, topo


@pytest.mark.timeout(60)
def test_of_two_operators_committing_on_the_same_base_exactly_one_wins(
        section: dict[str, Any], request: pytest.FixtureRequest) -> None:
    _store, topo = fresh_store(section, request)
    base, copies = state.current_state(topo)
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def operator(target: str) -> None:
        new = base.model_copy(update={"epoch": base.epoch + 1, "primary_dc": target})
        barrier.wait()
        try:
            state.commit(topo, base, new, copies)
            outcomes[target] = "won"
        except OperationRefused as exc:
            outcomes[target] = exc.message

    threads = [threading.Thread(target=operator, args=(dc,)) for dc in ("dc1", "dc2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [dc for dc, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1, outcomes
    loser = next(dc for dc in outcomes if dc not in winners)
    assert "another operator committed first" in outcomes[loser]
    record, _ = state.current_state(topo)
    assert (record.epoch, record.primary_dc) == (1, winners[0])


@pytest.mark.timeout(60)
def test_a_commit_knows_the_version_it_left_so_the_next_one_needs_no_read(
        section: dict[str, Any], request: pytest.FixtureRequest) -> None:
    """etcd's txn revision and ZooKeeper's multi stat are the version the record then holds: the next commit
    of the same operation compares against it, and loses when anyone wrote in between."""
    store, topo = fresh_store(section, request)
    first = store.last_committed
    read = store.read_record()
    assert first is not None and read is not None and (first.value, first.version) == (read.value, read.version)
    base = state.FederationState.model_validate_json(first.value)
    one = base.model_copy(update={"epoch": 1})
    state.commit(topo, base, one, [], refresh_copies=False, store=store)
    mine = store.last_committed
    assert mine is not None and mine.version != first.version
    two = one.model_copy(update={"epoch": 2})
    state.commit(topo, one, two, [], refresh_copies=False, store=store)  # on the version the last commit left
    assert state.current_state(topo)[0] == two
    other = FederationStore(topo.federation_store, topo.federation)  # another operator
    raced = two.model_copy(update={"epoch": 3, "primary_dc": "dc2"})
    assert other.commit_record(raced.model_dump_json(), other.read_record().version)  # type: ignore[union-attr]
    with pytest.raises(OperationRefused, match=r"another operator committed first.*epoch 3 \(primary DC dc2"):
        state.commit(topo, two, two.model_copy(update={"epoch": 3}), [], refresh_copies=False, store=store)
    assert state.current_state(topo)[0] == raced


@pytest.mark.timeout(90)
def test_without_a_majority_a_commit_is_refused_within_the_deadline_and_writes_nothing(
        tmp_path: Path) -> None:
    with start_etcd_cluster(tmp_path, HOSTS, 23911, 23912) as cluster:
        topo = topology(store_section("etcd3", cluster.addresses))
        assert topo.federation_store is not None
        store = FederationStore(topo.federation_store, topo.federation)
        assert store.commit_record(state.initial_state(topo).model_dump_json(), None)
        base, copies = state.current_state(topo)
        new = base.model_copy(update={"epoch": 1, "primary_dc": "dc2"})

        cluster.stop_member(2)  # one member down: the majority still commits
        other = base.model_copy(update={"history": []})
        assert state.commit(topo, base, other, copies) == []  # the DCs' copies point at nothing
        base = other

        cluster.stop_member(1)
        # The survivor follows its lost leader for about 1.8 s (a request then ends at the deadline, outcome
        # unknown); once it knows it has none, the store refuses at once.
        until("the survivor to know it has no leader", lambda: not store.quorum().has_majority, 15)
        started = time.monotonic()
        with pytest.raises(NoQuorum) as caught:
            state.commit(topo, base, new, copies)
        took = time.monotonic() - started
        assert took < DEFAULT_DEADLINE
        assert "the federation store has no quorum from here: 0 of 3 members answer" in caught.value.message
        assert "has no leader" in caught.value.message
        assert caught.value.hint and "nothing was changed" in caught.value.hint
        with pytest.raises(NoQuorum):
            state.current_state(topo)
        lease = store.primary_lease("dc1", "dc1/n1")
        with pytest.raises(NoQuorum):
            lease.take(1)

        cluster.restart_member(1)
        cluster.restart_member(2)
        until("the store serves again", lambda: store.quorum().has_majority, 30)
        record, _ = state.current_state(topo)
        assert record == base  # the refused commit left nothing behind


@pytest.mark.timeout(90)
def test_frozen_members_count_as_cut_off_and_a_hanging_store_still_answers_within_the_deadline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGSTOP makes a member accept TCP and then say nothing, like a member behind a cut."""
    import signal

    from federation import store as store_module
    from federation.store import StoreError
    from federation.store_quorum import MemberProbe, QuorumView

    with start_etcd_cluster(tmp_path, HOSTS, 23921, 23922) as cluster:
        topo = topology(store_section("etcd3", cluster.addresses))
        assert topo.federation_store is not None
        store = FederationStore(topo.federation_store, topo.federation)
        assert store.commit_record(state.initial_state(topo).model_dump_json(), None)
        found = store.read_record()
        assert found is not None
        frozen = [cluster.members[1], cluster.members[2]]
        for member in frozen:
            member.process.send_signal(signal.SIGSTOP)
        try:
            until("the survivor to know it has no leader", lambda: not store.quorum().has_majority, 15)
            started = time.monotonic()
            with pytest.raises(NoQuorum, match="0 of 3 members answer") as caught:
                store.commit_record('{"x": 1}', found.version)
            assert "no answer within 0.5 s" in caught.value.message
            assert time.monotonic() - started < 1.5
            # The first seconds after a cut, the survivor still believes in its leader: pretend the probe
            # passed, and the request itself must still end at the deadline (etcd alone takes ~7 s).
            monkeypatch.setattr(store_module.FederationStore, "quorum", lambda self: QuorumView(
                tuple(MemberProbe(h, True, "serving") for h in self.config.hosts)))
            started = time.monotonic()
            with pytest.raises(StoreError, match="did not confirm") as unknown:
                store.commit_record('{"x": 2}', found.version)
            took = time.monotonic() - started
            assert took < DEFAULT_DEADLINE + 0.5, f"took {took:.2f} s"
            assert unknown.value.hint and "outcome is unknown" in unknown.value.hint
            monkeypatch.undo()
        finally:
            for member in frozen:
                member.process.send_signal(signal.SIGCONT)
        until("the store serves again", lambda: store.quorum().has_majority, 30)
        # Unknown means unknown: the proposal waited in a socket buffer and may be applied after the thaw.
        after = store.read_record()
        assert after is not None and after.value in (found.value, '{"x": 2}')
        print(f"after the thaw the record is {after.value!r}")


HOLDER_SCRIPT = """
import json, sys, time
from federation.store import FederationStore
from federation.store_config import StoreConfig
config = StoreConfig.model_validate(json.loads(sys.argv[1]))
store = FederationStore(config, sys.argv[2])
lease = store.primary_lease("dc1", "dc1/frozen")
assert lease.take(store.read_record().version) is not None
print("held", flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.timeout(60)
def test_a_frozen_holders_lease_expires_one_ttl_after_it_stopped(
        section: dict[str, Any], request: pytest.FixtureRequest) -> None:
    """SIGSTOP: the agent hangs (on ZooKeeper this also stops kazoo's session pings, which renew too)."""
    import json
    import signal
    import subprocess
    import sys

    store, topo = fresh_store(section, request)
    assert topo.federation_store is not None
    config = topo.federation_store.model_dump_json()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, config, topo.federation],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert store.read_lease().holder == "dc1"
        holder.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        until("the frozen holder's lease expires", lambda: not store.read_lease().held, TTL + 6, 0.1)
        expired_after = time.monotonic() - stopped
        print(f"{next(iter(section))}: lease gone {expired_after:.2f} s after its holder froze (TTL {TTL} s)")
        assert TTL - 1 <= expired_after <= TTL + 4
        assert json.loads(config)["lease_ttl"] == TTL
    finally:
        holder.kill()
        holder.wait(5)


@pytest.mark.timeout(120)
def test_zookeeper_without_a_majority_refuses_within_the_deadline_and_writes_nothing(tmp_path: Path) -> None:
    with start_zookeeper_ensemble(tmp_path, ["127.0.9.5", "127.0.9.6", "127.0.9.7"], 23931, 23932, 23933) as zk:
        topo = topology(store_section("zookeeper", zk.addresses))
        assert topo.federation_store is not None
        store = FederationStore(topo.federation_store, topo.federation)
        assert store.commit_record(state.initial_state(topo).model_dump_json(), None)
        base, copies = state.current_state(topo)
        zk.stop_member(1)
        zk.stop_member(2)
        # The survivor says "not currently serving" once it notices its quorum is gone (about a tick).
        until("the survivor stops serving", lambda: not zk.serving(0), 15)
        started = time.monotonic()
        with pytest.raises(NoQuorum, match="0 of 3 members answer") as caught:
            state.commit(topo, base, base.model_copy(update={"epoch": 1, "primary_dc": "dc2"}), copies)
        assert time.monotonic() - started < DEFAULT_DEADLINE
        assert "not serving" in caught.value.message
        zk.restart_member(1)
        until("the ensemble serves again", lambda: store.quorum().has_majority, 60, 0.2)
        assert state.current_state(topo)[0] == base


@pytest.mark.timeout(60)
def test_a_lease_lives_while_renewed_expires_one_ttl_after_the_last_renewal_and_revoke_ends_it_at_once(
        etcd: EtcdCluster, request: pytest.FixtureRequest) -> None:
    """etcd only: a ZooKeeper lease is renewed by kazoo's session pings too (see the frozen-holder test)."""
    store, _topo = fresh_store(store_section("etcd3", etcd.addresses), request)
    found = store.read_record()
    assert found is not None
    lease = store.primary_lease("dc1", "dc1/n1")
    try:
        assert lease.take(found.version) is not None
        assert store.read_lease().holder == "dc1"
        for _ in range(3):  # renewed for longer than one TTL: still held
            time.sleep(TTL / 2)
            assert lease.renew() is not None
        assert store.read_lease().holder == "dc1"

        last_renewal = time.monotonic()
        gone = until("the unrenewed lease expires", lambda: not store.read_lease().held, TTL + 6, 0.1)
        expired_after = time.monotonic() - last_renewal
        assert TTL - 0.5 <= expired_after <= TTL + 4, f"expired {expired_after:.2f} s after the last renewal"
        assert gone > 0
        assert lease.renew() is None

        found = store.read_record()
        assert found is not None
        assert lease.take(found.version) is not None
        view = store.read_lease()
        assert view.held
        started = time.monotonic()
        assert store.revoke_lease(view)
        assert not store.read_lease().held
        assert time.monotonic() - started < 1.0
        assert lease.renew() is None
    finally:
        lease.close()


@pytest.mark.timeout(60)
def test_the_lease_and_a_promotion_exclude_each_other(section: dict[str, Any], request: pytest.FixtureRequest) -> None:
    store, topo = fresh_store(section, request)
    base, copies = state.current_state(topo)
    found = store.read_record()
    assert found is not None
    dc1, successor, dc2, dc1_again = (store.primary_lease(dc, agent) for dc, agent in [
        ("dc1", "dc1/n1"), ("dc1", "dc1/n2"), ("dc2", "dc2/n3"), ("dc1", "dc1/n1")])
    try:
        assert dc1.take(found.version) is not None
        # Another agent of dc1 takes over the key its predecessor left, at once; dc2 cannot take it.
        assert successor.take(found.version) is not None
        assert dc2.take(found.version) is None

        promoted = base.model_copy(update={"epoch": 1, "primary_dc": "dc2"})
        with pytest.raises(OperationRefused, match="lease was taken meanwhile"):
            state.commit(topo, base, promoted, copies, lease_absent=True)
        seen = store.read_lease()
        state.commit(topo, base, promoted, copies, revoke=seen)  # promote-dc --force: one commit
        assert not store.read_lease().held
        # dc1 read the record before the promotion: it cannot take the lease back on that version.
        assert dc1_again.take(found.version) is None
        assert state.current_state(topo)[0].primary_dc == "dc2"
    finally:
        for lease in (dc1, successor, dc2, dc1_again):
            lease.close()


@pytest.mark.timeout(30)
def test_store_status_and_init_cli_on_an_empty_store(etcd: EtcdCluster, tmp_path: Path) -> None:
    from click.testing import CliRunner

    import federation.cli  # noqa: F401
    from federation.cli.app import cli

    topo_data = plain_lab_topology()
    for i, dc in enumerate(topo_data["datacenters"]):
        dc["dcs"] = {"etcd3": {"hosts": [f"127.0.9.{21 + i}:23980"]}, "namespace": "/fed/"}
    topo_data["federation_store"] = {**store_section("etcd3", etcd.addresses), "namespace": "/t_cli/"}
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(topo_data))
    runner = CliRunner()
    status = runner.invoke(cli, ["store", "status", "-t", str(path)])
    assert status.exit_code == 0, status.output
    assert "3 of 3 members serve" in status.stdout and "none (run fedctl store init)" in status.stdout
    refused = runner.invoke(cli, ["store", "init", "-t", str(path)])
    assert refused.exit_code == 1 and "cannot read the record's copy in dc1, dc2" in refused.stderr
    done = runner.invoke(cli, ["store", "init", "-t", str(path), "--allow-unreachable"])
    assert done.exit_code == 0, done.output
    assert "now holds epoch 0 (primary DC dc1)" in done.stdout
    again = runner.invoke(cli, ["store", "init", "-t", str(path), "--allow-unreachable"])
    assert again.exit_code == 1 and "runs once" in again.stderr


def test_config_margin_and_ttl_reach_the_store() -> None:
    config = StoreConfig.model_validate(store_section("etcd3", ["127.0.9.1:23901"]))
    assert (config.lease_ttl, config.fencing_margin) == (TTL, 1)
