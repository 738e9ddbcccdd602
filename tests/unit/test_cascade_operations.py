"""The declared cascade through the operations, on a fake four-DC federation: dc2 streams from dc1, dc3 and dc4
from dc2. Switchovers only turn links around; a promotion with dc2 lost gives dc4 a temporary link; rejoining
dc2 puts the declared link back, moves the slots, and status stops complaining."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml

from federation.cascade import reroot, temporary_links
from federation.operations.lease_fence import LeaseFence
from federation.operations.promote import promote_dc
from federation.operations.rejoin import rejoin_dc
from federation.operations.switchover import switchover_dc
from federation.progress import Progress
from federation.status_problems import cascade_problems
from federation.topology import Topology, load_topology
from tests.unit.fake_federation import FakeFederation
from tests.unit.test_promote_lease import Clock

TOPOLOGIES = Path(__file__).parents[1] / "integration" / "topologies"


def four_dc(tmp_path: Path) -> Topology:
    """three-dc.yaml (dc1 -> dc2 -> dc3) and a dc4 that also cascades from dc2 (members n7, n8)."""
    doc = yaml.safe_load((TOPOLOGIES / "three-dc.yaml").read_text())
    doc["datacenters"].append({
        "name": "dc4", "role": "standby", "upstream": "dc2",
        "dcs": {"etcd3": {"hosts": ["127.0.16.1:2379"]}, "namespace": "/fed/"},
        "members": [{"name": f"n{7 + i}", "host": f"127.0.16.1{1 + i}", "port": 5432, "api": f"127.0.16.1{1 + i}:8008"}
                    for i in range(2)]})
    path = tmp_path / "four-dc.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_topology(path)


def quiet() -> Progress:
    return Progress(out=io.StringIO())


def pointed_at(fed: FakeFederation) -> dict[str, str | None]:
    """Which DC each DC's standby_cluster names (None: it has none)."""
    owner = {m.host: dc.name for dc, m in fed.topo.members()}
    found: dict[str, str | None] = {}
    for name, fake in fed.dcs.items():
        section = fake.config.get("standby_cluster")
        found[name] = owner[section["host"].split(",")[0]] if section else None
    return found


def slots(fed: FakeFederation, dc: str) -> set[str]:
    return set(fed.dcs[dc].config.get("slots") or {})


def assert_roles(fed: FakeFederation, upstreams: dict[str, str | None], live: set[str] | None = None) -> None:
    assert fed.record.upstreams == upstreams
    live = live if live is not None else set(upstreams)
    assert {dc: up for dc, up in pointed_at(fed).items() if dc in live} == {
        dc: up for dc, up in upstreams.items() if dc in live}
    for dc in live:
        assert slots(fed, dc) == {fed.topo.dc(d).slot_name for d, up in upstreams.items() if up == dc}, dc


def promote(fed: FakeFederation, target: str) -> Any:
    clock = Clock()
    lease = LeaseFence(fed, fed.record.primary_dc, ttl=10, force=False, bound=5.0, clock=clock, wall=clock.wall,
                       sleep=clock.sleep)
    return promote_dc(fed.topo, target, Progress(out=io.StringIO(), clock=clock), lease=lease, world=fed, record=fed)


def back_fenced(fed: FakeFederation, dc: str) -> None:
    """The DC returns, fenced by its agent: a standby of nobody."""
    fake = fed.dcs[dc]
    fake.down, fake.primary = False, False
    fake.config["standby_cluster"] = {"host": "127.0.0.1", "port": 1}


def test_switchover_through_every_dc_and_back_keeps_the_declared_links(tmp_path: Path) -> None:
    topo = four_dc(tmp_path)
    fed = FakeFederation(topo)
    declared = dict(fed.record.upstreams)
    for target in ("dc2", "dc3", "dc4", "dc2", "dc1"):
        fed.write(500)
        planned = switchover_dc(topo, target, quiet(), dry_run=True, world=fed, record=fed)
        assert planned.upstreams_after == reroot(topo, target) and planned.temporary_links == []
        report = switchover_dc(topo, target, quiet(), world=fed, record=fed)
        assert report.outcome == "succeeded", target
        assert_roles(fed, reroot(topo, target))
        assert temporary_links(topo, fed.record.upstreams) == []
    assert fed.record.upstreams == declared and fed.violations == []


