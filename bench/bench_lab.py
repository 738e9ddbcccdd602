"""Benchmark: `fedctl lab up` stage by stage.

Run: `.venv/bin/python -m bench.bench_lab`. It wipes and starts the test labs
(tests/integration/topologies/two-dc.yaml and three-dc.yaml) and wipes them again at the end.
Target: two-DC lab healthy in <= 30 s. `fedctl status` latency against `patronictl list` is
bench/bench_status_lab.py.
"""

from __future__ import annotations

import argparse

from bench.common import fresh_lab, line, topology
from federation.lab.lab import lab_down
from federation.progress import Progress


def bench_lab_up(name: str) -> None:
    topo = topology(name)
    progress = fresh_lab(topo)
    total = sum(s.seconds for s in progress.steps)
    print(f"{name}: lab up in {total:.1f} s")
    for step in progress.steps:
        line(step.name, f"{step.seconds:6.2f} s")
    lab_down(topo, Progress(quiet=True), wipe=True)


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    for name in ("two-dc", "three-dc"):
        bench_lab_up(name)


if __name__ == "__main__":
    main()
