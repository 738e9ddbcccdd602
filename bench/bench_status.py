"""Benchmark: how `fedctl status` scales with the number of DCs, against stand-ins (no lab needed).

Run: `.venv/bin/python -m bench status [--runs 15] [--sizes 2 10 30] [--members 3]`.

Serves stand-ins (bench/status_standins.py) for every DC's etcd, every member's Patroni REST API and agent,
and a three-member federation store, on 127.0.200.x-127.0.203.x (ports 22379, 28008, 28108), then times the
real `fedctl status -t FILE --format json` in a new process, as a user runs it, on a topology of each size
(the first N DCs of the same stand-ins). Each measured tree's packages are byte-compiled first, as pip does
when it installs fedctl (an editable checkout run with PYTHONDONTWRITEBYTECODE would otherwise compile them
from source on every run, ~55 ms). Each round runs every size once and `python -c pass` (the
interpreter's bare start-up, the floor of any CLI) once, so load from other work on the machine hits all alike.
Every run must exit 0 (the stand-ins are a healthy federation), else the benchmark fails.
Prints per size the median and p90 wall time, their ratio to the smallest size and to `python -c pass`, the
CPU time (user + system: what a busy machine stretches least) and the observation alone (`duration_s` of the
JSON: every network read, in parallel). `--compare DIR` times another checkout's fedctl in the same rounds.
Targets: status <= 0.2 s median on 2 DCs; 30 DCs far below 15 x the 2-DC figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import median
from bench.status_standins import StandInFederation, StandInServers

VENV_BIN = Path(sys.executable).parent
TARGET_SECONDS = 0.2


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))] if ordered else float("nan")


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system of the process: what load stretches least
    observe: list[float] = field(default_factory=list)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], into: Samples, source: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` in a new process (with `source` first on its PYTHONPATH) and add its wall and CPU time."""
    env = dict(os.environ, PYTHONPATH=source) if source else None
    cpu, started = _children_cpu(), time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=False, env=env, cwd="/")
    into.wall.append(time.perf_counter() - started)
    into.cpu.append(_children_cpu() - cpu)
    return done


def byte_compile(tree: Path) -> None:
    """Compile the tree's packages to __pycache__, as `pip install` does for an installed fedctl."""
    packages = [str(tree / name) for name in ("federation", "agent") if (tree / name).is_dir()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j0", *packages], check=True)


def status_argv(topology: Path) -> list[str]:
    return [str(VENV_BIN / "fedctl"), "status", "-t", str(topology), "--format", "json"]


def checked_observation(size: int, done: subprocess.CompletedProcess[bytes]) -> float:
    """The run's `duration_s`; exits the benchmark when status did not find the stand-ins healthy."""
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = None
    if done.returncode != 0 or not isinstance(report, dict) or not report.get("healthy"):
        problems = report.get("problems") if isinstance(report, dict) else None
        sys.exit(f"fedctl status on {size} DCs exited {done.returncode}, problems {problems}: "
                 f"{done.stderr.decode(errors='replace')[-2000:]}")
    return float(report["duration_s"])


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="rounds (each times every size once)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 10, 30], help="numbers of DCs")
    parser.add_argument("--members", type=int, default=3, help="members per DC")
    parser.add_argument("--compare", metavar="DIR", help="also time the fedctl of this source tree (another "
                        "checkout, e.g. the main branch), in the same rounds")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes))
    sources: list[str | None] = [None] + ([str(Path(args.compare).resolve())] if args.compare else [])
    for source in sources:
        byte_compile(Path(source) if source else Path(__file__).resolve().parents[1])
    federation = StandInFederation(max(sizes), args.members, tuple(sizes))
    print(f"load average at start: {load_average()} (other work on the machine stretches wall times)")
    samples = {(source, size): Samples() for source in sources for size in sizes}
    bare = Samples()
    with tempfile.TemporaryDirectory(prefix="bench-status-") as scratch, StandInServers(federation):
        topologies = {size: Path(scratch) / f"status-{size}-dc.yaml" for size in sizes}
        for size, path in topologies.items():
            path.write_text(federation.topology_yaml(size, scratch))
            for source in sources:  # warm up, and check the stand-ins
                checked_observation(size, timed(status_argv(path), Samples(), source))
        for _ in range(args.runs):
            timed([sys.executable, "-c", "pass"], bare)
            for (source, size), into in samples.items():
                into.observe.append(checked_observation(size, timed(status_argv(topologies[size]), into, source)))
    print(f"load average at end: {load_average()}; medians and p90 of {args.runs} runs each; "
          f"python -c pass: {median(bare.wall):.3f} s wall, {median(bare.cpu):.3f} s CPU")
    floor = median(bare.wall)
    for source in sources:
        base = median(samples[(source, sizes[0])].wall)
        print(f"fedctl of {source or 'this tree'}:")
        print(f"  {'DCs':>4} {'members':>8} {'median':>8} {'p90':>8} {f'x({sizes[0]} DCs)':>10} "
              f"{'x(python -c pass)':>18} {'CPU':>7} {'observe':>8}")
        for size in sizes:
            got = samples[(source, size)]
            mid = median(got.wall)
            print(f"  {size:>4} {size * args.members:>8} {mid:>7.3f}s {p90(got.wall):>7.3f}s {mid / base:>10.2f} "
                  f"{mid / floor:>18.1f} {median(got.cpu):>6.3f}s {median(got.observe):>7.3f}s")
        verdict = "met" if base <= TARGET_SECONDS else "NOT met"
        print(f"  target: {sizes[0]} DCs <= {TARGET_SECONDS:g} s median: {verdict}")


if __name__ == "__main__":
    main()
