"""`fedctl switchover-dc`, `promote-dc`, `rejoin-dc` and `history`: the cross-DC operations."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click

from federation.cli.app import cli, dry_run_option, format_option, load, reports_errors, topology_option, yes_option
from federation.errors import FedError
from federation.operations.report import OperationReport
from federation.progress import Progress
from federation.render import render_data, render_table

# What --force risks when the gate pre-check fails; the operation also warns with the members' names.
GATE_RISK = ("With --force a member of the DC without the promotion gate does not stop it: Patroni could later promote "
             "that member on its own, without the federation's checks (a split brain).")


def run_operation(fmt: str, run: Callable[[Progress], OperationReport], question: str | None,
                   yes: bool, dry_run: bool) -> None:
    progress = Progress(quiet=fmt == "json")
    if question and not (yes or dry_run):
        if not sys.stdin.isatty():
            raise click.UsageError(f"{question} Refusing without confirmation: add --yes to run it unattended.")
        click.confirm(question, abort=True, err=True)
    try:
        report = run(progress)
    except KeyboardInterrupt:
        click.secho("Interrupted: the operation may be left pending. `fedctl operation show` says where it stopped "
                    "and which command finishes or undoes it.", fg="red", err=True)
        sys.exit(130)
    except FedError as exc:
        if fmt == "json":
            click.echo(json.dumps({"outcome": "failed", "error": str(exc),
                                   "steps": [s.to_json_dict() for s in progress.steps]}, indent=2))
        raise
    if fmt == "json":
        click.echo(json.dumps(report.to_json_dict(progress), indent=2))
        return
    if dry_run:
        click.echo("Plan (dry run, nothing changed):")
        for i, step in enumerate(report.plan, start=1):
            click.echo(f"  {i}. {step}")
        if report.upstreams_after:
            click.echo("Upstreams after it:")
            for line in report.upstream_lines():
                click.echo(f"  {line}")
        return
    total = sum(s.seconds for s in progress.steps)
    click.echo(f"{report.operation} {report.target}: {report.outcome} in {total:.2f} s, epoch {report.epoch}")


@cli.command("switchover-dc")
@topology_option
@click.argument("dc_name", metavar="DC")
@dry_run_option
@yes_option
@format_option
@click.option("--max-lag", "max_lag", type=int, default=16 * 1024 * 1024, show_default=True,
              help="Refuse when the target is more than this many bytes behind.")
@click.option("--force", is_flag=True, help="Switch over although a member of DC cannot be shown to run the "
              f"promotion gate. {GATE_RISK}")
@click.option("--wait-streaming", is_flag=True, help="Return only once the old primary DC streams from the new "
              "one (by default the command returns once it is re-pointed, after the lossless proof).")
@reports_errors
def switchover_dc_cmd(topology_path: str, dc_name: str, dry_run: bool, yes: bool, fmt: str, max_lag: int,
                      force: bool, wait_streaming: bool) -> None:
    """Planned switchover: make DC the primary DC with zero data loss, proven by LSN."""
    from federation.operations.switchover import switchover_dc

    topo = load(topology_path)
    topo.dc(dc_name)
    question = f"Switch the primary DC over to {dc_name}?"
    run_operation(fmt, lambda p: switchover_dc(topo, dc_name, p, dry_run=dry_run, max_lag_bytes=max_lag,
                                               force=force, wait_streaming=wait_streaming),
                   f"{GATE_RISK} {question}" if force else question, yes, dry_run)


@cli.command("history")
@topology_option
@format_option
@reports_errors
def history_cmd(topology_path: str, fmt: str) -> None:
    """List the federation's operations (newest last), from the newest federation record."""
    from federation.state import current_state

    topo = load(topology_path)
    st, copies = current_state(topo)
    rows = [[h.epoch, h.time, h.operation, h.source or "-", h.target, h.outcome,
             f"{h.seconds:.2f}" if h.seconds is not None else "", _details(h.details)] for h in st.history]
    if fmt != "table":
        click.echo(render_data({"epoch": st.epoch, "primary_dc": st.primary_dc,
                                "operation": st.operation.model_dump() if st.operation else None,
                                "history": [h.model_dump() for h in st.history]}, fmt))
        return
    click.echo(render_table(["Epoch", "Time", "Operation", "From", "To", "Outcome", "Seconds", "Details"], rows,
                            title=f"Federation {topo.federation}: epoch {st.epoch}, primary DC {st.primary_dc}"))
    unreachable = [c.dc for c in copies if not c.reachable]
    if unreachable:
        click.echo(f"(not read: {', '.join(unreachable)} did not answer)", err=True)


def _details(details: dict[str, object]) -> str:
    token = details.get("demotion_token")
    if isinstance(token, dict):
        return f"token {token.get('lsn')} TL{token.get('timeline')}"
    parts = [f"{k}={v}" for k, v in details.items() if v is not None and not isinstance(v, dict | list)]
    return ", ".join(parts)[:80]


@cli.command("promote-dc")
@topology_option
@click.argument("dc_name", metavar="DC")
@click.option("--force", is_flag=True, help="Promote even though the primary DC still answers (it gets fenced); "
              "with a federation store, revoke its live lease in the epoch commit. Also promotes although a member "
              f"of DC cannot be shown to run the promotion gate. {GATE_RISK}")
@dry_run_option
@yes_option
@format_option
@reports_errors
def promote_dc_cmd(topology_path: str, dc_name: str, force: bool, dry_run: bool, yes: bool, fmt: str) -> None:
    """Disaster promotion: make DC the primary DC because the primary DC is gone. Asks first."""
    from federation.operations.promote import LossEstimate, promote_dc

    topo = load(topology_path)
    topo.dc(dc_name)

    def confirm(estimate: LossEstimate) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise click.UsageError("promote-dc changes which DC takes writes; add --yes to run it unattended")
        return click.confirm(f"Promote {dc_name}? {estimate.sentence()}", err=True)

    run_operation(fmt, lambda p: promote_dc(topo, dc_name, p, force=force, dry_run=dry_run, confirm=confirm),
                   None, yes, dry_run)


@cli.command("rejoin-dc")
@topology_option
@click.argument("dc_name", metavar="DC")
@dry_run_option
@yes_option
@format_option
@reports_errors
def rejoin_dc_cmd(topology_path: str, dc_name: str, dry_run: bool, yes: bool, fmt: str) -> None:
    """Bring a replaced DC back as a standby of the current primary DC (discards WAL written past the fork)."""
    from federation.operations.rejoin import rejoin_dc

    topo = load(topology_path)
    topo.dc(dc_name)
    run_operation(fmt, lambda p: rejoin_dc(topo, dc_name, p, dry_run=dry_run),
                   f"Rejoin {dc_name} as a standby DC? WAL it wrote past the fork will be discarded.", yes, dry_run)
