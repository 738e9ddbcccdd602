"""`fedctl jobs`: scheduled jobs of each DC and their results from the DC's DCS. Exit 1 when one is failing."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from federation.cli.app import cli, format_option, load, reports_errors, topology_option
from federation.errors import EXIT_FAILED
from federation.render import render_data, render_table


@cli.command("jobs")
@topology_option
@click.argument("dc_name", metavar="[DC]", required=False)
@format_option
@reports_errors
def jobs_cmd(topology_path: str, dc_name: str | None, fmt: str) -> None:
    """Each DC's scheduled jobs (next run from the cron) and their result history, newest first.

    Exit 1 when the last run of a declared job did not succeed (failed, crashed, overrun, missed) or a DC's
    DCS cannot be read."""
    from backup.job_report import HISTORY_COLUMNS, JOB_COLUMNS, history_rows, job_rows, jobs_report

    report = jobs_report(load(topology_path), dc_name, datetime.now(UTC))
    if fmt != "table":
        click.echo(render_data(report, fmt))
    for dc in report["datacenters"] if fmt == "table" else []:
        if dc["error"]:
            click.echo(f"{dc['name']}: cannot read the job history: {dc['error']}")
        if not dc["jobs"] and not dc["history"]:
            click.echo(f"{dc['name']}: no jobs declared")
            continue
        click.echo(render_table(JOB_COLUMNS, job_rows(dc), title=f"{dc['name']}: jobs"))
        if dc["history"]:
            click.echo(render_table(HISTORY_COLUMNS, history_rows(dc), title=f"{dc['name']}: history, newest first"))
        for name in dc["failing"]:
            click.echo(f"PROBLEM {dc['name']}/{name}: its last run did not succeed")
    if not report["ok"]:
        sys.exit(EXIT_FAILED)
