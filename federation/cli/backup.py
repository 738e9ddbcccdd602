"""`fedctl backup`, `backups`, `check-archive`, `verify-restore`, `rebuild`: thin wrappers over backup/."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from federation.cli.app import cli, dry_run_option, format_option, load, reports_errors, topology_option, yes_option
from federation.errors import EXIT_FAILED
from federation.progress import Progress
from federation.render import render_data, render_table

if TYPE_CHECKING:
    from backup.findings import Finding


def _progress(fmt: str) -> Progress:
    return Progress(quiet=fmt != "table")


def _findings(findings: list[Finding], title: str) -> str:
    """A table with one line per check, then the full text and the hint of every failed check."""
    rows = [[f.check, "ok" if f.ok else "PROBLEM", f.message.splitlines()[0]] for f in findings]
    lines = [render_table(["Check", "Result", "Detail"], rows, title=title)]
    for f in findings:
        if not f.ok:
            lines.append(f"PROBLEM {f.check}: {f.message}" + (f"\n  hint: {f.hint}" if f.hint else ""))
    return "\n".join(lines)


@cli.command("backup")
@topology_option
@click.argument("dc_name", metavar="DC")
@click.option("--type", "kind", type=click.Choice(["full", "diff", "incr"]), default="full", show_default=True,
              help="pgBackRest backup type.")
@format_option
@dry_run_option
@reports_errors
def backup_cmd(topology_path: str, dc_name: str, kind: str, fmt: str, dry_run: bool) -> None:
    """Back up the primary DC (on its current leader), after writing a canary row for verify-restore."""
    from backup.take import backup_command, take_backup

    topo = load(topology_path)
    if dry_run:
        leader, command = backup_command(topo, dc_name, kind)
        click.echo(f"would write a canary row on {leader.member.name}, then run:\n  {command}")
        return
    outcome = take_backup(topo, dc_name, kind, _progress(fmt))
    if fmt == "table":
        click.echo(f"backup {outcome.backup.label} ({outcome.backup.type}) of {dc_name} on {outcome.member} "
                   f"in {outcome.seconds:.1f} s, canary id {outcome.canary.id}")
    else:
        click.echo(render_data(outcome.to_json_dict(), fmt))


@cli.command("backups")
@topology_option
@click.argument("dc_name", metavar="[DC]", required=False)
@format_option
@reports_errors
def backups_cmd(topology_path: str, dc_name: str | None, fmt: str) -> None:
    """List the backup sets of the federation's shared stanza (read through DC's leader, default the primary)."""
    from backup.listing import BACKUP_COLUMNS, backup_dicts, backup_rows, list_backups

    info = list_backups(load(topology_path), dc_name)
    if fmt == "table":
        click.echo(render_table(BACKUP_COLUMNS, backup_rows(info), title=f"stanza {info.name}: {info.status.message}"))
    else:
        click.echo(render_data(backup_dicts(info), fmt))


@cli.command("check-archive")
@topology_option
@click.argument("dc_name", metavar="[DC]", required=False)
@click.option("--archive-timeout", type=float, default=None, metavar="SECONDS",
              help="How long `pgbackrest check` waits for the switched WAL segment (default: pgBackRest's).")
@click.option("--max-ready-age", type=float, default=120.0, show_default=True, metavar="SECONDS",
              help="A .ready segment older than this means archiving is stuck.")
@format_option
@reports_errors
def check_archive_cmd(topology_path: str, dc_name: str | None, archive_timeout: float | None, max_ready_age: float,
                      fmt: str) -> None:
    """Check WAL archiving and that no segment is missing from the oldest backup to now. Exit 1 on any problem."""
    from backup.archive_check import check_archive

    report = check_archive(load(topology_path), dc_name, archive_timeout=archive_timeout,
                           max_ready_age=max_ready_age)
    if fmt == "table":
        click.echo(_findings(report.findings, f"archive of {report.dc} (pushed by {report.primary})"))
        for r in report.ranges:
            click.echo(f"timeline {r.timeline}: {r.first.name} .. {r.last.name} ({r.count} segments in the repository)")
        for gap in report.gaps:
            click.echo(f"GAP: {gap}")
    else:
        click.echo(render_data(report.to_json_dict(), fmt))
    if not report.ok:
        sys.exit(EXIT_FAILED)


@cli.command("verify-restore")
@topology_option
@click.argument("dc_name", metavar="DC")
@click.option("--set", "label", metavar="LABEL", help="Backup set to verify (default: the newest).")
@format_option
@reports_errors
def verify_restore_cmd(topology_path: str, dc_name: str, label: str | None, fmt: str) -> None:
    """Restore a backup set into a scratch directory, start it, check it, time it (RTO) and remove it.

    Exit 1 when any check fails."""
    from backup.verify import verify_restore

    report = verify_restore(load(topology_path), dc_name, label, _progress(fmt))
    if fmt == "table":
        click.echo(_findings(report.findings, f"verify-restore of {report.label} ({report.backup_type}) via "
                                              f"{report.dc}"))
        click.echo(f"restore {report.restore_seconds:.1f} s + recovery {report.recovery_seconds:.1f} s = "
                   f"RTO {report.rto_seconds:.1f} s; checks {report.checks_seconds:.1f} s")
    else:
        click.echo(render_data(report.to_json_dict(), fmt))
    if not report.ok:
        sys.exit(EXIT_FAILED)


@cli.command("rebuild")
@topology_option
@click.argument("dc_name", metavar="DC")
@click.argument("member_name", metavar="MEMBER")
@format_option
@dry_run_option
@yes_option
@reports_errors
def rebuild_cmd(topology_path: str, dc_name: str, member_name: str, fmt: str, dry_run: bool, yes: bool) -> None:
    """Reinitialise a replica or standby leader with a pgBackRest delta restore from the shared repository."""
    from backup.rebuild import plan, rebuild

    topo = load(topology_path)
    role, steps = plan(topo, dc_name, member_name)
    if dry_run or (fmt == "table" and not yes):
        click.echo(f"rebuild {dc_name}/{member_name} ({role}):\n" + "\n".join(f"  {i}. {s}" for i, s in
                                                                             enumerate(steps, 1)))
    if dry_run:
        return
    if not yes:
        click.confirm("Its PostgreSQL restarts and data that differs from the backup is overwritten. Go on?",
                      abort=True)
    report = rebuild(topo, dc_name, member_name, _progress(fmt))
    if fmt != "table":
        click.echo(render_data(report.to_json_dict(), fmt))
        return
    stats = report.stats
    copied = (f"{stats.copied_bytes / 1024**2:.1f} MB in {stats.copied_files} file(s) copied, "
              f"{(stats.kept_bytes or 0) / 1024**2:.1f} MB kept" if stats and stats.copied_bytes is not None
              else "copied bytes unknown")
    total = f" of {stats.total_bytes / 1024**2:.1f} MB" if stats and stats.total_bytes else ""
    click.echo(f"{dc_name}/{member_name} rebuilt in {report.seconds:.1f} s via {report.how} "
               f"(method: {report.replica_method or 'unknown'}); {copied}{total} [{report.bytes_how}]; "
               f"data dir {_megabytes(report.size_before)} -> {_megabytes(report.size_after)}; "
               f"now {report.role_after}")


def _megabytes(size: int | None) -> str:
    return "? (not readable here)" if size is None else f"{size / 1024**2:.1f} MB"


@cli.command("backup-config")
@topology_option
@click.option("--member", "member_name", metavar="NAME", help="Render that database host's config instead of the "
              "repository host's.")
@click.option("--output", "output", type=click.Path(dir_okay=False), help="Write it to this file (atomically) "
              "instead of printing it.")
@click.option("--write", "write", is_flag=True, help="Write the repository host's config to repo_host.config.")
@reports_errors
def backup_config_cmd(topology_path: str, member_name: str | None, output: str | None, write: bool) -> None:
    """pgbackrest.conf for the repository-host layout (repo_host and tls in the pgbackrest section), rendered
    from the topology and the DCs as they are now: the pgN-* hosts are the current primary DC's members."""
    from backup.host_render import render_member, render_repo_host, write_config

    topo = load(topology_path)
    if member_name is not None:
        if write:
            raise click.UsageError("--write writes the repository host's config; use --output for a member's")
        text, notes = render_member(topo, member_name), list[str]()
    else:
        text, notes, target = render_repo_host(topo)
        output = target if write else output
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if output:
        write_config(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
