"""The primary-DC lease and self-fencing decisions, driven by a fake clock (plain numbers)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from federation.lease_policy import (
    LeaseAction,
    LeaseFacts,
    PromoteVerdict,
    Sighting,
    decide_lease,
    promote_gate,
    sighting_from_versions,
)

TTL, MARGIN = 10.0, 3.0


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def decide(facts: LeaseFacts, now: float) -> tuple[LeaseAction, str]:
    decision = decide_lease(facts, ttl=TTL, margin=MARGIN, now=now)
    return decision.action, decision.sentence


def primary(active: bool = True, **kw: object) -> LeaseFacts:
    return replace(LeaseFacts(dc="dc1", record_primary="dc1", active=active, started_at=1000.0), **kw)  # type: ignore[arg-type]


def test_active_agent_takes_the_lease_at_start_and_renews_it_afterwards() -> None:
    clock = FakeClock()
    assert decide(primary(), clock.now)[0] is LeaseAction.TAKE
    assert decide(primary(seen_absent_at=clock.now), clock.now)[0] is LeaseAction.TAKE
    renewed = primary(sighting=Sighting(clock.advance(1), TTL))
    action, sentence = decide(renewed, clock.advance(2))
    assert action is LeaseAction.RENEW
    assert "renewing the lease of dc1" in sentence and "5.0 s before fencing" in sentence


def test_unrenewed_lease_fences_at_ttl_minus_margin_not_before() -> None:
    clock = FakeClock()
    facts = primary(sighting=Sighting(clock.now, TTL))
    assert decide(facts, clock.advance(TTL - MARGIN - 0.01))[0] is LeaseAction.RENEW
    action, sentence = decide(facts, clock.advance(0.01))
    assert action is LeaseAction.FENCE
    assert "last confirmed 7.0 s ago with 10 s left, and the margin is 3 s" in sentence


def test_every_agent_of_the_primary_dc_fences_on_its_own() -> None:
    # A watcher's sighting is an etcd read: the lease had 6 s left when the read started.
    clock = FakeClock()
    watcher = primary(active=False, sighting=Sighting(clock.now, 6.0))
    assert decide(watcher, clock.advance(2.9))[0] is LeaseAction.WATCH
    assert decide(watcher, clock.advance(0.1))[0] is LeaseAction.FENCE


def test_watcher_that_never_saw_the_lease_fences_one_ttl_minus_margin_after_start() -> None:
    watcher = primary(active=False)
    assert decide(watcher, 1000.0 + TTL - MARGIN - 0.1)[0] is LeaseAction.WATCH
    assert decide(watcher, 1000.0 + TTL - MARGIN)[0] is LeaseAction.FENCE
    # Told by the store that there is no lease, it still grants the active agent that time to take it.
    assert decide(replace(watcher, seen_absent_at=1001.0), 1002.0)[0] is LeaseAction.WAIT


def test_a_revoked_lease_fences_at_once() -> None:
    clock = FakeClock()
    facts = primary(sighting=Sighting(clock.now, TTL), seen_absent_at=clock.advance(1))
    action, sentence = decide(facts, clock.now)
    assert action is LeaseAction.FENCE and "holds no lease" in sentence
    assert decide(replace(facts, active=False), clock.now)[0] is LeaseAction.FENCE


def test_fenced_dc_takes_the_lease_back_and_unfences_while_the_record_names_it() -> None:
    clock = FakeClock()
    fenced = primary(sighting=Sighting(clock.now, TTL), fenced_at=clock.advance(8))
    assert decide(fenced, clock.advance(1))[0] is LeaseAction.TAKE
    assert decide(replace(fenced, active=False), clock.now)[0] is LeaseAction.WAIT
    retaken = replace(fenced, sighting=Sighting(clock.advance(5), TTL))
    action, sentence = decide(retaken, clock.advance(0.1))
    assert action is LeaseAction.UNFENCE and "promoting back" in sentence
    assert decide(replace(retaken, active=False), clock.now)[0] is LeaseAction.UNFENCE


def test_a_sighting_from_before_the_fence_does_not_unfence() -> None:
    fenced = primary(sighting=Sighting(1000.0, TTL), fenced_at=1001.0)
    assert decide(replace(fenced, active=False), 1002.0)[0] is LeaseAction.WAIT


def test_record_naming_another_dc_waits_for_rejoin_or_releases() -> None:
    clock = FakeClock()
    moved = primary(record_primary="dc2", sighting=Sighting(clock.now, TTL))
    assert decide(moved, clock.advance(1))[0] is LeaseAction.RELEASE
    action, sentence = decide(replace(moved, fenced_at=clock.now, active=False), clock.now)
    assert action is LeaseAction.WAIT_REJOIN and "rejoin-dc dc1" in sentence
    standby = LeaseFacts(dc="dc2", record_primary="dc1", active=True, started_at=0.0)
    assert decide(standby, clock.now)[0] is LeaseAction.NOTHING


def test_no_record_ever_read_fences_after_the_start_grace() -> None:
    facts = replace(primary(), record_primary=None)
    assert decide(facts, 1001.0)[0] is LeaseAction.WAIT
    assert decide(facts, 1000.0 + TTL - MARGIN)[0] is LeaseAction.FENCE


def test_zookeeper_sightings_come_from_a_moving_version() -> None:
    assert sighting_from_versions(None, None, 5.0, 3, TTL) is None
    assert sighting_from_versions(1.0, 3, 5.0, 3, TTL) is None
    assert sighting_from_versions(1.0, 3, 5.0, 4, TTL) == Sighting(1.0, TTL)


# --- promote-dc's side -------------------------------------------------------------------------------------


def test_promote_refuses_while_the_lease_lives_and_force_revokes_then_waits() -> None:
    gate = promote_gate("dc1", "dc1", 6.0, now=100.0, ttl=TTL, fence_bound=4.0, force=False)
    assert gate.verdict is PromoteVerdict.REFUSE
    assert "use switchover-dc, or --force" in gate.sentence and "6 s left" in gate.sentence
    forced = promote_gate("dc1", "dc1", 6.0, now=100.0, ttl=TTL, fence_bound=4.0, force=True)
    assert forced.verdict is PromoteVerdict.WAIT and forced.revoke
    assert forced.not_before == pytest.approx(100.0 + 7.0 + 4.0)
    unknown = promote_gate("dc1", "dc1", None, now=100.0, ttl=TTL, fence_bound=4.0, force=True)
    assert unknown.not_before == pytest.approx(100.0 + TTL + 4.0)


def test_promote_waits_the_fence_bound_after_the_lease_is_seen_gone_then_goes() -> None:
    clock = FakeClock(200.0)
    seen = clock.now
    gate = promote_gate("dc1", None, None, now=clock.advance(1.5), ttl=TTL, fence_bound=4.0, force=False,
                        seen_gone_at=seen)
    assert gate.verdict is PromoteVerdict.WAIT and gate.not_before == pytest.approx(204.0)
    assert "waiting 2.5 s more" in gate.sentence
    assert promote_gate("dc1", None, None, now=clock.advance(2.5), ttl=TTL, fence_bound=4.0, force=False,
                        seen_gone_at=seen).verdict is PromoteVerdict.GO


def test_promote_goes_at_once_after_a_successful_fence_command_and_refuses_a_foreign_lease() -> None:
    assert promote_gate("dc1", "dc1", 9.0, now=0.0, ttl=TTL, fence_bound=4.0, force=False,
                        fenced_by_command=True).verdict is PromoteVerdict.GO
    odd = promote_gate("dc1", "dc3", 9.0, now=0.0, ttl=TTL, fence_bound=4.0, force=True)
    assert odd.verdict is PromoteVerdict.REFUSE and "disagree" in odd.sentence
