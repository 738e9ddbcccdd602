"""Benchmark: `fedctl lab up` stage by stage, and `fedctl status` latency against a patronictl loop.

Run: `.venv/bin/python -m bench.bench_lab [--runs 5]`. It wipes and starts the test labs
(tests/integration/topologies/two-dc.yaml and three-dc.yaml) and wipes them again at the end.
Targets: two-DC lab healthy in <= 30 s; `fedctl status` <= 0.3 s and faster than running
`patronictl list` once per DC (both measured here, in the same run, as whole commands).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import TOPOLOGIES, fresh_lab, line, median, topology
from federation.lab.lab import lab_down
from federation.progress import Progress
from federation.topology import Topology

VENV_BIN = Path(sys.executable).parent


def time_command(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=False)
    return time.perf_counter() - started


def patronictl_configs(topo: Topology, directory: Path) -> list[Path]:
    paths = []
    for dc in topo.datacenters:
        path = directory / f"{dc.name}.yml"
        hosts = ", ".join(f'"{h}"' for h in dc.dcs.hosts)
        path.write_text(f"scope: {dc.patroni_scope}\nnamespace: {dc.dcs.namespace}\n"
                        f"{dc.dcs.kind}: {{hosts: [{hosts}]}}\n")
        paths.append(path)
    return paths


def bench_status(name: str, runs: int) -> None:
    topo = topology(name)
    progress = fresh_lab(topo)
    total = sum(s.seconds for s in progress.steps)
    print(f"{name}: lab up in {total:.1f} s")
    for step in progress.steps:
        line(step.name, f"{step.seconds:6.2f} s")
    path = str(TOPOLOGIES / f"{name}.yaml")
    status = [time_command([str(VENV_BIN / "fedctl"), "status", "-t", path]) for _ in range(runs)]
    with tempfile.TemporaryDirectory() as tmp:
        configs = patronictl_configs(topo, Path(tmp))
        loops = [sum(time_command([str(VENV_BIN / "patronictl"), "-c", str(c), "list"]) for c in configs)
                 for _ in range(runs)]
    fed, ctl = median(status), median(loops)
    line(f"fedctl status, median of {runs}", f"{fed:6.3f} s")
    line(f"patronictl list once per DC ({len(topo.datacenters)} DCs), median of {runs}", f"{ctl:6.3f} s")
    line("ratio fedctl / patronictl loop (lower is better)", f"{fed / ctl:6.2f}")
    lab_down(topo, Progress(quiet=True), wipe=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for name in ("two-dc", "three-dc"):
        bench_status(name, args.runs)


if __name__ == "__main__":
    main()
