"""Cross-DC operations on the real two-DC lab: switchover, disaster promotion, fencing, rejoin, bad requests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from federation.lab.lab import lab_kill, lab_start
from federation.lsn import parse_lsn
from federation.progress import Progress
from federation.state import PendingOperation, current_state, update, utc_now
from tests.integration.labkit import LabHandle, Writer, eventually, fedctl, wait_for_no_lease


def _report(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.stdout.strip(), f"no JSON report; stderr:\n{done.stderr}"
    return json.loads(done.stdout)


def _rewinds(lab: LabHandle) -> list[str]:
    return [f"{where}: {line}" for where, text in lab.patroni_logs().items() for line in text.splitlines()
            if "running pg_rewind" in line.lower()]


def test_switchover_there_and_back_loses_no_acknowledged_commit(fresh_two_dc: LabHandle) -> None:
    lab = fresh_two_dc
    writer = Writer(lab).start()
    eventually("the writer commits", lambda: len(writer.acked) > 50, timeout=20)
    first = fedctl(lab, "switchover-dc", "dc2", "--yes", "--format", "json")
    assert first.returncode == 0, first.stderr + first.stdout
    count = len(writer.acked)
    eventually("the writer commits on dc2", lambda: len(writer.acked) > count + 50, timeout=20)
    back = fedctl(lab, "switchover-dc", "dc1", "--yes", "--format", "json")
    assert back.returncode == 0, back.stderr + back.stdout
    count = len(writer.acked)
    eventually("the writer commits on dc1 again", lambda: len(writer.acked) > count + 50, timeout=20)
    writer.stop()

    there, again = _report(first), _report(back)
    for report in (there, again):
        assert report["outcome"] == "succeeded"
        assert report["switch_point"] == report["demotion_token"]["lsn"]
        assert report["token_source"] == "pg_control", "the source's agent read the token from pg_control"
    assert there["epoch"] + 1 == again["epoch"]
    primary = lab.leader_of(lab.dc("dc1"))
    assert lab.sql_one(primary, "SELECT pg_is_in_recovery()") is False
    assert writer.missing_on(lab, primary) == []
    assert _rewinds(lab) == [], "a switchover must not need pg_rewind"
    for member in lab.dc("dc2").members:
        eventually(f"{member.name} has every row", lambda m=member: writer.missing_on(lab, m) == [], timeout=20)
    st, _ = current_state(lab.topo)
    assert [h.operation for h in st.history][-2:] == ["switchover-dc", "switchover-dc"]
    print(f"client write outage: longest gap between commits {writer.longest_gap():.2f} s")

    # A crash right after the promotion leaves the operation in the record: a rerun finishes it without
    # raising the epoch again.
    stuck = PendingOperation(kind="switchover", source="dc2", target="dc1", step="promote", started=utc_now(),
                             id="crashed", inputs={"token": again["demotion_token"]})
    update(lab.topo, lambda s: s.model_copy(update={"operation": stuck}))
    assert fedctl(lab, "status").returncode == 1
    resumed = fedctl(lab, "switchover-dc", "dc1", "--yes", "--format", "json")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    after, _ = current_state(lab.topo)
    assert after.operation is None and after.epoch == again["epoch"] and after.primary_dc == "dc1"


def test_disaster_promotion_fences_the_returning_dc_and_rejoin_brings_it_back(fresh_two_dc: LabHandle) -> None:
    lab = fresh_two_dc
    repo = Path(lab.topo.pgbackrest_for(lab.dc("dc1")).repo_path) / "archive" / "fed"
    writer = Writer(lab).start()
    eventually("the writer commits", lambda: len(writer.acked) > 50, timeout=20)

    refused = fedctl(lab, "promote-dc", "dc2", "--yes")
    assert refused.returncode == 1 and "switchover-dc" in refused.stderr

    lab_kill(lab.topo, "dc1")
    switch_refused = fedctl(lab, "switchover-dc", "dc2", "--yes")
    assert switch_refused.returncode == 1 and "promote-dc" in switch_refused.stderr
    wait_for_no_lease(lab)
    done = fedctl(lab, "promote-dc", "dc2", "--yes", "--format", "json")
    assert done.returncode == 0, done.stderr + done.stdout
    report = _report(done)
    eventually("the writer commits on dc2", lambda: any(t > time.monotonic() - 1 for _, t in writer.acked[-5:]),
               timeout=20)
    writer.stop()
    new_primary = lab.leader_of(lab.dc("dc2"))
    assert lab.sql_one(new_primary, "SELECT pg_is_in_recovery()") is False
    lost = writer.missing_on(lab, new_primary)
    estimate = report["data_loss_estimate_bytes"]
    assert estimate is not None, "no LSN sample of dc1: the agents should have sampled it"
    # A lost commit's WAL ends shortly after the insert position read inside its transaction.
    lost_bytes = max((writer.lsn_of[i] + 512 - parse_lsn(report["received_lsn"]) for i in lost), default=0)
    print(f"estimate {estimate} bytes (sample age {report['sample_age_seconds']} s); "
          f"commits lost: {len(lost)}, {lost_bytes} bytes")
    assert lost_bytes <= estimate + 512, f"{len(lost)} commits ({lost_bytes} bytes) lost, estimate {estimate}"

    timelines_before = sorted(p.name for p in repo.glob("*/*.history"))
    lab_start(lab.topo, "dc1", Progress(quiet=True))
    # Watch dc1 for 15 s once it is back: every answer must be "in recovery", and each member must have
    # answered several times, or the watch proved nothing (a member still in crash recovery answers nothing).
    answers = {m.name: 0 for m in lab.dc("dc1").members}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline or min(answers.values()) < 3:
        assert time.monotonic() < deadline + 60, f"dc1's members barely answered after their restart: {answers}"
        for member in lab.dc("dc1").members:
            try:
                in_recovery = lab.sql_one(member, "SELECT pg_is_in_recovery()")
            except Exception:
                continue
            assert in_recovery is True, f"{member.name} of the replaced dc1 came back writable"
            answers[member.name] += 1
        time.sleep(0.5)
    print(f"dc1's members answered in recovery: {answers}")
    assert sorted(p.name for p in repo.glob("*/*.history")) == timelines_before, "dc1 pushed a timeline"

    rejoin = fedctl(lab, "rejoin-dc", "dc1", "--yes", "--format", "json")
    assert rejoin.returncode == 0, rejoin.stderr + rejoin.stdout
    joined = _report(rejoin)
    assert joined["fork"]["lsn"]
    assert set(joined["diverged_wal"]) == {"n1", "n2"}
    for member in lab.dc("dc1").members:
        assert lab.member_role(member) in ("standby_leader", "replica")
        # rejoin-dc saw every member stream; a replica's walreceiver may still restart once right after (it
        # follows its standby leader onto the new timeline), so "streams" is checked again, not sampled.
        eventually(f"{member.name} streams", lambda m=member: lab.sql_one(
            m, "SELECT status FROM pg_stat_wal_receiver") == "streaming", timeout=30)
    lab.sql(new_primary, "INSERT INTO writer_rows (id) VALUES (-1)")
    for member in lab.dc("dc1").members:
        eventually(f"a new row reaches {member.name}",
                   lambda m=member: lab.sql_one(m, "SELECT count(*) FROM writer_rows WHERE id = -1") == 1)


def test_bad_requests_are_refused_and_change_nothing(clean_two_dc: LabHandle) -> None:
    lab = clean_two_dc
    before, _ = current_state(lab.topo)
    unknown = fedctl(lab, "switchover-dc", "dc9", "--yes")
    assert unknown.returncode == 2 and "unknown datacenter 'dc9'" in unknown.stderr
    primary_name = before.primary_dc
    again = fedctl(lab, "switchover-dc", primary_name, "--yes")
    assert again.returncode == 2 and "already the primary DC" in again.stderr
    promote_primary = fedctl(lab, "promote-dc", primary_name, "--yes")
    assert promote_primary.returncode == 2 and "already the primary DC" in promote_primary.stderr
    # Without --yes and a live primary DC: refused by the pre-checks, before any question is asked.
    no_yes = fedctl(lab, "promote-dc", "dc2")
    assert no_yes.returncode == 1 and "still holds its lease" in no_yes.stderr, no_yes.stderr
    for refused in (unknown, again, promote_primary, no_yes):
        assert "Traceback" not in refused.stderr + refused.stdout, refused.stderr
    dry = fedctl(lab, "switchover-dc", "dc2" if primary_name == "dc1" else "dc1", "--dry-run")
    assert dry.returncode == 0 and "Plan" in dry.stdout
    after, _ = current_state(lab.topo)
    assert (after.epoch, after.primary_dc, len(after.history)) == (before.epoch, before.primary_dc, len(before.history))


def test_two_concurrent_promotions_exactly_one_wins(fresh_two_dc: LabHandle) -> None:
    lab = fresh_two_dc
    lab_kill(lab.topo, "dc1")
    wait_for_no_lease(lab)
    argv = [sys.executable, "-m", "federation", "promote-dc", "dc2", "--yes", "-t", str(lab.path)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda _: subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                                      stdin=subprocess.DEVNULL), range(2)))
    codes = sorted(r.returncode for r in runs)
    assert codes[0] == 0 and codes[1] != 0, [r.stderr for r in runs]
    loser = next(r for r in runs if r.returncode != 0)
    assert "another operator" in loser.stderr or "already the primary DC" in loser.stderr, loser.stderr
    st, _ = current_state(lab.topo)
    assert st.primary_dc == "dc2" and st.epoch == 1
