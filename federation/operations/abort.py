"""`fedctl operation abort`: undo the pending operation where its plan allows, and say plainly where not."""

from __future__ import annotations

from federation import state
from federation.errors import BadInput, OperationRefused
from federation.operations.journal import LiveRecord, RecordJournal, RecordPort
from federation.operations.pending import describe_pending, finish_command, past_commit_point
from federation.operations.report import OperationReport
from federation.operations.world import World
from federation.progress import Progress
from federation.state import HistoryEntry
from federation.topology import Topology


def abort_operation(topo: Topology, progress: Progress, *, world: World | None = None,
                    record: RecordPort | None = None) -> OperationReport:
    record = record or LiveRecord(topo)
    st = record.read()
    op = st.operation
    if op is None:
        raise BadInput(f"no operation is pending (epoch {st.epoch}, primary DC {st.primary_dc}): nothing to abort")
    blocked = past_commit_point(st, op)
    if blocked is not None:
        raise OperationRefused(f"cannot abort {describe_pending(op)}: {blocked}",
                               hint=f"finish it with `{finish_command(op)}`")
    if op.kind == "switchover" and op.source:
        from federation.operations.switchover import switchover_dc

        progress.say(f"Aborting {describe_pending(op)}: rolling back to {op.source}")
        return switchover_dc(topo, op.source, progress, world=world, record=record)
    report = OperationReport("operation abort", op.target, op.source, epoch=st.epoch)
    effect = {"promote": f"{op.target} stays a standby DC; the epoch still names {st.primary_dc}",
              "rejoin": f"{op.target} keeps the standby configuration written so far"}.get(op.kind, "")
    if op.kind == "promote" and op.inputs.get("fenced_by_command"):
        effect += f"; {op.source}'s fence command ran: undo it by hand before {op.source} serves again"
    with progress.step(f"forget the {op.kind} of {op.target}") as rec:
        entry = HistoryEntry(epoch=st.epoch, time=state.utc_now(), operation=f"{op.kind} (aborted)",
                             source=op.source, target=op.target, outcome="aborted",
                             details={"operation": op.id, "step": op.step})
        RecordJournal(record, st, op).finish(entry)
        rec.detail = effect
    progress.say(f"   {effect}")
    report.outcome = "aborted"
    report.facts["effect"] = effect
    return report
