"""Partition drills on the namespace lab: dc1, dc2 and a witness site, each in its own network.

Each drill cuts the WAN with `fedctl lab partition` while clients inside the DCs commit, and asserts what a
user must be able to rely on: a cut-off primary DC fences itself within the lease TTL plus a few seconds,
promote-dc waits until it certainly has, an operator without the federation store's majority changes
nothing, and a cut that leaves the store's majority with the primary DC changes nothing at all.
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from federation.lab import agents, dcs_servers
from federation.lab.agents import agent_process
from federation.lab.netns import netns_of
from federation.lsn import parse_lsn
from federation.samples import newest_sample
from federation.state import current_state, read_copies
from federation.store import FederationStore
from federation.topology import Datacenter, Member
from tests.integration.labkit import (
    LabHandle,
    Writer,
    dc_dsn,
    eventually,
    fedctl,
    fedctl_in,
    metrics_of,
    wait_for_no_lease,
)

pytestmark = pytest.mark.integration

class NotPartitionSafe(AssertionError):
    """A partition guarantee was broken (split brain, a commit without the store's majority, ...)."""


def _status(lab: LabHandle) -> dict[str, Any]:
    done = fedctl(lab, "status", "--format", "json", "--timeout", "1", timeout=30)
    assert done.stdout.strip(), done.stderr
    return dict(json.loads(done.stdout))


def _dc(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(dc for dc in status["datacenters"] if dc["name"] == name)


def _roles(lab: LabHandle) -> dict[str, str | None]:
    return {m.name: lab.member_role(m) for _dc, m in lab.topo.members()}


def _epochs(lab: LabHandle) -> dict[str, int | None]:
    """Each DC's copy of the record's epoch (0 before any operation), None while its DCS does not answer."""
    return {c.dc: (c.state.epoch if c.state else 0) if c.reachable else None for c in read_copies(lab.topo)}


def _ok(done: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"{what} failed:\n{done.stderr}{done.stdout}"
    return done


def _inside(lab: LabHandle, dc: str, table: str, **kwargs: Any) -> Writer:
    """A client standing in `dc`: it connects to that DC's members only, from inside its namespace."""
    return Writer(lab, table, dsn=dc_dsn(lab.topo, lab.dc(dc)), netns=netns_of(lab.topo, dc), **kwargs)


def _wait_for_fresh_sample(lab: LabHandle, dc: str, load: Writer) -> None:
    """The loss estimate needs a recent sample of `dc`'s position, taken by the other DC's agents, whose WAL
    rate reflects the client's steady load: taken at least two sampling intervals after it began."""
    from datetime import UTC, datetime, timedelta

    began = datetime.now(UTC) - timedelta(seconds=time.monotonic() - load.acked[0][1])
    eventually(f"an LSN sample of {dc} younger than 3 s, taken under load", lambda: (
        s := newest_sample(lab.topo, dc)) is not None and (datetime.now(UTC) - s.taken_at).total_seconds() < 3
        and s.taken_at > began + timedelta(seconds=2 * s.interval_seconds + 1), timeout=40)


@pytest.mark.timeout(300)
def test_standby_dc_cut_from_the_primary_dc_catches_up_after_heal(clean_partition: LabHandle) -> None:
    """(a) dc2 loses dc1 for 20 s: status shows dc2 falling behind, nothing changes role, and once healed
    dc2 streams again by itself with every acknowledged commit."""
    lab = clean_partition
    roles, epochs = _roles(lab), _epochs(lab)
    writer = Writer(lab, "cut_standby_rows").start()
    try:
        eventually("the writer commits", lambda: len(writer.acked) > 30, timeout=20)
        _ok(fedctl(lab, "lab", "partition", "dc2", "--from", "dc1"), "lab partition")
        cut_at = time.monotonic()
        during = []
        try:
            while time.monotonic() - cut_at < 20:
                during.append(_status(lab))
                time.sleep(1)
        finally:
            _ok(fedctl(lab, "lab", "heal"), "lab heal")
        healed_at = time.monotonic()
        committed_in_cut = len([t for _, t in writer.acked if cut_at < t < healed_at])
        assert committed_in_cut > 50, "the primary DC must keep taking writes while only dc2 is cut off"
        for member in lab.dc("dc2").members:
            eventually(f"{member.name} has every acknowledged row after the heal",
                       lambda m=member: writer.missing_on(lab, m) == [], timeout=90)
    finally:
        writer.stop()
    assert all(st["lab_cuts"] == ["dc2 cut off from dc1"] for st in during), [st["lab_cuts"] for st in during]
    lags = [_dc(st, "dc2")["lag_bytes"] for st in during]
    assert all(_dc(st, "dc2")["reachable"] and _dc(st, "dc1")["reachable"] for st in during), \
        "the admin host reaches both DCs: only the link between them is cut"
    assert max(lag or 0 for lag in lags[len(lags) // 2:]) > 0, f"dc2 never showed a lag during the cut: {lags}"
    print(f"dc2's lag during the cut (bytes, one status a second): {lags}; healed after "
          f"{healed_at - cut_at:.1f} s")
    eventually("status shows dc2 caught up", lambda: _dc(_status(lab), "dc2")["lag_bytes"] == 0, timeout=30)
    assert _roles(lab) == roles, "a cut between the DCs must change no role"
    assert _epochs(lab) == epochs


@pytest.mark.timeout(240)
def test_short_cut_of_the_primary_dc_changes_nothing(clean_partition: LabHandle) -> None:
    """(d) dc1 cut off from everyone for 3 s, below every agent and Patroni timeout, under a steady load from
    a client inside dc1: the client never notices, no role or epoch changes, dc2 gets every row."""
    lab = clean_partition
    roles, epochs = _roles(lab), _epochs(lab)
    fences = _self_fences(lab, "dc1")
    client = _inside(lab, "dc1", "short_cut_rows").start()
    try:
        eventually("the client inside dc1 commits", lambda: len(client.acked) > 30, timeout=20)
        cut_at = time.monotonic()
        # One command cuts and heals: two would stretch the cut by the second one's start-up on a busy host.
        done = _ok(fedctl(lab, "lab", "partition", "dc1", "--for", "3"), "lab partition --for 3")
        healed_at = time.monotonic()
        assert "healed after 3." in done.stdout, done.stdout
        count = len(client.acked)
        eventually("the client commits after the heal", lambda: len(client.acked) > count + 30, timeout=20)
        for member in lab.dc("dc2").members:
            eventually(f"{member.name} has every row", lambda m=member: client.missing_on(lab, m) == [], timeout=60)
    finally:
        client.stop()
    in_cut = [t for _, t in client.acked if cut_at < t < healed_at]
    assert len(in_cut) > 20, f"the client inside dc1 committed only {len(in_cut)} times during the cut"
    assert client.longest_gap() < 2.0, f"a local client waited {client.longest_gap():.2f} s for a commit"
    assert _self_fences(lab, "dc1") == fences, "an agent of dc1 fenced its DC during a 3 s cut"
    assert _roles(lab) == roles
    assert _epochs(lab) == epochs
    for member in lab.dc("dc1").members:
        assert client.missing_on(lab, member) == []


def _self_fences(lab: LabHandle, dc: str) -> dict[str, float]:
    """How often each agent of `dc` has fenced the DC since it started (every agent must answer)."""
    return {m.name: metrics_of(m)["fedctl_agent_self_fences_total"] for m in lab.dc(dc).members}


def _active_agent(lab: LabHandle, dc: Datacenter) -> Member | None:
    """The member whose agent is its DC's active one (asked of each agent's API)."""
    from tests.integration.labkit import agent_get

    for member in dc.members:
        try:
            code, body = agent_get(member, "/status")
            if code == 200 and json.loads(body)["agent"]["active"]:
                return member
        except (OSError, ValueError, KeyError):
            continue
    return None


def _ttl(lab: LabHandle) -> float:
    assert lab.topo.federation_store is not None
    return float(lab.topo.federation_store.lease_ttl)


def _store_record_epoch(lab: LabHandle) -> int:
    return current_state(lab.topo)[0].epoch


def _lease_holder(lab: LabHandle) -> str | None:
    store = lab.topo.federation_store
    assert store is not None
    return FederationStore(store, lab.topo.federation).read_lease().holder


def _last_ack_once_quiet(writer: Writer, quiet: float = 2.0) -> float | None:
    """When the writer's last commit was acknowledged, once it has had none for `quiet` seconds."""
    last = writer.acked[-1][1] if writer.acked else None
    return last if last is not None and last < time.monotonic() - quiet else None


def _fences_in_time(lab: LabHandle, writer: Writer, cut_at: float) -> float:
    """Wait until `writer` (a client inside the primary DC) gets no more acknowledgements; return the time
    from the cut to its last one, which must stay within the lease TTL plus 5 s."""
    ttl = _ttl(lab)
    last = eventually("the cut-off primary DC to stop acknowledging commits", lambda: _last_ack_once_quiet(writer),
                      timeout=ttl + 20, interval=0.2)
    fenced_after = last - cut_at
    if fenced_after > ttl + 5:
        raise NotPartitionSafe(f"the cut-off primary DC acknowledged commits for {fenced_after:.1f} s after the cut "
                               f"(lease TTL {ttl:.0f} s + 5 s allowed)")
    return fenced_after


@pytest.mark.timeout(240)
def test_cut_of_the_witness_alone_changes_nothing(clean_partition: LabHandle) -> None:
    """(c) The witness site cut off for longer than the lease TTL: the store keeps its majority (dc1 and dc2),
    so no DC fences, no role changes, a client inside dc1 never waits, nothing is lost."""
    lab = clean_partition
    roles, epoch, holder = _roles(lab), _store_record_epoch(lab), _lease_holder(lab)
    assert holder == "dc1", f"the primary DC holds the lease before the drill (holder: {holder})"
    client = _inside(lab, "dc1", "witness_cut_rows").start()
    try:
        eventually("the client inside dc1 commits", lambda: len(client.acked) > 30, timeout=20)
        _ok(fedctl(lab, "lab", "partition", "witness"), "lab partition")
        cut_at = time.monotonic()
        eventually("a cut longer than the lease TTL", lambda: time.monotonic() > cut_at + _ttl(lab) + 5,
                   timeout=_ttl(lab) + 10)
        assert _lease_holder(lab) == "dc1", "dc1 keeps renewing its lease through the witness cut"
        _ok(fedctl(lab, "lab", "heal"), "lab heal")
        for member in lab.dc("dc2").members:
            eventually(f"{member.name} has every row", lambda m=member: client.missing_on(lab, m) == [], timeout=60)
    finally:
        client.stop()
    assert len([t for _, t in client.acked if t > cut_at]) > 50
    assert client.longest_gap() < 2.0, f"the client inside dc1 waited {client.longest_gap():.2f} s for a commit"
    assert (_roles(lab), _store_record_epoch(lab)) == (roles, epoch)


@pytest.mark.timeout(420)
def test_cut_off_primary_dc_fences_itself_and_promote_dc_loses_no_more_than_estimated(
        fresh_partition: LabHandle) -> None:
    """(a) dc1 cut off from everyone with a client inside dc1 and one inside dc2: dc1 stops acknowledging
    commits within TTL + 5 s without any operator; promote-dc dc2 from the admin host then succeeds, and dc1
    acknowledges nothing after dc2's first accepted write; after heal and rejoin-dc, the acknowledged commits
    lost stay within the printed estimate and the rejoin report lists the diverged WAL."""
    lab = fresh_partition
    in_dc1 = _inside(lab, "dc1", "split_rows").start()
    in_dc2 = _inside(lab, "dc2", "split_rows", create=False, first_id=10**9, error_pause=0.1)
    try:
        eventually("the client inside dc1 commits", lambda: len(in_dc1.acked) > 30, timeout=20)
        n3 = lab.dc("dc2").members[0]
        eventually("dc2 has dc1's table", lambda: lab.sql_one(n3, "SELECT count(*) FROM split_rows") > 0, timeout=20)
        in_dc2.start()
        _wait_for_fresh_sample(lab, "dc1", in_dc1)
        _ok(fedctl(lab, "lab", "partition", "dc1"), "lab partition")
        cut_at = time.monotonic()
        early = fedctl(lab, "promote-dc", "dc2", "--yes")  # dc1 renewed its lease a moment ago
        assert early.returncode == 1 and "still holds its lease" in early.stderr, early.stderr
        fenced_after = _fences_in_time(lab, in_dc1, cut_at)
        wait_for_no_lease(lab)
        promoted = _ok(fedctl(lab, "promote-dc", "dc2", "--yes", "--format", "json"), "promote-dc dc2")
        report = json.loads(promoted.stdout)
        last_sample = newest_sample(lab.topo, "dc1")
        first = eventually("dc2 accepts a write from its client", lambda: in_dc2.acked[:1], timeout=30)[0][1]
        assert in_dc2.answers > 0, "dc2 never answered its client before the promotion"
        eventually("five seconds past dc2's first write", lambda: time.monotonic() > first + 5, timeout=10)
        after_promotion = [i for i, t in in_dc1.acked if t > first]
        _ok(fedctl(lab, "lab", "heal"), "lab heal")
        rejoined = _ok(fedctl(lab, "rejoin-dc", "dc1", "--yes", "--format", "json", timeout=240), "rejoin-dc dc1")
        joined = json.loads(rejoined.stdout)
    finally:
        in_dc1.stop()
        in_dc2.stop()
    primary = lab.leader_of(lab.dc("dc2"))
    assert lab.sql_one(primary, "SELECT pg_is_in_recovery()") is False
    for member in lab.dc("dc1").members:
        eventually(f"{member.name} streams from dc2 again",
                   lambda m=member: lab.sql_one(m, "SELECT status FROM pg_stat_wal_receiver") == "streaming")
    lost = in_dc1.missing_on(lab, primary)
    estimate = report["data_loss_estimate_bytes"]
    assert estimate is not None, "no LSN sample of dc1: the agents should have sampled it"
    received = parse_lsn(report["received_lsn"])
    lost_bytes = max((in_dc1.lsn_of[i] + 512 - received for i in lost), default=0)
    print(f"fenced {fenced_after:.1f} s after the cut; dc2's first write {first - cut_at:.1f} s after it; dc1 "
          f"acknowledged {len(after_promotion)} commits after dc2's first write; lost {len(lost)} acknowledged "
          f"commits ({lost_bytes} bytes) against an estimate of {estimate} bytes; rejoin found diverged WAL on "
          f"{sorted(joined.get('diverged_wal', {}))}; the last sample's WAL rate "
          f"{last_sample.bytes_per_second if last_sample else None} B/s, peak "
          f"{last_sample.peak_bytes_per_second if last_sample else None} B/s; promote-dc right after the cut: "
          f"{early.stderr.splitlines()[0]}")
    if after_promotion:
        raise NotPartitionSafe(f"split brain: dc1 acknowledged {len(after_promotion)} commits after dc2's first write")
    assert lost_bytes <= estimate + 512, f"{len(lost)} commits ({lost_bytes} bytes) lost, estimate {estimate} bytes"
    assert "diverged_wal" in joined, joined


@pytest.mark.timeout(300)
def test_operators_on_both_sides_of_a_cut_exactly_one_wins(fresh_partition: LabHandle) -> None:
    """(b) dc1 cut off from everyone; once its lease is gone, an operator inside dc1 hands the primary role to
    dc2 with switchover-dc at the same moment as one on the admin host runs promote-dc dc2. Exactly one wins:
    the one who reaches the store's majority; the other is told why (no traceback)."""
    lab = fresh_partition
    before = _store_record_epoch(lab)
    _ok(fedctl(lab, "lab", "partition", "dc1"), "lab partition")
    try:
        wait_for_no_lease(lab)
        with ThreadPoolExecutor(max_workers=2) as pool:
            inside = pool.submit(fedctl_in, lab, "dc1", "switchover-dc", "dc2", "--yes")
            outside = pool.submit(fedctl, lab, "promote-dc", "dc2", "--yes")
            runs = {"inside dc1": inside.result(), "admin host": outside.result()}
    finally:
        _ok(fedctl(lab, "lab", "heal"), "lab heal")
    winners = [who for who, run in runs.items() if run.returncode == 0]
    assert winners == ["admin host"], {who: run.stderr[-600:] for who, run in runs.items()}
    loser = runs["inside dc1"]
    assert "Error: " in loser.stderr and "Traceback" not in loser.stderr, loser.stderr
    assert "no quorum from here" in loser.stderr, loser.stderr
    assert _store_record_epoch(lab) == before + 1
    print(f"inside dc1: {loser.stderr.strip().splitlines()[0]}")


@pytest.mark.timeout(300)
def test_operator_inside_a_cut_off_standby_dc_cannot_promote_it(fresh_partition: LabHandle) -> None:
    """(b) dc2 cut off from everyone while dc1 keeps committing; an operator inside dc2 runs promote-dc dc2.
    From there dc1 looks dead, but it is alive and holds the store's majority with the witness: the promotion
    is refused, nothing changes, dc2 takes no write and dc1 never stops."""
    lab = fresh_partition
    before = _store_record_epoch(lab)
    in_dc1 = _inside(lab, "dc1", "standby_cut_rows").start()
    in_dc2 = _inside(lab, "dc2", "standby_cut_rows", create=False, first_id=10**9, error_pause=0.1)
    try:
        eventually("the client inside dc1 commits", lambda: len(in_dc1.acked) > 30, timeout=20)
        n3 = lab.dc("dc2").members[0]
        eventually("dc2 has dc1's table", lambda: lab.sql_one(n3, "SELECT count(*) FROM standby_cut_rows") > 0,
                   timeout=20)
        in_dc2.start()
        _ok(fedctl(lab, "lab", "partition", "dc2"), "lab partition")
        attempt = fedctl_in(lab, "dc2", "promote-dc", "dc2", "--yes")
        watched_from = time.monotonic()
        eventually("five seconds of dc2's client", lambda: time.monotonic() > watched_from + 5, timeout=10)
        dc1_kept_writing = len([t for _, t in in_dc1.acked if t > watched_from])
    finally:
        fedctl(lab, "lab", "heal")
        in_dc1.stop()
        in_dc2.stop()
    assert in_dc2.answers > 0, "dc2's members never answered the client inside dc2: nothing was watched"
    assert "Traceback" not in attempt.stderr, attempt.stderr
    print(f"promote-dc inside dc2 exited {attempt.returncode}: {attempt.stderr.strip().splitlines()[:1]}; dc2 "
          f"accepted {len(in_dc2.acked)} writes while dc1 acknowledged {dc1_kept_writing}")
    if attempt.returncode == 0 or in_dc2.acked:
        raise NotPartitionSafe(f"an operator inside cut-off dc2 promoted it (exit {attempt.returncode}) while dc1 "
                               f"was alive: dc2 accepted {len(in_dc2.acked)} writes, dc1 {dc1_kept_writing}")
    # Within ~1.8 s of the cut dc2's store member still believes in its lost leader, so the probe passes and
    # the read then times out; after that the probe already finds no majority. Either way the store refused.
    assert attempt.returncode == 1, attempt.stderr
    assert "no quorum from here" in attempt.stderr or "could not read the federation record" in attempt.stderr, \
        attempt.stderr
    assert dc1_kept_writing > 20, "dc1 holds the store's majority with the witness and keeps committing"
    assert in_dc1.longest_gap() < 2.0
    assert _store_record_epoch(lab) == before


@pytest.mark.timeout(360)
def test_cut_off_primary_dc_fences_itself_without_its_active_agent_and_recovers_after_heal(
        fresh_partition: LabHandle) -> None:
    """(d) dc1 cut off from everyone and its active agent SIGKILLed at the same moment: the other agent fences
    dc1 all the same. Healed while the record still names dc1, dc1 takes its lease again and takes writes."""
    lab = fresh_partition
    dc1 = lab.dc("dc1")
    epoch = _store_record_epoch(lab)
    client = _inside(lab, "dc1", "agent_kill_rows").start()
    try:
        eventually("the client inside dc1 commits", lambda: len(client.acked) > 30, timeout=20)
        active = eventually("dc1's active agent", lambda: _active_agent(lab, dc1), timeout=20)
        _ok(fedctl(lab, "lab", "partition", "dc1"), "lab partition")
        cut_at = time.monotonic()
        agent_process(lab.lab.layout, dc1, active).kill()
        fenced_after = _fences_in_time(lab, client, cut_at)
        _ok(fedctl(lab, "lab", "heal"), "lab heal")
        healed_at = time.monotonic()
        eventually("dc1 takes writes again after the heal", lambda: client.acked[-1][1] > healed_at, timeout=90)
        back_after = next(t for _, t in client.acked if t > healed_at) - healed_at
        agents.start_agents(lab.lab, dc1)
        for member in lab.dc("dc2").members:
            eventually(f"{member.name} has every row", lambda m=member: client.missing_on(lab, m) == [], timeout=60)
    finally:
        client.stop()
    print(f"with {active.name}'s agent killed, dc1 fenced {fenced_after:.1f} s after the cut and took writes again "
          f"{back_after:.1f} s after the heal")
    assert _store_record_epoch(lab) == epoch, "nobody promoted anything: the record is unchanged"
    assert lab.member_role(lab.leader_of(dc1)) == "primary"
    assert client.missing_on(lab, lab.leader_of(dc1)) == []


@pytest.mark.timeout(300)
def test_store_without_majority_fences_the_primary_dc_until_it_returns(fresh_partition: LabHandle) -> None:
    """(e) The federation store loses its majority (its dc2 and witness members stop) while every DC is
    connected: dc1 fences itself (consistency first) and status says why; once the members are back, dc1
    takes its lease again and writes by itself."""
    lab = fresh_partition
    epoch = _store_record_epoch(lab)
    client = _inside(lab, "dc1", "store_loss_rows").start()
    down = [proc for _host, proc in dcs_servers.store_processes_in(lab.lab.layout, "dc2", "witness")]
    try:
        eventually("the client inside dc1 commits", lambda: len(client.acked) > 30, timeout=20)
        lost_at = time.monotonic()
        for proc in down:
            proc.kill()
        fenced_after = _fences_in_time(lab, client, lost_at)
        status = fedctl(lab, "status", "--timeout", "1")
        assert status.returncode == 1 and "no quorum" in status.stdout, status.stdout + status.stderr
        group = dcs_servers.store_group(lab.lab.layout)
        assert group is not None
        back_at = time.monotonic()
        dcs_servers.start_group(group, lab.lab.user,
                                only=dcs_servers.store_members_in(lab.lab.layout, "dc2", "witness"))
        eventually("dc1 takes writes again once the store is back", lambda: client.acked[-1][1] > back_at,
                   timeout=90)
        recovered_after = next(t for _, t in client.acked if t > back_at) - back_at
        for member in lab.dc("dc2").members:
            eventually(f"{member.name} has every row", lambda m=member: client.missing_on(lab, m) == [], timeout=60)
    finally:
        client.stop()
    print(f"store majority lost: dc1 fenced {fenced_after:.1f} s later; took writes again {recovered_after:.1f} s "
          "after the store members came back")
    assert _store_record_epoch(lab) == epoch
