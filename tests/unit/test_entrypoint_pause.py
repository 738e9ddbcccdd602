"""The client pause of a switchover: the follower's rule and holder, switchover-dc's side, with a fake store.

The fake store is a dict of keys (the real one is etcd or ZooKeeper, exercised by the integration tests);
PgBouncer is a fake whose PAUSE completes when the test says its last transaction ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.entrypoint_pause import Action, Held, PauseHolder, decide
from federation.dcs.base import Versioned
from federation.entrypoint_registry import (
    FollowerReport,
    FollowerState,
    PauseRequest,
    followers_prefix,
    pause_key,
    publish,
    read_followers,
    read_pause,
    request_pause,
)
from federation.errors import DCSError
from federation.operations.client_pause import StoreClientPause
from federation.operations.switchover import switchover_dc
from federation.progress import Progress
from federation.topology import load_topology
from tests.unit.fake_federation import FakeFederation

TOPOLOGIES = Path(__file__).parents[1] / "integration" / "topologies"
pytestmark = pytest.mark.timeout(30)


class FakeStore:
    """The keys of one federation in a dict; `down` makes every request fail as an unreachable store does."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(namespace="/fed/")
        self.federation = "test"
        self.keys: dict[str, str] = {}
        self.down = False
        self.writes: list[str] = []
        self.on_put: list[Any] = []

    def _check(self) -> None:
        if self.down:
            raise DCSError("the store does not answer")

    def read_prefix(self, prefix: str, what: str) -> dict[str, Versioned]:
        self._check()
        return {k: Versioned(k, v, 1) for k, v in self.keys.items() if k.startswith(prefix)}

    def read_key(self, key: str, what: str) -> Versioned | None:
        self._check()
        return Versioned(key, self.keys[key], 1) if key in self.keys else None

    def put_key(self, key: str, value: str, what: str) -> None:
        self._check()
        self.keys[key] = value
        self.writes.append(key)
        for hook in self.on_put:
            hook(key)

    def delete_key(self, key: str, what: str) -> None:
        self._check()
        self.keys.pop(key, None)


@dataclass
class FakePgBouncer:
    """PAUSE completes once `running` transactions reached 0; RESUME releases what PAUSE held."""

    running: int = 0
    paused: bool = False
    pauses: int = 0
    resumes: int = 0
    open_pauses: list[Any] = field(default_factory=list)

    def pause(self) -> Any:
        self.pauses += 1
        self.paused = True
        bouncer = self

        class Pending:
            closed = False

            def done(self) -> bool:
                return bouncer.running == 0

            def close(self) -> None:
                self.closed = True

        pending = Pending()
        self.open_pauses.append(pending)
        return pending

    def resume(self) -> None:
        self.resumes += 1
        self.paused = False


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def request(**changes: Any) -> PauseRequest:
    values: dict[str, Any] = {"operation": "op1", "source": "dc1", "target": "dc2", "epoch": 3,
                              "requested_at": 1_000_000.0, "hold": 30.0}
    return PauseRequest(**{**values, **changes})


def holder(store: FakeStore, bouncer: FakePgBouncer, clock: Clock) -> PauseHolder:
    return PauseHolder(store, "f1", "127.0.0.1:6432", pause=bouncer.pause, resume=bouncer.resume,
                       blockers=lambda: ["app@10.0.0.5:41000 since 12:00:01"] if bouncer.running else [],
                       clock=clock)


def registration(store: FakeStore) -> FollowerReport:
    found = read_followers(store)
    assert [f.id for f in found] == ["f1"]
    return found[0]


# --- the rule ----------------------------------------------------------------------------------------------

