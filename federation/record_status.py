"""The federation record as `fedctl status` shows it: epoch, primary DC, each DC's copy, an operation left in flight."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from federation.state import FederationState, StateCopy, newest
from federation.topology import Topology

HISTORY_IN_STATUS = 10  # the newest entries of the record's history that the status carries (the HTML view's list)


def record_summary(topo: Topology, copies: Sequence[StateCopy],
                   store_record: FederationState | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    """(summary for JSON, problems). The summary is None when no DC holds a record yet (epoch 0, topology roles).
    With a federation store its record is the record; the copies only say which DC holds which epoch."""
    if store_record is None and not any(c.state is not None for c in copies):
        return None, []
    st = store_record or newest(topo, copies)
    problems: list[str] = []
    op = st.operation
    if op is not None:
        from federation.operations.pending import describe_pending, finish_command, past_commit_point

        ways = f"`{finish_command(op)}` finishes it"
        if past_commit_point(st, op) is None:
            ways += ", `fedctl operation abort` undoes it"
        problems.append(f"{describe_pending(op)}: {ways} (`fedctl operation show` for details)")
    summary = {
        "epoch": st.epoch,
        "primary_dc": st.primary_dc,
        "upstreams": dict(st.upstreams),
        "operation": op.model_dump() if op else None,
        "copies": {c.dc: (c.state.epoch if c.state else None) if c.reachable else "unreachable" for c in copies},
        "last_operation": st.history[-1].model_dump() if st.history else None,
        "history": [h.model_dump() for h in st.history[-HISTORY_IN_STATUS:]],
    }
    return summary, problems
