"""Operations crashed part-way on the real lab, under a writer: a rerun finishes them, abort undoes them.

A crash is a failpoint's `crash` (fedctl exits at once with status 86, nothing cleaned up) or a SIGKILL at
a random moment. Throughout, a watcher asks every member whether it is writable: no sweep may find two DCs
writable, and the watcher must have seen each side writable at some point (or it proved nothing).
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest

from federation.failpoints import CRASH_STATUS, ENV
from federation.lab.lab import lab_kill
from federation.state import current_state
from tests.integration.labkit import LabHandle, Writer, eventually, fedctl, wait_for_no_lease

# One lab kind is enough here: what is crashed is fedctl, not the DCS.
pytestmark = pytest.mark.parametrize("two_dc_lab", ["two-dc"], indirect=True)

SWITCHOVER_STEPS = ["prepare", "pause-clients", "demote", "token", "catch-up", "epoch", "promote", "switch-point",
                    "repoint", "release-clients"]
PROMOTE_POINTS = ["before-fence", "before-fenced", "before-epoch", "after-epoch", "before-promote",
                  "before-repoint"]


class WritableWatch:
    """Sweeps every member with `SELECT pg_is_in_recovery()` on kept-open connections; records which DCs
    had a writable member in each sweep."""

    def __init__(self, lab: LabHandle) -> None:
        self.lab = lab
        self.sweeps: list[tuple[float, frozenset[str]]] = []
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WritableWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        conns: dict[str, Any] = {}
        while not self._stop.is_set():
            writable = set()
            for dc, member in self.lab.topo.members():
                try:
                    if member.name not in conns:
                        conns[member.name] = self.lab.connect(member, timeout=1)
                    row = conns[member.name].execute("SELECT pg_is_in_recovery()").fetchone()
                    self.answers += 1
                    if row and row[0] is False:
                        writable.add(dc.name)
                except psycopg.Error:
                    old = conns.pop(member.name, None)
                    if old is not None:
                        old.close()
            self.sweeps.append((time.monotonic(), frozenset(writable)))
            time.sleep(0.02)
        for conn in conns.values():
            conn.close()

    def check(self, *seen_writable: str) -> None:
        both = [(t, dcs) for t, dcs in self.sweeps if len(dcs) > 1]
        assert not both, f"two DCs writable at once in {len(both)} sweeps, first: {sorted(both[0][1])}"
        assert self.answers > 100, f"the watch got only {self.answers} answers: it proved nothing"
        for dc in seen_writable:
            assert any(dc in dcs for _, dcs in self.sweeps), f"the watch never saw {dc} writable"


def _crash(lab: LabHandle, point: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = fedctl(lab, *args, "--yes", env={ENV: f"{point}=crash"})
    assert done.returncode == CRASH_STATUS, f"{point}: exit {done.returncode}\n{done.stderr}"
    assert f"failpoint {point}: crash" in done.stderr
    assert "Traceback" not in done.stderr
    return done


def _all_rows_everywhere(lab: LabHandle, writer: Writer) -> None:
    for _dc, member in lab.topo.members():
        eventually(f"{member.name} has every acknowledged row", lambda m=member: writer.missing_on(lab, m) == [],
                   timeout=60)


def _writes_resume(writer: Writer) -> None:
    count = len(writer.acked)
    eventually("the writer commits again", lambda: len(writer.acked) > count + 30, timeout=30)


@pytest.mark.timeout(420)
def test_switchover_crashed_before_and_after_every_step_is_finished_by_a_rerun(fresh_two_dc: LabHandle) -> None:
    """dc1 -> dc2 crashed before each step in turn, then dc2 -> dc1 crashed after each step: every rerun
    resumes where the record says, each ends with the operation done, nothing acknowledged is lost."""
    lab = fresh_two_dc
    writer = Writer(lab, "crash_rows").start()
    with WritableWatch(lab) as watch:
        eventually("the writer commits", lambda: len(writer.acked) > 30, timeout=20)
        for target, where in (("dc2", "before"), ("dc1", "after")):
            steps_seen = []
            for step in SWITCHOVER_STEPS:
                _crash(lab, f"switchover/{where}-{step}", "switchover-dc", target)
                shown = fedctl(lab, "operation", "show")
                assert shown.returncode == 0 and "pending at step" in shown.stdout, shown.stdout + shown.stderr
                steps_seen.append(current_state(lab.topo)[0].operation.step)  # type: ignore[union-attr]
            done = fedctl(lab, "switchover-dc", target, "--yes")
            assert done.returncode == 0, done.stderr
            assert "Resuming the switchover" in done.stderr
            st = current_state(lab.topo)[0]
            assert st.primary_dc == target and st.operation is None
            assert st.history[-1].operation == "switchover-dc" and st.history[-1].outcome == "succeeded"
            print(f"{where}-step crashes towards {target}: the record stood at {steps_seen}")
            _writes_resume(writer)
        watch.check("dc1", "dc2")
    writer.stop()
    assert current_state(lab.topo)[0].epoch == 2, "each switchover raised the epoch exactly once"
    _all_rows_everywhere(lab, writer)


@pytest.mark.timeout(300)
def test_switchover_killed_at_random_moments_completes_on_rerun(fresh_two_dc: LabHandle) -> None:
    lab = fresh_two_dc
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    writer = Writer(lab, "kill_rows").start()
    killed_at: list[str] = []
    with WritableWatch(lab) as watch:
        eventually("the writer commits", lambda: len(writer.acked) > 30, timeout=20)
        for target in ("dc2", "dc1", "dc2"):
            delay = rng.uniform(0.3, 2.5)
            argv = [sys.executable, "-m", "federation", "switchover-dc", target, "--yes", "-t", str(lab.path)]
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL)
            time.sleep(delay)
            proc.kill()
            proc.wait(timeout=30)
            pending = current_state(lab.topo)[0].operation
            killed_at.append(f"{delay:.2f} s: {pending.step if pending else 'no operation pending'}")
            rerun = fedctl(lab, "switchover-dc", target, "--yes")
            already = rerun.returncode == 2 and "already the primary DC" in rerun.stderr
            assert rerun.returncode == 0 or (already and pending is None), rerun.stderr
            st = current_state(lab.topo)[0]
            assert st.primary_dc == target and st.operation is None, f"seed {seed}: {killed_at}"
            _writes_resume(writer)
        watch.check("dc1", "dc2")
    writer.stop()
    print(f"seed {seed}; killed at {killed_at}")
    _all_rows_everywhere(lab, writer)


@pytest.mark.timeout(300)
def test_abort_before_the_epoch_restores_the_old_primary_dc_and_is_refused_after_it(
        fresh_two_dc: LabHandle) -> None:
    lab = fresh_two_dc
    writer = Writer(lab, "abort_rows").start()
    with WritableWatch(lab) as watch:
        eventually("the writer commits", lambda: len(writer.acked) > 30, timeout=20)
        epoch = current_state(lab.topo)[0].epoch
        _crash(lab, "switchover/before-epoch", "switchover-dc", "dc2")
        # The token came from pg_control, so fedctl died while Patroni was still restarting dc1's leader.
        eventually("dc1 is demoted (Patroni finishes the restart)",
                   lambda: all(lab.member_role(m) not in ("primary", None) for m in lab.dc("dc1").members),
                   timeout=30)
        shown = fedctl(lab, "operation", "show")
        assert "undo it: `fedctl operation abort`" in shown.stdout, shown.stdout
        refused = fedctl(lab, "promote-dc", "dc2", "--yes")
        assert refused.returncode == 1 and "a switchover dc1 -> dc2 is pending" in refused.stderr, refused.stderr
        aborted = fedctl(lab, "operation", "abort", "--yes")
        assert aborted.returncode == 0, aborted.stderr
        st = current_state(lab.topo)[0]
        assert (st.primary_dc, st.epoch, st.operation) == ("dc1", epoch, None)
        assert st.history[-1].outcome == "rolled back"
        assert lab.sql_one(lab.leader_of(lab.dc("dc1")), "SELECT pg_is_in_recovery()") is False
        _writes_resume(writer)
        for member in lab.dc("dc2").members:
            eventually(f"{member.name} streams from dc1 again",
                       lambda m=member: lab.sql_one(m, "SELECT status FROM pg_stat_wal_receiver") == "streaming",
                       timeout=60)

        _crash(lab, "switchover/after-epoch", "switchover-dc", "dc2")
        past = fedctl(lab, "operation", "abort", "--yes")
        assert past.returncode == 1 and "can only be finished" in past.stderr, past.stderr
        assert "fedctl switchover-dc dc2" in past.stderr
        done = fedctl(lab, "switchover-dc", "dc2", "--yes")
        assert done.returncode == 0, done.stderr
        _writes_resume(writer)
        watch.check("dc1", "dc2")
    writer.stop()
    _all_rows_everywhere(lab, writer)


@pytest.mark.timeout(300)
def test_promote_dc_crashed_at_every_step_is_finished_by_a_rerun(fresh_two_dc: LabHandle) -> None:
    """The disaster path: dc1 lost (after dc2 caught up, so no commit may be lost), promote-dc crashed at
    each step in turn, including right after the epoch raise, where it used to be stuck for good."""
    lab = fresh_two_dc
    writer = Writer(lab, "promote_crash_rows").start()
    eventually("the writer commits", lambda: len(writer.acked) > 30, timeout=20)
    writer.stop()
    for member in lab.dc("dc2").members:
        eventually(f"{member.name} has every row before the disaster",
                   lambda m=member: writer.missing_on(lab, m) == [], timeout=30)
    lab_kill(lab.topo, "dc1")
    wait_for_no_lease(lab)
    with WritableWatch(lab) as watch:
        for point in PROMOTE_POINTS:
            _crash(lab, f"promote/{point}", "promote-dc", "dc2")
            st = current_state(lab.topo)[0]
            assert st.operation is not None and st.operation.kind == "promote", point
            if point in ("after-epoch", "before-promote"):
                # Where it used to be stuck: the epoch names dc2, which is still a standby.
                assert st.primary_dc == "dc2", point
                assert all(lab.member_role(m) != "primary" for m in lab.dc("dc2").members), point
                shown = fedctl(lab, "operation", "show")
                assert "can only be finished" in shown.stdout and "fedctl promote-dc dc2" in shown.stdout, shown.stdout
        done = fedctl(lab, "promote-dc", "dc2", "--yes")
        assert done.returncode == 0, done.stderr
        st = current_state(lab.topo)[0]
        assert st.operation is None and st.history[-1].operation == "promote-dc"
        after = Writer(lab, "promote_crash_rows", create=False, first_id=1_000_000).start()
        eventually("writes go to dc2", lambda: len(after.acked) > 30, timeout=30)
        after.stop()
        watch.check("dc2")
    leader = lab.leader_of(lab.dc("dc2"))
    assert writer.missing_on(lab, leader) == [] and after.missing_on(lab, leader) == []
