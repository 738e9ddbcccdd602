"""Running a DC's `fence_command` (STONITH for a whole DC) before a disaster promotion."""

from __future__ import annotations

import shlex
import subprocess

from federation.errors import OperationFailed
from federation.topology import Datacenter, Topology

FENCE_TIMEOUT = 60.0
NO_FENCE_COMMAND = "no fence command in the topology"


def run_fence(topo: Topology, dc: Datacenter) -> str:
    if not dc.fence_command:
        return NO_FENCE_COMMAND
    argv = shlex.split(dc.fence_command)
    env = {"FEDCTL_FENCED_DC": dc.name, "FEDCTL_FEDERATION": topo.federation, "PATH": "/usr/bin:/bin"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=FENCE_TIMEOUT, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperationFailed(f"fence command for {dc.name} failed to run: {exc}; nothing was promoted",
                              hint="fix the fence command or fence the DC by hand, then rerun with --yes") from exc
    if done.returncode != 0:
        raise OperationFailed(f"fence command for {dc.name} exited {done.returncode}: "
                              f"{(done.stderr or done.stdout).strip()[-300:]}; nothing was promoted")
    return f"{argv[0]} exited 0"


