"""Benchmark: switchover-dc and promote-dc on the two-DC lab, with a client writing all the time.

Run: `.venv/bin/python -m bench.bench_operations [--runs 3]`. It wipes and starts the test lab
(tests/integration/topologies/two-dc.yaml) and wipes it at the end.
Switchover: total command time, and the client's write outage (last acknowledged commit before the
switch to the first one after it, i.e. the longest gap between acknowledged commits), per step too.
Promote-dc: SIGKILL every dc1 process, then from the command's start to the first write accepted.
Targets: switchover-dc <= 5 s with an outage <= 3 s; promote-dc <= 2 s.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import defaultdict

from bench.common import TOPOLOGIES, fresh_lab, line, median, topology
from federation.lab.lab import lab_down, lab_kill
from federation.operations.promote import promote_dc
from federation.operations.switchover import switchover_dc
from federation.progress import Progress
from tests.integration.labkit import LabHandle, Writer, eventually, wait_for_no_lease


def bench_switchover(handle: LabHandle, runs: int) -> None:
    totals, outages = [], []
    per_step: dict[str, list[float]] = defaultdict(list)
    writer = Writer(handle).start()
    eventually("writes", lambda: len(writer.acked) > 20)
    for i in range(runs):
        for target in ("dc2", "dc1"):
            before = len(writer.acked)
            progress = Progress(quiet=True)
            started = time.monotonic()
            switchover_dc(handle.topo, target, progress)
            finished = time.monotonic()
            totals.append(finished - started)
            # A commit acknowledged after the command returned: counting acks alone could be satisfied by
            # commits made before the demotion began, and the gap would be missed.
            eventually("writes resume", lambda f=finished: writer.acked[-1][1] > f, timeout=30)
            acked = writer.acked[before - 1:]
            outages.append(max(b[1] - a[1] for a, b in itertools.pairwise(acked)))
            for step in progress.steps:
                per_step[step.name.split(" ")[0]].append(step.seconds)
        print(f"  run {i + 1}: totals {[f'{t:.2f}' for t in totals[-2:]]} s, outages "
              f"{[f'{o:.2f}' for o in outages[-2:]]} s", flush=True)
    writer.stop()
    print(f"switchover-dc, {len(totals)} switchovers (both directions):")
    line("total, median", f"{median(totals):6.2f} s (target <= 5 s)")
    line("client write outage, median", f"{median(outages):6.2f} s (target <= 3 s)")
    line("client write outage, worst", f"{max(outages):6.2f} s")
    for name, values in per_step.items():
        line(f"  step '{name} ...', median", f"{median(values):6.2f} s")


def bench_promote(runs: int) -> None:
    durations = []
    for _ in range(runs):
        topo = topology("two-dc")
        fresh_lab(topo)
        handle = LabHandle(topo, TOPOLOGIES / "two-dc.yaml")
        writer = Writer(handle).start()
        eventually("writes", lambda w=writer: len(w.acked) > 20)
        lab_kill(topo, "dc1")
        # promote-dc refuses while the lost DC's lease lives in the federation store: the command is timed
        # from once it expired (bench_partition times the whole way from the loss).
        wait_for_no_lease(handle)
        started = time.monotonic()
        promote_dc(topo, "dc2", Progress(quiet=True))
        eventually("a write on dc2", lambda w=writer, s=started: w.acked and w.acked[-1][1] > s, interval=0.005)
        first = next(t for _, t in writer.acked if t > started)
        durations.append(first - started)
        writer.stop()
    print(f"promote-dc, {runs} runs (command start to first accepted write):")
    line("median", f"{median(durations):6.2f} s (target <= 2 s)")
    line("all", ", ".join(f"{d:.2f}" for d in durations))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    topo = topology("two-dc")
    fresh_lab(topo)
    bench_switchover(LabHandle(topo, TOPOLOGIES / "two-dc.yaml"), args.runs)
    bench_promote(args.runs)
    lab_down(topology("two-dc"), Progress(quiet=True), wipe=True)


if __name__ == "__main__":
    main()
