"""Partition drills on the namespace lab: dc1, dc2 and a witness site, each in its own network.

Each drill cuts the WAN with `fedctl lab partition` while clients commit, and asserts what a user must be
able to rely on. Where fedctl is not partition-safe yet, the drill measures the damage, raises
`NotYetPartitionSafe` with the figures, and is marked xfail(strict=True) for that exception only: any
other failure fails the run, and the partition-safe federation issue turns these green.
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from federation.lab.netns import netns_of
from federation.lsn import parse_lsn
from federation.samples import newest_sample
from federation.state import read_copies
from tests.integration.labkit import LabHandle, Writer, dc_dsn, eventually, fedctl, fedctl_in

pytestmark = pytest.mark.integration

NOT_FENCED = ("issue 11: a primary DC cut off from the others keeps its Patroni leader and acknowledges its local "
              "clients' writes until the cut heals; there is no primary-DC lease whose loss would fence it")
SELF_JUDGED = ("issue 11: promote-dc judges 'the primary DC is gone' from the operator's own host, and the "
               "record is committed to the first DC that answers there, which is not consensus")


class NotYetPartitionSafe(AssertionError):
    """A guarantee fedctl does not give yet under a partition (see the xfail reasons)."""


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


def _wait_for_fresh_sample(lab: LabHandle, dc: str) -> None:
    """The loss estimate needs a recent sample of `dc`'s position, taken by the other DC's agents."""
    from datetime import UTC, datetime

    eventually(f"an LSN sample of {dc} younger than 3 s", lambda: (s := newest_sample(lab.topo, dc)) is not None
               and (datetime.now(UTC) - s.taken_at).total_seconds() < 3, timeout=30)


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
    client = _inside(lab, "dc1", "short_cut_rows").start()
    try:
        eventually("the client inside dc1 commits", lambda: len(client.acked) > 30, timeout=20)
        _ok(fedctl(lab, "lab", "partition", "dc1"), "lab partition")
        cut_at = time.monotonic()
        time.sleep(3)  # the drill: a 3 s WAN cut
        _ok(fedctl(lab, "lab", "heal", "dc1"), "lab heal")
        healed_at = time.monotonic()
        count = len(client.acked)
        eventually("the client commits after the heal", lambda: len(client.acked) > count + 30, timeout=20)
        for member in lab.dc("dc2").members:
            eventually(f"{member.name} has every row", lambda m=member: client.missing_on(lab, m) == [], timeout=60)
    finally:
        client.stop()
    in_cut = [t for _, t in client.acked if cut_at < t < healed_at]
    assert len(in_cut) > 20, f"the client inside dc1 committed only {len(in_cut)} times during the cut"
    assert client.longest_gap() < 2.0, f"a local client waited {client.longest_gap():.2f} s for a commit"
    assert _roles(lab) == roles
    assert _epochs(lab) == epochs
    for member in lab.dc("dc1").members:
        assert client.missing_on(lab, member) == []


@pytest.mark.timeout(360)
@pytest.mark.xfail(strict=True, raises=NotYetPartitionSafe, reason=NOT_FENCED)
def test_cut_off_primary_dc_acknowledges_nothing_once_the_other_dc_is_promoted(fresh_partition: LabHandle) -> None:
    """(b) dc1 cut off from everyone with a client inside dc1 and one inside dc2; `promote-dc dc2` from the
    admin host. Counts dc1's acknowledged commits after dc2's first accepted write (the split-brain window,
    which must be 0) and, after heal and rejoin-dc, the acknowledged commits lost against the estimate."""
    lab = fresh_partition
    in_dc1 = _inside(lab, "dc1", "split_rows").start()
    in_dc2 = _inside(lab, "dc2", "split_rows", create=False, first_id=10**9, error_pause=0.1)
    try:
        eventually("the client inside dc1 commits", lambda: len(in_dc1.acked) > 30, timeout=20)
        n3 = lab.dc("dc2").members[0]
        eventually("dc2 has dc1's table", lambda: lab.sql_one(n3, "SELECT count(*) FROM split_rows") > 0, timeout=20)
        in_dc2.start()
        _wait_for_fresh_sample(lab, "dc1")
        _ok(fedctl(lab, "lab", "partition", "dc1"), "lab partition")
        cut_at = time.monotonic()
        promoted = _ok(fedctl(lab, "promote-dc", "dc2", "--yes", "--format", "json"), "promote-dc dc2")
        report = json.loads(promoted.stdout)
        first = eventually("dc2 accepts a write from its client", lambda: in_dc2.acked[:1], timeout=30)[0][1]
        assert in_dc2.answers > 0, "dc2 never answered its client before the promotion"
        # Five more seconds of dc1's client: a DC that fenced itself would have stopped long before.
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
    print(f"cut to promoted: {first - cut_at:.1f} s; dc1 acknowledged {len(after_promotion)} commits after dc2's "
          f"first write; lost {len(lost)} acknowledged commits ({lost_bytes} bytes) against an estimate of "
          f"{estimate} bytes; rejoin found diverged WAL on {sorted(joined.get('diverged_wal', {}))}")
    if after_promotion or lost_bytes > estimate + 512:
        raise NotYetPartitionSafe(f"split brain: dc1 acknowledged {len(after_promotion)} commits after dc2's first "
                                  f"write; {len(lost)} acknowledged commits ({lost_bytes} bytes) lost against an "
                                  f"estimate of {estimate} bytes")


@pytest.mark.timeout(300)
def test_operators_on_both_sides_of_a_cut_at_most_one_wins(fresh_partition: LabHandle) -> None:
    """(c) dc1 cut off from everyone; at the same moment an operator inside dc1 hands the primary role to dc2
    with switchover-dc and one on the admin host runs promote-dc dc2. At most one may win, the loser says why
    (no traceback), and the record's epoch rises once per winner."""
    lab = fresh_partition
    before = max(e for e in _epochs(lab).values() if e is not None)
    _ok(fedctl(lab, "lab", "partition", "dc1"), "lab partition")
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            inside = pool.submit(fedctl_in, lab, "dc1", "switchover-dc", "dc2", "--yes")
            outside = pool.submit(fedctl, lab, "promote-dc", "dc2", "--yes")
            runs = {"inside dc1": inside.result(), "admin host": outside.result()}
    finally:
        _ok(fedctl(lab, "lab", "heal"), "lab heal")
    winners = [who for who, run in runs.items() if run.returncode == 0]
    assert len(winners) <= 1, {who: run.stderr for who, run in runs.items()}
    for who, run in runs.items():
        if run.returncode != 0:
            assert run.stderr.startswith("Error: ") or "\nError: " in run.stderr, f"{who}: {run.stderr}"
            assert "Traceback" not in run.stderr, f"{who}: {run.stderr}"
    def every_dc_answers() -> dict[str, int | None] | None:
        seen = _epochs(lab)
        return seen if None not in seen.values() else None

    after = eventually("both DCs answer after the heal", every_dc_answers, timeout=30)
    assert max(after.values()) == before + len(winners), (before, after, winners)
    print(f"winner: {winners or 'none'}; epochs after heal: {after}")


@pytest.mark.timeout(300)
@pytest.mark.xfail(strict=True, raises=NotYetPartitionSafe, reason=SELF_JUDGED)
def test_operator_inside_a_cut_off_standby_dc_cannot_promote_it(fresh_partition: LabHandle) -> None:
    """(c) dc2 cut off from everyone while dc1 keeps committing; an operator inside dc2 runs promote-dc dc2.
    From there dc1 looks dead, but it is alive: the promotion must be refused and dc2 must take no write."""
    lab = fresh_partition
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
    assert dc1_kept_writing > 20, "dc1 is alive and keeps committing through the cut"
    assert "Traceback" not in attempt.stderr, attempt.stderr
    print(f"promote-dc inside dc2 exited {attempt.returncode}; dc2 accepted {len(in_dc2.acked)} writes while dc1 "
          f"acknowledged {dc1_kept_writing}")
    if attempt.returncode == 0 or in_dc2.acked:
        raise NotYetPartitionSafe(f"an operator inside cut-off dc2 promoted it (exit {attempt.returncode}) while dc1 "
                                  f"was alive: dc2 accepted {len(in_dc2.acked)} writes, dc1 {dc1_kept_writing}")
