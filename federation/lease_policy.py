"""The primary-DC lease and self-fencing, decided as pure functions of what the agent saw and a clock.

`decide_lease` runs every cycle in every agent of every DC and returns one action with the sentence
the loop logs (Patroni ha.py style); guard clauses run from the most to the least urgent. `promote_gate`
is promote-dc's side: refuse while the old primary DC's lease lives, or say until when to wait so that
the old DC has certainly fenced itself.

Why the numbers are safe: a sighting is a store answer, timed from the *start* of the call, that showed
this DC holding the lease with `remaining` seconds left (the TTL itself for a renewal). The store
expires the lease no earlier than `at + remaining` by its own clock, so a DC that fences at
`at + remaining - margin` by its own clock has fenced before the lease can expire while the clocks'
drift over one TTL stays below the margin. Whoever sees the lease gone can then count on the old DC
having decided to fence, and needs to wait only the time the fence takes to act (`fence_bound`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LeaseAction(StrEnum):
    TAKE = "take"  # the active agent takes the lease (first start, or back after a fence)
    RENEW = "renew"  # the active agent renews the lease it holds
    WATCH = "watch"  # another agent of the primary DC: the lease lives, keep watching it
    FENCE = "fence"  # fence this DC now: GET /primary says no, Patroni becomes a standby with no upstream
    UNFENCE = "unfence"  # the lease is held again and the record still names this DC: promote back
    WAIT = "wait"  # fenced (or about to be) and nothing this agent can do yet
    WAIT_REJOIN = "wait_rejoin"  # the record names another DC: stay fenced until rejoin-dc
    RELEASE = "release"  # the record moved the primary role away: give the lease up
    NOTHING = "nothing"  # not the primary DC, nothing to keep


@dataclass(frozen=True)
class Sighting:
    """A store answer showing this DC's lease alive: `at` is when the call started (monotonic seconds),
    `remaining` what was left of the lease then (the TTL for a renewal, etcd's TTL for a read)."""

    at: float
    remaining: float

    @property
    def valid_until(self) -> float:
        return self.at + self.remaining


@dataclass(frozen=True)
class LeaseFacts:
    dc: str  # this agent's DC
    record_primary: str | None  # the primary DC of the newest record known (None: never read)
    active: bool  # this agent is its DC's active agent (the one that takes and renews)
    started_at: float  # when this agent started
    sighting: Sighting | None = None  # the last sighting since start (None: none yet)
    seen_absent_at: float | None = None  # the store answered "this DC holds no lease" at, after `sighting`
    fenced_at: float | None = None  # since when this DC is fenced (None: it is not)


@dataclass(frozen=True)
class LeaseDecision:
    action: LeaseAction
    sentence: str
    fence_at: float | None = None  # when this DC fences at the latest if nothing changes (None: n/a)


def fence_deadline(facts: LeaseFacts, *, ttl: float, margin: float) -> float:
    """When this DC must be fenced at the latest: `margin` before the lease can expire. With no sighting
    since start, one TTL after start: an agent cannot vouch for a lease it never saw."""
    if facts.sighting is not None:
        return facts.sighting.valid_until - margin
    return facts.started_at + ttl - margin


def decide_lease(facts: LeaseFacts, *, ttl: float, margin: float, now: float) -> LeaseDecision:
    dc, primary = facts.dc, facts.record_primary
    deadline = fence_deadline(facts, ttl=ttl, margin=margin)
    holds_now = facts.sighting is not None and facts.seen_absent_at is None and now < deadline
    if primary is not None and primary != dc:
        if facts.active and holds_now:
            return LeaseDecision(LeaseAction.RELEASE, f"the record names {primary} as the primary DC: releasing "
                                 f"{dc}'s lease")
        if facts.fenced_at is not None:
            return LeaseDecision(LeaseAction.WAIT_REJOIN, f"fenced: the record names {primary} as the primary DC; "
                                 f"{dc} waits for `fedctl rejoin-dc {dc}`")
        return LeaseDecision(LeaseAction.NOTHING, f"no lease to keep: {primary} is the primary DC")
    if facts.fenced_at is not None:
        return _fenced(facts, deadline, now)
    if primary is None:
        if now >= deadline:
            return LeaseDecision(LeaseAction.FENCE, "fencing: no federation record was ever read and no lease "
                                 f"of {dc} confirmed for {now - facts.started_at:.1f} s since start")
        return LeaseDecision(LeaseAction.WAIT, "no federation record read yet; fencing in "
                             f"{deadline - now:.1f} s unless the lease is confirmed", deadline)
    if facts.seen_absent_at is not None:
        if facts.active and facts.sighting is None:
            return LeaseDecision(LeaseAction.TAKE, f"the record names {dc} and the store holds no lease of it "
                                 "yet: taking it", deadline)
        if facts.sighting is not None or now >= deadline:
            return LeaseDecision(LeaseAction.FENCE, f"fencing: the store says {dc} holds no lease (revoked, "
                                 "expired or never taken) while the record names it")
        return LeaseDecision(LeaseAction.WAIT, f"no lease of {dc} in the store yet; the active agent takes it, "
                             f"else fencing in {deadline - now:.1f} s", deadline)
    if now >= deadline:
        if facts.sighting is None:
            why = f"no renewal or sighting of the lease in {now - facts.started_at:.1f} s since start"
        else:
            why = (f"the lease was last confirmed {now - facts.sighting.at:.1f} s ago with "
                   f"{facts.sighting.remaining:g} s left, and the margin is {margin:g} s")
        return LeaseDecision(LeaseAction.FENCE, f"fencing before the lease can expire: {why}")
    if facts.active:
        if facts.sighting is None:
            return LeaseDecision(LeaseAction.TAKE, f"the record names {dc}: taking the primary-DC lease "
                                 f"(fencing in {deadline - now:.1f} s without it)", deadline)
        return LeaseDecision(LeaseAction.RENEW, f"renewing the lease of {dc}, the primary DC "
                             f"({deadline - now:.1f} s before fencing without a renewal)", deadline)
    return LeaseDecision(LeaseAction.WATCH, f"the lease of {dc} lives; fencing in {deadline - now:.1f} s "
                         "unless it is confirmed again", deadline)


def _fenced(facts: LeaseFacts, deadline: float, now: float) -> LeaseDecision:
    dc = facts.dc
    assert facts.fenced_at is not None
    retaken = (facts.sighting is not None and facts.sighting.at > facts.fenced_at
               and facts.seen_absent_at is None and now < deadline)
    if retaken:
        return LeaseDecision(LeaseAction.UNFENCE, f"the lease of {dc} is held again and the record still names "
                             f"{dc}: promoting back", deadline)
    if facts.active:
        return LeaseDecision(LeaseAction.TAKE, f"fenced since {now - facts.fenced_at:.1f} s; the record still "
                             f"names {dc}: taking the lease back")
    return LeaseDecision(LeaseAction.WAIT, f"fenced since {now - facts.fenced_at:.1f} s; waiting for the active "
                         "agent to take the lease back")


def sighting_from_versions(previous_at: float | None, previous_version: int | None, at: float,
                           version: int | None, ttl: float) -> Sighting | None:
    """For a store that does not say how long a lease has left (ZooKeeper): when the lease's version moved
    between two reads, the holder renewed after the earlier read started, so the lease lives until at
    least that start plus one TTL. None when nothing can be concluded."""
    if previous_at is None or previous_version is None or version is None or version == previous_version:
        return None
    return Sighting(previous_at, ttl)


class PromoteVerdict(StrEnum):
    REFUSE = "refuse"
    WAIT = "wait"  # until `not_before`, then promote (print a countdown)
    GO = "go"


@dataclass(frozen=True)
class PromoteGate:
    verdict: PromoteVerdict
    sentence: str
    not_before: float | None = None
    revoke: bool = False  # revoke the lease in the promotion's commit (--force)


def promote_gate(old_dc: str, holder: str | None, remaining: float | None, *, now: float, ttl: float,
                 fence_bound: float, force: bool, seen_gone_at: float | None = None,
                 fenced_by_command: bool = False) -> PromoteGate:
    """May promote-dc go on, given the lease as read from the store now?

    `holder`/`remaining`: the lease read now (remaining None when the store does not tell). `seen_gone_at`:
    when promote-dc first read the lease gone (defaults to now). `fence_bound`: how long the old DC's fence
    takes to act once decided (GET /primary turning to no, the health check interval, the demotion).
    """
    if fenced_by_command:
        return PromoteGate(PromoteVerdict.GO, f"{old_dc}'s fence_command succeeded: it is fenced")
    if holder is not None and holder != old_dc:
        return PromoteGate(PromoteVerdict.REFUSE, f"the primary-DC lease is held by {holder}, but the record names "
                           f"{old_dc}: the record and the lease disagree; check `fedctl store status`")
    if holder is not None:
        left = f"{remaining:g} s left" if remaining is not None else "renewed within its TTL"
        if not force:
            return PromoteGate(PromoteVerdict.REFUSE, f"the primary-DC lease of {old_dc} is alive ({left}): "
                               f"{old_dc} still reaches the store's majority; use switchover-dc, or --force to "
                               "revoke the lease")
        # After the revocation, an agent of the old DC cut off right after its last renewal still fences
        # by its own clock before the lease would have expired; etcd rounds its TTL down to whole seconds.
        expiry = now + (remaining + 1 if remaining is not None else ttl)
        return PromoteGate(PromoteVerdict.WAIT, f"--force: revoking the lease of {old_dc}; promoting once it has "
                           f"certainly fenced, in {expiry + fence_bound - now:.1f} s", expiry + fence_bound, True)
    gone = seen_gone_at if seen_gone_at is not None else now
    not_before = gone + fence_bound
    if now >= not_before:
        return PromoteGate(PromoteVerdict.GO, f"the lease of {old_dc} is gone since at least {now - gone:.1f} s: "
                           f"{old_dc} has fenced itself (fence bound {fence_bound:g} s)", not_before)
    return PromoteGate(PromoteVerdict.WAIT, f"the lease of {old_dc} is gone; waiting {not_before - now:.1f} s "
                       f"more for its fence to act (fence bound {fence_bound:g} s)", not_before)