def test_the_rule_pauses_once_per_request_and_releases_on_the_new_writable_leader() -> None:
    now = 1_000_001.0
    req = request()
    assert decide(None, req, True, frozenset(), 3, True, now)[0] is Action.PAUSE
    assert decide(None, req, True, frozenset({"op1"}), 3, True, now)[0] is Action.NONE, "answered already"
    assert decide(None, req, False, frozenset(), 3, True, now)[0] is Action.NONE, "the store was not read"
    assert decide(None, request(requested_at=now - 31), True, frozenset(), 3, True, now)[0] is Action.NONE
    held = Held(req, now)
    assert decide(held, req, True, frozenset(), 3, True, now + 1)[0] is Action.NONE, "the old epoch's leader"
    assert decide(held, req, True, frozenset(), 4, False, now + 1)[0] is Action.NONE, "not writable yet"
    action, why = decide(held, req, True, frozenset(), 4, True, now + 1)
    assert action is Action.RESUME and "epoch 4" in why
    action, why = decide(held, None, True, frozenset(), 3, True, now + 1)
    assert action is Action.RESUME and "withdrew" in why
    assert decide(held, request(operation="op2"), True, frozenset(), 3, True, now + 1)[0] is Action.RESUME
    assert decide(held, None, False, frozenset(), 3, True, now + 29)[0] is Action.NONE, "unknown is not withdrawn"
    action, why = decide(held, None, False, frozenset(), 3, True, now + 30)
    assert action is Action.RESUME and "bound" in why


# --- the follower's holder ---------------------------------------------------------------------------------

def test_the_follower_pauses_reports_it_and_resumes_on_the_new_primary() -> None:
    store, bouncer, clock = FakeStore(), FakePgBouncer(running=1), Clock()
    pause = holder(store, bouncer, clock)
    pause.step(3, "dc1/n1", True)
    assert registration(store).state is FollowerState.FOLLOWING and bouncer.pauses == 0
    request_pause(store, request(requested_at=clock.now))
    clock.now += 0.1
    pause.step(3, "dc1/n1", True)
    assert bouncer.paused and registration(store).state is FollowerState.PAUSING
    assert pause.interval(0.5) < 0.5, "it looks more often while it holds clients"
    clock.now += 0.5
    pause.step(3, "dc1/n1", True)
    seen = registration(store)
    assert seen.state is FollowerState.PAUSING and seen.blocking == ("app@10.0.0.5:41000 since 12:00:01",)
    bouncer.running = 0
    clock.now += 0.1
    pause.step(3, "dc1/n1", True)
    seen = registration(store)
    assert seen.state is FollowerState.PAUSED and seen.settled("op1") and seen.blocking == ()
    clock.now += 2.0
    pause.step(4, "dc2/n3", False)
    assert bouncer.paused, "the new primary's leader does not take writes yet"
    clock.now += 0.3
    pause.step(4, "dc2/n3", True)
    seen = registration(store)
    assert not bouncer.paused and bouncer.resumes == 1 and seen.released("op1")
    assert seen.last_hold == pytest.approx(2.9) and "epoch 4" in (seen.last_release or "")
    assert all(p.closed for p in bouncer.open_pauses)
    clock.now += 0.5
    pause.step(4, "dc2/n3", True)
    assert bouncer.pauses == 1, "the same request is answered once"


def test_the_follower_never_holds_clients_past_the_bound_even_without_the_store() -> None:
    store, bouncer, clock = FakeStore(), FakePgBouncer(), Clock()
    pause = holder(store, bouncer, clock)
    request_pause(store, request(requested_at=clock.now, hold=5.0))
    pause.step(3, "dc1/n1", True)
    assert bouncer.paused
    store.down = True
    clock.now += 4.9
    pause.step(3, "dc1/n1", True)
    assert bouncer.paused
    clock.now += 0.2
    pause.step(3, "dc1/n1", True)
    assert not bouncer.paused and pause.state is FollowerState.FOLLOWING
    store.down = False
    pause.step(3, "dc1/n1", True)
    assert bouncer.pauses == 1 and registration(store).last_release is not None


def test_a_withdrawn_request_releases_and_stopping_releases_and_deregisters() -> None:
    store, bouncer, clock = FakeStore(), FakePgBouncer(), Clock()
    pause = holder(store, bouncer, clock)
    request_pause(store, request(requested_at=clock.now))
    pause.step(3, "dc1/n1", True)
    assert bouncer.paused
    store.delete_key(pause_key(store), "test")
    pause.step(3, "dc1/n1", True)
    assert not bouncer.paused
    request_pause(store, request(operation="op2", requested_at=clock.now))
    pause.step(3, "dc1/n1", True)
    assert bouncer.paused and registration(store).operation == "op2"
    pause.release()
    assert not bouncer.paused and read_followers(store) == []


