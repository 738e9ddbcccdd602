"""Benchmark: the client-visible write outage through HAProxy during switchover-dc (median of 3 runs).

Run: `.venv/bin/python -m bench.bench_entrypoint [--runs 3]`. It wipes and starts the entry lab
(tests/integration/topologies/entry-two-dc.yaml), starts the agents (HAProxy checks their GET /primary),
and wipes it at the end. Two clients write all the time: one only through HAProxy's read-write
address, one through the multi-host libpq string (`target_session_attrs=read-write`), so the cost of
the HAProxy hop (check interval, fall/rise) is the difference between their outages.
"""

from __future__ import annotations

import argparse
import itertools
import time

from bench.common import TOPOLOGIES, fresh_lab, line, median, topology
from federation.entrypoints import default_binds
from federation.lab.agents import start_agents, stop_agents
from federation.lab.lab import Lab, lab_down
from federation.operations.switchover import switchover_dc
from federation.progress import Progress
from tests.integration.labkit import LabHandle, Writer, eventually


def outage_since(writer: Writer, before: int) -> float:
    acked = writer.acked[max(0, before - 1):]
    return max((b[1] - a[1] for a, b in itertools.pairwise(acked)), default=0.0)


def main(runs: int = 3) -> None:
    topo = topology("entry-two-dc")
    fresh_lab(topo)
    lab = Lab.of(topo)
    handle = LabHandle(topo, TOPOLOGIES / "entry-two-dc.yaml")
    try:
        for dc in topo.datacenters:
            start_agents(lab, dc)
        host, port = default_binds(topo).read_write.rsplit(":", 1)
        via_haproxy = Writer(handle, table="bench_haproxy")
        via_haproxy.dsn = (f"host={host} port={port} user=postgres password={handle.password()} dbname=postgres "
                           "connect_timeout=1")
        via_libpq = Writer(handle, table="bench_libpq")
        via_haproxy.start()
        eventually("writes through HAProxy", lambda: len(via_haproxy.acked) > 20, 60)
        via_libpq.start()
        totals, haproxy_outages, libpq_outages = [], [], []
        for i in range(runs):
            target = "dc2" if i % 2 == 0 else "dc1"
            before_h, before_l = len(via_haproxy.acked), len(via_libpq.acked)
            started = time.monotonic()
            switchover_dc(topo, target, Progress(quiet=True))
            totals.append(time.monotonic() - started)
            eventually("writes resume through HAProxy", lambda b=before_h: len(via_haproxy.acked) > b + 20, 60)
            eventually("writes resume through libpq", lambda b=before_l: len(via_libpq.acked) > b + 20, 60)
            haproxy_outages.append(outage_since(via_haproxy, before_h))
            libpq_outages.append(outage_since(via_libpq, before_l))
            print(f"  run {i + 1} (-> {target}): switchover {totals[-1]:.2f} s, outage via HAProxy "
                  f"{haproxy_outages[-1]:.2f} s, via multi-host libpq {libpq_outages[-1]:.2f} s", flush=True)
        via_haproxy.stop()
        via_libpq.stop()
        print(f"switchover-dc through the entrypoints, {runs} runs:")
        line("switchover-dc total, median", f"{median(totals):6.2f} s")
        line("client write outage through HAProxy, median", f"{median(haproxy_outages):6.2f} s")
        line("client write outage through multi-host libpq, median", f"{median(libpq_outages):6.2f} s")
    finally:
        for dc in topo.datacenters:
            stop_agents(lab, dc)
        lab_down(topo, Progress(quiet=True), wipe=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    main(parser.parse_args().runs)
