"""Benchmark: what clients feel of switchover-dc, against Patroni's own switchover inside one DC, idle and loaded.

Run: `.venv/bin/python -m bench operations [--runs 3]`. It wipes and starts the entry lab
(tests/integration/topologies/entry-two-dc.yaml: agents, HAProxy, PgBouncer and the entrypoint follower)
and wipes it at the end. Three clients commit one row at a time, all the time, and reconnect at once:
one on the multi-host libpq string (`target_session_attrs=read-write`), one through HAProxy's read-write
address, one through PgBouncer, each pausing `--pace-ms` (5 ms: 200 commits a second) after each commit;
back to back (`--pace-ms 0`) the three alone kept both vCPUs of the lab machine busy and stretched every
step. A client's outage is the longest gap between two of its acknowledged commits around the switchover.

In one run, for an idle lab and then under a steady pgbench load through PgBouncer (4 clients):
  - the baseline, Patroni's `POST /switchover` inside dc1 (between dc1's two members), libpq outage;
  - switchover-dc dc2 and back, each in a process of its own as a user runs it: total time (from the call to
    the return; and the process's wall time with start-up), each client's outage, how long PgBouncer held transactions
    (the follower's PAUSE to RESUME), and pgbench's failed transactions;
  - the ratio of switchover-dc's libpq outage to the baseline's (the goal: <= 1.0).
Then promote-dc: SIGKILL every dc1 process, from the command's start to the first write accepted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench.common import TOPOLOGIES, fresh_lab, line, median, topology
from federation import patroni_api
from federation.entrypoints import default_binds
from federation.lab.lab import lab_down, lab_kill
from federation.operations.promote import promote_dc
from federation.progress import Progress
from tests.integration.labkit import LabHandle, Writer, eventually, wait_for_no_lease

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
HOLD = re.compile(r"held transactions ([0-9.]+) s")


@dataclass
class Figures:
    totals: list[float] = field(default_factory=list)
    outages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    holds: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    streaming_after: list[float] = field(default_factory=list)  # from the return until every replica streams
    typed: list[float] = field(default_factory=list)  # the whole process: interpreter start-up and imports too


def _writer(handle: LabHandle, table: str, bind: str | None, pace: float) -> Writer:
    writer = Writer(handle, table=table, pace=pace)
    if bind is not None:
        host, port = bind.rsplit(":", 1)
        writer.dsn = (f"host={host} port={port} user=postgres password={handle.password()} dbname=postgres "
                      "connect_timeout=1")
    if table.endswith("pgbouncer"):
        writer.connect_kwargs = {"prepare_threshold": None}  # transaction pooling
    return writer


def outage(writer: Writer, before: int) -> float:
    acked = writer.acked[max(0, before - 1):]
    return max((b[1] - a[1] for a, b in itertools.pairwise(acked)), default=0.0)


def measured(writers: dict[str, Writer], act: Callable[[], object]) -> tuple[float, dict[str, float]]:
    """Run `act`; its duration and every writer's outage around it (waiting for a commit after it)."""
    before = {name: len(w.acked) for name, w in writers.items()}
    started = time.monotonic()
    act()
    finished = time.monotonic()
    for name, w in writers.items():
        eventually(f"{name} writes again", lambda w=w, f=finished: bool(w.acked) and w.acked[-1][1] > f, timeout=60)
    return finished - started, {name: outage(w, before[name]) for name, w in writers.items()}


# switchover-dc in a process of its own, as a user runs it: the bench's client threads must not share its
# interpreter (their GIL contention slowed every step by a third). It prints its own duration, from the call to
# the return, beside the steps; the parent adds the wall time with interpreter start-up and imports.
CHILD = """
import json, sys, time
from federation.operations.switchover import switchover_dc
from federation.progress import Progress
from federation.topology import load_topology
topo = load_topology(sys.argv[1])
progress = Progress(quiet=True)
started = time.monotonic()
report = switchover_dc(topo, sys.argv[2], progress)
seconds = time.monotonic() - started
print(json.dumps({"seconds": seconds, "steps": [[s.name, s.seconds] for s in progress.steps],
                  "facts": {k: str(v) for k, v in report.facts.items()}}))
"""


def switchover_in_own_process(handle: LabHandle, target: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(handle.path), target], capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"switchover-dc {target} failed:\n{done.stdout}{done.stderr}")
    return dict(json.loads(done.stdout.splitlines()[-1]))