def test_a_pause_pgbouncer_refuses_is_given_up_and_not_retried() -> None:
    store, bouncer, clock = FakeStore(), FakePgBouncer(), Clock()

    def refusing() -> Any:
        from agent.pgbouncer_admin import PgBouncerUnreachable

        raise PgBouncerUnreachable("PgBouncer admin console 127.0.0.1:6432 does not answer")

    pause = PauseHolder(store, "f1", "127.0.0.1:6432", pause=refusing, resume=bouncer.resume, blockers=list,
                        clock=clock)
    request_pause(store, request(requested_at=clock.now))
    pause.step(3, "dc1/n1", True)
    pause.step(3, "dc1/n1", True)
    assert pause.held is None and registration(store).state is FollowerState.FOLLOWING and bouncer.resumes == 0


# --- switchover-dc's side ----------------------------------------------------------------------------------

def follower(store: FakeStore, name: str, heartbeat: float, **changes: Any) -> None:
    publish(store, FollowerReport(id=name, pgbouncer=f"{name}:6432", heartbeat=heartbeat, **changes))


def test_switchover_asks_only_live_followers_and_waits_for_them_within_its_bound() -> None:
    store = FakeStore()
    pause = StoreClientPause(store, pause_wait=0.3, release_wait=0.2)
    assert "no entrypoint follower" in pause.pause(request())
    assert pause_key(store) not in store.keys, "nobody to ask: no request written"
    now = pause.clock()
    follower(store, "quick", now)
    follower(store, "silent", now)
    follower(store, "stale", now - 60)

    def quick_pauses(key: str) -> None:
        if key == pause_key(store):
            follower(store, "quick", pause.clock(), state=FollowerState.PAUSED, operation="op1")

    store.on_put.append(quick_pauses)
    said = pause.pause(request())
    assert "quick paused" in said and "silent did not answer within 0.3 s" in said and "stale" not in said
    assert read_pause(store) is not None and pause.requested("op1") and not pause.requested("op2")
    follower(store, "quick", pause.clock(), last_operation="op1", last_hold=2.5)
    said = pause.release("op1")
    assert read_pause(store) is None and "quick held transactions 2.50 s" in said


def test_a_follower_held_up_by_a_transaction_is_named_with_its_client() -> None:
    store = FakeStore()
    pause = StoreClientPause(store, pause_wait=0.2)
    follower(store, "f1", pause.clock())
    store.on_put.append(lambda key: key == pause_key(store) and follower(
        store, "f1", pause.clock(), state=FollowerState.PAUSING, operation="op1", blocking=("app@h:1 since 12:00",)))
    assert "f1 is still waiting for app@h:1 since 12:00" in pause.pause(request())


class RecordingPause:
    """A ClientPause that notes where the switchover stood when it was asked."""

    def __init__(self, fed: FakeFederation, fail: bool = False) -> None:
        self.fed, self.fail, self.calls = fed, fail, []  # type: ignore[var-annotated]

    def pause(self, req: PauseRequest) -> str:
        self.calls.append(("pause", req.epoch, self.fed.roles()["dc1"]))
        if self.fail:
            raise DCSError("the store does not answer")
        return "f1 paused"

    def requested(self, operation: str) -> bool:
        return any(c[0] == "pause" for c in self.calls)

    def release(self, operation: str) -> str:
        self.calls.append(("release", self.fed.record.epoch, self.fed.roles()["dc1"]))
        return "f1 held transactions 1.00 s"


@pytest.mark.parametrize("fail", [False, True], ids=["paused", "store-down"])
def test_switchover_pauses_before_the_demotion_and_releases_at_the_end(fail: bool) -> None:
    topo = load_topology(TOPOLOGIES / "two-dc.yaml")
    fed = FakeFederation(topo)
    clients = RecordingPause(fed, fail=fail)
    report = switchover_dc(topo, "dc2", Progress(quiet=True), world=fed, record=fed, clients=clients)
    assert report.outcome == "succeeded" and fed.record.primary_dc == "dc2"
    assert clients.calls[0] == ("pause", 0, "primary"), "asked while dc1 still took writes, at the old epoch"
    assert clients.calls[-1] == ("release", 1, "standby")
    said = report.facts["client_pause"]
    assert ("going on without a pause" in said) if fail else (said == "f1 paused")


