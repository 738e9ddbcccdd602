"""Scenario: applications connected only through HAProxy or only through PgBouncer keep writing through
`switchover-dc dc2`, then through the loss of dc2 and `promote-dc dc1`, and never write to dc2 when it
comes back believing it is still the primary DC.

Runs on its own lab (entry-two-dc: 127.0.51.x / 127.0.52.x). `lab up` starts everything the
entrypoints need: the agents (HAProxy checks their GET /primary), HAProxy, PgBouncer and the
entrypoint follower that keeps PgBouncer's databases file pointed at the primary DC's leader.
The three phases run in order on one lab and share two writers.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from federation.entrypoints import default_binds
from federation.lab.haproxy import STAT_STATUS, stat_rows, stats_socket
from federation.lab.lab import lab_kill, lab_start
from federation.lab.pgbouncer import databases_path
from federation.lsn import parse_lsn
from federation.progress import Progress
from federation.samples import newest_sample
from federation.topology import Member
from tests.integration.labkit import (
    LabHandle,
    Writer,
    bug_lines,
    eventually,
    fedctl,
    start_lab,
    stop_lab,
    wait_for_no_lease,
)

pytestmark = pytest.mark.integration


@dataclass
class Scenario:
    lab: LabHandle
    via_haproxy: Writer
    via_pgbouncer: Writer
    notes: dict[str, float] = field(default_factory=dict)

    @property
    def writers(self) -> tuple[Writer, Writer]:
        return self.via_haproxy, self.via_pgbouncer


def _dsn(lab: LabHandle, bind: str) -> str:
    host, port = bind.rsplit(":", 1)
    return f"host={host} port={port} user=postgres password={lab.password()} dbname=postgres connect_timeout=1"


def keep_logs(lab: LabHandle) -> Path:
    """Copy the entrypoints' logs out of the lab (which the fixture wipes) after a failed scenario."""
    kept = Path(tempfile.mkdtemp(prefix="fedctl-entry-logs-"))
    for part in ("pgbouncer", "haproxy"):
        for log in (lab.lab.layout.root / part).glob("*.log"):
            shutil.copy(log, kept / f"{part}-{log.name}")
    for where, text in lab.patroni_logs().items():
        (kept / f"patroni-{where.replace('/', '-')}.log").write_text(text)
    return kept


@pytest.fixture(scope="module")
def scenario(request: pytest.FixtureRequest) -> Iterator[Scenario]:
    failed_before = request.session.testsfailed
    handle = start_lab("entry-two-dc")
    writers: list[Writer] = []
    try:
        binds = default_binds(handle.topo)
        via_haproxy = Writer(handle, table="entry_haproxy", track_end=True)
        via_haproxy.dsn = _dsn(handle, binds.read_write)
        via_pgbouncer = Writer(handle, table="entry_pgbouncer", track_end=True)
        via_pgbouncer.dsn = _dsn(handle, binds.pgbouncer)
        # PgBouncer 1.18 in transaction pooling does not carry prepared statements between server connections.
        via_pgbouncer.connect_kwargs = {"prepare_threshold": None}
        writers = [via_haproxy, via_pgbouncer]
        yield Scenario(handle, via_haproxy, via_pgbouncer)
    finally:
        for writer in writers:
            writer.stop()
        if request.session.testsfailed > failed_before:
            print(f"\nentrypoint scenario failed: logs kept in {keep_logs(handle)}")
        bugs = bug_lines(handle)
        stop_lab(handle)
    assert not bugs, "Patroni reported a BUG:\n" + "\n".join(bugs)


def up_servers(sock_path: Path, backend: str = "fed_primary") -> set[str]:
    """The servers HAProxy currently sends `backend`'s connections to (its health check passes)."""
    return {name for name, row in stat_rows(sock_path, backend).items() if row[STAT_STATUS].startswith("UP")}


def pgbouncer_host(lab: LabHandle) -> str | None:
    """The host PgBouncer's databases file names now (None when it names none)."""
    for line in databases_path(lab.lab.layout).read_text().splitlines():
        if "host=" in line:
            return line.split("host=", 1)[1].split()[0]
    return None


