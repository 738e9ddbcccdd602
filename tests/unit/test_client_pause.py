"""A planned switchover pauses the PgBouncers that follow the federation: when the record says so, how
PAUSE/RESUME are sent, the bound on a pause, and how long switchover-dc waits for the followers."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent import client_pause
from agent.client_pause import MAX_PAUSE, PgBouncerPause, pausing_switchover
from federation.dcs.base import Versioned
from federation.errors import FedError
from federation.follower_registry import PAUSED, PAUSING, FollowerReport, fresh, read_all, write
from federation.operations import switchover as switchover_module
from federation.operations.journal import new_operation
from federation.operations.switchover import switchover_dc
from federation.progress import Progress
from federation.state import FederationState
from federation.topology import Topology, load_topology
from tests.unit.fake_federation import FakeFederation

TOPOLOGY = Path(__file__).resolve().parents[1] / "integration" / "topologies" / "two-dc.yaml"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def topo() -> Topology:
    return load_topology(TOPOLOGY)


def with_switchover(record: FederationState, step: str, **changes: object) -> FederationState:
    op = new_operation("switchover", "dc1", "dc2", ["prepare", "pause-clients", "demote"]).model_copy(
        update={"step": step, **changes})
    return record.model_copy(update={"operation": op})


def test_clients_are_held_from_the_announced_step_until_the_epoch_names_the_new_primary(topo: Topology) -> None:
    base = FakeFederation(topo).record
    assert pausing_switchover(base) is None
    assert pausing_switchover(with_switchover(base, "prepare")) is None  # not announced yet
    held = with_switchover(base, "pause-clients")
    assert held.operation is not None and pausing_switchover(held) == held.operation.id
    moved = held.model_copy(update={"epoch": base.epoch + 1, "primary_dc": "dc2"})
    assert pausing_switchover(moved) is None  # the copies now name dc2: resume once it is writable
    assert pausing_switchover(with_switchover(base, "pause-clients", rollback=True)) is None
    assert pausing_switchover(with_switchover(base, "pause-clients", kind="promote")) is None


class Console:
    """PgBouncer's admin console: PAUSE blocks until `finish` (running transactions end)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.finish = threading.Event()
        self.active = 2

    def __call__(self, admin: str, command: str, password: str | None) -> list[dict[str, str | None]]:
        self.sent.append(command)
        if command == "PAUSE" and not self.finish.wait(10):
            raise FedError("PAUSE cancelled")
        if command == "RESUME":
            self.finish.set()
        if command == "SHOW POOLS":
            return [{"database": "app", "user": "u", "sv_active": str(self.active)},
                    {"database": "pgbouncer", "user": "pgbouncer", "sv_active": "0"}]
        return []


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pause_reports_what_it_waits_for_then_paused_then_resumes_once() -> None:
    console, clock = Console(), Clock()
    pause = PgBouncerPause("host=x", lambda: None, command=console, clock=clock)
    pause.pause("op1")
    state, detail = pause.state()
    assert state == PAUSING and "2 running transaction(s)" in detail
    console.finish.set()
    pause._done.wait(5)
    clock.now += 1.5
    assert pause.state() == (PAUSED, "for 1.5 s")
    pause.resume("done")
    assert console.sent.count("PAUSE") == 1 and console.sent[-1] == "RESUME" and pause.operation is None
    pause.pause("op1")  # the same switchover again (a rerun, or a copy not yet moved on): not paused again
    assert console.sent.count("PAUSE") == 1 and pause.state()[0] == "following"


def test_a_pause_never_outlives_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    console, clock = Console(), Clock()
    pause = PgBouncerPause("host=x", lambda: None, command=console, clock=clock)
    pause.pause("op1")
    assert not pause.overdue
    clock.now += MAX_PAUSE + 0.1
    assert pause.overdue
    pause.resume("bound")  # RESUME also cancels a PAUSE still waiting for a long transaction
    assert pause.operation is None and "RESUME" in console.sent


class MemoryStore:
    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def put_key(self, suffix: str, value: str) -> None:
        self.keys[suffix] = value

    def read_keys(self, suffix: str) -> dict[str, Versioned]:
        return {k: Versioned(k, v, 1) for k, v in self.keys.items() if k.startswith(suffix)}

    def delete_key(self, suffix: str) -> None:
        self.keys.pop(suffix, None)


def test_reports_round_trip_and_stale_ones_are_not_waited_for() -> None:
    store = MemoryStore()
    now = datetime.now(UTC)
    write(store, FollowerReport("a", PAUSED, now.isoformat(), "op1", "h:1"))
    write(store, FollowerReport("b", PAUSING, (now - timedelta(minutes=5)).isoformat(), "op1", "h:2"))
    store.keys["followers/garbage"] = "{not json"
    reports = read_all(store)
    assert [r.id for r in reports] == ["a", "b"]
    assert [r.id for r in fresh(reports, now)] == ["a"] and reports[0].paused_for("op1")


def followers(states: dict[str, Callable[[FederationState], str]]) -> Callable[[FakeFederation], list[FollowerReport]]:
    """Fake followers: each reports the state its function gives for the record as it is now."""
    def reports(fed: FakeFederation) -> list[FollowerReport]:
        op = fed.record.operation
        now = datetime.now(UTC).isoformat()
        return [FollowerReport(name, state(fed.record), now, op.id if op else None) for name, state in states.items()]
    return reports


