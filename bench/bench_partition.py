"""Benchmark: a WAN cut of the primary DC on the namespace lab, from the cut to dc2's first accepted write.

Run: `.venv/bin/python -m bench.bench_partition [--runs 3]` (as root). Each run wipes and starts the
partition lab (tests/integration/topologies/partition.yaml), puts a committing client inside dc1 and one
inside dc2, cuts dc1 off from everyone, and times:
- self-fence: from the cut to dc1's last acknowledged commit (no operator involved; the lease TTL minus
  the fencing margin, plus the agents' check and Patroni's demotion);
- lease expiry: from the cut until the admin host sees the lease gone (promote-dc refuses before);
- promote-dc: the command, most of it the fencing bound it waits out after the lease is gone;
- cut to dc2's first accepted write, the figure a user feels.
Expected: about the lease TTL plus the fencing bound plus a second or two.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from bench.common import TOPOLOGIES, fresh_lab, line, median, topology
from federation.lab.cuts import partition
from federation.lab.lab import lab_down
from federation.lab.netns import netns_of
from federation.operations.promote import promote_dc
from federation.progress import Progress
from federation.samples import newest_sample
from tests.integration.labkit import LabHandle, Writer, dc_dsn, eventually, wait_for_no_lease


def one_run() -> dict[str, float]:
    topo = topology("partition")
    fresh_lab(topo)
    handle = LabHandle(topo, TOPOLOGIES / "partition.yaml")
    in_dc1 = Writer(handle, "bench_cut", dsn=dc_dsn(topo, topo.dc("dc1")), netns=netns_of(topo, "dc1")).start()
    in_dc2 = Writer(handle, "bench_cut", dsn=dc_dsn(topo, topo.dc("dc2")), netns=netns_of(topo, "dc2"), create=False,
                    first_id=10**9, error_pause=0.05)
    try:
        eventually("writes in dc1", lambda: len(in_dc1.acked) > 50)
        eventually("the table on dc2", lambda: handle.sql_one(topo.dc("dc2").members[0],
                                                              "SELECT count(*) FROM bench_cut") > 0)
        in_dc2.start()
        eventually("a fresh LSN sample of dc1", lambda: (s := newest_sample(topo, "dc1")) is not None
                   and (datetime.now(UTC) - s.taken_at).total_seconds() < 3, timeout=30)
        partition(topo, "dc1")
        cut = time.monotonic()
        wait_for_no_lease(handle)
        expired = time.monotonic()
        progress = Progress(quiet=True)
        promote_dc(topo, "dc2", progress)
        promoted = time.monotonic()
        eventually("a write on dc2", lambda: in_dc2.acked, interval=0.005)
        first = in_dc2.acked[0][1]
        last_dc1 = in_dc1.acked[-1][1]
        steps = {f"  promote-dc step '{s.name}'": s.seconds for s in progress.steps}
    finally:
        in_dc1.stop()
        in_dc2.stop()
    return {"self-fence (cut to dc1's last acknowledged commit)": last_dc1 - cut,
            "cut to lease seen gone from the admin host": expired - cut,
            "promote-dc command": promoted - expired,
            **steps,
            "cut to dc2's first accepted write": first - cut,
            "dc1 commits acknowledged after dc2's first write": float(len([t for _, t in in_dc1.acked if t > first]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    lab_down(topology("partition"), Progress(quiet=True), wipe=True)
    topo = topology("partition")
    assert topo.federation_store is not None
    print(f"cut of the primary DC, {args.runs} runs (lease TTL {topo.federation_store.lease_ttl} s, fencing margin "
          f"{topo.federation_store.fencing_margin:g} s), medians:")
    for key in runs[0]:
        values = [r.get(key, 0.0) for r in runs]
        line(key, f"{median(values):6.2f}" + ("" if key.startswith("dc1 commits") else " s")
             + f"   (all: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
