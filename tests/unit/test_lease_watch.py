"""Store answers become lease facts: a fake store's answers and a fake clock drive the whole policy."""

from __future__ import annotations

from agent.lease_watch import LeaseWatch
from federation.lease_policy import LeaseAction, decide_lease
from federation.store import NO_LEASE, LeaseView

TTL, MARGIN = 10.0, 3.0


def action(watch: LeaseWatch, now: float, *, active: bool, fenced_at: float | None = None) -> LeaseAction:
    facts = watch.facts(record_primary="dc1", active=active, fenced_at=fenced_at)
    return decide_lease(facts, ttl=TTL, margin=MARGIN, now=now).action


def test_the_active_agent_renews_then_fences_when_renewals_stop_and_unfences_after_retaking() -> None:
    watch = LeaseWatch("dc1", ttl=TTL, started_at=0.0)
    assert action(watch, 0.0, active=True) is LeaseAction.TAKE
    watch.renewed(0.0, LeaseView("dc1", "dc1/n1", TTL, None, 1))
    for t in (1.0, 2.0, 3.0):  # renewals every second
        watch.renewed(t, LeaseView("dc1", "dc1/n1", TTL, 5, 1))
        assert action(watch, t + 0.1, active=True) is LeaseAction.RENEW
    # The store stops answering after the renewal at 3.0 (the calls fail: nothing is reported).
    assert action(watch, 9.9, active=True) is LeaseAction.RENEW
    assert action(watch, 10.0, active=True) is LeaseAction.FENCE
    assert action(watch, 11.0, active=True, fenced_at=10.0) is LeaseAction.TAKE
    watch.renewed(20.0, LeaseView("dc1", "dc1/n1", TTL, None, 2))
    assert action(watch, 20.1, active=True, fenced_at=10.0) is LeaseAction.UNFENCE


def test_a_lost_renewal_fences_at_once() -> None:
    watch = LeaseWatch("dc1", ttl=TTL, started_at=0.0)
    watch.renewed(0.0, LeaseView("dc1", "dc1/n1", TTL, None, 1))
    watch.renewed(1.0, None)  # revoked by promote-dc --force
    assert action(watch, 1.1, active=True) is LeaseAction.FENCE


def test_an_etcd_watcher_fences_margin_before_the_ttl_it_was_told() -> None:
    watch = LeaseWatch("dc1", ttl=TTL, started_at=0.0)
    watch.observed(1.0, LeaseView("dc1", "dc1/n1", 6.0, 5, 1))
    assert action(watch, 3.9, active=False) is LeaseAction.WATCH
    assert action(watch, 4.0, active=False) is LeaseAction.FENCE
    watch.observed(5.0, NO_LEASE)
    assert watch.seen_absent_at == 5.0


def test_a_zookeeper_watcher_needs_the_version_to_move() -> None:
    watch = LeaseWatch("dc1", ttl=TTL, started_at=0.0)
    watch.observed(1.0, LeaseView("dc1", "dc1/n1", None, 3))
    assert watch.sighting is None
    watch.observed(2.0, LeaseView("dc1", "dc1/n1", None, 3))
    assert watch.sighting is None  # not renewed between the two reads: no news
    watch.observed(3.0, LeaseView("dc1", "dc1/n1", None, 4))
    assert watch.sighting is not None and watch.sighting.valid_until == 2.0 + TTL
    assert action(watch, 2.0 + TTL - MARGIN, active=False) is LeaseAction.FENCE


def test_another_dcs_lease_counts_as_absent() -> None:
    watch = LeaseWatch("dc1", ttl=TTL, started_at=0.0)
    watch.observed(1.0, LeaseView("dc1", "dc1/n1", 9.0, 3, 1))
    watch.observed(2.0, LeaseView("dc2", "dc2/n3", 9.0, 4, 2))
    assert watch.seen_absent_at == 2.0
    assert action(watch, 2.1, active=False) is LeaseAction.FENCE
