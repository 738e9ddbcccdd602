"""`fedctl status`: one table of every member of every DC, the cross-DC lag, and what is wrong.

Exit code 0 when everything answers and is healthy, 1 otherwise (patronictl habits).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from federation.cli.app import cli, load, reports_errors, topology_option
from federation.errors import EXIT_FAILED, EXIT_OK
from federation.status_text import host_text, human_bytes, role_text, state_text

if TYPE_CHECKING:
    from federation.status_model import DCStatus, FederationStatus, MemberStatus
    from federation.topology import Topology

COLUMNS = ["DC", "DC role", "Upstream", "Member", "Host", "Role", "State", "TL", "LSN", "Lag", "Gate"]


def _gate_text(member: MemberStatus) -> str:
    """installed | missing | wrong DC | unknown, or `no agent` when its agent did not answer; blank: not asked."""
    if member.agent == "missing":
        return "no agent"
    if member.gate is None:
        return ""
    return member.gate.state.value.replace("wrong_dc", "wrong DC")


def member_rows(dc: DCStatus) -> list[list[object]]:
    rows: list[list[object]] = []
    for m in dc.members:
        is_leader = m.name == dc.leader
        rows.append([dc.name, dc.role, dc.upstream or "", m.name, host_text(m), role_text(m), state_text(m),
                     m.timeline, m.lsn_text, "" if is_leader else human_bytes(m.lag_bytes), _gate_text(m)])
    if not dc.members:
        rows.append([dc.name, dc.role, dc.upstream or "", "", "", "", "", None, None, "", ""])
    return rows


def footer_lines(status: FederationStatus) -> list[str]:
    lines = []
    for dc in status.datacenters:
        if dc.maintenance:
            lines.append(f"{dc.name}: maintenance mode (Patroni paused: no automatic failover)")
        if dc.role != "standby":
            continue
        source = f", replicating from {dc.standby_cluster}" if dc.standby_cluster else ""
        if dc.lag_bytes is None:
            lag = "lag unknown (a leader's position is missing)"
        else:
            seconds = "unknown" if dc.lag_seconds is None else f"{dc.lag_seconds:.1f} s"
            lag = f"{human_bytes(dc.lag_bytes)} / {seconds} behind {dc.upstream}"
        lines.append(f"{dc.name} (standby of {dc.upstream or '?'}): {lag}{source}")
    return lines


def format_table(status: FederationStatus) -> str:
    from federation.render import render_table

    rows = [row for dc in status.datacenters for row in member_rows(dc)]
    problems = status.all_problems()
    verdict = "healthy" if status.healthy else f"{len(problems)} problem{'s' * (len(problems) != 1)}"
    record = status.extra.get("federation_record")
    epoch = f"epoch {record['epoch']}, " if record else ""
    title = f"Federation {status.federation}: primary DC {status.primary_dc or 'none'} ({epoch}{verdict})"
    parts = [render_table(COLUMNS, rows, title=title)]
    parts.extend(footer_lines(status))
    if entry := status.extra.get("entrypoints"):
        parts.append(f"Entrypoints: read-write {entry['read_write']}, read-only {entry['read_only']}, "
                     f"PgBouncer {entry['pgbouncer']}")
    if (store := status.extra.get("federation_store")) is not None:
        from federation.store_status import followers_lines, store_line

        parts.append(store_line(store))
        if followers := followers_lines(store):
            parts.append("Entrypoint followers (switchover-dc pauses their PgBouncer):")
            parts.extend(followers)
    if (cuts := status.extra.get("lab_cuts")) is not None:
        parts.append(f"Lab network cuts: {'; '.join(cuts) if cuts else 'none'}")
    if problems:
        parts.append("Problems:")
        parts.extend(f"  - {p}" for p in problems)
    return "\n".join(parts)


def format_status(status: FederationStatus, fmt: str) -> str:
    """The status as a table (default), JSON or YAML; the JSON/YAML shape is FederationStatus.to_json_dict()."""
    if fmt == "table":
        return format_table(status)
    from federation.render import render_data

    return render_data(status.to_json_dict(), fmt)


def exit_code(status: FederationStatus) -> int:
    return EXIT_OK if status.healthy else EXIT_FAILED


def write_output(path: str | None, text: str) -> None:
    """To stdout, or to `path` replaced whole (a browser reloading it never reads half a page)."""
    if path is None:
        click.echo(text, nl=False)
        return
    import os
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory, prefix=".fedctl-status-",
                                     delete=False) as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


def html_status(topo: Topology, timeout: float, watch: float | None, output: str | None) -> int:
    """The HTML view once, or (with `watch`, into `output`) every `watch` seconds until Ctrl-C, its lag
    sparklines growing one sample a round. Returns the last verdict's exit code."""
    from federation.status_page import observe_for_page, page_html
    from federation.status_view_inputs import LagHistory

    lag = LagHistory()
    code = EXIT_OK
    try:
        while True:
            started = time.monotonic()
            data = observe_for_page(topo, timeout=timeout)
            lag.add_status(data.status)
            write_output(output, page_html(data, lag))
            code = exit_code(data.status)
            if watch is None:
                return code
            stamp = datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
            click.echo(f"{stamp}: wrote {output} ({'healthy' if code == EXIT_OK else 'unhealthy'}); every "
                       f"{watch:g} s, Ctrl-C to stop", err=True)
            time.sleep(max(0.0, watch - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return code


@cli.command()
@topology_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "yaml", "html"]), default="table",
              show_default=True, help="Output format; html: one self-contained page that reloads itself "
              "(docs/status.md).")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False, writable=True), default=None,
              metavar="FILE", help="Write to FILE (replaced whole) instead of stdout; with --watch and --format "
              "html, rewritten every round.")
@click.option("--watch", "-w", "watch", type=click.FloatRange(min=0.2), is_flag=False, flag_value=2.0,
              default=None, metavar="[SECONDS]", help="Refresh every SECONDS (default 2) until Ctrl-C.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds to wait for each DCS and REST API.")
@reports_errors
def status(topology_path: str, fmt: str, output: str | None, watch: float | None, timeout: float) -> None:
    """Show every DC and member: roles, state, timeline, LSN, lag and the promotion gate. Exit 1 when anything is
    unhealthy."""
    from federation.observe import observe_federation

    if watch is not None and output is not None and fmt != "html":
        raise click.UsageError("--output with --watch is for --format html (a page that reloads itself)")
    if watch is not None and output is None and fmt == "html":
        raise click.UsageError("--format html --watch needs --output FILE: open FILE in a browser, it reloads itself")
    topo = load(topology_path)
    if fmt == "html":
        sys.exit(html_status(topo, timeout, watch, output))
    if watch is None:
        observed = observe_federation(topo, timeout=timeout)
        write_output(output, format_status(observed, fmt) + "\n")
        sys.exit(exit_code(observed))
    code = EXIT_OK
    try:
        while True:
            started = time.monotonic()
            observed = observe_federation(topo, timeout=timeout)
            code = exit_code(observed)
            if fmt == "table":
                click.clear()
            stamp = datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
            click.echo(f"{stamp}, every {watch:g} s (Ctrl-C to stop)" if fmt == "table" else "---")
            click.echo(format_status(observed, fmt))
            time.sleep(max(0.0, watch - (time.monotonic() - started)))
    except KeyboardInterrupt:
        pass
    sys.exit(code)
