"""Benchmark: the client-visible write outage through HAProxy, PgBouncer and libpq during switchover-dc
(median of 3 runs).

Run: `.venv/bin/python -m bench.bench_entrypoint [--runs 3]`. It wipes and starts the entry lab
(tests/integration/topologies/entry-two-dc.yaml; `lab up` starts the agents, HAProxy, PgBouncer and the
entrypoint follower) and wipes it at the end. Three clients write all the time: one only through
HAProxy's read-write address, one only through PgBouncer, one through the multi-host libpq string
(`target_session_attrs=read-write`), so the cost of each hop (HAProxy's check interval and fall/rise,
the follower's poll and RELOAD) is the difference between its outage and libpq's.
"""

from __future__ import annotations

import argparse
import itertools
import time

from bench.common import TOPOLOGIES, fresh_lab, line, median, topology
from federation.entrypoints import default_binds
from federation.lab.lab import lab_down
from federation.operations.switchover import switchover_dc
from federation.progress import Progress
from tests.integration.labkit import LabHandle, Writer, eventually


def outage_since(writer: Writer, before: int) -> float:
    acked = writer.acked[max(0, before - 1):]
    return max((b[1] - a[1] for a, b in itertools.pairwise(acked)), default=0.0)


def _through(handle: LabHandle, table: str, bind: str) -> Writer:
    writer = Writer(handle, table=table)
    host, port = bind.rsplit(":", 1)
    writer.dsn = f"host={host} port={port} user=postgres password={handle.password()} dbname=postgres connect_timeout=1"
    return writer


def main(runs: int = 3) -> None:
    topo = topology("entry-two-dc")
    fresh_lab(topo)
    handle = LabHandle(topo, TOPOLOGIES / "entry-two-dc.yaml")
    writers: dict[str, Writer] = {}
    try:
        binds = default_binds(topo)
        writers["HAProxy"] = _through(handle, "bench_haproxy", binds.read_write)
        writers["PgBouncer"] = _through(handle, "bench_pgbouncer", binds.pgbouncer)
        # PgBouncer 1.18 in transaction pooling cannot keep prepared statements across server connections.
        writers["PgBouncer"].connect_kwargs = {"prepare_threshold": None}
        writers["multi-host libpq"] = Writer(handle, table="bench_libpq")
        for name, writer in writers.items():
            writer.start()
            eventually(f"writes through {name}", lambda w=writer: len(w.acked) > 20, 60)
        totals: list[float] = []
        outages: dict[str, list[float]] = {name: [] for name in writers}
        for i in range(runs):
            target = "dc2" if i % 2 == 0 else "dc1"
            before = {name: len(w.acked) for name, w in writers.items()}
            started = time.monotonic()
            switchover_dc(topo, target, Progress(quiet=True))
            totals.append(time.monotonic() - started)
            after = {name: len(w.acked) for name, w in writers.items()}
            for name, writer in writers.items():
                eventually(f"writes resume through {name}", lambda w=writer, b=after[name]: len(w.acked) > b + 20, 60)
                outages[name].append(outage_since(writer, before[name]))
            each = ", ".join(f"via {name} {values[-1]:.2f} s" for name, values in outages.items())
            print(f"  run {i + 1} (-> {target}): switchover {totals[-1]:.2f} s, outage {each}", flush=True)
        print(f"switchover-dc through the entrypoints, {runs} runs:")
        line("switchover-dc total, median", f"{median(totals):6.2f} s")
        for name, values in outages.items():
            line(f"client write outage through {name}, median", f"{median(values):6.2f} s")
    finally:
        for writer in writers.values():
            writer.stop()
        lab_down(topo, Progress(quiet=True), wipe=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    main(parser.parse_args().runs)
