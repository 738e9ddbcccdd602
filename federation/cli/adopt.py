"""`fedctl adopt`: bring running Patroni clusters under the federation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from federation.cli.app import cli, dry_run_option, format_option, load, reports_errors, topology_option, yes_option
from federation.operations.adopt import AdoptReport, adopt
from federation.progress import Progress


@cli.command("adopt")
@topology_option
@dry_run_option
@yes_option
@format_option
@reports_errors
def adopt_cmd(topology_path: str, dry_run: bool, yes: bool, fmt: str) -> None:
    """Bring the running clusters the topology describes under fedctl, online: refuses with every
    contradiction between them and the topology, else declares the standby DCs' permanent slots, sets the
    standby_cluster keys fedctl needs and writes the first federation record. A second run changes nothing."""
    topo = load(topology_path)
    path = str(Path(topology_path).resolve())
    quiet = Progress(quiet=True)
    plan = adopt(topo, path, quiet, dry_run=True)
    if fmt != "table":
        if not dry_run and plan.plan:
            _confirm(yes)
            plan = adopt(topo, path, Progress(quiet=True))
        click.echo(json.dumps(_as_json(plan, applied=not dry_run), indent=2))
        return
    _show(plan)
    if dry_run or not plan.plan:
        click.echo("Dry run: nothing changed." if dry_run else "Nothing to change: the federation is adopted already.")
        _show_member_lines(plan)
        return
    _confirm(yes)
    adopt(topo, path, Progress())
    click.echo(f"Adopted: {topo.federation} is under fedctl now.")
    _show_member_lines(plan)


def _confirm(yes: bool) -> None:
    if yes:
        return
    question = "Apply this plan to the running clusters?"
    if not sys.stdin.isatty():
        raise click.UsageError(f"{question} Refusing without confirmation: add --yes to run it unattended.")
    click.confirm(question, abort=True, err=True)


def _show(report: AdoptReport) -> None:
    click.echo(f"Federation {report.federation}, roles from {report.source}:")
    for name, seen in report.running.items():
        assert seen.leader is not None
        section = seen.standby_cluster
        how = (f"standby cluster, leader {seen.leader.name}, streaming from {section.get('host')}:"
               f"{section.get('port', 5432)} through slot {section.get('primary_slot_name') or '(none)'}"
               if section else f"primary, leader {seen.leader.name} takes writes")
        click.echo(f"  {name}: {how}")
    if report.plan:
        click.echo("Plan:")
        for i, step in enumerate(report.plan, start=1):
            click.echo(f"  {i}. {step}")


def _show_member_lines(report: AdoptReport) -> None:
    click.echo("On every member, what fedctl cannot change remotely (`fedctl status` shows what is missing):")
    for line in report.member_lines:
        click.echo(f"  {line}")


def _as_json(report: AdoptReport, *, applied: bool) -> dict[str, object]:
    return {"federation": report.federation, "roles_from": report.source, "plan": report.plan,
            "applied": applied and bool(report.plan), "member_lines": report.member_lines}