def test_between_cycles_only_a_new_live_request_makes_the_follower_look_early() -> None:
    store, bouncer, clock = FakeStore(), FakePgBouncer(), Clock()
    seen: list[PauseRequest | None] = [None]
    pause = holder(store, bouncer, clock)
    pause.peek = lambda: seen[0]
    assert not pause.asked()
    seen[0] = request(requested_at=clock.now - 31)
    assert not pause.asked(), "expired"
    seen[0] = request(requested_at=clock.now)
    assert pause.asked()
    request_pause(store, seen[0])
    pause.step(3, "dc1/n1", True)
    assert not pause.asked(), "held already"
    pause.step(4, "dc2/n3", True)
    assert not bouncer.paused and not pause.asked(), "answered already"


def test_a_hostile_pause_request_or_follower_id_gets_past_no_check() -> None:
    from agent.entrypoint_follower import build_follower
    from federation.entrypoint_registry import check_follower_id
    from federation.errors import BadInput

    store = FakeStore()
    store.put_key(pause_key(store), request().model_dump_json().replace('"hold":30.0', '"hold":86400.0'), "test")
    assert read_pause(store) is None, "a request holding clients for a day is not one fedctl wrote"
    store.put_key(pause_key(store), "{not json", "test")
    assert read_pause(store) is None
    store.put_key(followers_prefix(store) + "odd", '{"id": "odd"}', "test")
    assert read_followers(store) == [], "a registration without its fields is skipped"
    assert check_follower_id("vm:127.0.0.1:6432") == "vm:127.0.0.1:6432"
    for bad in ("a/b", "", "../record", "x" * 129, "-lead", "sp ace"):
        with pytest.raises(BadInput, match="is not valid"):
            check_follower_id(bad)
    with pytest.raises(BadInput, match="is not valid"):
        build_follower(str(TOPOLOGIES / "entry-two-dc.yaml"), pgbouncer_databases="/tmp/d.ini",
                       pgbouncer_admin="host=127.0.0.1 port=6432", follower_id="a/b")


def test_a_store_that_cannot_say_whether_clients_were_paused_does_not_stop_the_switchover() -> None:
    topo = load_topology(TOPOLOGIES / "two-dc.yaml")
    fed = FakeFederation(topo)
    clients = RecordingPause(fed)

    def unknown(operation: str) -> bool:
        raise DCSError("the store does not answer")

    clients.requested = unknown  # type: ignore[method-assign]
    report = switchover_dc(topo, "dc2", Progress(quiet=True), world=fed, record=fed, clients=clients)
    assert report.outcome == "succeeded" and clients.calls[0][0] == "pause"


def test_between_cycles_the_follower_looks_for_pgbouncers_answer_often_and_wakes_on_it() -> None:
    from agent.entrypoint_pause import ANSWER_POLL

    store, bouncer, clock = FakeStore(), FakePgBouncer(running=1), Clock()
    pause = holder(store, bouncer, clock)
    assert not pause.answered() and pause.wake_interval(0.05) == 0.05, "no PAUSE sent: only peeks for a request"
    request_pause(store, request(requested_at=clock.now))
    pause.step(3, "dc1/n1", True)
    assert bouncer.paused and registration(store).state is FollowerState.PAUSING
    assert pause.wake_interval(0.05) == ANSWER_POLL < 0.05, "a PAUSE waits for its answer: looks more often"
    assert not pause.answered(), "a transaction still runs"
    bouncer.running = 0
    assert pause.answered(), "PgBouncer answered: the follower wakes to publish it"
    pause.step(3, "dc1/n1", True)
    assert registration(store).state is FollowerState.PAUSED
    assert not pause.answered() and pause.wake_interval(0.05) == 0.05, "taken in: back to peeking"