def paused_once_announced(record: FederationState) -> str:
    return PAUSED if record.operation is not None and record.operation.step == "pause-clients" else "following"


def test_switchover_waits_for_every_live_follower_to_pause_before_demoting(topo: Topology) -> None:
    fed = FakeFederation(topo)
    fed.followers = followers({"f1": paused_once_announced, "f2": paused_once_announced})
    out = io.StringIO()
    report = switchover_dc(topo, "dc2", Progress(out=out), world=fed, record=fed)
    assert report.outcome == "succeeded"
    assert "2 PgBouncer follower(s) paused" in out.getvalue()
    assert fed.roles()["dc2"] == "primary"


def test_a_follower_that_does_not_pause_is_named_and_does_not_hold_the_switchover(
        topo: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(switchover_module, "PAUSE_WAIT", 0.3)
    fed = FakeFederation(topo)
    fed.followers = followers({"good": paused_once_announced, "stuck": lambda _r: PAUSING})
    out = io.StringIO()
    report = switchover_dc(topo, "dc2", Progress(out=out), world=fed, record=fed)
    assert report.outcome == "succeeded" and fed.roles()["dc2"] == "primary"
    assert "1 of 2 PgBouncer follower(s) paused; not paused: stuck (pausing)" in out.getvalue()


def test_without_a_store_or_followers_the_step_says_so(topo: Topology) -> None:
    for source, expected in ((lambda _fed: None, "no federation store"), (lambda _fed: [], "no PgBouncer follower")):
        fed = FakeFederation(topo)
        fed.followers = source
        out = io.StringIO()
        switchover_dc(topo, "dc2", Progress(out=out), world=fed, record=fed)
        assert expected in out.getvalue()


def test_the_announced_step_reaches_the_copies(topo: Topology) -> None:
    """The followers read the DCs' copies, which other steps do not refresh: pause-clients is announced."""
    run = switchover_module.Switchover(FakeFederation(topo), None, topo.dc("dc1"), topo.dc("dc2"),  # type: ignore[arg-type]
                                       {})
    steps = {s.name: s for s in switchover_module.switchover_steps(run)}
    assert steps["pause-clients"].announce and not steps["demote"].announce
    assert {"pause-clients", "demote", "token", "catch-up", "epoch"} <= client_pause.PAUSED_STEPS


def test_the_follower_pauses_points_at_the_new_primary_then_resumes_and_reports_each_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import entrypoint_follower
    from agent.entrypoint_follower import EntrypointFollower, FollowerReporter, PgBouncerTarget
    from agent.haproxy_sync import TopologyWatch

    topo_path = Path(__file__).parents[1] / "integration" / "topologies" / "entry-two-dc.yaml"
    topo = load_topology(topo_path)
    console, store, order = Console(), MemoryStore(), []
    console.finish.set()  # no transaction runs: PAUSE returns at once

    def command(admin: str, text: str, password: str | None) -> list[dict[str, str | None]]:
        order.append(text)
        return console(admin, text, password)

    target = PgBouncerTarget(tmp_path / "databases.ini", "host=127.0.0.1 port=7002", ["postgres"], lambda: None,
                             lambda admin, password: order.append("RELOAD"))
    pause = PgBouncerPause("host=127.0.0.1 port=7002", lambda: None, command=command)
    follower = EntrypointFollower(topo, TopologyWatch(topo_path), pgbouncer=target, pause=pause,
                                  reporter=FollowerReporter(store, "app1", "127.0.0.1:7002"))
    state = {"record": FederationState(federation=topo.federation, epoch=1, primary_dc="dc1",
                                       upstreams={"dc1": None, "dc2": "dc1"}),
             "roles": {"n1": "primary", "n2": "replica"}}
    monkeypatch.setattr(follower, "read_record", lambda: state["record"])
    monkeypatch.setattr(entrypoint_follower, "primary_dc_roles", lambda _t, _r: state["roles"])

    def reported() -> str:
        return read_all(store)[0].state

    follower.cycle()
    assert order == ["RELOAD"] and reported() == "following"
    state["record"] = with_switchover(state["record"], "pause-clients")  # switchover-dc announces its pause
    follower.cycle()
    pause._done.wait(5)
    follower.cycle()
    assert "PAUSE" in order and reported() == PAUSED
    assert read_all(store)[0].operation == state["record"].operation.id  # type: ignore[union-attr]
    # The epoch names dc2; its standby leader is pointed at while still paused, resumed once writable.
    raised = state["record"].model_copy(update={"epoch": 2, "primary_dc": "dc2",
                                                "upstreams": {"dc1": "dc2", "dc2": None}})
    state["record"], state["roles"] = raised, {"n3": "standby_leader", "n4": "replica"}
    follower.cycle()
    assert order[-1] == "RELOAD" and "RESUME" not in order and reported() == PAUSED
    state["roles"] = {"n3": "primary", "n4": "replica"}
    follower.cycle()
    assert order[-1] == "RESUME" and order.index("RESUME") > len(order) - 2 and reported() == "following"
    assert pause.operation is None