def patroni_switchover(handle: LabHandle, dc_name: str) -> None:
    """Patroni's own switchover inside one DC: its leader hands over to the other member."""
    dc = handle.dc(dc_name)
    leader = handle.leader_of(dc)
    candidate = next(m for m in dc.members if m.name != leader.name)
    patroni_api.post_action(leader, "/switchover", {"leader": leader.name, "candidate": candidate.name},
                            timeout=60)
    eventually(f"{candidate.name} leads {dc_name} and takes writes",
               lambda: handle.leader_of(dc).name == candidate.name and _streaming_everywhere(handle), timeout=60)


def _settled(handle: LabHandle) -> bool:
    """Every member runs and every one but the primary DC's leader streams (the demoted DC from the new one)."""
    for dc in handle.topo.datacenters:
        for member in dc.members:
            state = patroni_api.patroni_state(member)
            if state is None or state.get("state") not in ("running", "streaming"):
                return False
            if state.get("role") != "primary" and state.get("replication_state") != "streaming":
                return False
    return True


def _streaming_everywhere(handle: LabHandle) -> bool:
    for dc in handle.topo.datacenters:
        for member in dc.members:
            state = patroni_api.patroni_state(member)
            if state is None or state.get("state") not in ("running", "streaming"):
                return False
    return True