def test_promote_with_the_middle_dc_lost_gives_a_temporary_link_that_rejoin_takes_back(tmp_path: Path) -> None:
    topo = four_dc(tmp_path)
    fed = FakeFederation(topo)
    fed.write(5000)
    fed.kill("dc1")
    fed.kill("dc2")
    fed.lease_holder = None
    dry = promote_dc(topo, "dc3", quiet(), dry_run=True, lease=_expired(fed), world=fed, record=fed)
    assert dry.temporary_links == [("dc4", "dc3")]
    assert "dc4 ← dc3 (temporary link)" in dry.upstream_lines()
    assert promote(fed, "dc3").outcome == "succeeded"
    after_promote = {"dc1": "dc2", "dc2": "dc3", "dc3": None, "dc4": "dc3"}
    assert_roles(fed, after_promote, live={"dc3", "dc4"})
    problems = cascade_problems(topo, fed.record.upstreams)
    assert problems == ["dc4 streams from dc3 over a temporary link (declared: dc4 ← dc2, dc2 is not back yet): "
                        "`fedctl rejoin-dc dc2` restores it"]

    back_fenced(fed, "dc2")
    dry = rejoin_dc(topo, "dc2", quiet(), dry_run=True, world=fed, record=fed)
    assert dry.upstreams_after == {"dc1": "dc2", "dc2": "dc3", "dc3": None, "dc4": "dc2"}
    assert dry.temporary_links == []
    report = rejoin_dc(topo, "dc2", quiet(), world=fed, record=fed)
    assert report.outcome == "succeeded" and fed.record.operation is None
    declared_shape = reroot(topo, "dc3")
    assert_roles(fed, declared_shape, live={"dc2", "dc3", "dc4"})
    assert slots(fed, "dc3") == {"fed_dc2"}, "dc4's slot left the primary DC"
    assert cascade_problems(topo, fed.record.upstreams) == []
    assert "reshape: restore the declared cascade" in " ".join(report.plan)


def test_rejoin_of_a_dc_whose_declared_upstream_is_the_primary_says_there_is_nothing_to_move(tmp_path: Path) -> None:
    topo = four_dc(tmp_path)
    fed = FakeFederation(topo)
    fed.write(5000)
    fed.kill("dc1")
    fed.lease_holder = None
    assert promote(fed, "dc2").outcome == "succeeded"
    assert temporary_links(topo, fed.record.upstreams) == []
    back_fenced(fed, "dc1")
    out = io.StringIO()
    rejoin_dc(topo, "dc1", Progress(out=out), world=fed, record=fed)
    assert "nothing to move: dc1's declared upstream is the primary DC dc2" in out.getvalue()
    assert_roles(fed, reroot(topo, "dc2"))


def _far_end_promoted() -> tuple[Topology, FakeFederation]:
    """The lab's chain dc1 -> dc2 -> dc3 with dc1 and dc2 lost and dc3 promoted."""
    topo = load_topology(TOPOLOGIES / "three-dc.yaml")
    fed = FakeFederation(topo)
    fed.write(5000)
    fed.kill("dc1")
    fed.kill("dc2")
    fed.lease_holder = None
    assert promote(fed, "dc3").outcome == "succeeded"
    return topo, fed


def test_the_far_end_promoted_with_both_others_lost_comes_back_in_shape_one_rejoin_at_a_time() -> None:
    """dc1 -> dc2 -> dc3 (the lab's chain): promote dc3, rejoin dc1 (dc2 still gone: a temporary dc1 ← dc3),
    then rejoin dc2 (dc2 ← dc3 and dc1 ← dc2 again)."""
    topo, fed = _far_end_promoted()
    assert fed.record.upstreams == {"dc1": "dc2", "dc2": "dc3", "dc3": None}
    back_fenced(fed, "dc1")
    rejoin_dc(topo, "dc1", quiet(), world=fed, record=fed)
    assert_roles(fed, {"dc1": "dc3", "dc2": "dc3", "dc3": None}, live={"dc1", "dc3"})
    assert cascade_problems(topo, fed.record.upstreams) == [
        "dc1 streams from dc3 over a temporary link (declared: dc1 ← dc2, dc2 is not back yet): "
        "`fedctl rejoin-dc dc2` restores it"]
    back_fenced(fed, "dc2")
    rejoin_dc(topo, "dc2", quiet(), world=fed, record=fed)
    assert_roles(fed, reroot(topo, "dc3"))
    assert cascade_problems(topo, fed.record.upstreams) == []


def _expired(fed: FakeFederation) -> LeaseFence:
    clock = Clock()
    return LeaseFence(fed, fed.record.primary_dc, ttl=10, force=False, bound=5.0, clock=clock, wall=clock.wall,
                      sleep=clock.sleep)


def test_a_late_carry_through_of_a_finished_rejoin_starts_no_new_one_and_keeps_the_reshape() -> None:
    """CI, 2026-12-03: dc1's agent carried a rejoin of dc1 through again on a look taken while the last one still
    ran; with no rejoin pending any more it started a new one, whose point step wrote dc1 <- dc3 back over the
    reshape of dc2's rejoin. A carry-through (only_pending) of a rejoin that is no longer pending does nothing."""
    topo, fed = _far_end_promoted()
    back_fenced(fed, "dc1")
    rejoin_dc(topo, "dc1", quiet(), world=fed, record=fed)
    back_fenced(fed, "dc2")
    rejoin_dc(topo, "dc2", quiet(), world=fed, record=fed)
    shaped = reroot(topo, "dc3")
    assert fed.record.upstreams == shaped and fed.record.operation is None
    late = rejoin_dc(topo, "dc1", quiet(), world=fed, record=fed, only_pending=True)
    assert late.outcome == "not pending"
    assert fed.record.upstreams == shaped and fed.record.operation is None
    assert_roles(fed, shaped)
