"""The federation record as `fedctl status` shows it: epoch, primary DC, each DC's copy, an operation left in flight."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from federation.state import StateCopy, newest
from federation.topology import Topology


def record_summary(topo: Topology, copies: Sequence[StateCopy]) -> tuple[dict[str, Any] | None, list[str]]:
    """(summary for JSON, problems). The summary is None when no DC holds a record yet (epoch 0, topology roles)."""
    if not any(c.state is not None for c in copies):
        return None, []
    st = newest(topo, copies)
    problems: list[str] = []
    op = st.operation
    if op is not None:
        resume = f"`fedctl {op.kind}-dc {op.target}` resumes it"
        if op.kind == "switchover" and op.source:
            resume += f"; `fedctl switchover-dc {op.source}` rolls it back while {op.target} is not yet promoted"
        problems.append(f"a {op.kind} {op.source or '?'} -> {op.target} stopped at step '{op.step}' "
                        f"(started {op.started}): {resume}")
    summary = {
        "epoch": st.epoch,
        "primary_dc": st.primary_dc,
        "upstreams": dict(st.upstreams),
        "operation": op.model_dump() if op else None,
        "copies": {c.dc: (c.state.epoch if c.state else None) if c.reachable else "unreachable" for c in copies},
        "last_operation": st.history[-1].model_dump() if st.history else None,
    }
    return summary, problems