@contextmanager
def pgbench_load(handle: LabHandle, clients: int = 4) -> Iterator[Callable[[], str]]:
    """pgbench through PgBouncer for as long as the block runs; yields a function giving its summary so far."""
    host, port = default_binds(handle.topo).pgbouncer.rsplit(":", 1)
    env = {**os.environ, "PGPASSWORD": handle.password()}
    base = [PGBENCH, "-h", host, "-p", port, "-U", "postgres"]
    subprocess.run([*base, "-i", "-s", "1", "-q", "postgres"], env=env, check=True, capture_output=True, timeout=120)
    with tempfile.TemporaryFile("w+") as out:
        bench = subprocess.Popen([*base, "-c", str(clients), "-j", "2", "-T", "3600", "-n", "-M", "simple", "-P", "5",
                                  "postgres"], env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        def summary() -> str:
            out.seek(0)
            return out.read()

        try:
            yield summary
        finally:
            bench.terminate()
            bench.wait(timeout=30)


def bench_mode(handle: LabHandle, writers: dict[str, Writer], runs: int, label: str) -> tuple[Figures, Figures]:
    baseline, fed = Figures(), Figures()
    for i in range(runs):
        seconds, outs = measured(writers, lambda: patroni_switchover(handle, "dc1"))
        baseline.totals.append(seconds)
        for name, value in outs.items():
            baseline.outages[name].append(value)
        for target in ("dc2", "dc1"):
            report: dict[str, Any] = {}

            def run(t: str = target, into: dict[str, Any] = report) -> None:
                into.update(switchover_in_own_process(handle, t))

            typed, outs = measured(writers, run)
            seconds = float(report["seconds"])
            fed.typed.append(typed)
            returned = time.monotonic()
            # switchover-dc returns once the new primary runs (as Patroni's switchover does); the old primary DC
            # streams from it a moment later. The next run waits for that, outside its timing.
            eventually(f"{'dc1' if target == 'dc2' else 'dc2'} streams again", lambda: _settled(handle), timeout=60)
            fed.streaming_after.append(time.monotonic() - returned)
            fed.totals.append(seconds)
            for name, value in outs.items():
                fed.outages[name].append(value)
            if found := HOLD.search(str(report["facts"].get("client_release", ""))):
                fed.holds.append(float(found.group(1)))
            for name, step_seconds in report["steps"]:
                fed.steps[re.sub(r"\bdc\d+\b", "DC", name)[:52]].append(step_seconds)
        print(f"  {label} run {i + 1}: Patroni in-DC libpq outage {baseline.outages['libpq'][-1]:.2f} s; "
              f"switchover-dc totals {[f'{t:.2f}' for t in fed.totals[-2:]]} s, libpq outages "
              f"{[f'{o:.2f}' for o in fed.outages['libpq'][-2:]]} s", flush=True)
    return baseline, fed


def report_mode(label: str, baseline: Figures, fed: Figures, pgbench: str | None) -> None:
    base_outage, fed_outage = median(baseline.outages["libpq"]), median(fed.outages["libpq"])
    print(f"{label}: {len(baseline.totals)} Patroni in-DC switchovers, {len(fed.totals)} switchover-dc runs")
    line("Patroni in-DC switchover, libpq write outage, median", f"{base_outage:6.2f} s (baseline)")
    line("switchover-dc, libpq write outage, median", f"{fed_outage:6.2f} s")
    line("  ratio to the baseline", f"{fed_outage / base_outage:6.2f} (goal <= 1.0)")
    line("switchover-dc, end to end, median", f"{median(fed.totals):6.2f} s (goal <= 2.5 s)")
    line("  as a new process (interpreter start-up and imports too), median", f"{median(fed.typed):6.2f} s")
    line("  then until the demoted DC streams from the new primary, median", f"{median(fed.streaming_after):6.2f} s")
    line("switchover-dc, HAProxy write outage, median", f"{median(fed.outages['haproxy']):6.2f} s")
    line("switchover-dc, PgBouncer write outage, median", f"{median(fed.outages['pgbouncer']):6.2f} s")
    line("switchover-dc, PgBouncer held transactions (PAUSE..RESUME), median", f"{median(fed.holds):6.2f} s")
    for name, values in fed.steps.items():
        line(f"  {name}..., median", f"{median(values):6.2f} s")
    if pgbench is not None:
        failed = re.findall(r"(\d+) failed", pgbench)
        line("pgbench through PgBouncer: failed transactions in its progress lines",
             f"{sum(int(n) for n in failed)}")


def bench_promote(runs: int) -> None:
    durations: list[float] = []
    fence_waits: list[float] = []
    for _ in range(runs):
        topo = topology("two-dc")
        handle = LabHandle(topo, TOPOLOGIES / "two-dc.yaml")
        fresh_lab(topo)
        writer = Writer(handle).start()
        eventually("writes", lambda w=writer: len(w.acked) > 20)
        lab_kill(topo, "dc1")
        # promote-dc refuses while the lost DC's lease lives in the federation store: the command is timed
        # from the moment it may run, as an operator would start it.
        wait_for_no_lease(handle)
        started = time.monotonic()
        progress = Progress(quiet=True)
        promote_dc(topo, "dc2", progress)
        eventually("a write on dc2", lambda s=started, w=writer: bool(w.acked) and w.acked[-1][1] > s, timeout=30)
        durations.append(writer.acked[-1][1] - started)
        fence_waits.append(sum(s.seconds for s in progress.steps if "certainly fenced" in s.name))
        writer.stop()
    lab_down(topology("two-dc"), Progress(quiet=True), wipe=True)
    print(f"promote-dc, {runs} runs (dc1 SIGKILLed, from the command's start to the first write on dc2):")
    line("median", f"{median(durations):6.2f} s")
    line("all", ", ".join(f"{d:.2f}" for d in durations))
    # The lost DC's lease has expired when the command starts; promote-dc then waits out the fence bound
    # (docs/partitions.md) so that the old primary has certainly stopped taking writes.
    line("of which waiting for the old primary's fence bound, median", f"{median(fence_waits):6.2f} s")
    line("the rest (checks, epoch, promotion, first write), median",
         f"{median([d - w for d, w in zip(durations, fence_waits, strict=True)]):6.2f} s (target <= 2 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds per mode (each: one Patroni in-DC switchover, "
                                                          "switchover-dc to dc2 and back)")
    parser.add_argument("--pace-ms", type=float, default=5.0,
                        help="pause between two commits of each client, in ms (0: back to back; each client then "
                             "saturates a CPU of a small machine and stretches what it measures)")
    args = parser.parse_args()
    topo = topology("entry-two-dc")
    fresh_lab(topo)
    handle = LabHandle(topo, TOPOLOGIES / "entry-two-dc.yaml")
    binds = default_binds(topo)
    pace = args.pace_ms / 1000
    print(f"clients: 3, one commit every {args.pace_ms:g} ms each" if pace else
          "clients: 3, committing back to back (they alone keep both vCPUs of the lab machine busy)", flush=True)
    writers = {"libpq": _writer(handle, "bench_libpq", None, pace),
               "haproxy": _writer(handle, "bench_haproxy", binds.read_write, pace),
               "pgbouncer": _writer(handle, "bench_pgbouncer", binds.pgbouncer, pace)}
    try:
        for writer in writers.values():
            writer.start()
        for name, writer in writers.items():
            eventually(f"{name} writes", lambda w=writer: len(w.acked) > 20, timeout=60)
        idle = bench_mode(handle, writers, args.runs, "idle")
        with pgbench_load(handle) as summary:
            time.sleep(5)
            loaded = bench_mode(handle, writers, args.runs, "loaded")
            pgbench = summary()
        report_mode("idle lab", *idle, None)
        report_mode("under pgbench through PgBouncer (4 clients)", *loaded, pgbench)
    finally:
        for writer in writers.values():
            writer.stop()
        lab_down(topo, Progress(quiet=True), wipe=True)
    bench_promote(max(1, args.runs))


if __name__ == "__main__":
    main()
