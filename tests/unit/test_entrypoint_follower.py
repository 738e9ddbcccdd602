"""The entrypoint follower's pure parts: target choice, the PgBouncer file and reload, topology changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.entrypoint_follower import EntrypointFollower, PgBouncerTarget, Target, build_follower, choose_target
from agent.haproxy_sync import HAProxySync, ReloadFailed, TopologyWatch
from agent.pgbouncer_admin import admin_conninfo
from federation.entrypoints import default_binds
from federation.errors import BadInput, FedError
from federation.lab.layout import LabLayout
from federation.lab.pgbouncer import render_config
from federation.state import FederationState
from federation.topology import Topology, load_topology

TOPOLOGY = Path(__file__).parents[1] / "integration" / "topologies" / "entry-two-dc.yaml"


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load_topology(TOPOLOGY)


def record(epoch: int, primary: str) -> FederationState:
    upstreams = {"dc1": None, "dc2": "dc1"} if primary == "dc1" else {"dc1": "dc2", "dc2": None}
    return FederationState(federation="test-entry", epoch=epoch, primary_dc=primary, upstreams=upstreams)


def target(topo: Topology, dc: str, member: str | None, epoch: int = 1, writable: bool = True) -> Target:
    return Target(epoch, dc, topo.dc(dc).member(member) if member else None, writable, "test")


# ---- target choice


def test_the_target_is_the_patroni_primary_of_the_record_primary_dc(topo: Topology) -> None:
    chosen = choose_target(topo, record(2, "dc2"), {"n3": "replica", "n4": "primary"}, None)
    assert chosen.describe() == "dc2/n4" and chosen.writable and chosen.epoch == 2


def test_before_the_promotion_the_standby_leader_of_the_new_primary_dc_is_chosen_never_the_old_dc(
        topo: Topology) -> None:
    # switchover-dc raised the epoch to dc2 but has not promoted it yet: never keep dc1's member.
    chosen = choose_target(topo, record(2, "dc2"), {"n3": "standby_leader", "n4": "replica"},
                           target(topo, "dc1", "n1"))
    assert chosen.describe() == "dc2/n3" and not chosen.writable and "n3" in chosen.reason
    promoted = choose_target(topo, record(2, "dc2"), {"n3": "primary", "n4": "replica"}, chosen)
    assert promoted.where == chosen.where and promoted.writable  # no re-point once it is promoted


def test_without_a_leader_inside_the_primary_dc_the_old_target_is_kept(topo: Topology) -> None:
    # Demotion in progress, or a Patroni failover inside dc1: the record still names dc1.
    current = target(topo, "dc1", "n1")
    chosen = choose_target(topo, record(1, "dc1"), {"n1": None, "n2": "replica"}, current)
    assert chosen.member == current.member and not chosen.writable


def test_with_no_leader_at_all_it_parks_in_the_primary_dc(topo: Topology) -> None:
    answering = choose_target(topo, record(3, "dc2"), {"n3": None, "n4": "replica"}, target(topo, "dc1", "n1"))
    assert answering.describe() == "dc2/n4" and not answering.writable
    silent = choose_target(topo, record(3, "dc2"), {}, target(topo, "dc1", "n1"))
    assert silent.describe() == "dc2/n3"


def test_a_fenced_dc_that_believes_it_is_primary_is_never_chosen(topo: Topology) -> None:
    # dc2 came back after promote-dc dc1 with its old leader still primary: only dc1's members count,
    # even when a role is reported under a dc2 member's name.
    chosen = choose_target(topo, record(5, "dc1"), {"n3": "primary", "n1": "primary"}, target(topo, "dc2", "n3"))
    assert chosen.describe() == "dc1/n1"
    for roles in ({"n3": "primary"}, {"n3": "primary", "n1": "standby_leader"}):
        assert choose_target(topo, record(5, "dc1"), roles, target(topo, "dc2", "n3")).primary_dc == "dc1"
        assert choose_target(topo, record(5, "dc1"), roles, target(topo, "dc2", "n3")).member in topo.dc("dc1").members


def test_two_primaries_keep_the_current_one_or_park_on_another_member(topo: Topology) -> None:
    roles = {"n1": "primary", "n2": "primary"}
    assert choose_target(topo, record(1, "dc1"), roles, target(topo, "dc1", "n2")).describe() == "dc1/n2"
    assert not choose_target(topo, record(1, "dc1"), roles, None).writable


def test_an_unknown_primary_dc_gives_no_target(topo: Topology) -> None:
    assert choose_target(topo, record(3, "dc9"), {}, target(topo, "dc1", "n1")).member is None


# ---- PgBouncer file and RELOAD


def test_pgbouncer_file_is_written_once_per_target_and_a_failed_reload_is_retried(topo: Topology,
                                                                                 tmp_path: Path) -> None:
    calls: list[tuple[str, str | None]] = []
    fail = [True]

    def reload(admin: str, password: str | None) -> None:
        calls.append((admin, password))
        if fail[0]:
            raise ReloadFailed("PgBouncer down")

    path = tmp_path / "databases.ini"
    part = PgBouncerTarget(path, "host=127.0.0.1 port=7002", ["postgres"], lambda: "secret", reload)
    with pytest.raises(ReloadFailed):
        part.apply(topo, record(2, "dc2"), target(topo, "dc2", "n3", 2))
    assert "postgres = host=127.0.52.11 port=5432" in path.read_text()
    fail[0] = False
    part.retry()
    part.retry()
    part.apply(topo, record(2, "dc2"), target(topo, "dc2", "n3", 2))  # same text: no reload
    assert calls == [("host=127.0.0.1 port=7002", "secret")] * 2
    part.apply(topo, record(3, "dc1"), target(topo, "dc1", "n2", 3))
    assert "postgres = host=127.0.51.12 port=5432" in path.read_text() and len(calls) == 3
    with pytest.raises(FedError):  # a DC the topology does not list: the file stays as it is
        part.apply(topo, record(4, "dc9"), Target(4, "dc9", None, False, "not listed"))
    assert "host=127.0.51.12" in path.read_text() and len(calls) == 3
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_admin_conninfo_adds_the_console_database_and_the_password_only_when_missing() -> None:
    plain = admin_conninfo("host=127.0.0.1 port=7002 user=postgres", "pw")
    assert "dbname=pgbouncer" in plain and "password=pw" in plain
    assert "password=own" in admin_conninfo("host=h password=own", "pw")


def test_the_lab_pgbouncer_listens_on_the_third_port_and_includes_the_follower_file(topo: Topology) -> None:
    layout = LabLayout(topo)
    ini = render_config(layout)
    port = default_binds(topo).pgbouncer.rsplit(":", 1)[1]
    assert f"listen_port = {port}\n" in ini and "auth_type = scram-sha-256\n" in ini
    assert "pool_mode = transaction\n" in ini and "admin_users = postgres\n" in ini
    assert f"%include {layout.root / 'pgbouncer' / 'databases.ini'}\n" in ini


# ---- topology changes -> HAProxy


class FakeReloader:
    def __init__(self) -> None:
        self.checked: list[str] = []
        self.reloads = 0
        self.reject = False

    def check(self, config: Path) -> None:
        self.checked.append(config.read_text())
        if self.reject:
            raise ReloadFailed("haproxy -c rejected it")

    def reload(self) -> None:
        self.reloads += 1


def _render(topo: Topology) -> str:
    return "servers " + " ".join(m.name for _, m in topo.members()) + "\n"


@pytest.fixture()
def follower_setup(tmp_path: Path) -> tuple[EntrypointFollower, FakeReloader, Path, Path]:
    topo_path = tmp_path / "topology.yaml"
    shutil.copyfile(TOPOLOGY, topo_path)
    config = tmp_path / "haproxy.cfg"
    reloader = FakeReloader()
    follower = EntrypointFollower(load_topology(topo_path), TopologyWatch(topo_path),
                                  haproxy=HAProxySync(config, _render, reloader))
    return follower, reloader, topo_path, config


def test_a_changed_topology_rerenders_validates_and_reloads_haproxy_once(
        follower_setup: tuple[EntrypointFollower, FakeReloader, Path, Path]) -> None:
    follower, reloader, topo_path, config = follower_setup
    follower.sync_haproxy()  # at start: the file does not exist yet
    assert config.read_text() == "servers n1 n2 n3 n4\n" and reloader.reloads == 1
    follower.cycle()
    topo_path.write_text(topo_path.read_text())  # rewritten, same content: nothing to do
    follower.cycle()
    assert reloader.reloads == 1
    topo_path.write_text(topo_path.read_text().replace(
        '      - {name: n4, host: 127.0.52.12, port: 5432, api: "127.0.52.12:8008"}\n', ""))
    follower.cycle()
    follower.cycle()
    assert config.read_text() == "servers n1 n2 n3\n" and reloader.reloads == 2
    assert [m.name for _, m in follower.topo.members()] == ["n1", "n2", "n3"]


def test_an_invalid_topology_or_a_rejected_config_keeps_the_old_one(
        follower_setup: tuple[EntrypointFollower, FakeReloader, Path, Path]) -> None:
    follower, reloader, topo_path, config = follower_setup
    follower.sync_haproxy()
    before = follower.topo
    topo_path.write_text(topo_path.read_text().replace("federation: test-entry", "federation: [broken"))
    follower.cycle()
    assert follower.topo is before and reloader.reloads == 1
    reloader.reject = True
    topo_path.write_text(topo_path.read_text().replace("federation: [broken", "federation: test-entry").replace(
        '      - {name: n4, host: 127.0.52.12, port: 5432, api: "127.0.52.12:8008"}\n', ""))
    follower.cycle()  # logged, not raised
    assert config.read_text() == "servers n1 n2 n3 n4\n" and reloader.reloads == 1
    reloader.reject = False
    follower.cycle()  # the failed phase is retried
    assert config.read_text() == "servers n1 n2 n3\n" and reloader.reloads == 2


def test_the_follower_needs_at_least_one_complete_part() -> None:
    with pytest.raises(BadInput):
        build_follower(str(TOPOLOGY))
    with pytest.raises(BadInput):
        build_follower(str(TOPOLOGY), pgbouncer_databases="/tmp/databases.ini")
    with pytest.raises(BadInput):
        build_follower(str(TOPOLOGY), haproxy_config="/tmp/haproxy.cfg")


def test_a_leader_too_busy_to_answer_is_found_by_its_leader_key() -> None:
    """Mid-promotion a leader may miss the REST timeout: park on the leader key's holder, not on the first
    replica that answers."""
    topo = load_topology(TOPOLOGY)
    dc2 = topo.dc("dc2")
    record = FederationState(federation=topo.federation, epoch=1, primary_dc="dc2",
                             upstreams={"dc1": "dc2", "dc2": None})
    roles = {dc2.members[0].name: "replica", dc2.members[1].name: None}
    parked = choose_target(topo, record, roles, None)
    assert parked.parked and parked.member == dc2.members[0]
    found = choose_target(topo, record, roles, None, dcs_leader=dc2.members[1].name)
    assert not found.parked and found.member == dc2.members[1] and "leader key" in found.reason