class Sampler:
    """Samples HAProxy's UP read-write servers and PgBouncer's target every 50 ms, in the background."""

    def __init__(self, lab: LabHandle) -> None:
        self.lab = lab
        self.haproxy: list[set[str]] = []
        self.pgbouncer: list[str | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sock_path = stats_socket(self.lab.lab.layout)
        while not self._stop.wait(0.05):
            try:
                self.haproxy.append(up_servers(sock_path))
            except OSError:
                pass
            try:
                self.pgbouncer.append(pgbouncer_host(self.lab))
            except OSError:
                pass

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def outage_since(writer: Writer, before: int) -> float:
    """The longest gap between two acknowledged commits from the `before`-th one on."""
    acked = writer.acked[max(0, before - 1):]
    return max((b[1] - a[1] for a, b in itertools.pairwise(acked)), default=0.0)


def counts(s: Scenario) -> list[int]:
    return [len(w.acked) for w in s.writers]


def resume_both(s: Scenario, what: str, since: list[int], timeout: float = 60) -> tuple[float, float]:
    """Wait until both writers have committed 20 more rows from now on; returns their outages (HAProxy,
    PgBouncer) since they had acknowledged `since` rows."""
    for writer, name, n in zip(s.writers, ("HAProxy", "PgBouncer"), counts(s), strict=True):
        eventually(f"the writer through {name} commits again after {what}",
                   lambda w=writer, b=n: len(w.acked) >= b + 20, timeout=timeout)
    return outage_since(s.via_haproxy, since[0]), outage_since(s.via_pgbouncer, since[1])


def _acked_after(writer: Writer, moment: float) -> list[int]:
    return [i for i, t in writer.acked if t > moment]


PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
# One continuous run, long enough for ten switchovers back to back: 95 s alone on 2 cores, about 220 s in the
# full suite (its session-wide labs keep running) before the rate limit below.
PGBENCH_SECONDS = 240
PGBENCH_RATE = 100  # transactions per second in all: a steady load that leaves Patroni some CPU
SWITCHOVERS = 10


def pgbench_log(prefix: Path) -> tuple[int, int, float]:
    """(committed, failed, longest latency in seconds) from pgbench's per-transaction logs (-l): one line per
    transaction, `client_id transaction_no time script_no time_epoch time_us`, where time is the latency in
    microseconds, or `failed`."""
    committed = failed = 0
    longest = 0.0
    for log in prefix.parent.glob(prefix.name + "*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            if fields[2].isdigit():
                committed += 1
                longest = max(longest, int(fields[2]) / 1e6)
            else:
                failed += 1
    return committed, failed, longest


@pytest.mark.timeout(PGBENCH_SECONDS + 240)
def test_pgbench_through_pgbouncer_feels_ten_switchovers_as_pauses(scenario: Scenario, tmp_path: Path) -> None:
    """One pgbench run (4 clients, transaction pooling, never restarted) through ten switchover-dc runs: no
    client aborts, no transaction fails, and every transaction pgbench logged as committed has its
    pgbench_history row. A writer through HAProxy meanwhile counts the errors it sees there."""
    import os
    import subprocess

    lab = scenario.lab
    binds = default_binds(lab.topo)
    host, port = binds.pgbouncer.rsplit(":", 1)
    env = {**os.environ, "PGPASSWORD": lab.password()}
    base = [PGBENCH, "-h", host, "-p", port, "-U", "postgres"]
    init = subprocess.run([*base, "-i", "-s", "1", "-q", "postgres"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert init.returncode == 0, init.stderr
    haproxy = Writer(lab, table="pause_haproxy")
    haproxy.dsn = _dsn(lab, binds.read_write)
    prefix = tmp_path / "pgbench"
    bench = subprocess.Popen([*base, "-c", "4", "-j", "2", "-T", str(PGBENCH_SECONDS), "-R", str(PGBENCH_RATE),
                              "-n", "-M", "simple", "-l",
                              f"--log-prefix={prefix}", "postgres"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    haproxy.start()
    started = time.monotonic()
    pauses, holds = [], []
    try:
        time.sleep(3)
        for n in range(SWITCHOVERS):
            target = "dc2" if n % 2 == 0 else "dc1"
            done = fedctl(lab, "switchover-dc", target, "--yes", "--format", "json")
            assert done.returncode == 0, done.stdout + done.stderr
            report = json.loads(done.stdout)
            pauses.append(report["client_pause"])
            holds.append(report["client_release"])
            assert bench.poll() is None, "pgbench ended before the switchovers did: raise PGBENCH_SECONDS"
        switched = time.monotonic() - started
        out, _ = bench.communicate(timeout=PGBENCH_SECONDS + 60)
    finally:
        haproxy.stop()
        if bench.poll() is None:
            bench.kill()
    print(f"\n{SWITCHOVERS} switchovers in {switched:.1f} s under pgbench; pgbench said:\n{out}")
    print("follower pauses: " + " | ".join(pauses))
    print("follower holds: " + " | ".join(holds))
    # Every switchover had the follower's answer: the pause really happened (it looked).
    assert all("paused" in said for said in pauses), pauses
    assert bench.returncode == 0 and "aborted" not in out, out
    committed, failed, longest = pgbench_log(prefix)
    leader = lab.leader_of(lab.dc("dc1"))
    rows = lab.sql(leader, "SELECT count(*) FROM pgbench_history")[0][0]
    print(f"pgbench: {committed} committed, {failed} failed, longest transaction {longest:.2f} s; "
          f"pgbench_history holds {rows} rows. Through HAProxy: {haproxy.errors} failed attempts "
          f"({haproxy.answers} answered by a server), {len(haproxy.acked)} commits")
    assert committed > 0 and failed == 0
    assert rows == committed, "pgbench_history and pgbench's log disagree"
    assert f"number of transactions actually processed: {committed}" in out
    assert haproxy.missing_on(lab, leader) == [], "a commit acknowledged through HAProxy was lost"


def test_a_dc_switchover_moves_both_entrypoints_without_losing_a_commit(scenario: Scenario) -> None:
    s, lab = scenario, scenario.lab
    sock_path = stats_socket(lab.lab.layout)
    dc1_leader, dc2_leader = lab.leader_of(lab.dc("dc1")), lab.leader_of(lab.dc("dc2"))
    eventually("HAProxy sends writes only to dc1's leader",
               lambda: up_servers(sock_path) == {f"dc1_{dc1_leader.name}"}, timeout=60)
    assert pgbouncer_host(lab) == dc1_leader.host

    status = json.loads(fedctl(lab, "status", "--format", "json").stdout)
    binds = default_binds(lab.topo)
    assert status["entrypoints"] == {"read_write": binds.read_write, "read_only": binds.read_only,
                                     "pgbouncer": binds.pgbouncer}

    for writer in s.writers:
        writer.start()
    for writer in s.writers:
        eventually(f"{writer.table} commits through its entrypoint", lambda w=writer: len(w.acked) >= 20)
    before = counts(s)
    with Sampler(lab) as sampler:
        started = time.monotonic()
        done = fedctl(lab, "switchover-dc", "dc2", "--yes")
        switch_seconds = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        haproxy_outage, pgbouncer_outage = resume_both(s, "switchover-dc", before)
        eventually("HAProxy sends writes only to dc2's leader",
                   lambda: up_servers(sock_path) == {f"dc2_{dc2_leader.name}"}, timeout=30)
    print(f"\nswitchover-dc dc2 took {switch_seconds:.2f} s; write outage through HAProxy {haproxy_outage:.2f} s, "
          f"through PgBouncer {pgbouncer_outage:.2f} s ({s.via_haproxy.errors} / {s.via_pgbouncer.errors} "
          "failed attempts so far)")
    for writer in s.writers:
        assert writer.acked[-1][1] > started + switch_seconds  # it wrote after the switchover
        assert writer.missing_on(lab, dc2_leader) == [], f"{writer.table} lost acknowledged commits"
    assert pgbouncer_host(lab) == dc2_leader.host

    # HAProxy passed one member at a time and never went back to dc1 once dc2 had taken over; PgBouncer
    # pointed at dc1's leader, then at dc2's (from the epoch raise, before its promotion), never back.
    assert sampler.haproxy and all(len(up) <= 1 for up in sampler.haproxy)
    seen = [next(iter(up)) for up in sampler.haproxy if up]
    first_dc2 = seen.index(f"dc2_{dc2_leader.name}")
    assert all(name == f"dc2_{dc2_leader.name}" for name in seen[first_dc2:])
    targets = [h for h, _ in itertools.groupby(sampler.pgbouncer)]
    assert set(targets) <= {dc1_leader.host, dc2_leader.host} and targets[-1] == dc2_leader.host
    assert dc1_leader.host not in targets[targets.index(dc2_leader.host):]


def test_after_losing_dc2_promote_dc1_and_both_entrypoints_write_there(scenario: Scenario) -> None:
    s, lab = scenario, scenario.lab
    old_primary = lab.leader_of(lab.dc("dc2"))
    # The loss estimate rests on the agents' LSN samples of the primary DC; dc2 became primary in the
    # previous scenario, and dc1's agent samples it from its next cycle on.
    eventually("dc1's agent to have sampled dc2, the new primary DC", lambda: newest_sample(lab.topo, "dc2"),
               timeout=20)
    before = counts(s)
    lab_kill(lab.topo, "dc2")
    wait_for_no_lease(lab)
    started = time.monotonic()
    done = fedctl(lab, "promote-dc", "dc1", "--yes", "--format", "json")
    promote_seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    s.notes["promoted_at"] = time.monotonic()
    report = json.loads(done.stdout)
    haproxy_outage, pgbouncer_outage = resume_both(s, "promote-dc", before)
    new_primary = lab.leader_of(lab.dc("dc1"))
    assert lab.sql_one(new_primary, "SELECT pg_is_in_recovery()") is False
    assert pgbouncer_host(lab) == new_primary.host

    # Losses are the commits dc1 had not received when dc2 died: each lies past the received LSN, and
    # together they fit in the estimate (a commit's WAL ends shortly after the insert position it read).
    received = parse_lsn(report["received_lsn"])
    estimate = report["data_loss_estimate_bytes"]
    lost = {w.table: w.missing_on(lab, new_primary) for w in s.writers}
    # A commit's end: read after it returned, else (the connection died right after it) 512 bytes past the
    # position read inside its transaction.
    lost_bytes = max((w.end_lsn_of.get(i, w.lsn_of.get(i, received) + 512) - received for w in s.writers
                      for i in lost[w.table]), default=0)
    print(f"\npromote-dc dc1 took {promote_seconds:.2f} s (old primary {old_primary.name}); write outage through "
          f"HAProxy {haproxy_outage:.2f} s, through PgBouncer {pgbouncer_outage:.2f} s; estimate {estimate} bytes, "
          f"commits lost: {sum(len(v) for v in lost.values())} ({lost_bytes} bytes past {report['received_lsn']})")
    assert estimate is not None, "no LSN sample of dc2: the agents should have sampled it"
    for writer in s.writers:
        # A commit dc1 had received (its commit record ended at or before `received`) must never be lost.
        received_yet_lost = [i for i in lost[writer.table] if writer.end_lsn_of.get(i, received + 1) <= received]
        assert received_yet_lost == [], f"{writer.table}: commits dc1 had received are missing: {received_yet_lost}"
    assert lost_bytes <= estimate + 512, f"{lost} lost ({lost_bytes} bytes), estimate {estimate}"


def test_a_returning_dc2_that_believes_it_is_primary_receives_no_write(scenario: Scenario) -> None:
    s, lab = scenario, scenario.lab
    promoted_at = s.notes["promoted_at"]
    dc2_hosts = {m.host for m in lab.dc("dc2").members}
    lab_start(lab.topo, "dc2", Progress(quiet=True))
    answered: set[str] = set()
    first_answer: float | None = None
    # Watch for 15 s from the moment a dc2 member accepts SQL (crash recovery after the SIGKILL can take
    # a while on a loaded machine), and never longer than 120 s in all.
    with Sampler(lab) as sampler:
        give_up = time.monotonic() + 120
        while time.monotonic() < min(give_up, (first_answer or give_up) + 15):
            for member in lab.dc("dc2").members:
                recovering = _in_recovery(lab, member)
                assert recovering is not False, f"{member.name} of the replaced dc2 accepts writes"
                if recovering:
                    answered.add(member.name)
                    first_answer = first_answer or time.monotonic()
            time.sleep(0.5)
    resume_both(s, "dc2 came back", counts(s), timeout=30)
    assert answered, "no dc2 member answered SQL within 120 s: the scenario proved nothing"
    assert sampler.haproxy and not any(name.startswith("dc2_") for up in sampler.haproxy for name in up)
    assert sampler.pgbouncer and not dc2_hosts & set(sampler.pgbouncer)
    new_primary = lab.leader_of(lab.dc("dc1"))
    for writer in s.writers:
        after = _acked_after(writer, promoted_at)
        assert after, f"{writer.table} acknowledged nothing after the promotion"
        present = {row[0] for row in lab.sql(new_primary, f"SELECT id FROM {writer.table}")}
        assert [i for i in after if i not in present] == [], f"{writer.table} rows missing on dc1's leader"
    print(f"\ndc2 back, watched 15 s after it answered SQL: {sorted(answered)} all in recovery; no dc2 "
          f"server UP in HAProxy in {len(sampler.haproxy)} samples, PgBouncer never named dc2 in "
          f"{len(sampler.pgbouncer)}")


def _in_recovery(lab: LabHandle, member: Member) -> bool | None:
    try:
        return bool(lab.sql_one(member, "SELECT pg_is_in_recovery()"))
    except Exception:
        return None  # not accepting connections yet
