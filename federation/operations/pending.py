"""The operation left pending in the federation record: what refuses because of it, what ends it.

Every pending operation has a command that finishes it (rerun the same operation: it resumes at its
first step not done) and one that undoes it where its plan allows (`fedctl operation abort`, before its
commit point, the epoch raise). Past the commit point an operation can only be finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from federation.errors import BadInput, OperationRefused
from federation.state import FederationState, PendingOperation

COMMAND = {"switchover": "switchover-dc", "promote": "promote-dc", "rejoin": "rejoin-dc"}


def finish_command(op: PendingOperation) -> str:
    """The command that finishes `op` (a rollback finishes with the source named)."""
    target = op.source if op.rollback and op.source else op.target
    return f"fedctl {COMMAND.get(op.kind, op.kind)} {target}"


def describe_pending(op: PendingOperation) -> str:
    what = f"a {op.kind} {op.source} -> {op.target}" if op.source else f"a {op.kind} of {op.target}"
    if op.rollback:
        what += " (being rolled back)"
    return f"{what} is pending at step '{op.step}' (started {op.started} by {op.owner or 'an older fedctl'})"


def refuse_other_operation(st: FederationState, kind: str, *, superseded_by_force: bool = False) -> None:
    """A different operation refuses while one is pending, and names it and the commands that end it."""
    op = st.operation
    if op is None or op.kind == kind:
        return
    hint = f"finish it with `{finish_command(op)}`"
    if past_commit_point(st, op) is None:
        hint += " or undo it with `fedctl operation abort`"
    if superseded_by_force:
        hint += "; --force lets this promotion supersede it"
    raise OperationRefused(f"{describe_pending(op)}: it must end before a {kind} starts", hint=hint)


def past_commit_point(st: FederationState, op: PendingOperation) -> str | None:
    """Why `op` can no longer be undone (None while it can): its epoch raise names its target already."""
    if op.kind in ("switchover", "promote") and not op.rollback and st.primary_dc == op.target:
        return (f"epoch {st.epoch} already names {op.target} the primary DC (the {op.kind}'s commit point): "
                f"it can only be finished")
    return None


@dataclass(frozen=True)
class PendingView:
    """What `fedctl operation show` prints."""

    op: PendingOperation
    epoch: int
    primary_dc: str
    next_step: str | None
    finish: str
    undo: str

    def to_json_dict(self) -> dict[str, Any]:
        return {"operation": self.op.model_dump(), "epoch": self.epoch, "primary_dc": self.primary_dc,
                "next_step": self.next_step, "finish_with": self.finish, "abort": self.undo}

    def lines(self) -> list[str]:
        op = self.op
        out = [f"Pending: {describe_pending(op)}", f"  operation id {op.id or '-'}; record epoch {self.epoch}, "
               f"primary DC {self.primary_dc}"]
        if op.plan:
            out.append("  plan: " + " -> ".join(f"[{s}]" if s == op.step else s for s in op.plan))
        if op.inputs:
            out.append("  kept for the next steps: " + ", ".join(sorted(op.inputs)))
        out.append(f"  next: {self.next_step or op.step}")
        out.append(f"  finish it: {self.finish}")
        out.append(f"  undo it: {self.undo}")
        return out


def view(st: FederationState) -> PendingView:
    op = st.operation
    if op is None:
        raise BadInput(f"no operation is pending (epoch {st.epoch}, primary DC {st.primary_dc})",
                       hint="`fedctl history` lists the finished ones")
    blocked = past_commit_point(st, op)
    undo = f"not possible: {blocked}" if blocked else "`fedctl operation abort`" + _abort_effect(op)
    next_step = (f"{op.step}: a rerun of `{finish_command(op)}` checks each step against the real state and "
                 f"resumes at the first one not done")
    return PendingView(op, st.epoch, st.primary_dc, next_step, f"`{finish_command(op)}`", undo)


def _abort_effect(op: PendingOperation) -> str:
    if op.kind == "switchover":
        return f" (promotes {op.source} back if it was demoted, then re-points {op.target} at it)"
    if op.kind == "promote":
        return f" (forgets the promotion; {op.target} stays a standby DC)"
    return " (forgets it; the DC keeps the standby configuration written so far)"
