"""Shared bits for benchmarks: starting a lab with per-stage timings, medians, printing figures."""

from __future__ import annotations

import statistics
from pathlib import Path

from federation.lab.lab import lab_down, lab_up
from federation.progress import Progress
from federation.topology import Topology, load_topology

TOPOLOGIES = Path(__file__).resolve().parents[1] / "tests" / "integration" / "topologies"


def topology(name: str) -> Topology:
    return load_topology(TOPOLOGIES / f"{name}.yaml")


def fresh_lab(topo: Topology) -> Progress:
    """Wipe and start the lab; returns the Progress holding each stage's duration."""
    lab_down(topo, Progress(quiet=True), wipe=True)
    progress = Progress(quiet=True)
    lab_up(topo, progress)
    return progress


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def line(label: str, value: str) -> None:
    print(f"  {label:<58} {value}", flush=True)
