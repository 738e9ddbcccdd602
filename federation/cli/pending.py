"""`fedctl operation show|abort`: the operation left pending in the federation record."""

from __future__ import annotations

import click

from federation.cli.app import cli, format_option, load, reports_errors, topology_option, yes_option
from federation.render import render_data


@cli.group("operation")
def operation_group() -> None:
    """The operation in flight: where it stands, and how to finish or undo it."""


@operation_group.command("show")
@topology_option
@format_option
@reports_errors
def show_cmd(topology_path: str, fmt: str) -> None:
    """Print the pending operation, its step, what a rerun does next and what ends it. Exit 1 when none."""
    from federation.operations.pending import view
    from federation.state import current_state

    st, _copies = current_state(load(topology_path))
    if st.operation is None:
        if fmt != "table":
            click.echo(render_data({"operation": None, "epoch": st.epoch, "primary_dc": st.primary_dc}, fmt))
        else:
            click.echo(f"No operation is pending (epoch {st.epoch}, primary DC {st.primary_dc}).")
        raise SystemExit(1)
    pending = view(st)
    if fmt != "table":
        click.echo(render_data(pending.to_json_dict(), fmt))
        return
    click.echo("\n".join(pending.lines()))


@operation_group.command("abort")
@topology_option
@yes_option
@format_option
@reports_errors
def abort_cmd(topology_path: str, yes: bool, fmt: str) -> None:
    """Undo the pending operation where its plan allows (before its epoch raise); refuses past that point."""
    from federation.cli.operations import run_operation
    from federation.operations.abort import abort_operation

    topo = load(topology_path)
    run_operation(fmt, lambda p: abort_operation(topo, p), "Abort the pending operation?", yes, False)
