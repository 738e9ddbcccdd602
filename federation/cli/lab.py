"""`fedctl lab ...`: run a whole federation on this machine, for demos, tests and drills."""

from __future__ import annotations

import time

import click

from federation.cli.app import cli, format_option, load, reports_errors, topology_option
from federation.progress import Progress
from federation.render import render_data, render_table


@cli.group()
def lab() -> None:
    """Start, stop and inspect the local lab described by a topology."""


@lab.command("up")
@topology_option
@reports_errors
def lab_up_cmd(topology_path: str) -> None:
    """Start every DC of the topology (idempotent) and wait until the federation is healthy."""
    from federation.lab.lab import lab_up

    topo = load(topology_path, network=False)
    started = time.monotonic()
    progress = Progress()
    lab_up(topo, progress)
    click.echo(f"Lab {topo.federation} is up in {time.monotonic() - started:.1f} s "
               f"(data in {topo.lab_dir}). Try: fedctl status -t {topology_path}", err=True)


@lab.command("down")
@topology_option
@click.option("--wipe", is_flag=True, help="Also remove the data directories and the backup repository.")
@reports_errors
def lab_down_cmd(topology_path: str, wipe: bool) -> None:
    """Stop every process the lab started (and only those)."""
    from federation.lab.lab import lab_down

    lab_down(load(topology_path, network=False), Progress(), wipe=wipe)


@lab.command("status")
@topology_option
@format_option
@reports_errors
def lab_status_cmd(topology_path: str, fmt: str) -> None:
    """List the lab's processes and whether they run."""
    from federation.lab.lab import lab_processes

    columns = ["DC", "Process", "Address", "PID"]
    rows = lab_processes(load(topology_path, network=False))
    if fmt == "table":
        click.echo(render_table(columns, rows))
    else:
        click.echo(render_data([dict(zip([c.lower() for c in columns], r, strict=True)) for r in rows], fmt))


@lab.command("dsn")
@topology_option
@reports_errors
def lab_dsn_cmd(topology_path: str) -> None:
    """Print a libpq connection string that always reaches the current primary."""
    from federation.lab.lab import lab_dsn

    click.echo(lab_dsn(load(topology_path)))


@lab.command("kill")
@topology_option
@click.argument("dc_name", metavar="DC")
@reports_errors
def lab_kill_cmd(topology_path: str, dc_name: str) -> None:
    """SIGKILL every process of one DC (DCS, Patroni, PostgreSQL): a disaster drill."""
    from federation.lab.lab import lab_kill

    killed = lab_kill(load(topology_path), dc_name)
    click.echo(f"killed in {dc_name}: {', '.join(killed) or 'nothing was running'}")


@lab.command("start")
@topology_option
@click.argument("dc_name", metavar="DC")
@click.option("--wait", is_flag=True, help="Wait until the DC is healthy.")
@reports_errors
def lab_start_cmd(topology_path: str, dc_name: str, wait: bool) -> None:
    """Start one DC again with the configuration it had, as a rebooted datacenter would."""
    from federation.lab.lab import lab_start

    lab_start(load(topology_path), dc_name, Progress(), wait=wait)


@lab.command("partition")
@topology_option
@click.argument("site_name", metavar="SITE")
@click.option("--from", "peer", metavar="SITE2", help="Cut SITE off from SITE2 only (default: from every site "
              "and from this admin host).")
@click.option("--for", "seconds", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Heal this cut by itself after SECONDS (a WAN blip of a precise length).")
@reports_errors
def lab_partition_cmd(topology_path: str, site_name: str, peer: str | None, seconds: float | None) -> None:
    """Cut a site of the namespace lab off the WAN, both ways, as a real WAN cut: processes keep running,
    connections across the cut stall."""
    from federation.lab.cuts import partition, timed_partition

    topo = load(topology_path, network=False)
    if seconds is None:
        cut = partition(topo, site_name, peer)
        click.echo(f"cut in place: {cut.describe()} (undo: fedctl lab heal {site_name})")
        return
    cut, lasted = timed_partition(topo, site_name, seconds, peer)
    click.echo(f"healed after {lasted:.2f} s: {cut.describe()}")


@lab.command("heal")
@topology_option
@click.argument("site_name", metavar="[SITE]", required=False)
@reports_errors
def lab_heal_cmd(topology_path: str, site_name: str | None) -> None:
    """Remove every cut of the namespace lab, or only those of SITE."""
    from federation.lab.cuts import heal

    removed = heal(load(topology_path, network=False), site_name)
    click.echo("healed: " + ("; ".join(c.describe() for c in removed) if removed else "no cut was in place"))


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@topology_option
@click.argument("site_name", metavar="SITE")
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="-- CMD...")
@reports_errors
def lab_exec_cmd(topology_path: str, site_name: str, argv: tuple[str, ...]) -> None:
    """Run CMD inside a site's network namespace, as a client or an operator standing in that DC would,
    e.g. `fedctl lab exec dc1 -- fedctl status` (CMD gets FEDCTL_TOPOLOGY set to this topology)."""
    from federation.lab.netns import exec_in_site

    exec_in_site(load(topology_path, network=False), site_name, list(argv))
