"""Benchmark: `fedctl status` latency against running `patronictl list` once per DC, as a user types them.

Run: `.venv/bin/python -m bench.bench_status_lab [--runs 11]` (or `-m bench status_lab`). Uses the status test lab
(tests/integration/topologies/status-two-dc.yaml) and the three-DC test lab (three-dc.yaml): a lab that is
already up and healthy is used as it is and left running; one that is not is started and wiped again at
the end. Each run is a new process (`fedctl status -t FILE`, table output); fedctl and the patronictl
loop alternate, so load from other work on the machine hits both alike. Wall times are medians; the
CPU time (user + system of the child processes) is printed too, because it is what a busy machine
stretches least. Target: fedctl status <= 0.3 s and faster than the patronictl loop.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import TOPOLOGIES, line, median, topology
from federation.lab.lab import lab_down, lab_up
from federation.progress import Progress
from federation.topology import Topology

VENV_BIN = Path(sys.executable).parent
LABS = ("status-two-dc", "three-dc")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(argv: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of one run of `argv` in a new process."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=False)
    return time.perf_counter() - started, _children_cpu() - cpu, done.returncode


def patronictl_configs(topo: Topology, directory: Path) -> list[Path]:
    """One patronictl config per DC: its scope, namespace and DCS, as an operator would keep them."""
    paths = []
    for dc in topo.datacenters:
        path = directory / f"{dc.name}.yml"
        hosts = ", ".join(f'"{h}"' for h in dc.dcs.hosts)
        path.write_text(f"scope: {dc.patroni_scope}\nnamespace: {dc.dcs.namespace}\n"
                        f"{dc.dcs.kind}: {{hosts: [{hosts}]}}\n")
        paths.append(path)
    return paths


def bench_lab_status(name: str, runs: int) -> None:
    topo = topology(name)
    path = str(TOPOLOGIES / f"{name}.yaml")
    fedctl = [str(VENV_BIN / "fedctl"), "status", "-t", path]
    was_up = time_command(fedctl)[2] == 0
    if not was_up:
        lab_up(topo, Progress(quiet=True))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            loop = [[str(VENV_BIN / "patronictl"), "-c", str(c), "list"] for c in patronictl_configs(topo, Path(tmp))]
            time_command(fedctl)  # warm the page cache for both before timing
            for argv in loop:
                time_command(argv)
            fed: list[tuple[float, float, int]] = []
            ctl: list[tuple[float, float]] = []
            for _ in range(runs):
                fed.append(time_command(fedctl))
                each = [time_command(argv) for argv in loop]
                ctl.append((sum(w for w, _c, _rc in each), sum(c for _w, c, _rc in each)))
    finally:
        if not was_up:
            lab_down(topo, Progress(quiet=True), wipe=True)
    fed_wall, fed_cpu = median([w for w, _c, _rc in fed]), median([c for _w, c, _rc in fed])
    ctl_wall, ctl_cpu = median([w for w, _c in ctl]), median([c for _w, c in ctl])
    unhealthy = sum(1 for *_x, rc in fed if rc != 0)
    print(f"{name} ({len(topo.datacenters)} DCs, {sum(len(dc.members) for dc in topo.datacenters)} members)"
          + (f": {unhealthy} of {runs} status runs exited non-zero" if unhealthy else ""))
    line(f"fedctl status, median of {runs} (min)", f"{fed_wall:6.3f} s ({min(w for w, _c, _rc in fed):.3f} s)")
    line(f"patronictl list once per DC, median of {runs} (min)", f"{ctl_wall:6.3f} s ({min(w for w, _c in ctl):.3f} s)")
    line("ratio fedctl / patronictl loop, wall (lower is better)", f"{fed_wall / ctl_wall:6.2f}")
    line("CPU time: fedctl status / patronictl loop, medians", f"{fed_cpu:6.3f} s / {ctl_cpu:.3f} s")
    line("target: fedctl status <= 0.3 s and below the loop", "met" if fed_wall <= 0.3 and fed_wall < ctl_wall
         else "NOT met")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("labs", nargs="*", default=list(LABS), help=f"test labs to use (default: {' '.join(LABS)})")
    args = parser.parse_args()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"load average at start: {load} (other work on the machine stretches wall times)")
    for name in args.labs:
        bench_lab_status(name, args.runs)


if __name__ == "__main__":
    main()
